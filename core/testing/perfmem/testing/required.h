// Skipping a test for something outside the repository (the real models beside it in
// ../shared, a Python oracle, an external tool) — and failing instead where it must be there.
//
// A user who builds perfmem without ../shared or the oracle venv still gets a green suite: such
// tests skip and say why. In CI (CI=true, which CI services set) or with
// PERFMEM_REQUIRE_ORACLES=1 the same absence fails the test, so a run cannot pass by skipping
// every conformance test.
//
//   if (!std::filesystem::exists(path)) PERFMEM_SKIP_UNLESS_REQUIRED(path << " is absent");
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>
#include <string>

namespace perfmem::testing {

// True when absent oracles, models and tools must fail tests instead of skipping them.
inline bool oracles_required() {
  const char* ci = std::getenv("CI");
  const char* required = std::getenv("PERFMEM_REQUIRE_ORACLES");
  return (ci != nullptr && std::string(ci) == "true") || (required != nullptr && std::string(required) == "1");
}

}  // namespace perfmem::testing

// Returns from the test: skipped with `why`, or failed with it when oracles are required.
// `why` is anything that streams into an ostream (`a << " b"` works).
#define PERFMEM_SKIP_UNLESS_REQUIRED(why)                                                           \
  do {                                                                                              \
    std::ostringstream perfmem_why_;                                                                \
    perfmem_why_ << why;                                                                            \
    if (::perfmem::testing::oracles_required()) {                                                   \
      FAIL() << perfmem_why_.str()                                                                  \
             << " (required: CI=true or PERFMEM_REQUIRE_ORACLES=1 turns this skip into a failure)"; \
    }                                                                                               \
    GTEST_SKIP() << perfmem_why_.str();                                                             \
  } while (0)
