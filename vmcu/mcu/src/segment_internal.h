/* Helpers shared by the segment kernels (private to vmcu_mcu). */
#ifndef VMCU_SEGMENT_INTERNAL_H
#define VMCU_SEGMENT_INTERNAL_H

#include <string.h>

#include "vmcu/arith.h"
#include "vmcu/segment_kernels.h"

#define VMCU_TRACE(r, operand, offset, length, is_write)                                   \
  do {                                                                                     \
    if ((r)->trace) (r)->trace((r)->trace_ctx, (operand), (offset), (length), (is_write)); \
  } while (0)

/* A tile of `length` bytes at ring position pos: `head` bytes at `a`, the rest at the pool start. */
typedef struct {
  const int8_t* a;
  int32_t head;
  const int8_t* b;
} ring_span;

/* One in-bounds window position of the current output pixel. */
typedef struct {
  ring_span in;
  int32_t filter_offset; /* (ky * kw + kx) * filter channels */
} conv_tap;

static inline ring_span span_at(const vmcu_ring* r, int32_t base, int32_t rel, int32_t length) {
  const int32_t pos = vmcu_ring_pos(r, base, rel);
  const int32_t room = r->cap - pos;
  ring_span s;
  s.a = r->data + pos;
  s.head = length < room ? length : room;
  s.b = r->data;
  return s;
}

static inline int32_t idx4(vmcu_shape4 s, int32_t n, int32_t h, int32_t w, int32_t c) {
  return ((n * s.h + h) * s.w + w) * s.c + c;
}

/* vmcu_multiply_by_quantized_multiplier + offset + clamp, in the form the optimised kernels use.
 * Same result for every int32 input: TFLite's high multiply adds 2^30 to a non-negative product
 * and 1 - 2^30 to a negative one, then divides by 2^31 truncating toward zero; for a product
 * -n < 0 that is -floor((n + 2^30 - 1) / 2^31) = floor((2^30 - n) / 2^31), so adding 2^30 and
 * shifting right arithmetically gives it for both signs (one SMLAL on Cortex-M instead of a
 * 64-bit sign fix-up). The only other case, INT32_MIN * INT32_MIN, saturates as in arith.h.
 * kernel_sweep.c compares every kernel that uses it with the reference kernels. */
static inline int32_t high_mul_q31(int32_t a, int32_t b) {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

static inline int8_t requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t offset, int32_t lo,
                                int32_t hi) {
  /* Branch-free: left = max(shift, 0), right = max(-shift, 0) <= 31. */
  const int32_t left = shift & ~(shift >> 31);
  const int32_t right = left - shift;
  int32_t x = high_mul_q31((int32_t)((uint32_t)acc << left), multiplier);
  const int32_t mask = (int32_t)((1u << right) - 1u);
  const int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)x >> 31);
  x = (x >> right) + ((x & mask) > threshold ? 1 : 0);
  return vmcu_clamp_s8(x + offset, lo, hi);
}

/* Bias addition wrapping like the reference kernels (kernels.c): no UB for corrupt biases. */
static inline int32_t add_bias_wrapping(int32_t acc, int32_t bias) { return (int32_t)((uint32_t)acc + (uint32_t)bias); }

/* sum (x[i] + x_off) * w[i], the plain loop: the reference twin of the DSP form below and the
 * form every core without the DSP extension (and the host) runs. */
static inline int32_t dot_s8_plain(const int8_t* x, const int8_t* w, int32_t n, int32_t x_off) {
  int32_t acc = 0;
  for (int32_t i = 0; i < n; ++i) acc += ((int32_t)x[i] + x_off) * (int32_t)w[i];
  return acc;
}

/* Four dot products sharing one input vector: acc[j] += sum (x[i] + x_off) * w[j * w_stride + i]
 * (a 1x4 register tile: each input word is loaded and widened once for four output channels).
 * The plain form; the DSP form below computes the same sums. */
static inline void dot_s8_x4_plain(const int8_t* x, const int8_t* w, int32_t w_stride, int32_t n, int32_t x_off,
                                   int32_t acc[4]) {
  for (int32_t j = 0; j < 4; ++j) acc[j] += dot_s8_plain(x, w + j * w_stride, n, x_off);
}

/* One contiguous run of a dot product: n input bytes at x against the weights at w_offset of each
 * output channel's row (a pixel whose input wraps at the pool end is two runs; a conv pixel one
 * or two per tap). */
typedef struct {
  const int8_t* x;
  int32_t w_offset;
  int32_t n;
} x4_segment;

/* The 1x4 tile over a list of runs, plain form: acc[j] += sum over the runs of
 * sum_i (x[i] + x_off) * w[j * w_stride + w_offset + i]. */
static inline void dot_s8_x4_segments_plain(const x4_segment* seg, int32_t nseg, const int8_t* w, int32_t w_stride,
                                            int32_t x_off, int32_t acc[4]) {
  for (int32_t s = 0; s < nseg; ++s) dot_s8_x4_plain(seg[s].x, w + seg[s].w_offset, w_stride, seg[s].n, x_off, acc);
}

#if defined(__ARM_FEATURE_DSP) && !defined(VMCU_NO_DSP)
#include <arm_acle.h>
/* Cortex-M4/M7 DSP extension. SXTB16 sign-extends the even bytes of a word (or, with ROR #8, the
 * odd ones) into two 16-bit lanes; SXTAB16 also adds the input offset to both lanes (x + x_off
 * lies in [-255, 255]); SMLAD multiplies lane by lane and adds both products to an accumulator.
 * Even lanes pair with even lanes, so the products are the plain loop's, summed in another
 * order: every partial sum fits int32 (at most 2^16 terms of |product| < 2^15), so the result
 * is the same bit for bit; tests/board/kernel_sweep.c checks it on both boards against the
 * reference kernels. The rotated forms are written as instructions: GCC 12 does not fold a
 * rotate into the intrinsics' operand. */
static inline uint32_t load_u32(const int8_t* p) {
  uint32_t v;
  memcpy(&v, p, 4); /* an unaligned word load: the ring gives byte offsets */
  return v;
}
static inline int16x2_t sxtb16_ror8(uint32_t v) {
  int16x2_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}
static inline int16x2_t sxtab16_ror8(int16x2_t a, uint32_t v) {
  int16x2_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
  return r;
}
static inline int16x2_t lanes16(int32_t v) { return (int16x2_t)(((uint32_t)v & 0xFFFFu) | ((uint32_t)v << 16)); }

static inline int32_t dot_s8(const int8_t* x, const int8_t* w, int32_t n, int32_t x_off) {
  const int16x2_t off = lanes16(x_off);
  int32_t acc = 0;
  int32_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint32_t xw = load_u32(x + i), ww = load_u32(w + i);
    acc = __smlad(__sxtab16(off, (int8x4_t)xw), __sxtb16((int8x4_t)ww), acc);
    acc = __smlad(sxtab16_ror8(off, xw), sxtb16_ror8(ww), acc);
  }
  return acc + dot_s8_plain(x + i, w + i, n - i, x_off);
}

/* One step of the 1x4 tile: four input bytes widened once (offset added), four weight words,
 * eight SMLADs: 24 instructions for 16 multiply-adds. Registers: x, w0 (row 0), w2 (row 2), next
 * (row j+1 from row j's advanced pointer), a0..a3, scratch xe xo t0 t1: twelve, so that the
 * block builds wherever it is inlined (r7 may be the frame pointer, sp and pc are taken). The
 * offset and the loop's end pointer, which would be a thirteenth and fourteenth, wait on the
 * stack: the block pushes them itself (no memory operand, whose address could need a register)
 * and pops them at its end. */
#define VMCU_X4_STEP                        \
  "ldr %[t0], [%[x]], #4\n\t"               \
  "ldr %[t1], [sp]\n\t"                     \
  "sxtab16 %[xe], %[t1], %[t0]\n\t"         \
  "sxtab16 %[xo], %[t1], %[t0], ror #8\n\t" \
  "ldr %[t0], [%[w0]], #4\n\t"              \
  "sxtb16 %[t1], %[t0]\n\t"                 \
  "smlad %[a0], %[xe], %[t1], %[a0]\n\t"    \
  "sxtb16 %[t0], %[t0], ror #8\n\t"         \
  "smlad %[a0], %[xo], %[t0], %[a0]\n\t"    \
  "ldr %[t0], [%[w0], %[next]]\n\t"         \
  "sxtb16 %[t1], %[t0]\n\t"                 \
  "smlad %[a1], %[xe], %[t1], %[a1]\n\t"    \
  "sxtb16 %[t0], %[t0], ror #8\n\t"         \
  "smlad %[a1], %[xo], %[t0], %[a1]\n\t"    \
  "ldr %[t0], [%[w2]], #4\n\t"              \
  "sxtb16 %[t1], %[t0]\n\t"                 \
  "smlad %[a2], %[xe], %[t1], %[a2]\n\t"    \
  "sxtb16 %[t0], %[t0], ror #8\n\t"         \
  "smlad %[a2], %[xo], %[t0], %[a2]\n\t"    \
  "ldr %[t0], [%[w2], %[next]]\n\t"         \
  "sxtb16 %[t1], %[t0]\n\t"                 \
  "smlad %[a3], %[xe], %[t1], %[a3]\n\t"    \
  "sxtb16 %[t0], %[t0], ror #8\n\t"         \
  "smlad %[a3], %[xo], %[t0], %[a3]\n\t"
#define VMCU_X4_PUSH "strd %[t0], %[t1], [sp, #-8]!\n\t" /* [sp] = offset lanes, [sp, #4] = end */
#define VMCU_X4_POP "add sp, sp, #8\n\t"
#define VMCU_X4_OPERANDS                                                                                   \
  : [x] "+r"(x), [w0] "+r"(w0), [w2] "+r"(w2), [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), \
    [t0] "+r"(t0), [t1] "+r"(t1), [xe] "=&r"(xe), [xo] "=&r"(xo)                                            \
  : [next] "r"(next_row)                                                                                    \
  : "cc", "memory"

#if defined(__OPTIMIZE__)
/* The 1x4 tile over one run: its first n & ~15 bytes four steps per loop iteration (99
 * instructions for 64 multiply-adds with the end test), then two steps when n & 8, one when n & 4
 * (the caller adds the last n % 4 bytes). A function of its own with nothing else live, never
 * inlined: anywhere else GCC may not find the block's twelve registers free (it reports
 * impossible constraints at -Os or with a frame pointer), here it always does. The widened pixels
 * below avoid its call per run where they apply. */
static __attribute__((noinline)) void dot_s8_x4_run(const int8_t* x, const int8_t* w0, int32_t w_stride, int32_t n,
                                                    int32_t x_off, int32_t* acc) {
  int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
  const int32_t next_row = w_stride - 4;
  const int16x2_t off = lanes16(x_off);
  const int8_t* w2 = w0 + 2 * w_stride;
  uint32_t xe, xo, t0, t1;
  if (n >= 16) {
    t0 = (uint32_t)off;
    t1 = (uint32_t)(uintptr_t)(x + (n & ~15));
    __asm__(VMCU_X4_PUSH "1:\n\t" VMCU_X4_STEP VMCU_X4_STEP VMCU_X4_STEP VMCU_X4_STEP
                         "ldr %[t1], [sp, #4]\n\tcmp %[x], %[t1]\n\tbne 1b\n\t" VMCU_X4_POP VMCU_X4_OPERANDS);
  }
  if (n & 8) {
    t0 = (uint32_t)off;
    t1 = 0;
    __asm__(VMCU_X4_PUSH VMCU_X4_STEP VMCU_X4_STEP VMCU_X4_POP VMCU_X4_OPERANDS);
  }
  if (n & 4) {
    t0 = (uint32_t)off;
    t1 = 0;
    __asm__(VMCU_X4_PUSH VMCU_X4_STEP VMCU_X4_POP VMCU_X4_OPERANDS);
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}
static inline void dot_s8_x4_segments(const x4_segment* seg, int32_t nseg, const int8_t* w, int32_t w_stride,
                                      int32_t x_off, int32_t* acc) {
  for (int32_t s = 0; s < nseg; ++s) {
    const int32_t n = seg[s].n, done = n & ~3;
    const int8_t* ws = w + seg[s].w_offset;
    if (done > 0) dot_s8_x4_run(seg[s].x, ws, w_stride, n, x_off, acc);
    if (done < n) dot_s8_x4_plain(seg[s].x + done, ws + done, w_stride, n - done, x_off, acc);
  }
}
#define VMCU_HAVE_TILE_BODY 1
#else
/* Unoptimised builds (r7 is the frame pointer, too few registers are free): the same steps in C. */
static inline void dot_s8_x4_segments(const x4_segment* seg, int32_t nseg, const int8_t* w, int32_t w_stride,
                                      int32_t x_off, int32_t* acc) {
  const int16x2_t off = lanes16(x_off);
  for (int32_t s = 0; s < nseg; ++s) {
    const int8_t* x = seg[s].x;
    const int8_t* ws = w + seg[s].w_offset;
    const int32_t done = seg[s].n & ~3;
    for (int32_t i = 0; i < done; i += 4) {
      const uint32_t xv = load_u32(x + i);
      const int16x2_t ex = __sxtab16(off, (int8x4_t)xv), ox = sxtab16_ror8(off, xv);
      for (int32_t j = 0; j < 4; ++j) {
        const uint32_t wv = load_u32(ws + j * w_stride + i);
        acc[j] = __smlad(ox, sxtb16_ror8(wv), __smlad(ex, __sxtb16((int8x4_t)wv), acc[j]));
      }
    }
    dot_s8_x4_plain(x + done, ws + done, w_stride, seg[s].n - done, x_off, acc);
  }
}
#endif

/* The 1x4 tile over one run. */
static inline void dot_s8_x4(const int8_t* x, const int8_t* w, int32_t w_stride, int32_t n, int32_t x_off,
                             int32_t acc[4]) {
  const x4_segment seg = {x, 0, n};
  dot_s8_x4_segments(&seg, 1, w, w_stride, x_off, acc);
}
#undef VMCU_X4_STEP
#undef VMCU_X4_PUSH
#undef VMCU_X4_POP
#undef VMCU_X4_OPERANDS

/* Depthwise: channels [c, c + 4) of one output pixel, each to its own accumulator, over the taps
 * whose input and weight pointers are x[t] + c and w[t] + c. The even lanes go to channels 0 and
 * 2 (SMLABB / SMLATT), the odd lanes to 1 and 3. */
typedef struct {
  const int8_t* x;
  const int8_t* w;
} __attribute__((aligned(8))) dw_tap; /* aligned: one LDRD loads both pointers */

static inline __attribute__((always_inline)) void depthwise_tap(const dw_tap* tap, int32_t c, int16x2_t off,
                                                                int32_t* a0, int32_t* a1, int32_t* a2, int32_t* a3) {
  const uint32_t xv = load_u32(tap->x + c), wv = load_u32(tap->w + c);
  const int16x2_t xe = __sxtab16(off, (int8x4_t)xv), xo = sxtab16_ror8(off, xv);
  const int16x2_t we = __sxtb16((int8x4_t)wv), wo = sxtb16_ror8(wv);
  *a0 = __smlabb(xe, we, *a0);
  *a2 = __smlatt(xe, we, *a2);
  *a1 = __smlabb(xo, wo, *a1);
  *a3 = __smlatt(xo, wo, *a3);
}

static inline __attribute__((always_inline)) void depthwise_x4(const dw_tap* taps, int32_t nt, int32_t c, int16x2_t off,
                                                               int32_t acc[4]) {
  int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  const dw_tap* const end = taps + nt;
  const dw_tap* const pairs_end = taps + (nt & ~1);
  /* Two taps per iteration: the loop's own three instructions weigh on a 12-instruction tap. */
  for (; taps != pairs_end; taps += 2) {
    depthwise_tap(taps, c, off, &a0, &a1, &a2, &a3);
    depthwise_tap(taps + 1, c, off, &a0, &a1, &a2, &a3);
  }
  if (taps != end) depthwise_tap(taps, c, off, &a0, &a1, &a2, &a3);
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}
#define VMCU_HAVE_DSP 1
#else
static inline int32_t dot_s8(const int8_t* x, const int8_t* w, int32_t n, int32_t x_off) {
  return dot_s8_plain(x, w, n, x_off);
}
static inline void dot_s8_x4(const int8_t* x, const int8_t* w, int32_t w_stride, int32_t n, int32_t x_off,
                             int32_t acc[4]) {
  dot_s8_x4_plain(x, w, w_stride, n, x_off, acc);
}
static inline void dot_s8_x4_segments(const x4_segment* seg, int32_t nseg, const int8_t* w, int32_t w_stride,
                                      int32_t x_off, int32_t acc[4]) {
  dot_s8_x4_segments_plain(seg, nseg, w, w_stride, x_off, acc);
}
#define VMCU_HAVE_DSP 0
#endif

/* The requantization of the optimised kernels where the shift is a right shift of at least 2
 * (-31 <= shift <= -2, every real layer: its rescale factor is below 1/2) and the multiplier is
 * non-negative (as the host computes it). TFLite rounds twice, the high multiply to nearest
 * (ties up) and the division by 2^r (r = -shift) to nearest (ties away from zero); with
 * P = acc * multiplier, y = floor((P + 2^30) / 2^31) and s = -1 if y < 0 else 0 that is
 *   floor((y + 2^(r-1) + s) / 2^r) = floor((P + 2^30 + s * 2^31 + 2^(30+r)) / 2^(31+r))
 * (nested floors by powers of two merge; adding an integer commutes with them). y < 0 exactly
 * when P < -2^30; using the sign of acc for s instead changes only cases with y = 0, where the
 * numerator stays in [0, 2^(31+r)) for r >= 1 and the result is 0 either way. So one 64-bit
 * multiply-accumulate (SMLAL) from the initial value 2^30 + s * 2^31 + 2^(30+r), whose high word
 * is s + 2^(r-2) and low word 2^30 | (s << 31), then the high word shifted right by r - 1: eight
 * instructions from acc to the result. kernel_sweep.c compares it with TFLite's form over every
 * shift it takes, and every kernel that uses it with the reference kernels, on the boards and the
 * host. */
static inline int32_t requantize_right_shift(int32_t acc, int32_t multiplier, int32_t shift) {
  const int32_t high_shift = ~shift; /* r - 1 = -shift - 1, in [1, 30] */
  const int32_t sign = acc >> 31;
  const uint32_t low = ((uint32_t)sign << 31) | (1u << 30);
  const int32_t high = sign + (int32_t)(1u << (high_shift - 1));
  const int64_t sum = (int64_t)(((uint64_t)(uint32_t)high << 32) | low) + (int64_t)acc * (int64_t)multiplier;
  return (int32_t)(sum >> 32) >> high_shift;
}

/* A conv's output stage, copied out of the parameters once per call: the kernels store int8
 * bytes, which may alias anything, so fields read through the parameter pointer would be
 * reloaded after every store. `fast` says every channel has a bias, a non-negative multiplier
 * and a shift in [-31, -2] (requantize_right_shift's domain): checked once per call, the generic
 * requantize() serves the rest. */
typedef struct {
  const int32_t* multiplier;
  const int32_t* shift;
  const int32_t* bias; /* may be 0 */
  int32_t offset, lo, hi;
  int32_t fast;
} out_quant;

static inline out_quant conv_quant(const vmcu_conv_params* p, const int32_t* bias, int32_t channels) {
  out_quant q = {p->output_multiplier, p->output_shift, bias, p->output_offset, p->act_min, p->act_max, bias != 0};
  for (int32_t c = 0; c < channels && q.fast; ++c)
    q.fast = q.multiplier[c] >= 0 && q.shift[c] >= -31 && q.shift[c] <= -2;
  return q;
}

/* The fast path for four consecutive channels [oc, oc + 4) into dst[0..3] (q->fast must hold).
 * A function of its own, never inlined into the large kernels: there GCC spills the constants
 * and reloads the parameters after every byte store; here every load comes before the stores and
 * the whole stage stays in registers (about 17 instructions per output: four loads, the bias add, SMLAL and the shifts,
 * the clamp). */
static inline __attribute__((always_inline)) int32_t requantize_fast_one(int32_t acc, int32_t bias, int32_t multiplier,
                                                                         int32_t shift, int32_t offset, int32_t lo,
                                                                         int32_t hi, int full_range) {
  const int32_t v = requantize_right_shift(add_bias_wrapping(acc, bias), multiplier, shift) + offset;
#if VMCU_HAVE_DSP
  if (full_range) return __ssat(v, 8); /* [lo, hi] = [-128, 127]: one SSAT */
#endif
  return full_range ? vmcu_clamp_s8(v, -128, 127) : vmcu_clamp_s8(v, lo, hi);
}

static inline __attribute__((always_inline)) void requantize_x4_body(const out_quant* q, int32_t oc, const int32_t* acc,
                                                                     int8_t* dst, int full_range) {
  const int32_t* bias = q->bias + oc;
  const int32_t* multiplier = q->multiplier + oc;
  const int32_t* shift = q->shift + oc;
  const int32_t offset = q->offset, lo = q->lo, hi = q->hi;
  /* Written out four times: GCC -O2 keeps a loop here and its results on the stack. */
  const int32_t v0 = requantize_fast_one(acc[0], bias[0], multiplier[0], shift[0], offset, lo, hi, full_range);
  const int32_t v1 = requantize_fast_one(acc[1], bias[1], multiplier[1], shift[1], offset, lo, hi, full_range);
  const int32_t v2 = requantize_fast_one(acc[2], bias[2], multiplier[2], shift[2], offset, lo, hi, full_range);
  const int32_t v3 = requantize_fast_one(acc[3], bias[3], multiplier[3], shift[3], offset, lo, hi, full_range);
  dst[0] = (int8_t)v0;
  dst[1] = (int8_t)v1;
  dst[2] = (int8_t)v2;
  dst[3] = (int8_t)v3;
}

static __attribute__((noinline)) void requantize_x4(const out_quant* q, int32_t oc, const int32_t* acc, int8_t* dst) {
  if (q->lo == -128 && q->hi == 127)
    requantize_x4_body(q, oc, acc, dst, 1);
  else
    requantize_x4_body(q, oc, acc, dst, 0);
}

static inline int8_t conv_output(const out_quant* q, int32_t acc, int32_t oc) {
  if (q->fast) {
    const int32_t v = requantize_right_shift(add_bias_wrapping(acc, q->bias[oc]), q->multiplier[oc], q->shift[oc]);
    return vmcu_clamp_s8(v + q->offset, q->lo, q->hi);
  }
  if (q->bias) acc = add_bias_wrapping(acc, q->bias[oc]);
  return requantize(acc, q->multiplier[oc], q->shift[oc], q->offset, q->lo, q->hi);
}

/* Channels [oc, oc + 4) of one output (acc[0..3]) into dst[0..3], by requantize_x4 when the
 * fast path holds. */
static inline void conv_output_x4(const out_quant* q, int32_t oc, const int32_t* acc, int8_t* dst) {
  if (q->fast) {
    requantize_x4(q, oc, acc, dst);
  } else {
    for (int32_t j = 0; j < 4; ++j) dst[j] = conv_output(q, acc[j], oc + j);
  }
}

/* One 1x4 tile start to end: output channels [oc, oc + 4) of one pixel over the runs seg (the
 * weights of channel oc at w, rows w_stride apart), requantized into dst[0..3]. In optimised DSP
 * builds a function of its own, the full-range requantization inline. */
#if defined(VMCU_HAVE_TILE_BODY)
static __attribute__((noinline)) void tile_x4_out(const x4_segment* seg, int32_t nseg, const int8_t* w,
                                                  int32_t w_stride, int32_t x_off, const out_quant* q, int32_t oc,
                                                  int8_t* dst) {
  int32_t acc[4] = {0, 0, 0, 0};
  dot_s8_x4_segments(seg, nseg, w, w_stride, x_off, acc);
  if (q->fast && q->lo == -128 && q->hi == 127)
    requantize_x4_body(q, oc, acc, dst, 1);
  else
    conv_output_x4(q, oc, acc, dst);
}

/* A pointwise pixel's input widened once into 16-bit lanes (offset added), in SXTB16's order:
 * for each four bytes b0..b3 the words (b0, b2) and (b1, b3). The 1x4 tile's step then loads both
 * with one LDRD instead of loading, offsetting and widening the input again for every four output
 * channels: 21 instructions for 16 multiply-adds. The buffer lives on the stack; pixels with more
 * channels use the tile above. */
enum { VMCU_WIDE_MAX_CHANNELS = 256 };

#define VMCU_X4W_ROW(acc, ptr, addr)       \
  "ldr %[t0], " addr                       \
  "\n\t"                                   \
  "sxtb16 %[t1], %[t0]\n\t"                \
  "smlad %[" acc "], %[xe], %[t1], %[" acc \
  "]\n\t"                                  \
  "sxtb16 %[t0], %[t0], ror #8\n\t"        \
  "smlad %[" acc "], %[xo], %[t0], %[" acc "]\n\t"
#define VMCU_X4W_STEP                                                                                                  \
  "ldrd %[xe], %[xo], [%[x]], #8\n\t" VMCU_X4W_ROW("a0", w0, "[%[w0]], #4") VMCU_X4W_ROW("a1", w0, "[%[w0], %[next]]") \
      VMCU_X4W_ROW("a2", w2, "[%[w2]], #4") VMCU_X4W_ROW("a3", w2, "[%[w2], %[next]]")
#define VMCU_X4W_OPERANDS                                                                                  \
  : [x] "+r"(x), [w0] "+r"(w0), [w2] "+r"(w2), [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), \
    [t0] "+r"(t0), [t1] "=&r"(t1), [xe] "=&r"(xe), [xo] "=&r"(xo)                                           \
  : [next] "r"(next_row)                                                                                    \
  : "cc", "memory"

/* The first n & ~3 bytes of a run (head bytes at xa, the rest at xb) widened into wp: two words
 * per four bytes. */
static inline void widen_s8(uint32_t* wp, const int8_t* xa, int32_t head, const int8_t* xb, int32_t n, int16x2_t off) {
  const int32_t body = n & ~3;
  const int32_t contiguous = vmcu_min_i32(body, head & ~3); /* words before the wrap */
  for (const int8_t* xp = xa; xp != xa + contiguous; xp += 4, wp += 2) {
    const uint32_t v = load_u32(xp);
    wp[0] = (uint32_t)__sxtab16(off, (int8x4_t)v);
    wp[1] = (uint32_t)sxtab16_ror8(off, v);
  }
  for (int32_t i = contiguous; i < body; i += 4, wp += 2) {
    int8_t b[4];
    for (int32_t k = 0; k < 4; ++k) b[k] = i + k < head ? xa[i + k] : xb[i + k - head];
    const uint32_t v = load_u32(b);
    wp[0] = (uint32_t)__sxtab16(off, (int8x4_t)v);
    wp[1] = (uint32_t)sxtab16_ror8(off, v);
  }
}

/* Output channels [0, 4 * tiles) of one pixel into dst from its widened input: k input bytes, the
 * first k & ~3 widened in wide, the last k % 4 as bytes in tail; filter [4 * tiles][k]. */
static inline __attribute__((always_inline)) void tiles_wide(const uint32_t* wide, const int8_t* tail, int32_t k,
                                                             const int8_t* filter, int32_t tiles, int32_t x_off,
                                                             const out_quant* q, int8_t* dst) {
  const int32_t cin = k, body = k & ~3;
  const int32_t next_row = cin - 4;
  const int full_fast = q->fast && q->lo == -128 && q->hi == 127;
  for (int32_t t = 0; t < tiles; ++t) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const uint32_t* x = wide;
    const int8_t* w0 = filter + 4 * t * cin;
    const int8_t* w2 = w0 + 2 * cin;
    uint32_t xe, xo, t0, t1;
    if (body >= 16) {
      t0 = (uint32_t)(uintptr_t)(wide + (body & ~15) / 2);
      __asm__(
          "str %[t0], [sp, #-8]!\n\t"
          "1:\n\t" VMCU_X4W_STEP VMCU_X4W_STEP VMCU_X4W_STEP VMCU_X4W_STEP
          "ldr %[t1], [sp]\n\tcmp %[x], %[t1]\n\tbne 1b\n\t"
          "add sp, sp, #8\n\t" VMCU_X4W_OPERANDS);
    }
    if (body & 8) {
      t0 = 0;
      __asm__(VMCU_X4W_STEP VMCU_X4W_STEP VMCU_X4W_OPERANDS);
    }
    if (body & 4) {
      t0 = 0;
      __asm__(VMCU_X4W_STEP VMCU_X4W_OPERANDS);
    }
    /* w0 and w2 have moved past the body: rows 1 and 3 are cin beyond rows 0 and 2. */
    for (int32_t i = 0; i < cin - body; ++i) {
      const int32_t xv = (int32_t)tail[i] + x_off;
      a0 += xv * (int32_t)w0[i];
      a1 += xv * (int32_t)w0[cin + i];
      a2 += xv * (int32_t)w2[i];
      a3 += xv * (int32_t)w2[cin + i];
    }
    const int32_t acc[4] = {a0, a1, a2, a3};
    if (full_fast)
      requantize_x4_body(q, 4 * t, acc, dst + 4 * t, 1);
    else
      conv_output_x4(q, 4 * t, acc, dst + 4 * t);
  }
}
/* Output channels [0, 4 * tiles) of one pointwise pixel (cin <= VMCU_WIDE_MAX_CHANNELS input bytes,
 * the first head at xa, the rest at xb) into dst; filter [4 * tiles][cin]. */
static __attribute__((noinline, unused)) void pointwise_tiles_wide(const int8_t* xa, int32_t head, const int8_t* xb,
                                                                   int32_t cin, const int8_t* filter, int32_t tiles,
                                                                   int32_t x_off, const out_quant* q, int8_t* dst) {
  uint32_t wide[VMCU_WIDE_MAX_CHANNELS / 2];
  int8_t tail[4] = {0, 0, 0, 0};
  widen_s8(wide, xa, head, xb, cin, lanes16(x_off));
  for (int32_t i = cin & ~3; i < cin; ++i) tail[i - (cin & ~3)] = i < head ? xa[i] : xb[i - head];
  tiles_wide(wide, tail, cin, filter, tiles, x_off, q, dst);
}

/* Output channels [0, 4 * tiles) of one conv pixel whose window holds filter_size bytes (all taps,
 * filter_size <= VMCU_WIDE_MAX_CHANNELS): the present taps widened in place, the padded ones as
 * zero lanes (they add nothing, as TFLite skips them), so each output channel is one dot product
 * over its whole filter row. */
static __attribute__((noinline, unused)) void conv_tiles_wide(const conv_tap* taps, int32_t nt, int32_t in_c,
                                                              const int8_t* filter, int32_t filter_size, int32_t tiles,
                                                              int32_t x_off, const out_quant* q, int8_t* dst) {
  uint32_t wide[VMCU_WIDE_MAX_CHANNELS / 2];
  const int16x2_t off = lanes16(x_off);
  if (in_c % 4 == 0) {
    if (nt * in_c < filter_size) memset(wide, 0, (size_t)filter_size * 2);
    for (int32_t t = 0; t < nt; ++t)
      widen_s8(wide + taps[t].filter_offset / 2, taps[t].in.a, taps[t].in.head, taps[t].in.b, in_c, off);
    tiles_wide(wide, 0, filter_size, filter, tiles, x_off, q, dst);
    return;
  }
  /* Taps not word-aligned in the window: gather the window's bytes first, a padded tap as the
   * input zero point (-x_off, which adds (-x_off + x_off) * w = 0), then widen it whole. */
  int8_t window[VMCU_WIDE_MAX_CHANNELS];
  if (nt * in_c < filter_size) memset(window, -x_off, (size_t)filter_size);
  for (int32_t t = 0; t < nt; ++t) {
    int8_t* dst_tap = window + taps[t].filter_offset;
    const int32_t head = taps[t].in.head;
    for (int32_t i = 0; i < head; ++i) dst_tap[i] = taps[t].in.a[i];
    for (int32_t i = head; i < in_c; ++i) dst_tap[i] = taps[t].in.b[i - head];
  }
  widen_s8(wide, window, filter_size, window, filter_size, off);
  tiles_wide(wide, window + (filter_size & ~3), filter_size, filter, tiles, x_off, q, dst);
}
#undef VMCU_X4W_ROW
#undef VMCU_X4W_STEP
#undef VMCU_X4W_OPERANDS
#else
static inline void tile_x4_out(const x4_segment* seg, int32_t nseg, const int8_t* w, int32_t w_stride, int32_t x_off,
                               const out_quant* q, int32_t oc, int8_t* dst) {
  int32_t acc[4] = {0, 0, 0, 0};
  dot_s8_x4_segments(seg, nseg, w, w_stride, x_off, acc);
  conv_output_x4(q, oc, acc, dst);
}
#endif

/* Collects the in-bounds taps of output pixel (b, oy, ox) and reports their reads. */
static inline int32_t collect_taps(const vmcu_ring* r, int32_t in_base, vmcu_shape4 is, int32_t b, int32_t y0,
                                   int32_t x0, int32_t kh, int32_t kw, int32_t dil_h, int32_t dil_w, int32_t filter_c,
                                   conv_tap* taps) {
  int32_t n = 0;
  for (int32_t ky = 0; ky < kh; ++ky) {
    const int32_t iy = y0 + dil_h * ky;
    if (iy < 0 || iy >= is.h) continue;
    for (int32_t kx = 0; kx < kw; ++kx) {
      const int32_t ix = x0 + dil_w * kx;
      if (ix < 0 || ix >= is.w) continue;
      const int32_t rel = idx4(is, b, iy, ix, 0);
      taps[n].in = span_at(r, in_base, rel, is.c);
      taps[n].filter_offset = (ky * kw + kx) * filter_c;
      VMCU_TRACE(r, VMCU_SEG_IN0, rel, is.c, 0);
      ++n;
    }
  }
  return n;
}

static inline void store_pixel(const vmcu_ring* r, int32_t out_base, int32_t rel, int32_t length, const int8_t* stage) {
  VMCU_TRACE(r, VMCU_SEG_OUT, rel, length, 1);
  vmcu_ring_write(r, out_base, rel, length, stage);
}

static inline int8_t add_one(const vmcu_add_params* p, int8_t a, int8_t b) {
  const int32_t sa = (int32_t)((uint32_t)((int32_t)a + p->input1_offset) << p->left_shift);
  const int32_t sb = (int32_t)((uint32_t)((int32_t)b + p->input2_offset) << p->left_shift);
  const int32_t ra = vmcu_multiply_by_quantized_multiplier(sa, p->input1_multiplier, (int)p->input1_shift);
  const int32_t rb = vmcu_multiply_by_quantized_multiplier(sb, p->input2_multiplier, (int)p->input2_shift);
  return requantize(ra + rb, p->output_multiplier, p->output_shift, p->output_offset, p->act_min, p->act_max);
}

/* Per-channel window walk shared by the depthwise kernels: channels [c, end) in which no
 * tap crosses the pool end, so each tap is one pointer plus a fixed index shift. */
typedef struct {
  const int8_t* ptr;
  int32_t shift;
} tap_cursor;

static inline int32_t next_chunk_end(const conv_tap* taps, int32_t nt, int32_t c, int32_t channels, tap_cursor* cur) {
  int32_t end = channels;
  for (int32_t t = 0; t < nt; ++t) {
    const int32_t head = taps[t].in.head;
    if (c < head) {
      cur[t].ptr = taps[t].in.a;
      cur[t].shift = 0;
      if (head < end) end = head;
    } else {
      cur[t].ptr = taps[t].in.b;
      cur[t].shift = head;
    }
  }
  return end;
}

/* The runs of one conv pixel (one per tap, two where the tap's input wraps) into seg, at most
 * 2 * nt; returns their number. */
static inline int32_t conv_segments(const conv_tap* taps, int32_t nt, int32_t in_c, x4_segment* seg) {
  int32_t ns = 0;
  for (int32_t t = 0; t < nt; ++t) {
    const int32_t head = taps[t].in.head;
    seg[ns].x = taps[t].in.a;
    seg[ns].w_offset = taps[t].filter_offset;
    seg[ns++].n = head;
    if (head < in_c) {
      seg[ns].x = taps[t].in.b;
      seg[ns].w_offset = taps[t].filter_offset + head;
      seg[ns++].n = in_c - head;
    }
  }
  return ns;
}

/* Channels [ic, end) of one depthwise pixel (multiplier 1), none of whose taps wraps inside the
 * range: four channels at a time with the DSP extension, the rest one by one. */
#if VMCU_HAVE_DSP
/* Channels [ic, ic + 4 * groups) of one depthwise pixel, four at a time: a function of its own so
 * that its loop gets the registers (inlined into the kernel, GCC spills around it). */
static __attribute__((noinline)) void depthwise_groups(const conv_tap* taps, const tap_cursor* cur, int32_t nt,
                                                       const int8_t* filter, int32_t ic, int32_t groups, int32_t x_off,
                                                       const out_quant* q, int8_t* stage) {
  /* Pointers at the first channel (inside the tap's span: ic - shift >= 0). */
  dw_tap at[VMCU_SEG_MAX_TAPS];
  for (int32_t t = 0; t < nt; ++t) {
    at[t].x = cur[t].ptr + (ic - cur[t].shift);
    at[t].w = filter + taps[t].filter_offset + ic;
  }
  const int16x2_t off = lanes16(x_off);
  const int32_t end = 4 * groups;
  stage += ic;
  if (q->fast && q->lo == -128 && q->hi == 127) {
    /* The common case with the requantization inline. */
    for (int32_t c = 0; c < end; c += 4) {
      int32_t acc[4];
      depthwise_x4(at, nt, c, off, acc);
      requantize_x4_body(q, ic + c, acc, stage + c, 1);
    }
  } else {
    for (int32_t c = 0; c < end; c += 4) {
      int32_t acc[4];
      depthwise_x4(at, nt, c, off, acc);
      conv_output_x4(q, ic + c, acc, stage + c);
    }
  }
}
#endif

static inline void depthwise_chunk(const vmcu_conv_params* p, const out_quant* q, const conv_tap* taps,
                                   const tap_cursor* cur, int32_t nt, const int8_t* filter, int32_t ic, int32_t end,
                                   int8_t* stage) {
#if VMCU_HAVE_DSP
  if (end - ic >= 4) {
    const int32_t groups = (end - ic) / 4;
    depthwise_groups(taps, cur, nt, filter, ic, groups, p->input_offset, q, stage);
    ic += 4 * groups;
  }
#endif
  for (; ic < end; ++ic) {
    int32_t acc = 0;
    for (int32_t t = 0; t < nt; ++t)
      acc += ((int32_t)cur[t].ptr[ic - cur[t].shift] + p->input_offset) * (int32_t)filter[taps[t].filter_offset + ic];
    stage[ic] = conv_output(q, acc, ic);
  }
}

/* Outputs [o, o + k) of a 1x1 projection of the vector x (n_in bytes, plain memory; filter
 * [n][n_in]) into acc, k = min(4, n - o) returned: one 1x4 tile, or fewer plain dot products at
 * the end. */
static inline int32_t project_x4(const int8_t* x, const int8_t* filter, int32_t n_in, int32_t o, int32_t n,
                                 int32_t x_off, int32_t acc[4]) {
  const int32_t k = vmcu_min_i32(4, n - o);
  acc[0] = acc[1] = acc[2] = acc[3] = 0;
  if (k == 4) {
    dot_s8_x4(x, filter + o * n_in, n_in, n_in, x_off, acc);
  } else {
    for (int32_t j = 0; j < k; ++j) acc[j] = dot_s8(x, filter + (o + j) * n_in, n_in, x_off);
  }
  return k;
}

/* A 1x1 projection of the vector x (n_in bytes, plain memory; filter [n_out][n_in]) requantized
 * into out[0, n_out): the pointwise kernel's widened tiles where they apply, 1x4 tiles and single
 * channels otherwise (the fused blocks' projection, as fast as the unfused pointwise layer). */
static inline void project_pixel(const out_quant* q, const int8_t* x, int32_t n_in, const int8_t* filter, int32_t n_out,
                                 int32_t x_off, int8_t* out) {
  int32_t o = 0;
#if defined(VMCU_HAVE_TILE_BODY)
  if (n_in <= VMCU_WIDE_MAX_CHANNELS && n_out >= 4) {
    pointwise_tiles_wide(x, n_in, x, n_in, filter, n_out / 4, x_off, q, out);
    o = n_out & ~3;
  }
#endif
  for (int32_t k = 0; o < n_out; o += k) {
    int32_t acc[4];
    k = project_x4(x, filter, n_in, o, n_out, x_off, acc);
    if (k == 4)
      conv_output_x4(q, o, acc, out + o);
    else
      for (int32_t j = 0; j < k; ++j) out[o + j] = conv_output(q, acc[j], o + j);
  }
}

/* Output channels [0, cout) of one pixel whose input is the span in: four at a time, written to
 * dst (dst_head bytes at dst_a, the rest at dst_b: the output may wrap). Used by the pointwise
 * kernel and the fused bottleneck's cached expansion. */
static inline void pointwise_pixel(const vmcu_conv_params* p, const out_quant* q, ring_span in, int32_t cin,
                                   const int8_t* filter, int32_t cout, int8_t* dst_a, int32_t dst_head, int8_t* dst_b) {
  const x4_segment seg[2] = {{in.a, 0, in.head}, {in.b, in.head, cin - in.head}};
  const int32_t ns = in.head < cin ? 2 : 1;
  int32_t oc = 0;
#if defined(VMCU_HAVE_TILE_BODY)
  if (cin <= VMCU_WIDE_MAX_CHANNELS) {
    /* Every tile whose four outputs lie before the wrap in one call, the input widened once. */
    const int32_t tiles = vmcu_min_i32(cout, dst_head) / 4;
    pointwise_tiles_wide(in.a, in.head, in.b, cin, filter, tiles, p->input_offset, q, dst_a);
    oc = 4 * tiles;
  }
#endif
  for (; oc + 4 <= cout; oc += 4) {
    if (oc + 4 <= dst_head) {
      tile_x4_out(seg, ns, filter + oc * cin, cin, p->input_offset, q, oc, dst_a + oc);
      continue;
    }
    int32_t acc[4] = {0, 0, 0, 0};
    dot_s8_x4_segments(seg, ns, filter + oc * cin, cin, p->input_offset, acc);
    for (int32_t j = 0; j < 4; ++j) {
      const int32_t o = oc + j;
      const int8_t v = conv_output(q, acc[j], o);
      if (o < dst_head)
        dst_a[o] = v;
      else
        dst_b[o - dst_head] = v;
    }
  }
  for (; oc < cout; ++oc) {
    const int8_t* f = filter + oc * cin;
    const int32_t acc =
        dot_s8(in.a, f, in.head, p->input_offset) + dot_s8(in.b, f + in.head, cin - in.head, p->input_offset);
    const int8_t v = conv_output(q, acc, oc);
    if (oc < dst_head)
      dst_a[oc] = v;
    else
      dst_b[oc - dst_head] = v;
  }
}

/* Every output channel of one conv pixel (taps collected) into out[0, out_c): 1x4 tiles, then
 * the remaining channels one by one. */
static inline void conv_pixel(const out_quant* q, const conv_tap* taps, int32_t nt, const int8_t* filter,
                              int32_t filter_size, int32_t in_c, int32_t out_c, int32_t x_off, int8_t* out) {
  int32_t oc = 0;
#if defined(VMCU_HAVE_TILE_BODY)
  if (filter_size <= VMCU_WIDE_MAX_CHANNELS && out_c >= 4) {
    conv_tiles_wide(taps, nt, in_c, filter, filter_size, out_c / 4, x_off, q, out);
    oc = out_c & ~3;
  }
#endif
  x4_segment seg[2 * nt + 1]; /* sized by the taps present: the full table would cost ~1 KB of stack */
  const int32_t ns = conv_segments(taps, nt, in_c, seg);
  for (; oc + 4 <= out_c; oc += 4) tile_x4_out(seg, ns, filter + oc * filter_size, filter_size, x_off, q, oc, out + oc);
  for (; oc < out_c; ++oc) {
    const int8_t* f = filter + oc * filter_size;
    int32_t acc = 0;
    for (int32_t t = 0; t < nt; ++t) {
      const int8_t* fp = f + taps[t].filter_offset;
      const int32_t head = taps[t].in.head;
      acc += dot_s8(taps[t].in.a, fp, head, x_off) + dot_s8(taps[t].in.b, fp + head, in_c - head, x_off);
    }
    out[oc] = conv_output(q, acc, oc);
  }
}

#endif /* VMCU_SEGMENT_INTERNAL_H */
