// The product floor of a minibatch: the time its matrix products alone would take at this
// machine's single-core peak, measured here rather than taken from a datasheet. A run's
// distance above the floor is what recording, scheduling, gathers, elementwise kernels and
// products below peak speed cost together.
//
//   const CorePeak peak = measure_single_core_peak();           // at the start, for the record
//   double floor_ms = product_floor_ms(stats.product_flops, peak_around_the_runs.best());
//
// The peak is the best of OpenBLAS's sgemm (one thread) and core's packed_gemm on a large square
// product (1024 x 1024 x 1024, best of 5 runs each, in CPU time): the fastest single-core product
// this build can run, so no schedule of the same products can beat the floor with these kernels.
// Compare it with CPU time (the one-thread run's CPU time is its latency on an idle machine).
#pragma once

#include <cblas.h>

#include <algorithm>
#include <ctime>
#include <cstdint>
#include <string>
#include <vector>

#include "perfmem/core/packed_gemm.h"

namespace perfmem::acrobat {

struct CorePeak {
  double gflops = 0;   // 1e9 floating-point operations per second
  std::string kernel;  // which kernel reached it
};

inline CorePeak measure_single_core_peak(int64_t n = 1024, int repeats = 5) {
  std::vector<float> a(static_cast<size_t>(n * n)), b(a.size()), c(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>((i * 7919) % 1000) * 1e-3f - 0.5f;
    b[i] = static_cast<float>((i * 104729) % 1000) * 1e-3f - 0.5f;
  }
  const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  // The calling thread's CPU time (both kernels run on it): a busy machine delays the product
  // but does not make it cost more CPU, so the peak holds up there too.
  auto thread_cpu_ms = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
  };
  auto best_gflops = [&](auto&& product) {
    double best_ms = 1e300;
    for (int r = 0; r < repeats; ++r) {
      const double start = thread_cpu_ms();
      product();
      best_ms = std::min(best_ms, thread_cpu_ms() - start);
    }
    return flops / (std::max(best_ms, 1e-3) * 1e6);
  };
  CorePeak peak;
  peak.gflops = best_gflops([&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(n), static_cast<int>(n),
                1.0f, a.data(), static_cast<int>(n), b.data(), static_cast<int>(n), 0.0f, c.data(),
                static_cast<int>(n));
  });
  peak.kernel = "OpenBLAS sgemm";
  const PackedWeights w(b.data(), n, n);
  std::vector<const float*> x(static_cast<size_t>(n));
  std::vector<float*> y(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) {
    x[static_cast<size_t>(r)] = a.data() + r * n;
    y[static_cast<size_t>(r)] = c.data() + r * n;
  }
  const double packed = best_gflops([&] { packed_gemm(w, n, x.data(), y.data()); });
  if (packed > peak.gflops) {
    peak.gflops = packed;
    peak.kernel = "packed_gemm";
  }
  return peak;
}

// The peak around one configuration's runs: measured just before them, between rounds and just
// after (a 1024^3 product, best of 3, each time), keeping the best. A shared host's speed drifts
// over minutes, and a floor from the peak at a benchmark's start was seen above a configuration's
// own time measured later (the host had sped up); the best of the measurements around the runs
// keeps the floor a lower bound for the window they ran in.
//
//   PeakAround peak;  peak.measure();  run the systems;  peak.measure();
//   double floor_ms = product_floor_ms(flops, peak.best());
class PeakAround {
 public:
  void measure() {
    const CorePeak p = measure_single_core_peak(1024, 3);
    if (p.gflops > best_.gflops) best_ = p;
  }
  const CorePeak& best() const { return best_; }

 private:
  CorePeak best_;
};

inline double product_floor_ms(double product_flops, const CorePeak& peak) {
  return peak.gflops > 0 ? product_flops / (peak.gflops * 1e6) : 0;
}

}  // namespace perfmem::acrobat
