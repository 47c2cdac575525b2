// Test support: the source text of a bundled model (acrobat/models/NAME.acr).
#pragma once

#include <string>

#include "perfmem/core/io.h"

namespace perfmem::acrobat::test_support {

// Empty when the file cannot be read, so a test fails on the program, not here.
inline std::string read_model(const std::string& name) {
  auto text = read_text_file(std::string(MODELS_DIR) + "/" + name + ".acr");
  return text.ok() ? *text : std::string();
}

}  // namespace perfmem::acrobat::test_support
