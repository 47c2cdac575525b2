#include "perfmem/sida/kernels.h"

#include <cblas.h>
#if defined(__x86_64__)
#include <immintrin.h>
// The streaming kernel is cloned for AVX2 and the baseline on x86-64 (chosen once per process);
// elsewhere (aarch64) the generic vector types compile to the native SIMD.
#define PERFMEM_SIDA_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PERFMEM_SIDA_AVX2_CLONES
#endif

#include <algorithm>
#include <cmath>
#include <cstring>

#include "perfmem/core/status.h"
#include "perfmem/core/thread_pool.h"

namespace perfmem::sida {
namespace {

using f32x8 = float __attribute__((vector_size(32)));

// The dot product of one weight row with one input row, as the streaming kernel defines it: two
// 8-wide partial sums over 16-element steps, a fixed pairwise reduction, then the tail. Every y
// element is computed with exactly this sequence of operations, whichever loop below computes it,
// so a row's result never depends on which or how many other rows share the call.
#define PERFMEM_SIDA_DOT_STEP(acc0, acc1, wrow, xrow, i) \
  do {                                                   \
    f32x8 a_, b_, c_, d_;                                \
    std::memcpy(&a_, (wrow) + (i), sizeof a_);           \
    std::memcpy(&b_, (xrow) + (i), sizeof b_);           \
    std::memcpy(&c_, (wrow) + (i) + 8, sizeof c_);       \
    std::memcpy(&d_, (xrow) + (i) + 8, sizeof d_);       \
    acc0 += a_ * b_;                                     \
    acc1 += c_ * d_;                                     \
  } while (0)

inline float finish_dot(const f32x8& s0, const f32x8& s1, const float* w, const float* x, int64_t i, int64_t in) {
  const f32x8 t = s0 + s1;
  float sum = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
  for (; i < in; ++i) sum += w[i] * x[i];
  return sum;
}

// y[r, o] (+)= x[r, :] · w[o, :] for o in [o_begin, o_end). Each weight row is read once and
// reused from L1 for every input row; rows go four at a time (each weight vector loaded once for
// the four), then one at a time. Cloned for AVX2 and the baseline; the clone is chosen once per
// process from the CPU, so results are deterministic on a machine.
PERFMEM_SIDA_AVX2_CLONES
void linear_streaming_range(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out,
                            bool accumulate, int64_t o_begin, int64_t o_end) {
  const int64_t steps = in / 16 * 16;
  for (int64_t o = o_begin; o < o_end; ++o) {
    const float* wo = w + o * in;
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
      const float* x0 = x + r * in;
      const float *x1 = x0 + in, *x2 = x1 + in, *x3 = x2 + in;
      f32x8 s00 = {}, s01 = {}, s10 = {}, s11 = {}, s20 = {}, s21 = {}, s30 = {}, s31 = {};
      for (int64_t i = 0; i < steps; i += 16) {
        PERFMEM_SIDA_DOT_STEP(s00, s01, wo, x0, i);
        PERFMEM_SIDA_DOT_STEP(s10, s11, wo, x1, i);
        PERFMEM_SIDA_DOT_STEP(s20, s21, wo, x2, i);
        PERFMEM_SIDA_DOT_STEP(s30, s31, wo, x3, i);
      }
      const float sums[4] = {finish_dot(s00, s01, wo, x0, steps, in), finish_dot(s10, s11, wo, x1, steps, in),
                             finish_dot(s20, s21, wo, x2, steps, in), finish_dot(s30, s31, wo, x3, steps, in)};
      for (int k = 0; k < 4; ++k) {
        float& dst = y[(r + k) * out + o];
        dst = accumulate ? dst + sums[k] : sums[k];
      }
    }
    for (; r < rows; ++r) {
      const float* xr = x + r * in;
      f32x8 s0 = {}, s1 = {};
      for (int64_t i = 0; i < steps; i += 16) PERFMEM_SIDA_DOT_STEP(s0, s1, wo, xr, i);
      const float sum = finish_dot(s0, s1, wo, xr, steps, in);
      float& dst = y[r * out + o];
      dst = accumulate ? dst + sum : sum;
    }
  }
}
#undef PERFMEM_SIDA_DOT_STEP

ThreadPool& streaming_pool() {
  static ThreadPool pool(hardware_threads() > 1 ? hardware_threads() - 1 : 0);
  return pool;
}

#if defined(__x86_64__)
// Rows [0, R) of x against one panel: y[r, j] for the panel's `cols` valid columns.
template <int R>
__attribute__((target("avx512f"))) void packed_panel_avx512(const float* x, int64_t in, const float* panel, float* y,
                                                            int64_t out, int64_t cols, bool accumulate) {
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < in; ++k) {
    const __m512 w0 = _mm512_load_ps(panel + k * kPackedPanel);
    const __m512 w1 = _mm512_load_ps(panel + k * kPackedPanel + 16);
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_set1_ps(x[r * in + k]);
      acc[r][0] = _mm512_fmadd_ps(xv, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(xv, w1, acc[r][1]);
    }
  }
  alignas(64) float tmp[kPackedPanel];
  for (int r = 0; r < R; ++r) {
    _mm512_store_ps(tmp, acc[r][0]);
    _mm512_store_ps(tmp + 16, acc[r][1]);
    float* yr = y + r * out;
    for (int64_t j = 0; j < cols; ++j) yr[j] = accumulate ? yr[j] + tmp[j] : tmp[j];
  }
}

// The same panel with AVX2 + FMA (CPUs without AVX-512): four 8-wide accumulators per row, at
// most three rows (12 accumulators and 4 weight vectors fill the 16 registers). Each element is
// the same fma chain as the AVX-512 kernel and the portable twin, so all three give equal bits.
template <int R>
__attribute__((target("avx2,fma"))) void packed_panel_avx2(const float* x, int64_t in, const float* panel, float* y,
                                                           int64_t out, int64_t cols, bool accumulate) {
  __m256 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int q = 0; q < 4; ++q) acc[r][q] = _mm256_setzero_ps();
  for (int64_t k = 0; k < in; ++k) {
    const float* wk = panel + k * kPackedPanel;
    const __m256 w0 = _mm256_load_ps(wk), w1 = _mm256_load_ps(wk + 8), w2 = _mm256_load_ps(wk + 16),
                 w3 = _mm256_load_ps(wk + 24);
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_broadcast_ss(x + r * in + k);
      acc[r][0] = _mm256_fmadd_ps(xv, w0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(xv, w1, acc[r][1]);
      acc[r][2] = _mm256_fmadd_ps(xv, w2, acc[r][2]);
      acc[r][3] = _mm256_fmadd_ps(xv, w3, acc[r][3]);
    }
  }
  alignas(32) float tmp[kPackedPanel];
  for (int r = 0; r < R; ++r) {
    for (int q = 0; q < 4; ++q) _mm256_store_ps(tmp + 8 * q, acc[r][q]);
    float* yr = y + r * out;
    for (int64_t j = 0; j < cols; ++j) yr[j] = accumulate ? yr[j] + tmp[j] : tmp[j];
  }
}
#endif  // __x86_64__

// The portable twin: the same fused multiply-add chain per element (std::fma rounds once, as
// the vector instruction does), so both give identical bits.
void packed_panel_portable(const float* x, int64_t rows, int64_t in, const float* panel, float* y, int64_t out,
                           int64_t cols, bool accumulate) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      float acc = 0.f;
      for (int64_t k = 0; k < in; ++k) acc = std::fma(x[r * in + k], panel[k * kPackedPanel + j], acc);
      float& dst = y[r * out + j];
      dst = accumulate ? dst + acc : acc;
    }
}

}  // namespace

bool packed_isa_supported(PackedIsa isa) {
  switch (isa) {
#if defined(__x86_64__)
    case PackedIsa::kAvx512: return __builtin_cpu_supports("avx512f");
    case PackedIsa::kAvx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    case PackedIsa::kAvx512:
    case PackedIsa::kAvx2: return false;
#endif
    case PackedIsa::kPortable: return true;
  }
  return false;
}

PackedIsa best_packed_isa() {
  static const PackedIsa best = packed_isa_supported(PackedIsa::kAvx512) ? PackedIsa::kAvx512
                                : packed_isa_supported(PackedIsa::kAvx2) ? PackedIsa::kAvx2
                                                                         : PackedIsa::kPortable;
  return best;
}

PackedMatrix pack_matrix(const float* w, int64_t out, int64_t in) {
  PackedMatrix m;
  m.out = out;
  m.in = in;
  const int64_t panels = (out + kPackedPanel - 1) / kPackedPanel;
  m.data = AlignedBuffer(size_t(panels * in * kPackedPanel) * sizeof(float));  // zeroed
  float* d = m.data.data_as<float>();
  for (int64_t o = 0; o < out; ++o) {
    float* panel = d + (o / kPackedPanel) * in * kPackedPanel + o % kPackedPanel;
    for (int64_t k = 0; k < in; ++k) panel[k * kPackedPanel] = w[o * in + k];
  }
  return m;
}

void linear_packed(const float* x, const PackedMatrix& w, float* y, int64_t rows, bool accumulate, PackedIsa isa) {
  if (rows == 0) return;
  PERFMEM_CHECK(packed_isa_supported(isa), "linear_packed: instruction set not supported by this CPU");
  const int64_t panels = (w.out + kPackedPanel - 1) / kPackedPanel, in = w.in, out = w.out;
  const float* data = w.data.data_as<float>();
  // Panels are independent: each y element is computed by one thread, so the split does not
  // change results. Rows go in register-tile groups (six with AVX-512, three with AVX2), then
  // the remainder.
  streaming_pool().parallel_for(
      0, panels,
      [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          const float* panel = data + p * in * kPackedPanel;
          const int64_t col0 = p * kPackedPanel, cols = std::min(kPackedPanel, out - col0);
          float* yp = y + col0;
          [[maybe_unused]] int64_t r = 0;  // rows done by the vector tiles
          switch (isa) {
#if defined(__x86_64__)
            case PackedIsa::kAvx512:
              for (; r + 6 <= rows; r += 6)
                packed_panel_avx512<6>(x + r * in, in, panel, yp + r * out, out, cols, accumulate);
              switch (rows - r) {
                case 5: packed_panel_avx512<5>(x + r * in, in, panel, yp + r * out, out, cols, accumulate); break;
                case 4: packed_panel_avx512<4>(x + r * in, in, panel, yp + r * out, out, cols, accumulate); break;
                case 3: packed_panel_avx512<3>(x + r * in, in, panel, yp + r * out, out, cols, accumulate); break;
                case 2: packed_panel_avx512<2>(x + r * in, in, panel, yp + r * out, out, cols, accumulate); break;
                case 1: packed_panel_avx512<1>(x + r * in, in, panel, yp + r * out, out, cols, accumulate); break;
                default: break;
              }
              break;
            case PackedIsa::kAvx2:
              for (; r + 3 <= rows; r += 3)
                packed_panel_avx2<3>(x + r * in, in, panel, yp + r * out, out, cols, accumulate);
              switch (rows - r) {
                case 2: packed_panel_avx2<2>(x + r * in, in, panel, yp + r * out, out, cols, accumulate); break;
                case 1: packed_panel_avx2<1>(x + r * in, in, panel, yp + r * out, out, cols, accumulate); break;
                default: break;
              }
              break;
#endif
            default: packed_panel_portable(x, rows, in, panel, yp, out, cols, accumulate); break;
          }
        }
      },
      /*min_chunk=*/2);
}

void linear_packed_reference(const float* x, const PackedMatrix& w, float* y, int64_t rows, bool accumulate) {
  const int64_t panels = (w.out + kPackedPanel - 1) / kPackedPanel;
  for (int64_t p = 0; p < panels; ++p)
    packed_panel_portable(x, rows, w.in, w.data.data_as<float>() + p * w.in * kPackedPanel, y + p * kPackedPanel, w.out,
                          std::min(kPackedPanel, w.out - p * kPackedPanel), accumulate);
}

void linear_streaming(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out,
                      bool accumulate) {
  if (rows == 0) return;
  // Chunks of output rows are independent: each y element is computed by exactly one thread
  // with the same arithmetic, so the split does not change results.
  streaming_pool().parallel_for(
      0, out,
      [&](int64_t begin, int64_t end) { linear_streaming_range(x, w, y, rows, in, out, accumulate, begin, end); },
      /*min_chunk=*/64);
}

void linear(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out, bool accumulate) {
  if (rows == 0) return;
  // Up to kLinearStreamingMaxRows rows, products stream each weight row once through a
  // dot-product kernel instead of sgemm, which would first pack (copy) the whole weight matrix:
  // at batch 1 the weights are read once per call, so the copy doubles the memory traffic.
  if (rows <= kLinearStreamingMaxRows) return linear_streaming(x, w, y, rows, in, out, accumulate);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(out), int(in), 1.0f, x, int(in), w, int(in),
              accumulate ? 1.0f : 0.0f, y, int(out));
}

void linear_reference(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out,
                      bool accumulate) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = accumulate ? y[r * out + o] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += double(x[r * in + i]) * double(w[o * in + i]);
      y[r * out + o] = float(acc);
    }
}

void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t d, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * d;
    float* yr = y + r * d;
    float sum = 0.f;
    for (int64_t i = 0; i < d; ++i) sum += xr[i] * xr[i];
    const float scale = 1.0f / std::sqrt(sum / float(d) + eps);
    for (int64_t i = 0; i < d; ++i) yr[i] = weight[i] * (xr[i] * scale);
  }
}

void relu_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.f ? x[i] : 0.f;
}

void softmax_inplace(float* x, int64_t n) {
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, x[i]);
  float sum = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

int64_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

int64_t relative_position_bucket(int64_t relative_position, bool bidirectional, int64_t num_buckets,
                                 int64_t max_distance) {
  int64_t bucket = 0;
  int64_t n = relative_position;
  if (bidirectional) {
    num_buckets /= 2;
    if (n > 0) bucket += num_buckets;
    n = n < 0 ? -n : n;
  } else {
    n = n < 0 ? -n : 0;
  }
  const int64_t max_exact = num_buckets / 2;
  if (n < max_exact) return bucket + n;
  // Same float32 arithmetic as the reference implementation: log in fp32, truncation.
  const float scaled = std::log(float(n) / float(max_exact)) /
                       float(std::log(double(max_distance) / double(max_exact))) * float(num_buckets - max_exact);
  int64_t large = max_exact + int64_t(scaled);
  return bucket + std::min(large, num_buckets - 1);
}

void set_blas_threads(int threads) { openblas_set_num_threads(threads); }

}  // namespace perfmem::sida
