// The cost per element of core/fast_math.h's activations against a plain add, in vectorised
// loops over 512 floats (one ACRoBat TreeLSTM gate at H = 512, in L1), each cloned like
// ACRoBat's elementwise loops and built with the same options (-fno-trapping-math,
// -ffp-contract=off). Shows what bounds a fused run of elementwise instructions: the
// arithmetic of exp (range reduction, a degree-6 polynomial, a division for sigmoid and tanh)
// or the loads and stores between instructions.
//
//   core_fast_math_bench                     # ns per element: counter ns_per_element
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "perfmem/core/fast_math.h"

namespace {

#if defined(__x86_64__)
#define PERFMEM_BENCH_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
#else
#define PERFMEM_BENCH_CLONES __attribute__((noinline))
#endif

constexpr int64_t kSize = 512;

PERFMEM_BENCH_CLONES void add_loop(const float* __restrict x, const float* __restrict y, float* __restrict out) {
  for (int64_t i = 0; i < kSize; ++i) out[i] = x[i] + y[i];
}
PERFMEM_BENCH_CLONES void exp_loop(const float* __restrict x, const float*, float* __restrict out) {
  for (int64_t i = 0; i < kSize; ++i) out[i] = perfmem::fast_exp(x[i]);
}
PERFMEM_BENCH_CLONES void sigmoid_loop(const float* __restrict x, const float*, float* __restrict out) {
  for (int64_t i = 0; i < kSize; ++i) out[i] = perfmem::fast_sigmoid(x[i]);
}
PERFMEM_BENCH_CLONES void tanh_loop(const float* __restrict x, const float*, float* __restrict out) {
  for (int64_t i = 0; i < kSize; ++i) out[i] = perfmem::fast_tanh(x[i]);
}

template <void (*Loop)(const float* __restrict, const float*, float* __restrict)>
void BM_Loop(benchmark::State& state) {
  std::vector<float> x(kSize), y(kSize), out(kSize);
  for (int64_t i = 0; i < kSize; ++i) {
    x[size_t(i)] = float(i - kSize / 2) * 0.01f;
    y[size_t(i)] = 0.5f;
  }
  for (auto _ : state) {
    Loop(x.data(), y.data(), out.data());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.counters["ns_per_element"] =
      benchmark::Counter(double(state.iterations()) * kSize, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

BENCHMARK(BM_Loop<add_loop>)->Name("add");
BENCHMARK(BM_Loop<exp_loop>)->Name("fast_exp");
BENCHMARK(BM_Loop<sigmoid_loop>)->Name("fast_sigmoid");
BENCHMARK(BM_Loop<tanh_loop>)->Name("fast_tanh");

}  // namespace

BENCHMARK_MAIN();
