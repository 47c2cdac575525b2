// The project's one matrix product against a weight packed once: y = x · Wᵀ for a few to a
// few thousand rows, used by sida's resident experts and acrobat's batched shared-weight
// products. OpenBLAS's sgemm re-packs its weight operand on every call, which costs as much as
// the multiply when a call brings few rows; here the weight is laid out once (at load, or on
// first use) and every call reads it as it is.
//
//   perfmem::PackedWeights w(weight, out, in);                 // weight [out, in], row-major
//   perfmem::packed_gemm(w, rows, x_rows, y_rows);             // y[r] = x[r] · Wᵀ, r < rows
//   perfmem::packed_gemm(w, rows, x_rows, y_rows, {.bias = b, .accumulate = true});
//   perfmem::packed_gemm_reference(w, rows, x_rows, y_rows);   // plain loops: the same bits
//
// Rows are read and written through pointer arrays (x[r], y[r]), so the rows of a batch can
// live anywhere: nothing is gathered into one block first.
//
// Arithmetic (the invariant every path keeps): each output element is one chain of fused
// multiply-adds over k = 0 .. in-1 in order, starting from 0; then the bias is added, then
// (when accumulating) the old y. So a row's result never depends on how many rows share the
// call, which rows they are, how the panels are split across threads, or the instruction set
// (AVX-512, AVX2 + FMA, NEON or scalar): all give identical bits, and the reference twin with
// std::fma gives them too.
#pragma once

#include <cstdint>

#include "perfmem/core/tensor.h"

namespace perfmem {

// Output columns per panel of a packed weight (one 16-float vector with AVX-512, two with
// AVX2, four with NEON).
inline constexpr int64_t kGemmPanelWidth = 16;

// A weight W [out, in] laid out in panels of kGemmPanelWidth output rows, k-major inside a panel:
// panel(p)[k * kGemmPanelWidth + j] = W[p * kGemmPanelWidth + j][k], zero past `out`. Move-only.
class PackedWeights {
 public:
  PackedWeights() = default;
  // Packs w (out x in floats, row o holding output o's weights, as a PyTorch Linear weight).
  PackedWeights(const float* w, int64_t out, int64_t in);

  int64_t out() const { return out_; }
  int64_t in() const { return in_; }
  int64_t panels() const { return (out_ + kGemmPanelWidth - 1) / kGemmPanelWidth; }
  const float* panel(int64_t p) const { return data_.data_as<const float>() + p * in_ * kGemmPanelWidth; }
  // Bytes held (the padded panels).
  size_t bytes() const { return data_.size(); }
  bool empty() const { return out_ == 0; }

 private:
  int64_t out_ = 0, in_ = 0;
  AlignedBuffer data_;
};

// The instruction sets of packed_gemm(). By default the best the CPU has; tests run each one
// the CPU supports.
enum class GemmIsa { kAvx512, kAvx2, kNeon, kScalar };
bool gemm_isa_supported(GemmIsa isa);
GemmIsa best_gemm_isa();
const char* gemm_isa_name(GemmIsa isa);

// What is done with each chain's result: y = chain (+ bias[o]) (+ old y when accumulate).
struct GemmEpilogue {
  const float* bias = nullptr;  // `out` floats, or null
  bool accumulate = false;
};

// A range of output panels [begin, end); end < 0 means through the last panel. Threads that
// split a product take disjoint panel ranges (see the arithmetic invariant: results do not
// depend on the split).
struct PanelRange {
  int64_t begin = 0, end = -1;
};

// y[r][o] for r < rows and o in the output columns of `panels`. x[r] holds w.in() floats, y[r]
// w.out() floats (only the range's columns are written). y rows must not overlap x rows.
// `isa` must be supported by the CPU (checked).
void packed_gemm(const PackedWeights& w, int64_t rows, const float* const* x, float* const* y,
                 const GemmEpilogue& epilogue = {}, GemmIsa isa = best_gemm_isa(), PanelRange panels = {});

// The plain-loop twin: one std::fma chain per element, one thread. The same bits as packed_gemm.
void packed_gemm_reference(const PackedWeights& w, int64_t rows, const float* const* x, float* const* y,
                           const GemmEpilogue& epilogue = {});

}  // namespace perfmem
