/* Segment-aware int8 kernels over a ring pool (see segment_kernels.h for the contract). */
#include "vmcu/segment_kernels.h"

#include <string.h>

#include "vmcu/arith.h"
#include "segment_internal.h"

void vmcu_ring_read(const vmcu_ring* r, int32_t base, int32_t rel, int32_t length, int8_t* dst) {
  if (length <= 0) return; /* an empty tensor may come with no buffer at all */
  const ring_span s = span_at(r, base, rel, length);
  memcpy(dst, s.a, (size_t)s.head);
  memcpy(dst + s.head, s.b, (size_t)(length - s.head));
}

void vmcu_ring_write(const vmcu_ring* r, int32_t base, int32_t rel, int32_t length, const int8_t* src) {
  if (length <= 0) return;
  const int32_t pos = vmcu_ring_pos(r, base, rel);
  const int32_t room = r->cap - pos;
  const int32_t head = length < room ? length : room;
  memcpy(r->data + pos, src, (size_t)head);
  memcpy(r->data, src + head, (size_t)(length - head));
}

static void reverse_bytes(int8_t* lo, int8_t* hi) { /* [lo, hi) */
  while (lo + 1 < hi) {
    const int8_t t = *lo;
    *lo++ = *--hi;
    *hi = t;
  }
}

void vmcu_ring_relocate(const vmcu_ring* r, int32_t from, int32_t to, int32_t length) {
  /* Only the moved tensor is traced: the rest of the ring holds nothing live. */
  if (r->trace) r->trace(r->trace_ctx, VMCU_SEG_IN0, 0, length, 0);
  const int32_t cap = r->cap;
  const int32_t k = ((to - from) % cap + cap) % cap; /* the move, forward round the ring */
  int8_t* const d = r->data;
  if (k != 0 && length > 0) {
    if (length + k <= cap) {
      /* Copy from the last byte down: byte i lands on from + k + i, which is no source byte still
       * to be read (that would need i' = i + k - cap >= 0, i.e. length + k > cap). The bytes go in
       * runs in which neither side wraps, each one memmove (which reads a run before it is
       * overwritten), last run first. */
      int32_t src = vmcu_ring_pos(r, from, length - 1), dst = vmcu_ring_pos(r, to, length - 1);
      for (int32_t left = length; left > 0;) {
        int32_t run = left < src + 1 ? left : src + 1;
        if (run > dst + 1) run = dst + 1;
        memmove(d + dst - run + 1, d + src - run + 1, (size_t)run);
        left -= run;
        src = src - run < 0 ? cap - 1 : src - run;
        dst = dst - run < 0 ? cap - 1 : dst - run;
      }
    } else if (length <= k) {
      /* The same move is cap - k backward: copy from the first byte up (a source byte still to be
       * read would need j = i + k < length), in runs in which neither side wraps, first run first. */
      int32_t src = from, dst = to;
      for (int32_t left = length; left > 0;) {
        int32_t run = left < cap - src ? left : cap - src;
        if (run > cap - dst) run = cap - dst;
        memmove(d + dst, d + src, (size_t)run);
        left -= run;
        src = src + run == cap ? 0 : src + run;
        dst = dst + run == cap ? 0 : dst + run;
      }
    } else {
      /* Neither order is safe (the tensor overlaps itself both ways): rotate the whole ring right
       * by k with three reversals, byte p to (p + k) mod cap. */
      reverse_bytes(d, d + cap);
      reverse_bytes(d, d + k);
      reverse_bytes(d + k, d + cap);
    }
  }
  if (r->trace) r->trace(r->trace_ctx, VMCU_SEG_OUT, 0, length, 1);
}

int vmcu_seg_conv2d_s8(const vmcu_conv_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 is, vmcu_shape4 fs,
                       const int8_t* filter, const int32_t* bias, int32_t out_base, vmcu_shape4 os, int8_t* stage) {
  const out_quant q = conv_quant(p, bias, os.c);
  conv_tap taps[VMCU_SEG_MAX_TAPS];
  if (fs.h * fs.w > VMCU_SEG_MAX_TAPS) return -1;
  const int32_t filter_size = fs.h * fs.w * fs.c;
  for (int32_t b = 0; b < os.n; ++b) {
    for (int32_t oy = 0; oy < os.h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      for (int32_t ox = 0; ox < os.w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        const int32_t nt =
            collect_taps(r, in_base, is, b, y0, x0, fs.h, fs.w, p->dilation_h, p->dilation_w, fs.c, taps);
        conv_pixel(&q, taps, nt, filter, filter_size, is.c, os.c, p->input_offset, stage);
        store_pixel(r, out_base, idx4(os, b, oy, ox, 0), os.c, stage);
      }
    }
  }
  return 0;
}

int32_t vmcu_seg_pointwise_stage_bytes(int32_t in_c, int32_t out_c) { return in_c <= out_c ? in_c : out_c; }

void vmcu_seg_pointwise_conv_s8(const vmcu_conv_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 is,
                                const int8_t* filter, const int32_t* bias, int32_t out_base, vmcu_shape4 os,
                                int8_t* stage) {
  const int32_t pixels = os.n * os.h * os.w;
  const int32_t cin = is.c, cout = os.c;
  const out_quant q = conv_quant(p, bias, cout);
  for (int32_t px = 0; px < pixels; ++px) {
    VMCU_TRACE(r, VMCU_SEG_IN0, px * cin, cin, 0);
    if (cin <= cout) {
      /* Load the input pixel (it dies here), then write the outputs straight into the ring. */
      vmcu_ring_read(r, in_base, px * cin, cin, stage);
      VMCU_TRACE(r, VMCU_SEG_OUT, px * cout, cout, 1);
      const int32_t pos = vmcu_ring_pos(r, out_base, px * cout);
      const int32_t head = vmcu_min_i32(cout, r->cap - pos); /* channels before the wrap */
      const ring_span in = {stage, cin, stage};
      pointwise_pixel(p, &q, in, cin, filter, cout, r->data + pos, head, r->data);
    } else {
      pointwise_pixel(p, &q, span_at(r, in_base, px * cin, cin), cin, filter, cout, stage, cout, stage);
      store_pixel(r, out_base, px * cout, cout, stage);
    }
  }
}

int vmcu_seg_depthwise_conv2d_s8(const vmcu_conv_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 is,
                                 vmcu_shape4 fs, const int8_t* filter, const int32_t* bias, int32_t out_base,
                                 vmcu_shape4 os, int8_t* stage) {
  const out_quant q = conv_quant(p, bias, os.c);
  conv_tap taps[VMCU_SEG_MAX_TAPS];
  tap_cursor cur[VMCU_SEG_MAX_TAPS];
  if (fs.h * fs.w > VMCU_SEG_MAX_TAPS) return -1;
  const int32_t mult = p->depth_multiplier;
  for (int32_t b = 0; b < os.n; ++b) {
    for (int32_t oy = 0; oy < os.h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      for (int32_t ox = 0; ox < os.w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        const int32_t nt =
            collect_taps(r, in_base, is, b, y0, x0, fs.h, fs.w, p->dilation_h, p->dilation_w, fs.c, taps);
        int32_t ic = 0;
        while (ic < is.c) {
          const int32_t end = next_chunk_end(taps, nt, ic, is.c, cur);
          if (mult == 1) {
            depthwise_chunk(p, &q, taps, cur, nt, filter, ic, end, stage);
            ic = end;
            continue;
          }
          for (; ic < end; ++ic) {
            for (int32_t m = 0; m < mult; ++m) {
              const int32_t oc = ic * mult + m;
              int32_t acc = 0;
              for (int32_t t = 0; t < nt; ++t)
                acc += ((int32_t)cur[t].ptr[ic - cur[t].shift] + p->input_offset) *
                       (int32_t)filter[taps[t].filter_offset + oc];
              stage[oc] = conv_output(&q, acc, oc);
            }
          }
        }
        store_pixel(r, out_base, idx4(os, b, oy, ox, 0), os.c, stage);
      }
    }
  }
  return 0;
}

static inline int8_t fc_output(const vmcu_fc_params* p, int32_t acc, const int32_t* bias, int32_t o) {
  if (bias) acc = add_bias_wrapping(acc, bias[o]);
  return requantize(acc, p->output_multiplier, p->output_shift, p->output_offset, p->act_min, p->act_max);
}

/* One batch row: out[o] for o in [0, out_depth), four outputs at a time (each step's read of the
 * row happens before its own write, as the plain order; reads of later steps only move earlier).
 * sum (x + x_off)(w + w_off) = sum (x + x_off) w + w_off * sum (x + x_off): the second term is
 * the same for every output, computed once per row (in wrapping arithmetic, equal to the plain
 * sum whenever that does not overflow, which int8 operands of TFLite-sized rows never do). */
static inline void fc_row(const vmcu_fc_params* p, const vmcu_ring* r, ring_span row, int32_t in_depth,
                          int32_t out_depth, const int8_t* weights, const int32_t* bias, int32_t b, int8_t* dst_a,
                          int32_t dst_head, int8_t* dst_b) {
  uint32_t row_term = 0;
  if (p->filter_offset != 0) {
    int32_t sum = 0;
    for (int32_t i = 0; i < row.head; ++i) sum += (int32_t)row.a[i] + p->input_offset;
    for (int32_t i = row.head; i < in_depth; ++i) sum += (int32_t)row.b[i - row.head] + p->input_offset;
    row_term = (uint32_t)sum * (uint32_t)p->filter_offset;
  }
  int32_t o = 0;
  for (; o < out_depth; o += 4) {
    const int32_t n = vmcu_min_i32(4, out_depth - o);
    int32_t acc[4] = {0, 0, 0, 0};
    const int8_t* w = weights + o * in_depth;
    if (n == 4) {
      dot_s8_x4(row.a, w, in_depth, row.head, p->input_offset, acc);
      if (row.head < in_depth) dot_s8_x4(row.b, w + row.head, in_depth, in_depth - row.head, p->input_offset, acc);
    } else {
      for (int32_t j = 0; j < n; ++j) {
        const int8_t* wj = w + j * in_depth;
        acc[j] = dot_s8(row.a, wj, row.head, p->input_offset) +
                 dot_s8(row.b, wj + row.head, in_depth - row.head, p->input_offset);
      }
    }
    for (int32_t j = 0; j < n; ++j) {
      const int32_t k = o + j;
      const int8_t v = fc_output(p, (int32_t)((uint32_t)acc[j] + row_term), bias, k);
      VMCU_TRACE(r, VMCU_SEG_IN0, b * in_depth, in_depth, 0);
      VMCU_TRACE(r, VMCU_SEG_OUT, b * out_depth + k, 1, 1);
      if (k < dst_head)
        dst_a[k] = v;
      else
        dst_b[k - dst_head] = v;
    }
  }
}

void vmcu_seg_fully_connected_s8(const vmcu_fc_params* p, const vmcu_ring* r, int32_t in_base, int32_t batches,
                                 int32_t in_depth, int32_t out_depth, const int8_t* weights, const int32_t* bias,
                                 int32_t out_base) {
  for (int32_t b = 0; b < batches; ++b) {
    const ring_span row = span_at(r, in_base, b * in_depth, in_depth);
    const int32_t pos = vmcu_ring_pos(r, out_base, b * out_depth);
    const int32_t head = vmcu_min_i32(out_depth, r->cap - pos); /* outputs before the wrap */
    fc_row(p, r, row, in_depth, out_depth, weights, bias, b, r->data + pos, head, r->data);
  }
}

static inline int32_t min3(int32_t a, int32_t b, int32_t c) { return vmcu_min_i32(a, vmcu_min_i32(b, c)); }

void vmcu_seg_add_s8(const vmcu_add_params* p, const vmcu_ring* r, int32_t a_base, int32_t b_base, int32_t size,
                     int32_t out_base) {
  int32_t i = 0;
  while (i < size) {
    /* One chunk: no operand crosses the pool end inside it. */
    const int32_t pa = vmcu_ring_pos(r, a_base, i);
    const int32_t pb = vmcu_ring_pos(r, b_base, i);
    const int32_t po = vmcu_ring_pos(r, out_base, i);
    const int32_t n = vmcu_min_i32(size - i, min3(r->cap - pa, r->cap - pb, r->cap - po));
    const int8_t* a = r->data + pa;
    const int8_t* b = r->data + pb;
    int8_t* out = r->data + po;
    if (r->trace) {
      for (int32_t k = 0; k < n; ++k) {
        VMCU_TRACE(r, VMCU_SEG_IN0, i + k, 1, 0);
        VMCU_TRACE(r, VMCU_SEG_IN1, i + k, 1, 0);
        const int8_t v = add_one(p, a[k], b[k]);
        VMCU_TRACE(r, VMCU_SEG_OUT, i + k, 1, 1);
        out[k] = v;
      }
    } else {
      for (int32_t k = 0; k < n; ++k) out[k] = add_one(p, a[k], b[k]);
    }
    i += n;
  }
}

/* Pooling walks the window tap by tap (one ring position per tap, split at most once) and
 * accumulates every channel of the pixel in `acc`, so any window size works without a tap table. */
static int pool_s8(const vmcu_pool_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 is, int32_t out_base,
                   vmcu_shape4 os, int32_t* acc, int8_t* stage, int average) {
  const int32_t channels = os.c;
  for (int32_t b = 0; b < os.n; ++b) {
    for (int32_t oy = 0; oy < os.h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      const int32_t ky0 = vmcu_max_i32(0, -y0), ky1 = vmcu_min_i32(p->filter_h, is.h - y0);
      for (int32_t ox = 0; ox < os.w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        const int32_t kx0 = vmcu_max_i32(0, -x0), kx1 = vmcu_min_i32(p->filter_w, is.w - x0);
        const int32_t count = (ky1 - ky0) * (kx1 - kx0);
        if (average && (ky1 <= ky0 || kx1 <= kx0)) return -1;
        for (int32_t c = 0; c < channels; ++c) acc[c] = average ? 0 : -128;
        for (int32_t ky = ky0; ky < ky1; ++ky) {
          for (int32_t kx = kx0; kx < kx1; ++kx) {
            const int32_t rel = idx4(is, b, y0 + ky, x0 + kx, 0);
            VMCU_TRACE(r, VMCU_SEG_IN0, rel, channels, 0);
            const ring_span s = span_at(r, in_base, rel, channels);
            if (average) {
              for (int32_t c = 0; c < s.head; ++c) acc[c] += s.a[c];
              for (int32_t c = s.head; c < channels; ++c) acc[c] += s.b[c - s.head];
            } else {
              for (int32_t c = 0; c < s.head; ++c) acc[c] = vmcu_max_i32(acc[c], s.a[c]);
              for (int32_t c = s.head; c < channels; ++c) acc[c] = vmcu_max_i32(acc[c], s.b[c - s.head]);
            }
          }
        }
        for (int32_t c = 0; c < channels; ++c) {
          int32_t v = acc[c];
          if (average) v = v > 0 ? (v + count / 2) / count : (v - count / 2) / count;
          stage[c] = vmcu_clamp_s8(v, p->act_min, p->act_max);
        }
        store_pixel(r, out_base, idx4(os, b, oy, ox, 0), channels, stage);
      }
    }
  }
  return 0;
}

int32_t vmcu_seg_pool_workspace_bytes(int32_t channels) { return channels * 5; }

int vmcu_seg_average_pool_s8(const vmcu_pool_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 is,
                             int32_t out_base, vmcu_shape4 os, int32_t* workspace) {
  return pool_s8(p, r, in_base, is, out_base, os, workspace, (int8_t*)(workspace + os.c), 1);
}

int vmcu_seg_max_pool_s8(const vmcu_pool_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 is,
                         int32_t out_base, vmcu_shape4 os, int32_t* workspace) {
  return pool_s8(p, r, in_base, is, out_base, os, workspace, (int8_t*)(workspace + os.c), 0);
}

void vmcu_seg_copy(const vmcu_ring* r, int32_t in_base, int32_t size, int32_t out_base) {
  int32_t i = 0;
  while (i < size) {
    const int32_t pi = vmcu_ring_pos(r, in_base, i);
    const int32_t po = vmcu_ring_pos(r, out_base, i);
    const int32_t n = vmcu_min_i32(size - i, vmcu_min_i32(r->cap - pi, r->cap - po));
    for (int32_t k = 0; k < n; ++k) {
      VMCU_TRACE(r, VMCU_SEG_IN0, i + k, 1, 0);
      VMCU_TRACE(r, VMCU_SEG_OUT, i + k, 1, 1);
      r->data[po + k] = r->data[pi + k];
    }
    i += n;
  }
}
