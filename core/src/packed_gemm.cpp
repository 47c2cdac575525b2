#include "perfmem/core/packed_gemm.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "perfmem/core/status.h"

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace perfmem {
namespace {

// Each instruction set gets its own copy of the tiles (packed_gemm_tiles.inc), compiled for that
// set only: code built for AVX-512 must never run on a CPU without it, so the sets are not
// mixed in one function and the choice is made at run time (gemm_isa_supported).
#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f")
namespace avx512 {
using V = __m512;
constexpr int kLanes = 16;
inline V vzero() { return _mm512_setzero_ps(); }
inline V vload(const float* p) { return _mm512_load_ps(p); }
inline V vloadu(const float* p) { return _mm512_loadu_ps(p); }
inline void vstoreu(float* p, V v) { _mm512_storeu_ps(p, v); }
inline V vbroadcast(const float* p) { return _mm512_set1_ps(*p); }
inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
inline V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
// 32 registers of one panel each: 8 rows x 3 panels = 24 accumulators.
constexpr int kMaxRows = 8, kMaxPanels = 4, kMainPanels = 3;
constexpr int kFewPanels[kMaxRows] = {4, 4, 4, 4, 4, 4, 3, 3};
#include "packed_gemm_tiles.inc"
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
using V = __m256;
constexpr int kLanes = 8;
inline V vzero() { return _mm256_setzero_ps(); }
inline V vload(const float* p) { return _mm256_load_ps(p); }
inline V vloadu(const float* p) { return _mm256_loadu_ps(p); }
inline void vstoreu(float* p, V v) { _mm256_storeu_ps(p, v); }
inline V vbroadcast(const float* p) { return _mm256_broadcast_ss(p); }
inline V vadd(V a, V b) { return _mm256_add_ps(a, b); }
inline V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
// 16 registers, a panel is two: 6 rows x 1 panel = 12 accumulators, one broadcast, the weights
// read as memory operands; fewer rows spread over more panels to keep 8 or more chains.
constexpr int kMaxRows = 6, kMaxPanels = 4, kMainPanels = 1;
constexpr int kFewPanels[kMaxRows] = {4, 2, 2, 1, 1, 1};
#include "packed_gemm_tiles.inc"
}  // namespace avx2
#pragma GCC pop_options
#endif  // __x86_64__

#if defined(__aarch64__)
namespace neon {
using V = float32x4_t;
constexpr int kLanes = 4;
inline V vzero() { return vdupq_n_f32(0.f); }
inline V vload(const float* p) { return vld1q_f32(p); }
inline V vloadu(const float* p) { return vld1q_f32(p); }
inline void vstoreu(float* p, V v) { vst1q_f32(p, v); }
inline V vbroadcast(const float* p) { return vld1q_dup_f32(p); }
inline V vadd(V a, V b) { return vaddq_f32(a, b); }
inline V vfma(V a, V b, V c) { return vfmaq_f32(c, a, b); }
// 32 registers, a panel is four: 6 rows x 1 panel = 24 accumulators.
constexpr int kMaxRows = 6, kMaxPanels = 2, kMainPanels = 1;
constexpr int kFewPanels[kMaxRows] = {2, 1, 1, 1, 1, 1};
#include "packed_gemm_tiles.inc"
}  // namespace neon
#endif  // __aarch64__

// Any CPU: one float per "vector" and std::fma (a correctly rounded fused multiply-add, as the
// vector instructions are).
namespace scalar {
using V = float;
constexpr int kLanes = 1;
inline V vzero() { return 0.f; }
inline V vload(const float* p) { return *p; }
inline V vloadu(const float* p) { return *p; }
inline void vstoreu(float* p, V v) { *p = v; }
inline V vbroadcast(const float* p) { return *p; }
inline V vadd(V a, V b) { return a + b; }
inline V vfma(V a, V b, V c) { return std::fma(a, b, c); }
constexpr int kMaxRows = 2, kMaxPanels = 1, kMainPanels = 1;
constexpr int kFewPanels[kMaxRows] = {1, 1};
#include "packed_gemm_tiles.inc"
}  // namespace scalar

}  // namespace

PackedWeights::PackedWeights(const float* w, int64_t out, int64_t in) : out_(out), in_(in) {
  PERFMEM_CHECK(out >= 0 && in >= 0, "PackedWeights: negative shape");
  data_ = AlignedBuffer(static_cast<size_t>(panels() * in * kGemmPanelWidth) * sizeof(float));  // zeroed
  float* d = data_.data_as<float>();
  for (int64_t o = 0; o < out; ++o) {
    float* column = d + (o / kGemmPanelWidth) * in * kGemmPanelWidth + o % kGemmPanelWidth;
    for (int64_t k = 0; k < in; ++k) column[k * kGemmPanelWidth] = w[o * in + k];
  }
}

bool gemm_isa_supported(GemmIsa isa) {
  switch (isa) {
#if defined(__x86_64__)
    case GemmIsa::kAvx512: return __builtin_cpu_supports("avx512f");
    case GemmIsa::kAvx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    case GemmIsa::kAvx512:
    case GemmIsa::kAvx2: return false;
#endif
#if defined(__aarch64__)
    case GemmIsa::kNeon: return true;
#else
    case GemmIsa::kNeon: return false;
#endif
    case GemmIsa::kScalar: return true;
  }
  return false;
}

GemmIsa best_gemm_isa() {
  static const GemmIsa best = [] {
    for (GemmIsa isa : {GemmIsa::kAvx512, GemmIsa::kAvx2, GemmIsa::kNeon})
      if (gemm_isa_supported(isa)) return isa;
    return GemmIsa::kScalar;
  }();
  return best;
}

const char* gemm_isa_name(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::kAvx512: return "avx512";
    case GemmIsa::kAvx2: return "avx2";
    case GemmIsa::kNeon: return "neon";
    case GemmIsa::kScalar: return "scalar";
  }
  return "?";
}

void packed_gemm(const PackedWeights& w, int64_t rows, const float* const* x, float* const* y,
                 const GemmEpilogue& epilogue, GemmIsa isa, PanelRange panels) {
  const int64_t end = panels.end < 0 ? w.panels() : panels.end;
  PERFMEM_CHECK(0 <= panels.begin && panels.begin <= end && end <= w.panels(),
                "packed_gemm: panel range outside the weight");
  PERFMEM_CHECK(gemm_isa_supported(isa), "packed_gemm: instruction set not supported by this CPU");
  if (rows <= 0 || panels.begin == end) return;
  switch (isa) {
#if defined(__x86_64__)
    case GemmIsa::kAvx512: return avx512::run(w, rows, x, y, epilogue, panels.begin, end);
    case GemmIsa::kAvx2: return avx2::run(w, rows, x, y, epilogue, panels.begin, end);
#endif
#if defined(__aarch64__)
    case GemmIsa::kNeon: return neon::run(w, rows, x, y, epilogue, panels.begin, end);
#endif
    default: return scalar::run(w, rows, x, y, epilogue, panels.begin, end);
  }
}

void packed_gemm_reference(const PackedWeights& w, int64_t rows, const float* const* x, float* const* y,
                           const GemmEpilogue& epilogue) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < w.out(); ++o) {
      const float* column = w.panel(o / kGemmPanelWidth) + o % kGemmPanelWidth;
      float chain = 0.f;
      for (int64_t k = 0; k < w.in(); ++k) chain = std::fma(x[r][k], column[k * kGemmPanelWidth], chain);
      if (epilogue.bias) chain = chain + epilogue.bias[o];
      y[r][o] = epilogue.accumulate ? y[r][o] + chain : chain;
    }
}

}  // namespace perfmem
