// Range checks for the sida program's whole-number options, applied to the text before CLI11
// converts it.
//
//   cmd->add_option("--synthetic", n, "...")->check(whole_number_in("a number of requests", 1, 1 << 20));
//
// CLI11's own conversion saturates values beyond 64 bits (2^63 reads as 2^63-1) and wraps "-1"
// into the largest value of an unsigned option, so an absurd count would be accepted silently
// and then run for ever or allocate without bound. Only plain decimal integers within [min, max]
// pass; the message states the range in words.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>

#include "CLI/CLI.hpp"

namespace perfmem::sida {

inline CLI::Validator whole_number_in(const std::string& what, int64_t min, int64_t max) {
  const std::string range = max == INT64_MAX
                                ? "of at least " + std::to_string(min) + " (a whole number below 2^63)"
                                : "from " + std::to_string(min) + " to " + std::to_string(max) + " (a whole number)";
  return CLI::Validator(
      [what, range, min, max](std::string& value) -> std::string {
        int64_t v = 0;
        const char* end = value.data() + value.size();
        const auto [stop, error] = std::from_chars(value.data(), end, v);
        if (error == std::errc() && stop == end && v >= min && v <= max) return "";
        return "expected " + what + " " + range + ", found \"" + value + "\"";
      },
      max == INT64_MAX ? "INT >= " + std::to_string(min)
                       : "INT in [" + std::to_string(min) + " - " + std::to_string(max) + "]");
}

// The most requests --synthetic and `sida bench --requests` make up (about 200 bytes each).
inline constexpr int64_t kMaxSyntheticRequests = int64_t(1) << 20;

}  // namespace perfmem::sida
