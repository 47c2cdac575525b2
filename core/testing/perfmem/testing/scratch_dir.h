// A folder for the files one test process writes, removed when the process exits, so a test
// run leaves nothing in the temp dir and runs side by side never share a file name.
//
//   const std::filesystem::path& scratch() {
//     static const perfmem::testing::ScratchDir dir("vmcu-test");  // <temp dir>/vmcu-test-<pid>
//     return dir.path();
//   }
//
// Held as a function-local static, it is made on first use and removed with everything in it
// when the process exits (CTest runs each test as its own process). Only the process that made
// it removes it: a forked child (a death test) that exits must not delete its parent's files.
// PERFMEM_KEEP_TEST_DIRS=1 keeps it, for a look after a failure.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace perfmem::testing {

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix)
      : path_(std::filesystem::path(::testing::TempDir()) / (prefix + "-" + std::to_string(::getpid()))),
        owner_(::getpid()) {
    std::filesystem::remove_all(path_);  // a folder of an earlier process with the same pid
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    if (owner_ != ::getpid() || std::getenv("PERFMEM_KEEP_TEST_DIRS") != nullptr) return;
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  pid_t owner_;
};

}  // namespace perfmem::testing
