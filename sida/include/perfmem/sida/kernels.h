// fp32 building blocks of the Switch Transformer engine. Each optimised kernel has a plain-loop
// reference twin with the same signature; tests compare them.
//
//   // y[rows, out] = x[rows, in] · w[out, in]ᵀ  (a PyTorch Linear without bias)
//   perfmem::sida::linear(x, w, y, rows, in, out);            // streaming kernel or OpenBLAS sgemm
//   perfmem::PackedWeights packed(w, out, in);                // once, for a resident weight
//   perfmem::sida::linear_packed(x, packed, y, rows);         // core's packed kernel, both cores
//   perfmem::sida::linear_reference(x, w, y, rows, in, out);  // plain loops
//   perfmem::sida::rms_norm(x, weight, y, rows, d, 1e-6f);    // T5 RMSNorm, no mean, no bias
#pragma once

#include <cmath>
#include <cstdint>

#include "perfmem/core/packed_gemm.h"
#include "perfmem/core/tensor.h"
#include "perfmem/sida/work_team.h"

namespace perfmem::sida {

// The threads every product here runs on (one per hardware thread, the caller included), for
// other loops of a step that split the same way: fn(begin, end) over chunks of [0, n), each
// element computed by one thread with arithmetic that does not depend on the split.
void parallel_chunks(int64_t n, int64_t chunk, WorkTeam::Body fn);

// a·b over n floats in eight partial sums (lane l takes elements l, l + 8, ...), summed pairwise,
// then the tail. Independent lanes let the compiler use vector instructions (a single running
// sum is a chain it may not reorder); the order is fixed by n alone, so results do not depend on
// the machine's vector width. Attention's q·k and the predictor's attention scores use it.
inline float lane_dot(const float* a, const float* b, int64_t n) {
  float lane[8] = {};
  int64_t t = 0;
  for (; t + 8 <= n; t += 8)
    for (int l = 0; l < 8; ++l) lane[l] += a[t + l] * b[t + l];
  float sum = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  for (; t < n; ++t) sum += a[t] * b[t];
  return sum;
}

// y = x · wᵀ; y is overwritten. With accumulate, y += x · wᵀ. Up to 8 rows: a streaming
// dot-product kernel (each weight row read once, four output rows at a time; both cores); more
// rows: a tiled kernel that reads each weight row once for all rows (both cores). On x86-64 with
// AVX2, FMA and F16C both use fused multiply-adds; elsewhere a portable streaming kernel and
// OpenBLAS sgemm. The choice is made once per process, so results are deterministic on a machine.
void linear(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out, bool accumulate = false);
void linear_reference(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out,
                      bool accumulate = false);

// linear()'s streaming kernel for any number of rows. Every y element is computed with the same
// arithmetic whatever `rows` is and whatever the other rows hold, so a row gives bit for bit what
// linear() gives it in a call of at most kLinearStreamingMaxRows rows: window execution merges
// the few rows that several requests send to one expert into one pass over its weights.
inline constexpr int64_t kLinearStreamingMaxRows = 8;
void linear_streaming(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out,
                      bool accumulate = false);

// The same products with bf16 weights (raw bf16 bits, [out, in]), widened to fp32 as they are
// read: the fast tier keeps bf16 experts in half the bytes. Each y element gets the bits that
// linear() / linear_streaming() give it on the fp32 matrix of the widened values (the widening
// is exact), so a bf16 fast tier computes what an fp32 one does. linear_bf16_reference is the
// plain-loop twin.
void linear_bf16(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out,
                 bool accumulate = false);
void linear_streaming_bf16(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out,
                           bool accumulate = false);
void linear_bf16_reference(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out,
                           bool accumulate = false);

// The same products with IEEE half (f16) weights, as linear_bf16: widened exactly to fp32 as they
// are read, so each y element gets the bits linear() / linear_streaming() give it on the widened
// fp32 matrix. An F16 checkpoint's 16-bit fast tier uses them.
void linear_f16(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out,
                bool accumulate = false);
void linear_streaming_f16(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out,
                          bool accumulate = false);
void linear_f16_reference(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out,
                          bool accumulate = false);

// One product of a group that linear_streaming_group() runs as a single parallel loop: y (+)= x · wᵀ
// with x [rows, in], w [out, in] in `type` (kF32: floats; kBF16 / kF16: raw 16-bit bits), y [rows, out].
struct StreamingProduct {
  const float* x = nullptr;
  const void* w = nullptr;
  DType type = DType::kF32;
  float* y = nullptr;
  int64_t rows = 0, in = 0, out = 0;
  bool accumulate = false;
};

// The products of `group`, independent of each other (no y overlaps another product's x or y),
// as one parallel loop over all their output rows: one wait for the threads at the end instead of
// one per product. A decoding step's q, k and v projections, or the experts of a layer, are a few
// hundred kilobytes each; separately, each ends with threads waiting for the last chunk. Each y
// element gets the bits linear_streaming() / linear_streaming_bf16() / linear_streaming_f16() give
// it alone (any number of rows, as linear_streaming()); types kF32, kBF16 and kF16 only.
void linear_streaming_group(const StreamingProduct* group, size_t count);

// y = x · wᵀ (y += with accumulate) for x [rows, w.in()] and y [rows, w.out()], contiguous, from a
// weight packed once (the model's resident weights are packed at load: sgemm would re-pack them
// on every call, which costs as much as the multiply when a request brings few rows). Core's
// packed_gemm with its output panels split across both cores; each y element is the chain of
// fused multiply-adds over k in order from 0, plus y when accumulating: the same bits for any
// row count, split or instruction set (`isa` must be supported by the CPU), and the same bits as
// perfmem::packed_gemm_reference.
void linear_packed(const float* x, const PackedWeights& w, float* y, int64_t rows, bool accumulate = false,
                   GemmIsa isa = best_gemm_isa());

// Tests only: with `portable`, the expert products above run their portable build even on a CPU
// with AVX2, FMA and F16C (the two builds give different bits; each is deterministic). Returns
// whether the portable build is now in use. Not thread-safe against products in flight.
bool use_portable_expert_kernels(bool portable);

// y[r] = weight * x[r] / sqrt(mean(x[r]²) + eps).
void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t d, float eps);

// In place: x = max(x, 0).
void relu_inplace(float* x, int64_t n);

// SiLU (Mixtral's expert activation): x * sigmoid(x).
inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

// In place softmax of one row of n values.
void softmax_inplace(float* x, int64_t n);

// Index of the first maximum (torch.argmax's choice on ties).
int64_t argmax(const float* x, int64_t n);

// T5's relative position bucket (memory_position - query_position), as Hugging Face computes it.
int64_t relative_position_bucket(int64_t relative_position, bool bidirectional, int64_t num_buckets,
                                 int64_t max_distance);

// Threads used by the BLAS (all hardware threads unless set).
void set_blas_threads(int threads);

}  // namespace perfmem::sida
