// Whole-file helpers with errors that name the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "perfmem/core/status.h"

namespace perfmem {

Result<std::vector<uint8_t>> read_binary_file(const std::string& path);
Result<std::string> read_text_file(const std::string& path);
// Writes to path + ".tmp" and renames over path, so readers never see a partial file.
Status write_binary_file(const std::string& path, const void* data, size_t size);
Status write_text_file(const std::string& path, const std::string& text);

}  // namespace perfmem
