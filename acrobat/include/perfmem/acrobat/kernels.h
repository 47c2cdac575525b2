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
// That kernel is core's packed_gemm (perfmem/core/packed_gemm.h) below
// Scratch::packed_max_rows rows, OpenBLAS sgemm from there on. sgemm re-packs the whole weight
// on every call, which at a few rows costs as much as the multiply. The weight is packed ONCE
// (cached in Scratch by address: shared operands are model parameters and constants, which
// never change while a Scratch lives); the kernel reads each instance's vector straight through
// the pointer array while multiplying (no gather copy) and adds a shared dense bias in its
// epilogue. OpenBLAS also serves matrix operands (x[b] with several columns) and per-instance
// matrices.
//
// Fused elementwise runs: run_elementwise computes one instruction for ONE instance, so a
// fused group can run a chain of elementwise instructions instance by instance while that
// instance's intermediates stay in L1.
#pragma once

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

#include "perfmem/acrobat/ast.h"
#include "perfmem/core/packed_gemm.h"
#include "perfmem/core/thread_pool.h"

namespace perfmem::acrobat::kernels {

// Below this many rows a product by a shared weight uses the packed kernel, from it on
// OpenBLAS. Measured with `acrobat_gemm_crossover` (docs/benchmarks.md): OpenBLAS re-packs the
// weight on every call, the packed kernel reads the pre-packed weight once per call (a few
// rows) or once per chunk of rows; it is faster at every row count up to 4096 on the bundled
// models' weights.
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
struct Scratch {
  GemmIsa packed_isa = best_gemm_isa();  // tests run every one the CPU supports
  std::vector<float> a, b;
  std::vector<const float*> ptrs;
  // Shared weights of products with matrix operands, in panels of 6 rows, by address.
  std::unordered_map<const float*, std::vector<float>> row_panels;
  std::unordered_map<const float*, PackedWeights> packed;
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

// Readies OpenBLAS for the calls the batched kernels make from the calling thread and from
// every thread of `pool` (null: the calling thread alone): each runs one 512 x 512 x 512 sgemm,
// all at the same time, so that each holds its own OpenBLAS work buffer. Why: on a
// first-generation EPYC host, OpenBLAS 0.3.21's one-thread sgemm multiplied 128 x 256 by
// 256 x 128 at 10 GFLOP/s in a process whose products had all been that small, and at 33 after
// one product of 352 rows or more had run (concurrent calls take separate buffers, so each
// thread needs its own); which state of OpenBLAS makes the difference was not established. The
// executor calls it when it is created; once per process for each number of threads, about
// 10 ms. Results do not change (tests: kernels' Blas warm-up).
void warm_up_blas(ThreadPool* pool);

}  // namespace perfmem::acrobat::kernels
