// Shared helpers for the sida tests: temporary checkpoints and comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "perfmem/sida/checkpoint.h"
#include "perfmem/sida/config.h"

namespace perfmem::sida::testing {

// A fresh folder under the test temp dir, removed by the caller's fixture when it wants.
inline std::string temp_dir(const std::string& name) {
  auto dir = std::filesystem::path(::testing::TempDir()) /
             ("sida-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline std::string make_test_checkpoint(const std::string& name, SwitchConfig config,
                                        DType dtype = DType::kF32, uint64_t shard_bytes = 2ull << 30) {
  std::string dir = temp_dir(name);
  MakeCheckpointOptions opt;
  opt.dtype = dtype;
  opt.shard_bytes = shard_bytes;
  opt.show_progress = false;
  Status s = make_checkpoint(config, opt, dir);
  EXPECT_TRUE(s.ok()) << s.to_string();
  return dir;
}

// max |a - b| / max |b|: the relative error of a whole tensor.
inline double relative_error(const float* a, const float* b, size_t n) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::fabs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

}  // namespace perfmem::sida::testing
