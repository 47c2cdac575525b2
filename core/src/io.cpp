#include "perfmem/core/io.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <sys/stat.h>
#include <unistd.h>

namespace perfmem {

Result<std::vector<uint8_t>> read_binary_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return io_error(path, "cannot open for reading", errno);
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) bytes.insert(bytes.end(), chunk, chunk + n);
  bool failed = std::ferror(f) != 0;
  int err = errno;
  std::fclose(f);
  if (failed) return io_error(path, "read failed", err);
  return bytes;
}

Result<std::string> read_text_file(const std::string& path) {
  auto bytes = read_binary_file(path);
  if (!bytes) return bytes.status();
  return std::string(bytes->begin(), bytes->end());
}

namespace {
// Follows symbolic links from path to the name that is finally written (which may not exist
// yet). Relative link targets are taken relative to the link's folder.
Result<std::string> resolve_links(const std::string& path) {
  std::string current = path;
  for (int hops = 0; hops < 40; ++hops) {
    struct stat st;
    if (::lstat(current.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return current;
    std::vector<char> buf(PATH_MAX + 1);
    ssize_t n = ::readlink(current.c_str(), buf.data(), buf.size() - 1);
    if (n < 0) return io_error(current, "cannot read the symbolic link", errno);
    std::string target(buf.data(), static_cast<size_t>(n));
    if (!target.empty() && target[0] != '/') {
      size_t slash = current.rfind('/');
      if (slash != std::string::npos) target = current.substr(0, slash + 1) + target;
    }
    current = target;
  }
  return Status(StatusCode::kIoError, path + ": too many levels of symbolic links");
}
}  // namespace

Result<AtomicFileWriter> AtomicFileWriter::create(const std::string& path) {
  PERFMEM_ASSIGN_OR_RETURN(std::string target, resolve_links(path));
  struct stat st;
  bool exists = ::stat(target.c_str(), &st) == 0;
  if (exists && !S_ISREG(st.st_mode)) {
    if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
      std::FILE* f = std::fopen(target.c_str(), "wb");
      if (!f) return io_error(path, "cannot open for writing", errno);
      AtomicFileWriter through(path, "", f);
      through.target_ = target;
      return through;
    }
    const char* what = S_ISDIR(st.st_mode)   ? "a directory"
                       : S_ISBLK(st.st_mode) ? "a block device"
                                             : "not a regular file";
    return Status(StatusCode::kIoError, path + ": is " + what + "; refusing to write an output file over it");
  }
  std::string pattern = target + ".tmp.XXXXXX";
  int fd = ::mkstemp(pattern.data());
  if (fd < 0) return io_error(path, "cannot create a temporary file beside it", errno);
  mode_t mode;
  if (exists) {
    mode = st.st_mode & 07777;
  } else {
    mode_t mask = ::umask(0);
    ::umask(mask);
    mode = 0666 & ~mask;
  }
  if (::fchmod(fd, mode) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(pattern.c_str());
    return io_error(path, "cannot set permissions of the temporary file", err);
  }
  std::FILE* f = ::fdopen(fd, "wb");
  if (!f) {
    int err = errno;
    ::close(fd);
    ::unlink(pattern.c_str());
    return io_error(path, "cannot open for writing", err);
  }
  AtomicFileWriter writer(path, pattern, f);
  writer.target_ = target;
  return writer;
}

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& other) noexcept
    : path_(std::move(other.path_)),
      temp_path_(std::move(other.temp_path_)),
      target_(std::move(other.target_)),
      file_(other.file_) {
  other.file_ = nullptr;
}

AtomicFileWriter::~AtomicFileWriter() {
  if (file_ != nullptr) {  // never committed: drop the partial file
    std::fclose(file_);
    if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
  }
}

Status AtomicFileWriter::write(const void* data, size_t size) {
  PERFMEM_CHECK(file_ != nullptr, "write after commit");
  if (size > 0 && std::fwrite(data, 1, size, file_) != size) { return io_error(path_, "write failed", errno); }
  return Status::Ok();
}

Status AtomicFileWriter::commit() {
  PERFMEM_CHECK(file_ != nullptr, "commit twice");
  int closed = std::fclose(file_);
  int close_err = errno;
  file_ = nullptr;
  if (temp_path_.empty()) {  // written through
    if (closed != 0) return io_error(path_, "write failed", close_err);
    return Status::Ok();
  }
  if (closed != 0) {
    ::unlink(temp_path_.c_str());
    return io_error(path_, "write failed", close_err);
  }
  if (std::rename(temp_path_.c_str(), target_.c_str()) != 0) {
    int err = errno;
    ::unlink(temp_path_.c_str());
    return io_error(path_, "cannot rename the finished file into place", err);
  }
  return Status::Ok();
}

Status write_binary_file(const std::string& path, const void* data, size_t size) {
  PERFMEM_ASSIGN_OR_RETURN(AtomicFileWriter writer, AtomicFileWriter::create(path));
  PERFMEM_RETURN_IF_ERROR(writer.write(data, size));
  return writer.commit();
}

Status write_text_file(const std::string& path, const std::string& text) {
  return write_binary_file(path, text.data(), text.size());
}

}  // namespace perfmem
