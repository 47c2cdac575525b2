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

Result<AtomicFileWriter> AtomicFileWriter::create(const std::string& path) {
  std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return io_error(tmp, "cannot open for writing", errno);
  return AtomicFileWriter(path, f);
}

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& other) noexcept
    : path_(std::move(other.path_)), file_(other.file_) {
  other.file_ = nullptr;
}

AtomicFileWriter::~AtomicFileWriter() {
  if (file_ != nullptr) {  // never committed: drop the partial file
    std::fclose(file_);
    std::remove((path_ + ".tmp").c_str());
  }
}

Status AtomicFileWriter::write(const void* data, size_t size) {
  PERFMEM_CHECK(file_ != nullptr, "write after commit");
  if (size > 0 && std::fwrite(data, 1, size, file_) != size) {
    return io_error(path_, "write failed", errno);
  }
  return Status::Ok();
}

Status AtomicFileWriter::commit() {
  PERFMEM_CHECK(file_ != nullptr, "commit twice");
  std::string tmp = path_ + ".tmp";
  int closed = std::fclose(file_);
  file_ = nullptr;
  if (closed != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    return io_error(path_, "write failed", err);
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
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
