// Timers and summary statistics for benchmarks and run reports.
//
//   perfmem::Stopwatch sw;  work();  double ms = sw.elapsed_ms();
//   perfmem::Summary s = perfmem::summarize(latencies_ms);   // s.median, s.p99, ...
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "nlohmann/json_fwd.hpp"

namespace perfmem {

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  void reset() { start_ = std::chrono::steady_clock::now(); }
  double elapsed_s() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
  double elapsed_ms() const { return elapsed_s() * 1e3; }
  double elapsed_ns() const { return elapsed_s() * 1e9; }

 private:
  std::chrono::steady_clock::time_point start_;
};

struct Summary {
  size_t count = 0;
  double min = 0, max = 0, mean = 0;
  double median = 0;  // p50, linear interpolation between closest ranks
  double p90 = 0, p99 = 0;
};

// Percentile q in [0, 100] of unsorted samples, by linear interpolation; 0 for no samples.
double percentile(std::vector<double> samples, double q);
Summary summarize(const std::vector<double>& samples);
nlohmann::json to_json(const Summary& summary);
// "median 1.23 (min 1.01, p99 2.50, n=30)"
std::string to_string(const Summary& summary, int precision = 3);

// Peak resident set size of this process in bytes (VmHWM), 0 if unknown.
size_t peak_rss_bytes();

// "1.50 KiB", "2.00 GiB": binary units, two decimals.
std::string format_bytes(double bytes);
// Parses "2GiB", "512MiB", "100KB", "4096" (KB/MB/GB are decimal, KiB/MiB/GiB binary).
// Returns false on anything else.
bool parse_bytes(const std::string& text, size_t* out);

}  // namespace perfmem
