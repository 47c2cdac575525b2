// Micro-benchmark of the engine's matrix kernels on Switch Transformer shapes (Google Benchmark):
// y[rows, out] = x[rows, in] · w[out, in]ᵀ by
//   Linear/...           linear(): streaming kernel up to 8 rows, OpenBLAS sgemm above
//   LinearPacked/...     linear_packed() on a weight packed once (the resident weights' path)
//   LinearPackedTwin/... core's plain-loop twin of the packed kernel (one fma chain per element; same bits)
// Counters: GFLOP/s (2·rows·in·out per call) and weight GB/s (in·out·4 bytes read per call).
// And the memory bound of a decoding step, on 1 GiB of weights (far beyond the caches):
//   DecodeStreamF16      linear_streaming_f16() at one row, in 1024 (Mixtral-bench's hidden size)
//   SequentialRead       summing the same bytes as 64-bit words on as many threads: the ceiling
//                        the streaming kernel is compared with
//
//   sida_kernels_bench --benchmark_filter='in:768/out:3072' --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "perfmem/sida/kernels.h"

namespace {

using namespace perfmem::sida;

struct Operands {
  std::vector<float> x, w, y;
  Operands(int64_t rows, int64_t in, int64_t out)
      : x(static_cast<size_t>(rows * in)), w(static_cast<size_t>(out * in)), y(static_cast<size_t>(rows * out)) {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> dist(-1, 1);
    for (float& v : x) v = dist(rng);
    for (float& v : w) v = dist(rng);
  }
};

void set_counters(benchmark::State& state, int64_t rows, int64_t in, int64_t out) {
  const double calls = static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(rows * in * out) * calls / 1e9, benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] = benchmark::Counter(4.0 * double(in * out) * calls / 1e9, benchmark::Counter::kIsRate);
}

// Arguments: rows, in, out.
void BM_Linear(benchmark::State& state) {
  const int64_t rows = state.range(0), in = state.range(1), out = state.range(2);
  Operands o(rows, in, out);
  for (auto _ : state) {
    linear(o.x.data(), o.w.data(), o.y.data(), rows, in, out);
    benchmark::DoNotOptimize(o.y.data());
  }
  set_counters(state, rows, in, out);
}

void BM_LinearPacked(benchmark::State& state) {
  const int64_t rows = state.range(0), in = state.range(1), out = state.range(2);
  Operands o(rows, in, out);
  const perfmem::PackedWeights packed(o.w.data(), out, in);
  for (auto _ : state) {
    linear_packed(o.x.data(), packed, o.y.data(), rows);
    benchmark::DoNotOptimize(o.y.data());
  }
  set_counters(state, rows, in, out);
}

void BM_LinearPackedTwin(benchmark::State& state) {
  const int64_t rows = state.range(0), in = state.range(1), out = state.range(2);
  Operands o(rows, in, out);
  const perfmem::PackedWeights packed(o.w.data(), out, in);
  std::vector<const float*> x_rows;
  std::vector<float*> y_rows;
  for (int64_t r = 0; r < rows; ++r) {
    x_rows.push_back(o.x.data() + r * in);
    y_rows.push_back(o.y.data() + r * out);
  }
  for (auto _ : state) {
    perfmem::packed_gemm_reference(packed, rows, x_rows.data(), y_rows.data());
    benchmark::DoNotOptimize(o.y.data());
  }
  set_counters(state, rows, in, out);
}

constexpr int64_t kDecodeBytes = int64_t(1) << 30;

void BM_DecodeStreamF16(benchmark::State& state) {
  const int64_t in = 1024, out = kDecodeBytes / (2 * in);
  std::vector<uint16_t> w(size_t(in * out));
  for (size_t i = 0; i < w.size(); ++i) w[i] = perfmem::f32_to_f16(float(int(i % 61) - 30) / 64.f);
  std::vector<float> x(size_t(in), 0.5f);
  std::vector<float> y(static_cast<size_t>(out));
  for (auto _ : state) {
    linear_streaming_f16(x.data(), w.data(), y.data(), 1, in, out);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["weight_GB/s"] =
      benchmark::Counter(double(kDecodeBytes) * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

void BM_SequentialRead(benchmark::State& state) {
  std::vector<uint64_t> words(size_t(kDecodeBytes / 8), 1);
  const int64_t n = int64_t(words.size());
  std::vector<uint64_t> sums(64);
  for (auto _ : state) {
    parallel_chunks(n, n / 64, [&](int64_t begin, int64_t end) {
      uint64_t sum = 0;
      for (int64_t i = begin; i < end; ++i) sum += words[size_t(i)];
      sums[size_t(begin / (n / 64))] = sum;
    });
    benchmark::DoNotOptimize(sums.data());
  }
  state.counters["weight_GB/s"] =
      benchmark::Counter(double(kDecodeBytes) * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

// Switch-base shapes: attention projections (768x768), expert wi (768 -> 3072), expert wo.
void SwitchShapes(benchmark::internal::Benchmark* b) {
  for (int64_t rows : {1, 4, 8, 64, 512})
    for (auto [in, out] : {std::pair<int64_t, int64_t>{768, 768}, {768, 3072}, {3072, 768}}) b->Args({rows, in, out});
  b->ArgNames({"rows", "in", "out"})->UseRealTime();
}

BENCHMARK(BM_Linear)->Apply(SwitchShapes);
BENCHMARK(BM_LinearPacked)->Apply(SwitchShapes);
BENCHMARK(BM_LinearPackedTwin)->Apply(SwitchShapes);
BENCHMARK(BM_DecodeStreamF16)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SequentialRead)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
