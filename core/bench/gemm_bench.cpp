// y = x · Wᵀ against a weight shared across calls, on the shapes perfmem's systems use: the
// project's packed kernel against OpenBLAS (sgemm, which re-packs W on every call), oneDNN's
// matmul and XNNPACK's fully-connected operator (both with W packed once, before timing).
// One thread each. The libraries get x as one contiguous block; the packed kernel reads the
// same rows through a pointer array, as its callers hand them.
//
//   core_gemm_bench                                    # every shape (a few minutes)
//   core_gemm_bench --benchmark_filter='w:3072x768/rows:(1|8)$'
//
// Benchmarks are named IMPLEMENTATION/w:OUTxIN/rows:N; counter GFLOPS = 2·rows·out·in / time.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>
#include <xnnpack.h>

#include <cmath>
#include <dnnl.hpp>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "perfmem/core/packed_gemm.h"

namespace {

struct Weight {
  int64_t out, in;
};
// Switch Transformer experts (d_model 768, d_ff 3072) and the weights of acrobat's bundled
// models (gates of 512- and 256-wide cells).
constexpr Weight kWeights[] = {{3072, 768}, {768, 3072}, {2048, 512}, {512, 512}, {256, 256}};
constexpr int64_t kRows[] = {1, 2, 4, 8, 16, 64, 256, 1024, 4096};

// Operands of one benchmark: W [out, in], x [rows, in] contiguous plus row pointers, y likewise.
struct Operands {
  int64_t out, in, rows;
  std::vector<float> w, x, y;
  std::vector<const float*> x_rows;
  std::vector<float*> y_rows;
  Operands(const Weight& shape, int64_t rows_) : out(shape.out), in(shape.in), rows(rows_) {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> dist(-1.f, 1.f);
    w.resize(static_cast<size_t>(out * in));
    x.resize(static_cast<size_t>(rows * in));
    y.resize(static_cast<size_t>(rows * out));
    for (float& v : w) v = dist(rng);
    for (float& v : x) v = dist(rng);
    for (int64_t r = 0; r < rows; ++r) {
      x_rows.push_back(x.data() + r * in);
      y_rows.push_back(y.data() + r * out);
    }
  }
};

void report(benchmark::State& state, const Operands& ops) {
  state.counters["GFLOPS"] =
      benchmark::Counter(2.0 * double(ops.rows * ops.out * ops.in), benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1000);
}

void bm_packed(benchmark::State& state, Weight shape, int64_t rows) {
  Operands ops(shape, rows);
  const perfmem::PackedWeights packed(ops.w.data(), ops.out, ops.in);
  for (auto _ : state) {
    perfmem::packed_gemm(packed, rows, ops.x_rows.data(), ops.y_rows.data());
    benchmark::DoNotOptimize(ops.y.data());
  }
  report(state, ops);
}

void bm_openblas(benchmark::State& state, Weight shape, int64_t rows) {
  Operands ops(shape, rows);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(ops.out), int(ops.in), 1.f, ops.x.data(),
                int(ops.in), ops.w.data(), int(ops.in), 0.f, ops.y.data(), int(ops.out));
    benchmark::DoNotOptimize(ops.y.data());
  }
  report(state, ops);
}

void bm_onednn(benchmark::State& state, Weight shape, int64_t rows) {
  using namespace dnnl;
  using tag = memory::format_tag;
  Operands ops(shape, rows);
  engine cpu(engine::kind::cpu, 0);
  stream strm(cpu);
  const memory::dims src_dims = {rows, ops.in}, wei_dims = {ops.in, ops.out}, dst_dims = {rows, ops.out};
  const memory::desc src_md(src_dims, memory::data_type::f32, tag::ab);
  const memory::desc dst_md(dst_dims, memory::data_type::f32, tag::ab);
  // Weights in whatever layout the primitive prefers (tag::any), reordered once from W [out, in],
  // which is the (in x out) matrix in column-major order (tag::ba).
  const memory::desc wei_any(wei_dims, memory::data_type::f32, tag::any);
  const matmul::primitive_desc pd(matmul::desc(src_md, wei_any, dst_md), cpu);
  memory user_w({wei_dims, memory::data_type::f32, tag::ba}, cpu, ops.w.data());
  memory packed_w(pd.weights_desc(), cpu);
  reorder(user_w, packed_w).execute(strm, user_w, packed_w);
  memory src(src_md, cpu, ops.x.data()), dst(dst_md, cpu, ops.y.data());
  matmul product(pd);
  strm.wait();
  for (auto _ : state) {
    product.execute(strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, packed_w}, {DNNL_ARG_DST, dst}});
    strm.wait();
    benchmark::DoNotOptimize(ops.y.data());
  }
  report(state, ops);
}

void bm_xnnpack(benchmark::State& state, Weight shape, int64_t rows) {
  Operands ops(shape, rows);
  if (xnn_initialize(nullptr) != xnn_status_success) return state.SkipWithError("xnn_initialize failed");
  xnn_operator_t op = nullptr;
  // XNNPACK's kernel layout is [output channels, input channels]: W as it is. Packed here, once.
  if (xnn_create_fully_connected_nc_f32(size_t(ops.in), size_t(ops.out), size_t(ops.in), size_t(ops.out), ops.w.data(),
                                        nullptr, -std::numeric_limits<float>::infinity(),
                                        std::numeric_limits<float>::infinity(), 0, &op) != xnn_status_success)
    return state.SkipWithError("xnn_create_fully_connected_nc_f32 failed");
  std::unique_ptr<xnn_operator, decltype(&xnn_delete_operator)> owned(op, &xnn_delete_operator);
  if (xnn_setup_fully_connected_nc_f32(op, size_t(rows), ops.x.data(), ops.y.data(), nullptr) != xnn_status_success)
    return state.SkipWithError("xnn_setup_fully_connected_nc_f32 failed");
  for (auto _ : state) {
    xnn_run_operator(op, nullptr);
    benchmark::DoNotOptimize(ops.y.data());
  }
  report(state, ops);
}

void register_all() {
  const std::pair<const char*, std::function<void(benchmark::State&, Weight, int64_t)>> impls[] = {
      {"perfmem_packed", bm_packed},
      {"openblas_sgemm", bm_openblas},
      {"onednn_matmul", bm_onednn},
      {"xnnpack_fc", bm_xnnpack}};
  for (const Weight& w : kWeights)
    for (int64_t rows : kRows)
      for (const auto& [name, fn] : impls) {
        const std::string label = std::string(name) + "/w:" + std::to_string(w.out) + "x" + std::to_string(w.in) +
                                  "/rows:" + std::to_string(rows);
        benchmark::RegisterBenchmark(label.c_str(), [fn = fn, w, rows](benchmark::State& s) {
          fn(s, w, rows);
        })->Unit(benchmark::kMicrosecond);
      }
}

}  // namespace

int main(int argc, char** argv) {
  // One thread for everyone: OpenBLAS's pool, oneDNN's OpenMP runtime, XNNPACK (no threadpool).
  openblas_set_num_threads(1);
  omp_set_num_threads(1);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("packed_isa", perfmem::gemm_isa_name(perfmem::best_gemm_isa()));
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
