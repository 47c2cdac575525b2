/* Fused inverted bottleneck and residual block over a ring pool (see segment_fused.h). */
#include "vmcu/segment_fused.h"

#include "segment_internal.h"

int32_t vmcu_seg_bottleneck_workspace_bytes(int32_t mid_c, int32_t out_c) { return mid_c + out_c; }

/* Channel m of the expanded pixel behind one depthwise tap (has_expand set). */
static inline int32_t expanded_value(const vmcu_bottleneck_params* p, const conv_tap* tap, int32_t in_c, int32_t m) {
  const int32_t head = tap->in.head;
  const vmcu_conv_params* e = &p->expand;
  const int8_t* f = p->expand_filter + m * in_c;
  int32_t acc = dot_s8(tap->in.a, f, head, e->input_offset) + dot_s8(tap->in.b, f + head, in_c - head, e->input_offset);
  if (p->expand_bias) acc = add_bias_wrapping(acc, p->expand_bias[m]);
  return requantize(acc, e->output_multiplier[m], e->output_shift[m], e->output_offset, e->act_min, e->act_max);
}

int vmcu_seg_bottleneck_s8(const vmcu_bottleneck_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 is,
                           int32_t mid_c, int32_t out_base, vmcu_shape4 os, int8_t* workspace) {
  conv_tap taps[VMCU_SEG_MAX_TAPS];
  tap_cursor cur[VMCU_SEG_MAX_TAPS];
  if (p->tail.kh * p->tail.kw > VMCU_SEG_MAX_TAPS) return -1;
  const vmcu_conv_params* dw = &p->tail.depthwise;
  const vmcu_conv_params* pr = &p->tail.project;
  int8_t* mid_stage = workspace;
  int8_t* out_stage = workspace + mid_c;
  for (int32_t b = 0; b < os.n; ++b) {
    for (int32_t oy = 0; oy < os.h; ++oy) {
      const int32_t y0 = oy * dw->stride_h - dw->pad_h;
      for (int32_t ox = 0; ox < os.w; ++ox) {
        const int32_t x0 = ox * dw->stride_w - dw->pad_w;
        const int32_t nt = collect_taps(r, in_base, is, b, y0, x0, p->tail.kh, p->tail.kw, dw->dilation_h,
                                        dw->dilation_w, mid_c, taps);
        int32_t m = 0;
        while (m < mid_c) {
          /* Without expand the taps are read directly: channel chunks in which no tap wraps. */
          const int32_t end = p->has_expand ? mid_c : next_chunk_end(taps, nt, m, mid_c, cur);
          for (; m < end; ++m) {
            int32_t acc = 0;
            for (int32_t t = 0; t < nt; ++t) {
              const int32_t v = p->has_expand ? expanded_value(p, &taps[t], is.c, m) : cur[t].ptr[m - cur[t].shift];
              acc += (v + dw->input_offset) * (int32_t)p->tail.dw_filter[taps[t].filter_offset + m];
            }
            if (p->tail.dw_bias) acc = add_bias_wrapping(acc, p->tail.dw_bias[m]);
            mid_stage[m] = requantize(acc, dw->output_multiplier[m], dw->output_shift[m], dw->output_offset,
                                      dw->act_min, dw->act_max);
          }
        }
        const int32_t out_rel = idx4(os, b, oy, ox, 0);
        ring_span res = {0, 0, 0};
        if (p->has_residual) {
          VMCU_TRACE(r, VMCU_SEG_IN0, out_rel, os.c, 0);
          res = span_at(r, in_base, out_rel, os.c);
        }
        /* Two channel ranges: before and after the residual pixel's wrap point. */
        const int32_t split = p->has_residual ? res.head : os.c;
        for (int32_t part = 0; part < 2; ++part) {
          const int32_t lo = part == 0 ? 0 : split, hi = part == 0 ? split : os.c;
          const int8_t* a_ptr = part == 0 ? res.a : res.b;
          for (int32_t o = lo; o < hi; ++o) {
            int32_t acc = dot_s8(mid_stage, p->tail.project_filter + o * mid_c, mid_c, pr->input_offset);
            if (p->tail.project_bias) acc = add_bias_wrapping(acc, p->tail.project_bias[o]);
            int8_t v = requantize(acc, pr->output_multiplier[o], pr->output_shift[o], pr->output_offset, pr->act_min,
                                  pr->act_max);
            if (p->has_residual) {
              const int8_t a = a_ptr[o - lo];
              v = p->residual_is_input1 ? add_one(&p->add, a, v) : add_one(&p->add, v, a);
            }
            out_stage[o] = v;
          }
        }
        store_pixel(r, out_base, out_rel, os.c, out_stage);
      }
    }
  }
  return 0;
}

int32_t vmcu_seg_residual_block_workspace_bytes(const vmcu_residual_block_params* p, int32_t out_c) {
  return p->filter2_shape.h * p->mid_shape.w * p->mid_shape.c + out_c;
}

/* Row y of a conv's output (shape ms) into one slot of a row cache: every output pixel of the
 * row, all channels, read from the ring input (the residual and stem blocks' row caches). */
static void compute_conv_row(const vmcu_conv_params* c, vmcu_shape4 fs, const int8_t* filter, const int32_t* bias,
                             vmcu_shape4 ms, const vmcu_ring* r, int32_t in_base, vmcu_shape4 is, int32_t b, int32_t y,
                             int8_t* row, conv_tap* taps) {
  const int32_t filter_size = fs.h * fs.w * fs.c;
  for (int32_t x = 0; x < ms.w; ++x) {
    const int32_t nt = collect_taps(r, in_base, is, b, y * c->stride_h - c->pad_h, x * c->stride_w - c->pad_w, fs.h,
                                    fs.w, c->dilation_h, c->dilation_w, fs.c, taps);
    for (int32_t ch = 0; ch < ms.c; ++ch) {
      const int8_t* f = filter + ch * filter_size;
      int32_t acc = 0;
      for (int32_t t = 0; t < nt; ++t) {
        const int8_t* fp = f + taps[t].filter_offset;
        const int32_t head = taps[t].in.head;
        acc += dot_s8(taps[t].in.a, fp, head, c->input_offset) +
               dot_s8(taps[t].in.b, fp + head, is.c - head, c->input_offset);
      }
      if (bias) acc = add_bias_wrapping(acc, bias[ch]);
      row[x * ms.c + ch] =
          requantize(acc, c->output_multiplier[ch], c->output_shift[ch], c->output_offset, c->act_min, c->act_max);
    }
  }
}

int vmcu_seg_residual_block_s8(const vmcu_residual_block_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 is,
                               int32_t out_base, vmcu_shape4 os, int8_t* workspace) {
  conv_tap taps[VMCU_SEG_MAX_TAPS];
  if (p->filter1_shape.h * p->filter1_shape.w > VMCU_SEG_MAX_TAPS) return -1;
  const vmcu_shape4 ms = p->mid_shape, f2 = p->filter2_shape;
  const vmcu_conv_params* c2 = &p->conv2;
  const int32_t row_bytes = ms.w * ms.c;
  int8_t* out_stage = workspace + f2.h * row_bytes;
  for (int32_t b = 0; b < os.n; ++b) {
    int32_t next_row = 0; /* rows [next_row - kh2, next_row) of conv1's output are cached */
    for (int32_t oy = 0; oy < os.h; ++oy) {
      const int32_t y_lo = oy * c2->stride_h - c2->pad_h;
      const int32_t y_hi = vmcu_min_i32(ms.h, y_lo + f2.h);
      for (; next_row < y_hi; ++next_row)
        compute_conv_row(&p->conv1, p->filter1_shape, p->filter1, p->bias1, ms, r, in_base, is, b, next_row,
                         workspace + (next_row % f2.h) * row_bytes, taps);
      for (int32_t ox = 0; ox < os.w; ++ox) {
        const int32_t x_lo = ox * c2->stride_w - c2->pad_w;
        const int32_t sc_rel = p->has_shortcut_conv
                                   ? idx4(is, b, oy * p->shortcut.stride_h, ox * p->shortcut.stride_w, 0)
                                   : idx4(is, b, oy, ox, 0);
        VMCU_TRACE(r, VMCU_SEG_IN0, sc_rel, is.c, 0);
        const ring_span sc = span_at(r, in_base, sc_rel, is.c);
        for (int32_t o = 0; o < os.c; ++o) {
          int32_t acc = 0;
          for (int32_t ky = 0; ky < f2.h; ++ky) {
            const int32_t y = y_lo + ky;
            if (y < 0 || y >= ms.h) continue;
            const int8_t* row = workspace + (y % f2.h) * row_bytes;
            for (int32_t kx = 0; kx < f2.w; ++kx) {
              const int32_t x = x_lo + kx;
              if (x < 0 || x >= ms.w) continue;
              acc += dot_s8(row + x * ms.c, p->filter2 + ((o * f2.h + ky) * f2.w + kx) * ms.c, ms.c, c2->input_offset);
            }
          }
          if (p->bias2) acc = add_bias_wrapping(acc, p->bias2[o]);
          const int8_t z = requantize(acc, c2->output_multiplier[o], c2->output_shift[o], c2->output_offset,
                                      c2->act_min, c2->act_max);
          int8_t s;
          if (p->has_shortcut_conv) {
            const vmcu_conv_params* sp = &p->shortcut;
            const int8_t* f = p->shortcut_filter + o * is.c;
            int32_t sacc = dot_s8(sc.a, f, sc.head, sp->input_offset) +
                           dot_s8(sc.b, f + sc.head, is.c - sc.head, sp->input_offset);
            if (p->shortcut_bias) sacc = add_bias_wrapping(sacc, p->shortcut_bias[o]);
            s = requantize(sacc, sp->output_multiplier[o], sp->output_shift[o], sp->output_offset, sp->act_min,
                           sp->act_max);
          } else {
            s = o < sc.head ? sc.a[o] : sc.b[o - sc.head]; /* identity: is.c == os.c */
          }
          out_stage[o] = p->shortcut_is_input1 ? add_one(&p->add, s, z) : add_one(&p->add, z, s);
        }
        store_pixel(r, out_base, idx4(os, b, oy, ox, 0), os.c, out_stage);
      }
    }
  }
  return 0;
}

/* Rows of the conv's output that one depthwise window spans. */
static int32_t stem_span(const vmcu_stem_block_params* p) {
  return p->tail.depthwise.dilation_h * (p->tail.kh - 1) + 1;
}

int32_t vmcu_seg_stem_block_workspace_bytes(const vmcu_stem_block_params* p, int32_t out_c) {
  return stem_span(p) * p->mid_shape.w * p->mid_shape.c + p->mid_shape.c + out_c;
}

int vmcu_seg_stem_block_s8(const vmcu_stem_block_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 is,
                           int32_t out_base, vmcu_shape4 os, int8_t* workspace) {
  conv_tap taps[VMCU_SEG_MAX_TAPS];
  const vmcu_shape4 fs = p->conv_filter_shape, ms = p->mid_shape;
  if (fs.h * fs.w > VMCU_SEG_MAX_TAPS || p->tail.kh * p->tail.kw > VMCU_SEG_MAX_TAPS) return -1;
  const vmcu_conv_params* dw = &p->tail.depthwise;
  const vmcu_conv_params* pr = &p->tail.project;
  const int32_t span = stem_span(p);
  const int32_t row_bytes = ms.w * ms.c;
  int8_t* mid_stage = workspace + span * row_bytes;
  int8_t* out_stage = mid_stage + ms.c;
  for (int32_t b = 0; b < os.n; ++b) {
    /* Invariant: the conv rows [next_row - span, next_row) sit in slots (row % span). Rows are
     * computed in order and only when a window first needs them, so the input rows behind them
     * are dead before the output reaches them. */
    int32_t next_row = 0;
    for (int32_t oy = 0; oy < os.h; ++oy) {
      const int32_t y0 = oy * dw->stride_h - dw->pad_h;
      const int32_t y_hi = vmcu_min_i32(ms.h, y0 + span);
      for (; next_row < y_hi; ++next_row)
        compute_conv_row(&p->conv, fs, p->conv_filter, p->conv_bias, ms, r, in_base, is, b, next_row,
                         workspace + (next_row % span) * row_bytes, taps);
      for (int32_t ox = 0; ox < os.w; ++ox) {
        const int32_t x0 = ox * dw->stride_w - dw->pad_w;
        for (int32_t m = 0; m < ms.c; ++m) {
          int32_t acc = 0;
          for (int32_t ky = 0; ky < p->tail.kh; ++ky) {
            const int32_t y = y0 + dw->dilation_h * ky;
            if (y < 0 || y >= ms.h) continue;
            const int8_t* row = workspace + (y % span) * row_bytes;
            for (int32_t kx = 0; kx < p->tail.kw; ++kx) {
              const int32_t x = x0 + dw->dilation_w * kx;
              if (x < 0 || x >= ms.w) continue;
              acc += ((int32_t)row[x * ms.c + m] + dw->input_offset) *
                     (int32_t)p->tail.dw_filter[(ky * p->tail.kw + kx) * ms.c + m];
            }
          }
          if (p->tail.dw_bias) acc = add_bias_wrapping(acc, p->tail.dw_bias[m]);
          mid_stage[m] = requantize(acc, dw->output_multiplier[m], dw->output_shift[m], dw->output_offset, dw->act_min,
                                    dw->act_max);
        }
        for (int32_t o = 0; o < os.c; ++o) {
          int32_t acc = dot_s8(mid_stage, p->tail.project_filter + o * ms.c, ms.c, pr->input_offset);
          if (p->tail.project_bias) acc = add_bias_wrapping(acc, p->tail.project_bias[o]);
          out_stage[o] = requantize(acc, pr->output_multiplier[o], pr->output_shift[o], pr->output_offset, pr->act_min,
                                    pr->act_max);
        }
        store_pixel(r, out_base, idx4(os, b, oy, ox, 0), os.c, out_stage);
      }
    }
  }
  return 0;
}
