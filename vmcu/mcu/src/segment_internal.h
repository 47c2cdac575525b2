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

static inline int8_t requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t offset, int32_t lo,
                                int32_t hi) {
  acc = vmcu_multiply_by_quantized_multiplier(acc, multiplier, (int)shift);
  return vmcu_clamp_s8(acc + offset, lo, hi);
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

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
/* Cortex-M4/M7 DSP extension: four taps per step. SXTB16 sign-extends the even and (rotated)
 * odd bytes of a word into two 16-bit lanes, SADD16 adds the input offset to both lanes
 * (x + x_off lies in [-255, 255]), SMLAD multiplies lane by lane and adds both products to the
 * accumulator. The pairs are summed in another order than the plain loop, but every partial sum
 * fits int32 (at most 2^16 terms of |product| < 2^15), so the result is the same bit for bit;
 * tests/board/kernel_sweep.c checks it on both boards against the reference kernels. */
static inline uint32_t ror8(uint32_t v) { return (v >> 8) | (v << 24); } /* one ROR (GCC 12 has no __ror) */

static inline int32_t dot_s8(const int8_t* x, const int8_t* w, int32_t n, int32_t x_off) {
  const int16x2_t off = (int16x2_t)(((uint32_t)x_off & 0xFFFFu) | ((uint32_t)x_off << 16));
  int32_t acc = 0;
  int32_t i = 0;
  for (; i + 4 <= n; i += 4) {
    uint32_t xw, ww;
    memcpy(&xw, x + i, 4); /* unaligned word loads: the ring gives byte offsets */
    memcpy(&ww, w + i, 4);
    const int16x2_t x02 = __sadd16(__sxtb16((int8x4_t)xw), off);
    const int16x2_t x13 = __sadd16(__sxtb16((int8x4_t)ror8(xw)), off);
    acc = __smlad(x02, __sxtb16((int8x4_t)ww), acc);
    acc = __smlad(x13, __sxtb16((int8x4_t)ror8(ww)), acc);
  }
  return acc + dot_s8_plain(x + i, w + i, n - i, x_off);
}
#else
static inline int32_t dot_s8(const int8_t* x, const int8_t* w, int32_t n, int32_t x_off) {
  return dot_s8_plain(x, w, n, x_off);
}
#endif

/* One in-bounds window position of the current output pixel. */
typedef struct {
  ring_span in;
  int32_t filter_offset; /* (ky * kw + kx) * filter channels */
} conv_tap;

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

#endif /* VMCU_SEGMENT_INTERNAL_H */
