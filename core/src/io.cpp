#include "perfmem/core/io.h"

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>

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

Status write_binary_file(const std::string& path, const void* data, size_t size) {
  std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return io_error(tmp, "cannot open for writing", errno);
  bool ok = size == 0 || std::fwrite(data, 1, size, f) == size;
  int err = errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    return io_error(path, "write failed", err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    return io_error(path, "cannot rename the finished file into place", err);
  }
  return Status::Ok();
}

Status write_text_file(const std::string& path, const std::string& text) {
  return write_binary_file(path, text.data(), text.size());
}

}  // namespace perfmem
