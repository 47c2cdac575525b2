/* Fused inverted bottleneck and residual block over a ring pool (see segment_fused.h). */
#include "vmcu/segment_fused.h"

#include "segment_internal.h"

/* The depthwise result of every mid channel of one output pixel, each tap's input expanded on
 * the fly (1x1 conv from the block input, four mid channels at a time), into mid_stage. */
static void expand_depthwise(const vmcu_bottleneck_params* p, const out_quant* eq, const out_quant* dq,
                             const conv_tap* taps, int32_t nt, int32_t in_c, int32_t mid_c, int8_t* mid_stage) {
  const vmcu_conv_params* e = &p->expand;
  const vmcu_conv_params* dw = &p->tail.depthwise;
  for (int32_t m = 0; m < mid_c; m += 4) {
    const int32_t k = vmcu_min_i32(4, mid_c - m);
    int32_t dw_acc[4] = {0, 0, 0, 0};
    for (int32_t t = 0; t < nt; ++t) {
      const int32_t head = taps[t].in.head;
      const int8_t* f = p->expand_filter + m * in_c;
      int8_t expanded[4];
      if (k == 4) {
        /* The tap's four expanded channels, requantized, from one tile call. */
        const x4_segment seg[2] = {{taps[t].in.a, 0, head}, {taps[t].in.b, head, in_c - head}};
        tile_x4_out(seg, head < in_c ? 2 : 1, f, in_c, e->input_offset, eq, m, expanded);
      } else {
        for (int32_t j = 0; j < k; ++j)
          expanded[j] = conv_output(eq,
                                    dot_s8(taps[t].in.a, f + j * in_c, head, e->input_offset) +
                                        dot_s8(taps[t].in.b, f + j * in_c + head, in_c - head, e->input_offset),
                                    m + j);
      }
      const int8_t* w = p->tail.dw_filter + taps[t].filter_offset + m;
      for (int32_t j = 0; j < k; ++j) dw_acc[j] += ((int32_t)expanded[j] + dw->input_offset) * (int32_t)w[j];
    }
    for (int32_t j = 0; j < k; ++j) mid_stage[m + j] = conv_output(dq, dw_acc[j], m + j);
  }
}

/* Expanded pixels the cache holds: from a depthwise window's first pixel to its last in raster
 * order, (span_h - 1) * W + span_w (span = dilation * (k - 1) + 1), at most the whole image. */
static int32_t cache_pixels(const vmcu_dw_project_params* t, vmcu_shape4 is) {
  const int32_t span_h = t->depthwise.dilation_h * (t->kh - 1) + 1;
  const int32_t span_w = t->depthwise.dilation_w * (t->kw - 1) + 1;
  const int32_t n = (span_h - 1) * is.w + span_w;
  return n < is.h * is.w ? n : is.h * is.w;
}

static int use_row_cache(const vmcu_bottleneck_params* p) { return p->has_expand && p->row_cache; }

int32_t vmcu_seg_bottleneck_workspace_bytes(const vmcu_bottleneck_params* p, vmcu_shape4 is, int32_t mid_c,
                                            int32_t out_c) {
  const int32_t cache = use_row_cache(p) ? cache_pixels(&p->tail, is) * mid_c : 0;
  return cache + mid_c + out_c;
}

/* Reports an access of workspace bytes [offset, offset + length); `cached` >= 0: they hold the
 * expanded tensor's bytes from that offset on (the cache), < 0: a stage. */
static inline void trace_workspace(const vmcu_ring* r, int32_t offset, int32_t length, int32_t cached,
                                   int32_t is_write) {
  if (!r->trace) return;
  if (cached >= 0) r->trace(r->trace_ctx, VMCU_SEG_CACHED, cached, length, is_write);
  r->trace(r->trace_ctx, VMCU_SEG_WORKSPACE, offset, length, is_write);
}

/* Expanded pixel i (raster index in batch b) into its cache slot i mod n. */
static void expand_pixel(const vmcu_bottleneck_params* p, const out_quant* eq, const vmcu_ring* r, int32_t in_base,
                         vmcu_shape4 is, int32_t mid_c, int32_t b, int32_t i, int32_t n, int8_t* workspace) {
  const int32_t rel = (b * is.h * is.w + i) * is.c;
  VMCU_TRACE(r, VMCU_SEG_IN0, rel, is.c, 0);
  const int32_t at = (i % n) * mid_c;
  trace_workspace(r, at, mid_c, (b * is.h * is.w + i) * mid_c, 1);
  pointwise_pixel(&p->expand, eq, span_at(r, in_base, rel, is.c), is.c, p->expand_filter, mid_c, workspace + at, mid_c,
                  workspace + at);
}

/* The in-bounds taps of the depthwise window at (y0, x0), read from the cache of n pixels (plain
 * memory: a tap never wraps). */
static int32_t cached_taps(const vmcu_ring* r, const vmcu_dw_project_params* t, vmcu_shape4 is, int32_t mid_c,
                           int32_t b, int32_t y0, int32_t x0, int32_t n, const int8_t* workspace, conv_tap* taps) {
  int32_t nt = 0;
  for (int32_t ky = 0; ky < t->kh; ++ky) {
    const int32_t y = y0 + t->depthwise.dilation_h * ky;
    if (y < 0 || y >= is.h) continue;
    for (int32_t kx = 0; kx < t->kw; ++kx) {
      const int32_t x = x0 + t->depthwise.dilation_w * kx;
      if (x < 0 || x >= is.w) continue;
      const int32_t i = y * is.w + x;
      const int32_t at = (i % n) * mid_c;
      trace_workspace(r, at, mid_c, (b * is.h * is.w + i) * mid_c, 0);
      const ring_span in = {workspace + at, mid_c, workspace + at};
      taps[nt].in = in;
      taps[nt++].filter_offset = (ky * t->kw + kx) * mid_c;
    }
  }
  return nt;
}

int vmcu_seg_bottleneck_s8(const vmcu_bottleneck_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 is,
                           int32_t mid_c, int32_t out_base, vmcu_shape4 os, int8_t* workspace) {
  conv_tap taps[VMCU_SEG_MAX_TAPS];
  tap_cursor cur[VMCU_SEG_MAX_TAPS];
  if (p->tail.kh * p->tail.kw > VMCU_SEG_MAX_TAPS) return -1;
  const vmcu_conv_params* dw = &p->tail.depthwise;
  const vmcu_conv_params* pr = &p->tail.project;
  const int cached = use_row_cache(p);
  const int32_t n_cache = cached ? cache_pixels(&p->tail, is) : 0;
  const int32_t span_h = dw->dilation_h * (p->tail.kh - 1) + 1;
  const int32_t span_w = dw->dilation_w * (p->tail.kw - 1) + 1;
  /* Workspace: [cache: n_cache expanded pixels (cached form only) | depthwise stage | output stage]. */
  const int32_t mid_at = n_cache * mid_c;
  const int32_t out_at = mid_at + mid_c;
  int8_t* mid_stage = workspace + mid_at;
  int8_t* out_stage = workspace + out_at;
  const out_quant pq = conv_quant(pr, p->tail.project_bias, os.c);
  const out_quant eq = conv_quant(&p->expand, p->expand_bias, p->has_expand ? mid_c : 0);
  const out_quant dq = conv_quant(dw, p->tail.dw_bias, mid_c);
  for (int32_t b = 0; b < os.n; ++b) {
    /* Cache invariant: the expanded pixels [next - n_cache, next) of this batch (raster order)
     * sit in slots (i mod n_cache). Pixels are expanded in order, up to a window's last pixel when
     * the window needs them; the window's first pixel is at most n_cache - 1 before its last, and
     * at most that far before `next` (when an earlier window already reached the bottom row, it
     * lies a whole stride row further on), so every pixel a window reads is still cached. */
    int32_t next = 0;
    for (int32_t oy = 0; oy < os.h; ++oy) {
      const int32_t y0 = oy * dw->stride_h - dw->pad_h;
      const int32_t y_last = vmcu_min_i32(is.h - 1, y0 + span_h - 1);
      for (int32_t ox = 0; ox < os.w; ++ox) {
        const int32_t x0 = ox * dw->stride_w - dw->pad_w;
        if (cached) {
          const int32_t x_last = vmcu_min_i32(is.w - 1, x0 + span_w - 1);
          if (y_last >= 0 && x_last >= 0)
            for (const int32_t need = y_last * is.w + x_last + 1; next < need; ++next)
              expand_pixel(p, &eq, r, in_base, is, mid_c, b, next, n_cache, workspace);
          const int32_t nt = cached_taps(r, &p->tail, is, mid_c, b, y0, x0, n_cache, workspace, taps);
          const int32_t end = next_chunk_end(taps, nt, 0, mid_c, cur); /* == mid_c: cached taps never wrap */
          depthwise_chunk(dw, &dq, taps, cur, nt, p->tail.dw_filter, 0, end, mid_stage);
        } else {
          const int32_t nt = collect_taps(r, in_base, is, b, y0, x0, p->tail.kh, p->tail.kw, dw->dilation_h,
                                          dw->dilation_w, mid_c, taps);
          if (p->has_expand) {
            expand_depthwise(p, &eq, &dq, taps, nt, is.c, mid_c, mid_stage);
          } else {
            /* The taps are read directly: channel chunks in which no tap wraps. */
            int32_t m = 0;
            while (m < mid_c) {
              const int32_t end = next_chunk_end(taps, nt, m, mid_c, cur);
              depthwise_chunk(dw, &dq, taps, cur, nt, p->tail.dw_filter, m, end, mid_stage);
              m = end;
            }
          }
        }
        trace_workspace(r, mid_at, mid_c, -1, 1);
        const int32_t out_rel = idx4(os, b, oy, ox, 0);
        ring_span res = {0, 0, 0};
        if (p->has_residual) {
          VMCU_TRACE(r, VMCU_SEG_IN0, out_rel, os.c, 0);
          res = span_at(r, in_base, out_rel, os.c);
        }
        trace_workspace(r, mid_at, mid_c, -1, 0);
        trace_workspace(r, out_at, os.c, -1, 1);
        project_pixel(&pq, mid_stage, mid_c, p->tail.project_filter, os.c, pr->input_offset, out_stage);
        if (p->has_residual) {
          for (int32_t o = 0; o < os.c; ++o) {
            const int8_t a = o < res.head ? res.a[o] : res.b[o - res.head];
            out_stage[o] =
                p->residual_is_input1 ? add_one(&p->add, a, out_stage[o]) : add_one(&p->add, out_stage[o], a);
          }
        }
        trace_workspace(r, out_at, os.c, -1, 0);
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
  const out_quant q = conv_quant(c, bias, ms.c);
  const int32_t filter_size = fs.h * fs.w * fs.c;
  for (int32_t x = 0; x < ms.w; ++x) {
    const int32_t nt = collect_taps(r, in_base, is, b, y * c->stride_h - c->pad_h, x * c->stride_w - c->pad_w, fs.h,
                                    fs.w, c->dilation_h, c->dilation_w, fs.c, taps);
    conv_pixel(&q, taps, nt, filter, filter_size, is.c, ms.c, c->input_offset, row + x * ms.c);
  }
}

int vmcu_seg_residual_block_s8(const vmcu_residual_block_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 is,
                               int32_t out_base, vmcu_shape4 os, int8_t* workspace) {
  conv_tap taps[VMCU_SEG_MAX_TAPS];
  const vmcu_shape4 ms = p->mid_shape, f2 = p->filter2_shape;
  if (p->filter1_shape.h * p->filter1_shape.w > VMCU_SEG_MAX_TAPS || f2.h * f2.w > VMCU_SEG_MAX_TAPS) return -1;
  const vmcu_conv_params* c2 = &p->conv2;
  const int32_t row_bytes = ms.w * ms.c;
  const int32_t filter2_size = f2.h * f2.w * ms.c;
  int8_t* out_stage = workspace + f2.h * row_bytes;
  const out_quant q2 = conv_quant(c2, p->bias2, os.c);
  const out_quant qs = conv_quant(&p->shortcut, p->shortcut_bias, p->has_shortcut_conv ? os.c : 0);
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
        /* conv2 over the cached rows, every channel at once (the kernels' conv pixel), into out_stage. */
        int32_t nt = 0;
        for (int32_t ky = 0; ky < f2.h; ++ky) {
          const int32_t y = y_lo + ky;
          if (y < 0 || y >= ms.h) continue;
          const int8_t* row = workspace + (y % f2.h) * row_bytes;
          for (int32_t kx = 0; kx < f2.w; ++kx) {
            const int32_t x = x_lo + kx;
            if (x < 0 || x >= ms.w) continue;
            const ring_span in = {row + x * ms.c, ms.c, row};
            taps[nt].in = in;
            taps[nt++].filter_offset = (ky * f2.w + kx) * ms.c;
          }
        }
        conv_pixel(&q2, taps, nt, p->filter2, filter2_size, ms.c, os.c, c2->input_offset, out_stage);
        for (int32_t o = 0; o < os.c; o += 4) {
          const int32_t k = vmcu_min_i32(4, os.c - o);
          int32_t sacc[4] = {0, 0, 0, 0};
          if (p->has_shortcut_conv) {
            const int32_t off = p->shortcut.input_offset;
            const int8_t* f = p->shortcut_filter + o * is.c;
            if (k == 4) {
              dot_s8_x4(sc.a, f, is.c, sc.head, off, sacc);
              if (sc.head < is.c) dot_s8_x4(sc.b, f + sc.head, is.c, is.c - sc.head, off, sacc);
            } else {
              for (int32_t j = 0; j < k; ++j)
                sacc[j] = dot_s8(sc.a, f + j * is.c, sc.head, off) +
                          dot_s8(sc.b, f + j * is.c + sc.head, is.c - sc.head, off);
            }
          }
          for (int32_t j = 0; j < k; ++j) {
            const int8_t z = out_stage[o + j];
            const int8_t s = p->has_shortcut_conv ? conv_output(&qs, sacc[j], o + j)
                             : o + j < sc.head    ? sc.a[o + j]
                                                  : sc.b[o + j - sc.head]; /* identity: is.c == os.c */
            out_stage[o + j] = p->shortcut_is_input1 ? add_one(&p->add, s, z) : add_one(&p->add, z, s);
          }
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
  const out_quant pq = conv_quant(pr, p->tail.project_bias, os.c);
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
        project_pixel(&pq, mid_stage, ms.c, p->tail.project_filter, os.c, pr->input_offset, out_stage);
        store_pixel(r, out_base, idx4(os, b, oy, ox, 0), os.c, out_stage);
      }
    }
  }
  return 0;
}
