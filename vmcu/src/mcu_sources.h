// Internal to vmcu_lib: the freestanding sources of vmcu/mcu (kernels and board support),
// embedded at build time (cmake/embed_mcu_sources.cmake) so that generated libraries can carry
// their own copy wherever the vmcu binary runs.
#pragma once

#include <string_view>
#include <vector>

namespace perfmem::vmcu {

struct McuSource {
  std::string_view path;  // relative to vmcu/mcu: "include/vmcu/kernels.h", "src/kernels.c", "board/..."
  std::string_view text;
};

// Sorted by path.
const std::vector<McuSource>& mcu_sources();

}  // namespace perfmem::vmcu
