#include "perfmem/sida/kernels.h"

#include <cblas.h>
#if defined(__x86_64__)
// The streaming kernel is cloned for AVX2 and the baseline on x86-64 (chosen once per process);
// elsewhere (aarch64) the generic vector types compile to the native SIMD.
#define PERFMEM_SIDA_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PERFMEM_SIDA_AVX2_CLONES
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/core/thread_pool.h"

namespace perfmem::sida {
namespace {

using f32x8 = float __attribute__((vector_size(32)));
using u16x8 = uint16_t __attribute__((vector_size(16)));
using u32x8 = uint32_t __attribute__((vector_size(32)));

// Eight weights as fp32: a copy for fp32 weights; for bf16, the 16 bits become the high half of
// each fp32 (exactly convert_to_f32's widening), so both kinds feed the same arithmetic.
// (Out-parameters: returning a 32-byte vector by value changes the ABI between the clones.)
inline void load8(f32x8* v, const float* p) { std::memcpy(v, p, sizeof *v); }
inline void load8(f32x8* v, const uint16_t* p) {
  u16x8 h;
  std::memcpy(&h, p, sizeof h);
  const u32x8 wide = __builtin_convertvector(h, u32x8) << 16;
  std::memcpy(v, &wide, sizeof *v);
}
inline float widen(float w) { return w; }
inline float widen(uint16_t w) {
  const uint32_t bits = uint32_t(w) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// The dot product of one weight row with one input row, as the streaming kernel defines it: two
// 8-wide partial sums over 16-element steps, a fixed pairwise reduction, then the tail. Every y
// element is computed with exactly this sequence of operations, whichever loop below computes it,
// so a row's result never depends on which or how many other rows share the call.
#define PERFMEM_SIDA_DOT_STEP(acc0, acc1, wrow, xrow, i) \
  do {                                                   \
    f32x8 a_, b_, c_, d_;                                \
    load8(&a_, (wrow) + (i));                            \
    load8(&b_, (xrow) + (i));                            \
    load8(&c_, (wrow) + (i) + 8);                        \
    load8(&d_, (xrow) + (i) + 8);                        \
    acc0 += a_ * b_;                                     \
    acc1 += c_ * d_;                                     \
  } while (0)

template <typename W>
inline float finish_dot(const f32x8& s0, const f32x8& s1, const W* w, const float* x, int64_t i, int64_t in) {
  const f32x8 t = s0 + s1;
  float sum = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
  for (; i < in; ++i) sum += widen(w[i]) * x[i];
  return sum;
}

// y[r, o] (+)= x[r, :] · w[o, :] for o in [o_begin, o_end). Each weight row is read once and
// reused from L1 for every input row; rows go four at a time (each weight vector loaded once for
// the four), then one at a time. Cloned for AVX2 and the baseline; the clone is chosen once per
// process from the CPU, so results are deterministic on a machine. W is float or uint16_t (bf16
// weights, widened as they are loaded: the same bits as fp32 weights holding the widened values).
template <typename W>
inline __attribute__((always_inline)) void linear_streaming_body(const float* x, const W* w, float* y, int64_t rows,
                                                                 int64_t in, int64_t out, bool accumulate,
                                                                 int64_t o_begin, int64_t o_end) {
  const int64_t steps = in / 16 * 16;
  for (int64_t o = o_begin; o < o_end; ++o) {
    const W* wo = w + o * in;
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

PERFMEM_SIDA_AVX2_CLONES
void linear_streaming_range(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out,
                            bool accumulate, int64_t o_begin, int64_t o_end) {
  linear_streaming_body(x, w, y, rows, in, out, accumulate, o_begin, o_end);
}

PERFMEM_SIDA_AVX2_CLONES
void linear_streaming_bf16_range(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out,
                                 bool accumulate, int64_t o_begin, int64_t o_end) {
  linear_streaming_body(x, w, y, rows, in, out, accumulate, o_begin, o_end);
}

ThreadPool& streaming_pool() {
  static ThreadPool pool(hardware_threads() > 1 ? hardware_threads() - 1 : 0);
  return pool;
}

}  // namespace

void linear_packed(const float* x, const PackedWeights& w, float* y, int64_t rows, bool accumulate, GemmIsa isa) {
  if (rows <= 0) return;
  // Row pointers for core's kernel, reused across calls (this runs once per layer per request).
  // The pool's threads reach them through plain pointers: a thread_local named inside the task
  // would be the worker's own, empty copy.
  thread_local std::vector<const float*> x_rows;
  thread_local std::vector<float*> y_rows;
  x_rows.resize(static_cast<size_t>(rows));
  y_rows.resize(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    x_rows[r] = x + r * w.in();
    y_rows[r] = y + r * w.out();
  }
  const float* const* x_ptrs = x_rows.data();
  float* const* y_ptrs = y_rows.data();
  // Panels are independent and each y element is computed by one thread, so the split does not
  // change results.
  streaming_pool().parallel_for(
      0, w.panels(),
      [&](int64_t begin, int64_t end) {
        packed_gemm(w, rows, x_ptrs, y_ptrs, {.bias = nullptr, .accumulate = accumulate}, isa, {begin, end});
      },
      /*min_chunk=*/2);
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

void linear_streaming_bf16(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out,
                           bool accumulate) {
  if (rows == 0) return;
  streaming_pool().parallel_for(
      0, out,
      [&](int64_t begin, int64_t end) { linear_streaming_bf16_range(x, w, y, rows, in, out, accumulate, begin, end); },
      /*min_chunk=*/64);
}

void linear_bf16(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out, bool accumulate) {
  if (rows == 0) return;
  if (rows <= kLinearStreamingMaxRows) return linear_streaming_bf16(x, w, y, rows, in, out, accumulate);
  // Many rows (a prompt): sgemm on the widened matrix, what linear() runs on fp32 weights.
  thread_local std::vector<float> wide;
  wide.resize(static_cast<size_t>(in * out));
  for (int64_t i = 0; i < in * out; ++i) wide[size_t(i)] = widen(w[i]);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(out), int(in), 1.0f, x, int(in), wide.data(),
              int(in), accumulate ? 1.0f : 0.0f, y, int(out));
}

void linear_bf16_reference(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out,
                           bool accumulate) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = accumulate ? y[r * out + o] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += double(x[r * in + i]) * double(widen(w[o * in + i]));
      y[r * out + o] = float(acc);
    }
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
