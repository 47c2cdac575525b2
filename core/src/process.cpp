#include "perfmem/core/process.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace perfmem {

Result<std::string> executable_dir() {
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlink("/proc/self/exe", buf, PATH_MAX);
  if (n <= 0) return io_error("/proc/self/exe", "cannot find the running program", errno);
  std::string path(buf, static_cast<size_t>(n));
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

Result<std::string> installed_data_path(const std::string& relative) {
  PERFMEM_ASSIGN_OR_RETURN(std::string dir, executable_dir());
  std::string path = dir + "/../share/perfmem/" + relative;
  if (::access(path.c_str(), R_OK) != 0) {
    return io_error(path, "data file of the installation not found (is the install tree complete?)", errno);
  }
  return path;
}

std::string default_python_venv() {
  if (const char* venv = std::getenv("PERFMEM_VENV"); venv != nullptr && *venv != '\0') return venv;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") + "/.cache/perfmem/venv";
}

Result<ProcessResult> run_process(const std::vector<std::string>& argv, StderrMode stderr_mode) {
  PERFMEM_CHECK(!argv.empty(), "run_process needs a program");
  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return io_error(argv[0], "cannot create a pipe to", errno);
  // The child reports a failed exec through this pipe (closed by a successful exec).
  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    int err = errno;
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return io_error(argv[0], "cannot create a pipe to", err);
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_pipe[1], STDOUT_FILENO);
    if (stderr_mode == StderrMode::kMerge) ::dup2(out_pipe[1], STDERR_FILENO);
    if (stderr_mode == StderrMode::kDiscard) {
      int null_fd = ::open("/dev/null", O_WRONLY);
      if (null_fd >= 0) ::dup2(null_fd, STDERR_FILENO);
    }
    ::execvp(args[0], args.data());
    int err = errno;
    ssize_t ignored = ::write(exec_pipe[1], &err, sizeof err);
    (void)ignored;
    ::_exit(127);
  }
  int fork_err = errno;
  ::close(out_pipe[1]);
  ::close(exec_pipe[1]);
  if (pid < 0) {
    ::close(out_pipe[0]);
    ::close(exec_pipe[0]);
    return io_error(argv[0], "cannot start", fork_err);
  }
  ProcessResult result;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(out_pipe[0], buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    result.output.append(buf, static_cast<size_t>(n));
  }
  ::close(out_pipe[0]);
  int exec_err = 0;
  ssize_t got = ::read(exec_pipe[0], &exec_err, sizeof exec_err);
  ::close(exec_pipe[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (got == static_cast<ssize_t>(sizeof exec_err)) return io_error(argv[0], "cannot run", exec_err);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace perfmem
