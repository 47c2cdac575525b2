// Test support: run a command line through the shell and capture its exit code and output.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace perfmem::testing {

struct CommandResult {
  int exit_code = -1;  // -1 when the command could not start or was killed by a signal
  std::string output;  // stdout and stderr together
};

inline CommandResult run_command(const std::string& command_line) {
  CommandResult result;
  std::string cmd = command_line + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return result;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) result.output.append(buf, n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

}  // namespace perfmem::testing
