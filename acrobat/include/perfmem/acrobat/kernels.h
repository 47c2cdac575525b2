// Batched CPU kernels with fused gather, and their plain reference twins.
//
//   // y[b] = W * x[b] for 64 instances whose inputs live anywhere in memory:
//   const float* xs[64] = {...};  float* ys[64] = {...};
//   perfmem::acrobat::kernels::Scratch scratch;
//   run_batched(sig, 64, args, ys, scratch);     // args[i][b]: operand i of instance b
//   run_reference(sig, 64, args, ys);            // same result, naive loops (tests compare)
//
// Every operand is read through a per-instance pointer array (`args[i][b]`), so operands
// never have to be copied into one block first (gather fusion). An operand the signature
// marks as a shared parameter is read from args[i][0] only: one copy for the whole batch,
// which turns n matrix-vector products by the same weight into ONE call of one kernel.
// Outputs y[b] are normally one contiguous block (the runtime allocates them so); the kernels
// detect that and write in place, otherwise they go through scratch.
//
// That kernel is our packed kernel below Scratch::packed_max_rows rows (all but the largest
// products), OpenBLAS sgemm from there on. sgemm re-packs the whole weight on every call,
// which at a few rows costs as much as the multiply. The packed kernel packs the weight ONCE
// into panels of 16 output rows (cached in Scratch by address: shared operands are model
// parameters and constants, which never change while a Scratch lives), reads each
// instance's vector straight through the pointer array while multiplying (no gather copy),
// and folds a shared dense bias into its accumulators. Vectorised for AVX-512, AVX2 or
// plain SSE2, chosen at run time (target_clones). OpenBLAS also serves matrix operands
// (x[b] with several columns) and per-instance matrices.
//
// Fused elementwise runs: run_elementwise computes one instruction for ONE instance, so a
// fused group can run a chain of elementwise instructions instance by instance while that
// instance's intermediates stay in L1.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "perfmem/acrobat/ast.h"
#include "perfmem/core/thread_pool.h"

namespace perfmem::acrobat::kernels {

// A weight packed for the few-rows kernel: panel p holds rows [16p, 16p + 16) of W,
// column-interleaved (data[(p * cols + q) * 16 + j] = W[16p + j][q]); rows past `rows` are 0.
struct PackedMatrix {
  int64_t rows = 0, cols = 0;
  std::unique_ptr<float[]> storage;  // over-allocated by 16 floats for 64-byte alignment
  float* data = nullptr;
};
inline constexpr int kPanelRows = 16;

PackedMatrix pack_matrix(const float* w, int64_t rows, int64_t cols);

// y[b] = W x[b] (+ bias when not null) for b < n, x[b] of W.cols floats, y[b] of W.rows.
void packed_matvec_rows(const PackedMatrix& w, const float* bias, int n, const float* const* x, float* const* y);

// Below this many rows a product by a shared weight uses the packed kernel, from it on
// OpenBLAS. Measured with `acrobat_gemm_crossover` (docs/acrobat.md): OpenBLAS re-packs the
// weight on every call, the packed kernel reads the pre-packed weight once per call (up to 8
// rows) or once per chunk of 384 rows; it is 2-7x faster at 2-8 rows, 1.1-1.5x at 64-256,
// and level with OpenBLAS (0.99-1.00x) only at 4096 rows on the largest weights.
inline constexpr int kDefaultPackedMaxRows = 4096;

// A launch doing at least this much work (multiply-adds of a product, elements of an
// elementwise operator) is split across Scratch::pool; smaller ones run on the calling thread,
// where waking a worker would cost more than it saves.
inline constexpr int64_t kDefaultParallelMinWork = int64_t{1} << 18;

// Reusable temporary memory (grows, never shrinks; no allocation once warm) and the packed
// copies of shared weights, by address.
//
// With a pool, run_batched splits work that is independent per output element, so results
// are bit-identical to the single-threaded run: products by a shared weight over groups of
// 3 output panels (48 rows, the packed kernel's own grouping; every thread reads its slice
// of the weight once), products by per-instance matrices and elementwise operators over
// instances. OpenBLAS's own threading is not used (set_blas_threads(1)): each thread calls it
// on its part. One exception to bit-identity: OpenBLAS's product over gathered rows (from
// packed_max_rows rows on) splits the rows, and OpenBLAS picks kernels by row count, so the
// parts agree with the whole to rounding.
// The packed few-rows product kernels: the blocked one (AVX-512 registers where the CPU has
// them, else its AVX2/baseline clones; the only one off x86-64) and the narrow one for AVX2 +
// FMA CPUs. kBest picks per CPU; tests run each one the CPU supports against the reference.
enum class PackedRowsKernel { kBest, kBlocked, kNarrow };
bool packed_rows_kernel_supported(PackedRowsKernel kernel);

struct Scratch {
  PackedRowsKernel packed_kernel = PackedRowsKernel::kBest;
  std::vector<float> a, b;
  std::vector<const float*> ptrs;
  std::unordered_map<const float*, PackedMatrix> packed;
  int packed_max_rows = kDefaultPackedMaxRows;  // 0: always OpenBLAS (benchmarks, tests)
  ThreadPool* pool = nullptr;                   // null or no workers: single-threaded
  int64_t parallel_min_work = kDefaultParallelMinWork;
};

// Calls fn(begin, end) over [0, count) split across scratch.pool when `work` reaches
// scratch.parallel_min_work (and count > 1), else once on the calling thread.
void parallel_ranges(Scratch& scratch, int64_t count, int64_t work, const std::function<void(int64_t, int64_t)>& fn);

// One elementwise instruction (add, sub, mul, sigmoid, tanh, relu) for ONE instance:
// operands[i] is that instance's operand i; `out` must not alias a binary op's operands.
void run_elementwise(const KernelSig& sig, const float* const* operands, float* out);
bool is_elementwise(OpKind op);

// Runs operator `sig` (not a group) for n instances. args[i] is the pointer array of operand i.
void run_batched(const KernelSig& sig, int n, const float* const* const* args, float* const* out, Scratch& scratch);

// The same with plain loops and std::exp/std::tanh: the reference the tests compare against.
void run_reference(const KernelSig& sig, int n, const float* const* const* args, float* const* out);

// Elementwise activations used by the batched kernels (exposed for tests).
void sigmoid_inplace(float* x, int64_t size);
void tanh_inplace(float* x, int64_t size);

// Limits OpenBLAS's own threads (1 = single-threaded; the runtime's parallelism comes from
// Scratch::pool instead).
void set_blas_threads(int threads);

}  // namespace perfmem::acrobat::kernels
