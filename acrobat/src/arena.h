// Bump allocation for one minibatch, with a byte budget (internal to the runtime).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

namespace perfmem::acrobat {

// A minibatch would need more memory than RuntimeOptions::max_minibatch_bytes allows. Thrown
// by BlockArena and caught where the minibatch's Status is made.
struct MemoryLimitError {
  std::string message;
};

// Bump allocator in fixed-size blocks; reset keeps the blocks. Pointers stay valid until
// reset (blocks never move). At most `limit` bytes are handed out between resets; a request
// beyond that throws MemoryLimitError before anything is allocated. Blocks are 64-byte
// aligned, and so is every allocation.
class BlockArena {
 public:
  explicit BlockArena(size_t block_bytes) : block_bytes_(block_bytes) {}
  void set_limit(int64_t limit) { limit_ = limit; }

  // count * elem_bytes bytes (at least one element), the product checked for overflow.
  void* alloc_array(int64_t count, int64_t elem_bytes) {
    int64_t bytes = 0;
    if (count < 0 || __builtin_mul_overflow(std::max<int64_t>(count, 1), elem_bytes, &bytes) ||
        bytes > limit_ - handed_out_)
      throw MemoryLimitError{"the minibatch needs more than the memory limit of " + std::to_string(limit_) +
                             " bytes (a block of " + std::to_string(count) + " x " + std::to_string(elem_bytes) +
                             " bytes after " + std::to_string(handed_out_) + " bytes)"};
    return alloc(static_cast<size_t>(bytes));
  }
  float* alloc_floats(int64_t count) { return static_cast<float*>(alloc_array(count, sizeof(float))); }

  void* alloc(size_t bytes) {
    if (bytes > static_cast<size_t>(limit_ - handed_out_))
      throw MemoryLimitError{"the minibatch needs more than the memory limit of " + std::to_string(limit_) + " bytes"};
    bytes = (bytes + 63) & ~size_t{63};
    handed_out_ += static_cast<int64_t>(bytes);
    if (cur_ < blocks_.size() && used_ + bytes <= sizes_[cur_]) {
      void* p = blocks_[cur_].get() + used_;
      used_ += bytes;
      return p;
    }
    // Next block that fits (blocks are reused after reset).
    while (++cur_ < blocks_.size()) {
      if (bytes <= sizes_[cur_]) {
        used_ = bytes;
        return blocks_[cur_].get();
      }
    }
    size_t size = std::max(block_bytes_, bytes);
    blocks_.emplace_back(static_cast<char*>(::operator new[](size, std::align_val_t{64})));
    sizes_.push_back(size);
    cur_ = blocks_.size() - 1;
    used_ = bytes;
    return blocks_[cur_].get();
  }
  void reset() {
    cur_ = 0;
    used_ = 0;
    handed_out_ = 0;
  }

 private:
  struct Free {
    void operator()(char* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  size_t block_bytes_;
  std::vector<std::unique_ptr<char[], Free>> blocks_;
  std::vector<size_t> sizes_;
  size_t cur_ = 0, used_ = 0;
  int64_t limit_ = std::numeric_limits<int64_t>::max() / 2;
  int64_t handed_out_ = 0;
};

}  // namespace perfmem::acrobat
