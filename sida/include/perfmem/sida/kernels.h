// fp32 building blocks of the Switch Transformer engine. Each optimised kernel has a plain-loop
// reference twin with the same signature; tests compare them.
//
//   // y[rows, out] = x[rows, in] · w[out, in]ᵀ  (a PyTorch Linear without bias)
//   perfmem::sida::linear(x, w, y, rows, in, out);            // streaming kernel or OpenBLAS sgemm
//   auto packed = perfmem::sida::pack_matrix(w, out, in);     // once, for a resident weight
//   perfmem::sida::linear_packed(x, packed, y, rows);         // AVX-512/AVX2 packed kernel, both cores
//   perfmem::sida::linear_reference(x, w, y, rows, in, out);  // plain loops
//   perfmem::sida::rms_norm(x, weight, y, rows, d, 1e-6f);    // T5 RMSNorm, no mean, no bias
#pragma once

#include <cstdint>

#include "perfmem/core/tensor.h"

namespace perfmem::sida {

// y = x · wᵀ; y is overwritten. With accumulate, y += x · wᵀ. Up to 8 rows: a streaming
// dot-product kernel (each weight row read once, AVX2 when the CPU has it, both cores); more
// rows: OpenBLAS sgemm.
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

// A weight matrix w [out, in] laid out once for linear_packed(): panels of kPackedPanel output
// rows, k-major inside a panel (data[p][k][j] = w[p * kPackedPanel + j][k]; zero past `out`).
// sgemm re-packs its weight operand on every call, which costs as much as the multiply when a
// request brings few rows; the model's resident weights are packed once, at load.
inline constexpr int64_t kPackedPanel = 32;
struct PackedMatrix {
  int64_t out = 0, in = 0;
  AlignedBuffer data;
};
PackedMatrix pack_matrix(const float* w, int64_t out, int64_t in);

// Instruction sets of linear_packed(). By default it uses the best the CPU has; tests run each
// supported one.
enum class PackedIsa { kAvx512, kAvx2, kPortable };
bool packed_isa_supported(PackedIsa isa);
PackedIsa best_packed_isa();

// y = x · wᵀ (y += with accumulate) from a packed matrix. Each y element is the chain of fused
// multiply-adds over k in order from 0, plus y when accumulating: the same bits on every path
// (AVX-512, AVX2 + FMA or portable; any row count or split across the two cores). `isa` must be
// supported by the CPU.
void linear_packed(const float* x, const PackedMatrix& w, float* y, int64_t rows, bool accumulate = false,
                   PackedIsa isa = best_packed_isa());
// Its portable twin (one std::fma chain per element, no vectors, one thread): the same bits.
void linear_packed_reference(const float* x, const PackedMatrix& w, float* y, int64_t rows, bool accumulate = false);

// y[r] = weight * x[r] / sqrt(mean(x[r]²) + eps).
void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t d, float eps);

// In place: x = max(x, 0).
void relu_inplace(float* x, int64_t n);

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
