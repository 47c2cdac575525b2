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
// Writes the whole file through AtomicFileWriter (see there for what happens to links,
// FIFOs and devices).
Status write_binary_file(const std::string& path, const void* data, size_t size);
Status write_text_file(const std::string& path, const std::string& text);

// Writes an output file so that a reader never sees a partial file and nothing but the named
// file is changed:
//   - a regular file (or a new name) is written to a fresh temporary file in the same folder
//     ("NAME.tmp.XXXXXX", never an existing name) and renamed over it by commit(); an existing
//     file keeps its permission bits, a new one gets 0666 minus the umask;
//   - a symbolic link is followed: the file it finally points to is replaced as above and the
//     link itself stays a link;
//   - a FIFO or character device (/dev/stdout, /dev/null, a pipe) cannot be replaced without
//     breaking it, so it is written through directly;
//   - a directory, block device or socket is refused with an error naming the path.
// A writer destroyed without a successful commit() removes its temporary file, so an existing
// file there is untouched (written-through streams cannot be taken back).
class AtomicFileWriter {
 public:
  static Result<AtomicFileWriter> create(const std::string& path);
  AtomicFileWriter(AtomicFileWriter&& other) noexcept;
  AtomicFileWriter& operator=(AtomicFileWriter&&) = delete;
  ~AtomicFileWriter();

  Status write(const void* data, size_t size);
  Status commit();

 private:
  // temp_path empty: written through to path directly.
  AtomicFileWriter(std::string path, std::string temp_path, std::FILE* file)
      : path_(std::move(path)), temp_path_(std::move(temp_path)), file_(file) {}
  std::string path_;       // what the user named (used in messages)
  std::string temp_path_;  // the temporary file renamed over final_path() by commit()
  std::string target_;     // the file finally replaced (path_ with symlinks resolved)
  std::FILE* file_ = nullptr;
};

}  // namespace perfmem
