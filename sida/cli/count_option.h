// Range checks for the sida program's numeric options, applied to the text before CLI11
// converts it; and the sampling options they check.
//
//   cmd->add_option("--synthetic", n, "...")->check(whole_number_in("a number of requests", 1, 1 << 20));
//
// CLI11's own conversion saturates values beyond 64 bits (2^63 reads as 2^63-1) and wraps "-1"
// into the largest value of an unsigned option, so an absurd count would be accepted silently
// and then run for ever or allocate without bound. Only plain decimal integers within [min, max]
// pass; the message states the range in words.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <string>

#include "CLI/CLI.hpp"
#include "perfmem/sida/sampling.h"

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

// A real number in [min, max] (finite; min excluded when `exclude_min`), the message in words.
inline CLI::Validator real_number_in(const std::string& what, double min, double max, bool exclude_min) {
  auto text = [](double v) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%g", v);
    return std::string(buffer);
  };
  const std::string range =
      std::string(exclude_min ? "in (" : "in [") + text(min) + ", " + (std::isinf(max) ? "inf)" : text(max) + "]");
  return CLI::Validator(
      [what, range, min, max, exclude_min](std::string& value) -> std::string {
        double v = 0;
        const bool number = CLI::detail::lexical_cast(value, v) && std::isfinite(v);
        if (number && (exclude_min ? v > min : v >= min) && v <= max) return "";
        return "expected " + what + " " + range + ", found \"" + value + "\"";
      },
      "NUMBER " + range);
}

// --temperature, --top-k, --top-p and --sample-seed (sampled generation; greedy by default).
inline void add_sampling_options(CLI::App* cmd, SamplingOptions& s) {
  cmd->add_option("--temperature", s.temperature, "Sample with this temperature (0: greedy decoding)")
      ->capture_default_str()
      ->check(real_number_in("a temperature", 0, INFINITY, false));
  cmd->add_option("--top-k", s.top_k, "Sample among the k most likely tokens only (0: all)")
      ->capture_default_str()
      ->check(whole_number_in("a number of tokens", 0, INT64_MAX));
  cmd->add_option("--top-p", s.top_p, "Sample among the most likely tokens whose probabilities reach p (1: all)")
      ->capture_default_str()
      ->check(real_number_in("a probability", 0, 1, true));
  cmd->add_option("--sample-seed", s.seed,
                  "Seed of sampling: request i of the run samples from its own generator seeded with this + i")
      ->capture_default_str()
      ->check(whole_number_in("a seed", 0, INT64_MAX));
}

// The most requests --synthetic and `sida bench --requests` make up (about 200 bytes each).
inline constexpr int64_t kMaxSyntheticRequests = int64_t(1) << 20;

}  // namespace perfmem::sida
