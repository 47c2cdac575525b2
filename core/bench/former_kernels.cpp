// sida's and acrobat's packed kernels before both moved to core's packed_gemm, timed on the
// same shapes as gemm_bench.cpp (PERFMEM_GEMM_BENCH_FORMER builds only).
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "perfmem/acrobat/kernels.h"
#include "perfmem/sida/kernels.h"

void register_former_kernels(const std::vector<std::pair<int64_t, int64_t>>& weights,
                             const std::vector<int64_t>& rows) {
  for (auto [out, in] : weights)
    for (int64_t n : rows) {
      const std::string shape = "/w:" + std::to_string(out) + "x" + std::to_string(in) + "/rows:" + std::to_string(n);
      benchmark::RegisterBenchmark(("sida_former" + shape).c_str(), [out, in, n](benchmark::State& state) {
        std::mt19937 rng(11);
        std::uniform_real_distribution<float> dist(-1.f, 1.f);
        std::vector<float> w(out * in), x(n * in), y(n * out);
        for (float& v : w) v = dist(rng);
        for (float& v : x) v = dist(rng);
        const auto packed = perfmem::sida::pack_matrix(w.data(), out, in);
        for (auto _ : state) {
          perfmem::sida::linear_packed(x.data(), packed, y.data(), n);
          benchmark::DoNotOptimize(y.data());
        }
      })->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("acrobat_former" + shape).c_str(), [out, in, n](benchmark::State& state) {
        std::mt19937 rng(11);
        std::uniform_real_distribution<float> dist(-1.f, 1.f);
        std::vector<float> w(out * in), x(n * in), y(n * out);
        for (float& v : w) v = dist(rng);
        for (float& v : x) v = dist(rng);
        std::vector<const float*> xp;
        std::vector<float*> yp;
        for (int64_t r = 0; r < n; ++r) {
          xp.push_back(x.data() + r * in);
          yp.push_back(y.data() + r * out);
        }
        const auto packed = perfmem::acrobat::kernels::pack_matrix(w.data(), out, in);
        for (auto _ : state) {
          perfmem::acrobat::kernels::packed_matvec_rows(packed, nullptr, int(n), xp.data(), yp.data());
          benchmark::DoNotOptimize(y.data());
        }
      })->Unit(benchmark::kMicrosecond);
    }
}
