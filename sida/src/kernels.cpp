#include "perfmem/sida/kernels.h"

#include <cblas.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/core/thread_pool.h"

namespace perfmem::sida {
namespace {

// The expert products come in two builds, chosen once per process from the CPU: on x86-64 with
// AVX2, FMA and F16C, intrinsic kernels (fused multiply-adds, f16 widened by vcvtph2ps); elsewhere
// portable kernels (GCC vector types: a multiply then an add). Each build gives every y element
// the same bits whatever the weights' storage type (the widening of bf16 and f16 to fp32 is
// exact), so a 16-bit fast tier computes what an fp32 one does on the widened values.
enum class Weights { kF32, kBF16, kF16 };
template <Weights K>
using WeightT = std::conditional_t<K == Weights::kF32, float, uint16_t>;

template <Weights K>
inline float widen(WeightT<K> w) {
  if constexpr (K == Weights::kF32) {
    return w;
  } else if constexpr (K == Weights::kBF16) {
    const uint32_t bits = uint32_t(w) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  } else {
    return f16_to_f32(w);
  }
}

// ---- Portable build ----------------------------------------------------------------------------

using f32x8 = float __attribute__((vector_size(32)));
using u16x8 = uint16_t __attribute__((vector_size(16)));
using u32x8 = uint32_t __attribute__((vector_size(32)));

// Eight weights as fp32. (Out-parameters: returning a 32-byte vector by value changes the ABI
// between builds.)
template <Weights K>
inline void load8(f32x8* v, const WeightT<K>* p) {
  if constexpr (K == Weights::kF32) {
    std::memcpy(v, p, sizeof *v);
  } else if constexpr (K == Weights::kBF16) {
    u16x8 h;
    std::memcpy(&h, p, sizeof h);
    const u32x8 wide = __builtin_convertvector(h, u32x8) << 16;
    std::memcpy(v, &wide, sizeof *v);
  } else {
    for (int i = 0; i < 8; ++i) (*v)[i] = f16_to_f32(p[i]);
  }
}

// The dot product of one weight row with one input row, as the portable streaming kernel defines
// it: two 8-wide partial sums over 16-element steps, a fixed pairwise reduction, then the tail.
// Every y element is computed with exactly this sequence of operations, so a row's result never
// depends on which or how many other rows share the call.
template <Weights K>
inline float portable_dot(const WeightT<K>* w, const float* x, int64_t in) {
  const int64_t steps = in / 16 * 16;
  f32x8 s0 = {}, s1 = {};
  for (int64_t i = 0; i < steps; i += 16) {
    f32x8 a, b, c, d;
    load8<K>(&a, w + i);
    std::memcpy(&b, x + i, sizeof b);
    load8<K>(&c, w + i + 8);
    std::memcpy(&d, x + i + 8, sizeof d);
    s0 += a * b;
    s1 += c * d;
  }
  const f32x8 t = s0 + s1;
  float sum = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
  for (int64_t i = steps; i < in; ++i) sum += widen<K>(w[i]) * x[i];
  return sum;
}

template <Weights K>
void portable_streaming_range(const float* x, const WeightT<K>* w, float* y, int64_t rows, int64_t in, int64_t out,
                              bool accumulate, int64_t o_begin, int64_t o_end) {
  for (int64_t o = o_begin; o < o_end; ++o)
    for (int64_t r = 0; r < rows; ++r) {
      const float sum = portable_dot<K>(w + o * in, x + r * in, in);
      float& dst = y[r * out + o];
      dst = accumulate ? dst + sum : sum;
    }
}

// ---- AVX2 + FMA + F16C build --------------------------------------------------------------------

#if defined(__x86_64__)
#define PERFMEM_SIDA_FAST __attribute__((target("avx2,fma,f16c")))

template <Weights K>
PERFMEM_SIDA_FAST inline __m256 fast_load8(const WeightT<K>* p) {
  if constexpr (K == Weights::kF32) {
    return _mm256_loadu_ps(p);
  } else if constexpr (K == Weights::kBF16) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
}

// The fixed pairwise reduction of eight lanes: ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)).
PERFMEM_SIDA_FAST inline float fast_hsum(__m256 v) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

// Streaming (the decode product and window execution's merged rows): each y element is
// fast_hsum(s0 + s1) plus the tail, where s0 and s1 are the fused multiply-add chains over the
// first and second 8 of every 16 elements of the row. Output rows go four at a time (the rest of
// a range one at a time): each input vector is loaded once for four weight rows, and even with
// one input row (a decoding step) eight independent chains keep the multiply-adds from waiting
// on each other: with one weight row's two chains, a CPU whose fused multiply-add takes 5 cycles
// (first-generation EPYC) read a 1 GiB f16 matrix at 18 GB/s, with four at 21 GB/s, the speed of
// a plain sequential read there (sida_kernels_bench DecodeStreamF16 against SequentialRead). The
// four rows are one contiguous run of weights, prefetched as one. The per-element arithmetic is
// the same in both loops, so rows and splits never change results.
template <Weights K>
PERFMEM_SIDA_FAST inline void fast_streaming_finish(__m256 s0, __m256 s1, const WeightT<K>* wo, const float* xr,
                                                    int64_t steps, int64_t in, bool accumulate, float* dst) {
  float sum = fast_hsum(_mm256_add_ps(s0, s1));
  // The tail in fused multiply-adds too, spelled out: contraction of `sum += w * x` would be
  // the compiler's choice, and could differ between the weight types.
  for (int64_t i = steps; i < in; ++i) sum = std::fma(widen<K>(wo[i]), xr[i], sum);
  *dst = accumulate ? *dst + sum : sum;
}

// How far ahead of the weights being read the streaming kernel asks for more. Each weight row is
// only a few kilobytes, and a chunk of rows a few hundred: too short for the hardware prefetchers
// to ramp up on. With it, a decoding step's product reads its weights about as fast as a plain
// sequential read of the same bytes (sida_kernels_bench's DecodeStreamF16 against SequentialRead;
// figures in docs/benchmarks.md).
constexpr int64_t kStreamingPrefetchBytes = 16 * 1024;

template <Weights K>
PERFMEM_SIDA_FAST void fast_streaming_range(const float* x, const WeightT<K>* w, float* y, int64_t rows, int64_t in,
                                            int64_t out, bool accumulate, int64_t o_begin, int64_t o_end) {
  const int64_t steps = in / 16 * 16;
  constexpr int64_t kWeightBytes = sizeof(WeightT<K>);
#define finish(s0, s1, wo, xr, dst) fast_streaming_finish<K>(s0, s1, wo, xr, steps, in, accumulate, dst)
  int64_t o = o_begin;
  for (; o + 4 <= o_end; o += 4) {
    const WeightT<K>* w0 = w + o * in;
    const WeightT<K>*w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
    // The block's four rows are one run of 4 * in weights, of which step i reads 64; in step,
    // prefetch 64 weights' worth of bytes at the same place kStreamingPrefetchBytes further on.
    // Prefetches never fault, so running past the matrix's end is harmless; the address is formed
    // as an integer because it may lie outside the weights' allocation.
    const uintptr_t ahead = reinterpret_cast<uintptr_t>(w0) + kStreamingPrefetchBytes;
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * in;
      __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
      for (int64_t i = 0; i < steps; i += 16) {
        if (r == 0)
          for (int64_t line = 0; line < 64 * kWeightBytes; line += 64)
            _mm_prefetch(reinterpret_cast<const char*>(ahead + uintptr_t(4 * i * kWeightBytes + line)), _MM_HINT_T0);
        const __m256 xa = _mm256_loadu_ps(xr + i), xb = _mm256_loadu_ps(xr + i + 8);
        a0 = _mm256_fmadd_ps(fast_load8<K>(w0 + i), xa, a0);
        b0 = _mm256_fmadd_ps(fast_load8<K>(w0 + i + 8), xb, b0);
        a1 = _mm256_fmadd_ps(fast_load8<K>(w1 + i), xa, a1);
        b1 = _mm256_fmadd_ps(fast_load8<K>(w1 + i + 8), xb, b1);
        a2 = _mm256_fmadd_ps(fast_load8<K>(w2 + i), xa, a2);
        b2 = _mm256_fmadd_ps(fast_load8<K>(w2 + i + 8), xb, b2);
        a3 = _mm256_fmadd_ps(fast_load8<K>(w3 + i), xa, a3);
        b3 = _mm256_fmadd_ps(fast_load8<K>(w3 + i + 8), xb, b3);
      }
      finish(a0, b0, w0, xr, &y[r * out + o]);
      finish(a1, b1, w1, xr, &y[r * out + o + 1]);
      finish(a2, b2, w2, xr, &y[r * out + o + 2]);
      finish(a3, b3, w3, xr, &y[r * out + o + 3]);
    }
  }
  for (; o < o_end; ++o) {
    const WeightT<K>* wo = w + o * in;
    const uintptr_t ahead = reinterpret_cast<uintptr_t>(wo) + kStreamingPrefetchBytes;
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * in;
      __m256 a = _mm256_setzero_ps(), b = a;
      for (int64_t i = 0; i < steps; i += 16) {
        // One line per 64 bytes of the row: every step for fp32 weights, every other for 16-bit.
        if (r == 0 && (kWeightBytes == 4 || (i & 16) == 0))
          _mm_prefetch(reinterpret_cast<const char*>(ahead + uintptr_t(i * kWeightBytes)), _MM_HINT_T0);
        a = _mm256_fmadd_ps(fast_load8<K>(wo + i), _mm256_loadu_ps(xr + i), a);
        b = _mm256_fmadd_ps(fast_load8<K>(wo + i + 8), _mm256_loadu_ps(xr + i + 8), b);
      }
      finish(a, b, wo, xr, &y[r * out + o]);
    }
  }
#undef finish
}

PERFMEM_SIDA_FAST inline float fast_gemm_finish(const float* wr, const float* xr, __m256 acc, int64_t steps,
                                                int64_t in) {
  float sum = fast_hsum(acc);
  for (int64_t i = steps; i < in; ++i) sum = std::fma(wr[i], xr[i], sum);
  return sum;
}

// R input rows (x, stride in) by the four fp32 weight rows of `tile`: 4R fused multiply-add chains
// of 8 lanes, one per output, each reduced by fast_gemm_finish. With R = 3, twelve accumulators
// and four weight registers fill the sixteen vector registers and the inputs are read as memory
// operands. Each chain is the same whatever R is, so a row's results do not depend on the rows
// it is grouped with.
template <int R>
PERFMEM_SIDA_FAST inline void fast_gemm_tile(const float* tile, const float* x, float* y, int64_t steps, int64_t in,
                                             int64_t out, bool accumulate) {
  __m256 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_ps();
  for (int64_t i = 0; i < steps; i += 8) {
    __m256 w[4];
    for (int j = 0; j < 4; ++j) w[j] = _mm256_loadu_ps(tile + j * in + i);
    for (int r = 0; r < R; ++r) {
      const __m256 v = _mm256_loadu_ps(x + r * in + i);
      for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_fmadd_ps(w[j], v, acc[r][j]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) {
      const float sum = fast_gemm_finish(tile + j * in, x + r * in, acc[r][j], steps, in);
      float& dst = y[r * out + j];
      dst = accumulate ? dst + sum : sum;
    }
}

// Many rows (a prompt's tokens at one expert): four weight rows at a time are widened once into
// an fp32 tile (in L1/L2) and multiplied with the input rows three at a time (fast_gemm_tile).
// Each y element's arithmetic depends only on its own row and output, so the split over threads
// does not change results. The widening is the same exact conversion as in the streaming kernel.
template <Weights K>
PERFMEM_SIDA_FAST void fast_gemm_range(const float* x, const WeightT<K>* w, float* y, int64_t rows, int64_t in,
                                       int64_t out, bool accumulate, int64_t o_begin, int64_t o_end) {
  thread_local std::vector<float> tile_storage;
  const int64_t steps = in / 8 * 8;
  const float* tile = nullptr;
  if constexpr (K != Weights::kF32) tile_storage.resize(size_t(4 * in));
#define dot_tail(wr, xr, acc) fast_gemm_finish(wr, xr, acc, steps, in)
#define store(dst, sum) (*(dst) = accumulate ? *(dst) + (sum) : (sum))
  for (int64_t o = o_begin; o < o_end; o += 4) {
    const int64_t n = std::min<int64_t>(4, o_end - o);
    if constexpr (K == Weights::kF32) {
      tile = w + o * in;
    } else {
      float* t = tile_storage.data();
      const WeightT<K>* src = w + o * in;
      int64_t i = 0;
      for (; i + 8 <= n * in; i += 8) _mm256_storeu_ps(t + i, fast_load8<K>(src + i));
      for (; i < n * in; ++i) t[i] = widen<K>(src[i]);
      tile = t;
    }
    if (n < 4) {  // the range's last block: one output at a time
      for (int64_t j = 0; j < n; ++j)
        for (int64_t r = 0; r < rows; ++r) {
          const float *wr = tile + j * in, *xr = x + r * in;
          __m256 acc = _mm256_setzero_ps();
          for (int64_t i = 0; i < steps; i += 8)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i), _mm256_loadu_ps(xr + i), acc);
          store(&y[r * out + o + j], dot_tail(wr, xr, acc));
        }
      continue;
    }
    int64_t r = 0;
    for (; r + 3 <= rows; r += 3) fast_gemm_tile<3>(tile, x + r * in, y + r * out + o, steps, in, out, accumulate);
    for (; r + 2 <= rows; r += 2) fast_gemm_tile<2>(tile, x + r * in, y + r * out + o, steps, in, out, accumulate);
    for (; r < rows; ++r) fast_gemm_tile<1>(tile, x + r * in, y + r * out + o, steps, in, out, accumulate);
  }
#undef dot_tail
#undef store
}
#undef PERFMEM_SIDA_FAST

std::atomic<bool> portable_forced{false};

bool fast_build() {
  static const bool fast =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return fast && !portable_forced.load(std::memory_order_relaxed);
}
#else
bool fast_build() { return false; }
#endif

// The products' threads: one per hardware thread, the caller included (see work_team.h for why
// a team of spinning helpers rather than a pool of sleeping ones).
WorkTeam& product_team() {
  static WorkTeam team(hardware_threads() > 1 ? hardware_threads() - 1 : 0);
  return team;
}

template <Weights K>
void streaming_product(const float* x, const WeightT<K>* w, float* y, int64_t rows, int64_t in, int64_t out,
                       bool accumulate) {
  if (rows <= 0) return;
  // Chunks of output rows are independent: each y element is computed by exactly one thread
  // with the same arithmetic, so the split does not change results. Runs are multiples of 16
  // blocks of 4 output rows (the fast build's block): 64 rows, long enough for the prefetches.
  const int64_t blocks = (out + 3) / 4;
  product_team().parallel_for(blocks, /*chunk=*/16, [&](int64_t begin, int64_t end) {
    const int64_t o_begin = begin * 4, o_end = std::min(out, end * 4);
#if defined(__x86_64__)
    if (fast_build()) return fast_streaming_range<K>(x, w, y, rows, in, out, accumulate, o_begin, o_end);
#endif
    portable_streaming_range<K>(x, w, y, rows, in, out, accumulate, o_begin, o_end);
  });
}

// The output rows [o_begin, o_end) of one product of a group, in its weight type.
void streaming_range(const StreamingProduct& p, int64_t o_begin, int64_t o_end) {
  auto run = [&]<Weights K>() {
    const auto* w = static_cast<const WeightT<K>*>(p.w);
#if defined(__x86_64__)
    if (fast_build()) return fast_streaming_range<K>(p.x, w, p.y, p.rows, p.in, p.out, p.accumulate, o_begin, o_end);
#endif
    portable_streaming_range<K>(p.x, w, p.y, p.rows, p.in, p.out, p.accumulate, o_begin, o_end);
  };
  if (p.type == DType::kF32)
    run.template operator()<Weights::kF32>();
  else if (p.type == DType::kBF16)
    run.template operator()<Weights::kBF16>();
  else
    run.template operator()<Weights::kF16>();
}

template <Weights K>
void product(const float* x, const WeightT<K>* w, float* y, int64_t rows, int64_t in, int64_t out, bool accumulate) {
  if (rows <= 0) return;
  // Up to kLinearStreamingMaxRows rows, products stream each weight row once through a
  // dot-product kernel: at batch 1 the weights are read once per call, and sgemm would first
  // pack (copy) the whole weight matrix, doubling the memory traffic.
  if (rows <= kLinearStreamingMaxRows) return streaming_product<K>(x, w, y, rows, in, out, accumulate);
#if defined(__x86_64__)
  if (fast_build()) {
    // More rows (a prompt): the tiled kernel reads the weights once, widening four rows at a time
    // into a cache-resident tile, instead of widening the whole matrix and packing it for sgemm.
    const int64_t blocks = (out + 3) / 4;
    product_team().parallel_for(blocks, /*chunk=*/16, [&](int64_t begin, int64_t end) {
      fast_gemm_range<K>(x, w, y, rows, in, out, accumulate, begin * 4, std::min(out, end * 4));
    });
    return;
  }
#endif
  const float* wf = nullptr;
  thread_local std::vector<float> wide;
  if constexpr (K == Weights::kF32) {
    wf = w;
  } else {
    wide.resize(static_cast<size_t>(in * out));
    for (int64_t i = 0; i < in * out; ++i) wide[size_t(i)] = widen<K>(w[i]);
    wf = wide.data();
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(out), int(in), 1.0f, x, int(in), wf, int(in),
              accumulate ? 1.0f : 0.0f, y, int(out));
}

template <Weights K>
void product_reference(const float* x, const WeightT<K>* w, float* y, int64_t rows, int64_t in, int64_t out,
                       bool accumulate) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = accumulate ? y[r * out + o] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += double(x[r * in + i]) * double(widen<K>(w[o * in + i]));
      y[r * out + o] = float(acc);
    }
}

}  // namespace

void parallel_chunks(int64_t n, int64_t chunk, WorkTeam::Body fn) { product_team().parallel_for(n, chunk, fn); }

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
  product_team().parallel_for(w.panels(), /*chunk=*/2, [&](int64_t begin, int64_t end) {
    packed_gemm(w, rows, x_ptrs, y_ptrs, {.bias = nullptr, .accumulate = accumulate}, isa, {begin, end});
  });
}

bool use_portable_expert_kernels(bool portable) {
#if defined(__x86_64__)
  portable_forced.store(portable, std::memory_order_relaxed);
#else
  (void)portable;
#endif
  return !fast_build();
}

void linear_streaming_group(const StreamingProduct* group, size_t count) {
  // Blocks of 4 output rows, numbered across the products in order: first_block[i] is product
  // i's first. A run of blocks may span products; each product's part of it is one call of the
  // streaming kernel, so every y element is computed as streaming_product() computes it.
  thread_local std::vector<int64_t> first_block;
  first_block.assign(count + 1, 0);
  for (size_t i = 0; i < count; ++i) {
    const StreamingProduct& p = group[i];
    PERFMEM_CHECK(p.rows >= 0, "linear_streaming_group: negative rows");
    PERFMEM_CHECK(p.type == DType::kF32 || p.type == DType::kBF16 || p.type == DType::kF16,
                  "linear_streaming_group: weight type not fp32, bf16 or f16");
    first_block[i + 1] = first_block[i] + (p.rows > 0 ? (p.out + 3) / 4 : 0);
  }
  const int64_t* firsts = first_block.data();
  product_team().parallel_for(firsts[count], /*chunk=*/16, [&](int64_t begin, int64_t end) {
    // The first product whose blocks reach past `begin`.
    size_t i = size_t(std::upper_bound(firsts, firsts + count + 1, begin) - firsts) - 1;
    for (; i < count && firsts[i] < end; ++i) {
      const int64_t b = std::max(begin, firsts[i]) - firsts[i], e = std::min(end, firsts[i + 1]) - firsts[i];
      if (b < e) streaming_range(group[i], b * 4, std::min(group[i].out, e * 4));
    }
  });
}

void linear_streaming(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out,
                      bool accumulate) {
  streaming_product<Weights::kF32>(x, w, y, rows, in, out, accumulate);
}

void linear(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out, bool accumulate) {
  product<Weights::kF32>(x, w, y, rows, in, out, accumulate);
}

void linear_streaming_bf16(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out,
                           bool accumulate) {
  streaming_product<Weights::kBF16>(x, w, y, rows, in, out, accumulate);
}

void linear_bf16(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out, bool accumulate) {
  product<Weights::kBF16>(x, w, y, rows, in, out, accumulate);
}

void linear_streaming_f16(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out,
                          bool accumulate) {
  streaming_product<Weights::kF16>(x, w, y, rows, in, out, accumulate);
}

void linear_f16(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out, bool accumulate) {
  product<Weights::kF16>(x, w, y, rows, in, out, accumulate);
}

void linear_f16_reference(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out,
                          bool accumulate) {
  product_reference<Weights::kF16>(x, w, y, rows, in, out, accumulate);
}

void linear_bf16_reference(const float* x, const uint16_t* w, float* y, int64_t rows, int64_t in, int64_t out,
                           bool accumulate) {
  product_reference<Weights::kBF16>(x, w, y, rows, in, out, accumulate);
}

void linear_reference(const float* x, const float* w, float* y, int64_t rows, int64_t in, int64_t out,
                      bool accumulate) {
  product_reference<Weights::kF32>(x, w, y, rows, in, out, accumulate);
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
