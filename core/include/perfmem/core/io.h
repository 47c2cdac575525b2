// Whole-file helpers with errors that name the file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "perfmem/core/status.h"

namespace perfmem {

Result<std::vector<uint8_t>> read_binary_file(const std::string& path);
Result<std::string> read_text_file(const std::string& path);
// Writes to path + ".tmp" and renames over path, so readers never see a partial file.
Status write_binary_file(const std::string& path, const void* data, size_t size);
Status write_text_file(const std::string& path, const std::string& text);

// Streams a file into path + ".tmp"; commit() renames it over path. A writer destroyed
// without a successful commit() removes the temporary file, so the final name only ever
// holds a complete file (and an existing file there is untouched until then).
class AtomicFileWriter {
 public:
  static Result<AtomicFileWriter> create(const std::string& path);
  AtomicFileWriter(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter& operator=(AtomicFileWriter&&) = delete;
  ~AtomicFileWriter();

  Status write(const void* data, size_t size);
  Status commit();

 private:
  AtomicFileWriter(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace perfmem
