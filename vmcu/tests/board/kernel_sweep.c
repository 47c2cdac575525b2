/* A sweep of kernel cases run on the QEMU boards and on the host from this one source: each
 * segment kernel (and the in-place depthwise) against its reference twin on the same machine,
 * bit for bit, and a checksum of every output that must be the same number on the board as on
 * the host. Prints "vmcu-kernels: cases=N checksum=X" and exits 0, or names the first case that
 * differs and exits 1. Uses only board.h (startup.c on the board, host_board.c on the host). */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "vmcu/deploy_kernels.h"
#include "vmcu/kernels.h"
#include "vmcu/segment_fused.h"
#include "vmcu/segment_kernels.h"
/* The kernels' private helpers, for the requantization check below (static inline functions). */
#include "../../mcu/src/segment_internal.h"

enum { kMaxIn = 4096, kMaxOut = 8192, kMaxFilter = 8192, kMaxC = 1280 };

static int8_t in[kMaxIn], expected[kMaxOut], got[kMaxOut], filter[kMaxFilter], pool[kMaxIn + kMaxOut + 64];
static int8_t stage[kMaxC], channel[kMaxIn];
static int32_t bias[kMaxC], mult[kMaxC], shift[kMaxC];
static uint32_t rng_state = 0x766d6375u, checksum = 2166136261u, cases;

static uint32_t next(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 17;
  rng_state ^= rng_state << 5;
  return rng_state;
}
static int32_t pick(int32_t lo, int32_t hi) { return lo + (int32_t)(next() % (uint32_t)(hi - lo + 1)); }
static void fill(int8_t* p, int32_t n, int32_t lo, int32_t hi) {
  for (int32_t i = 0; i < n; ++i) p[i] = (int8_t)pick(lo, hi);
}

static void fail(const char* kernel, uint32_t index) {
  vmcu_board_print("vmcu-kernels: ");
  vmcu_board_print(kernel);
  vmcu_board_print(" differs from its reference twin in case ");
  vmcu_board_print_u32(index);
  vmcu_board_print("\n");
  vmcu_board_exit(1);
}

/* Compares `got` with `expected` and folds `expected` into the checksum (FNV-1a). */
static void check(const char* kernel, int32_t n) {
  if (memcmp(got, expected, (size_t)n) != 0) fail(kernel, cases);
  for (int32_t i = 0; i < n; ++i) checksum = (checksum ^ (uint8_t)expected[i]) * 16777619u;
  ++cases;
}

/* Output size and padding before, as TFLite's SAME / VALID. */
static int32_t out_size(int32_t in_size, int32_t k, int32_t stride, int32_t dil, int same, int32_t* pad) {
  const int32_t eff = dil * (k - 1) + 1;
  const int32_t out = same ? (in_size + stride - 1) / stride : (in_size - eff) / stride + 1;
  const int32_t total = (out - 1) * stride + eff - in_size;
  *pad = same && total > 0 ? total / 2 : 0;
  return out;
}

/* Random conv parameters whose per-channel tables are b, m, s. */
static vmcu_conv_params random_params_into(int32_t channels, int32_t* b, int32_t* m, int32_t* s) {
  vmcu_conv_params p;
  memset(&p, 0, sizeof p);
  /* Three kinds of output stage: shifts in [-10, 1] (a few positive ones: the left-shift path of
   * the generic requantization), right shifts of at least 2 only (the kernels' fast path), and
   * the same with the full activation range [-128, 127] (its saturating form). */
  const int32_t kind = pick(0, 2);
  for (int32_t c = 0; c < channels; ++c) {
    b[c] = pick(-5000, 5000);
    m[c] = (int32_t)(0x40000000u + (next() & 0x3FFFFFFFu));
    s[c] = kind == 0 ? pick(-10, 1) : pick(-12, -2);
  }
  p.dilation_h = p.dilation_w = 1;
  p.depth_multiplier = 1;
  p.input_offset = pick(-127, 128);
  p.output_offset = pick(-128, 127);
  p.act_min = kind == 2 ? -128 : pick(-128, -20);
  p.act_max = kind == 2 ? 127 : pick(20, 127);
  p.output_multiplier = m;
  p.output_shift = s;
  return p;
}

static vmcu_conv_params random_params(int32_t channels) { return random_params_into(channels, bias, mult, shift); }

/* A ring holding `in` at a random base with the output right after it, both free to wrap. */
static vmcu_ring place(int32_t in_bytes, int32_t out_bytes, int32_t* in_base, int32_t* out_base) {
  vmcu_ring r;
  r.cap = in_bytes + out_bytes + pick(0, 7);
  r.data = pool;
  r.trace = 0;
  r.trace_ctx = 0;
  fill(pool, r.cap, -128, 127);
  *in_base = pick(0, r.cap - 1);
  *out_base = (*in_base + in_bytes) % r.cap;
  vmcu_ring_write(&r, *in_base, 0, in_bytes, in);
  return r;
}

typedef struct {
  int32_t h, w, cin, cout, k, stride, dil, same;
} conv_case;

static const conv_case kCases[] = {
    {5, 5, 3, 3, 3, 1, 1, 1},
    {7, 6, 4, 9, 3, 1, 1, 1},
    {9, 9, 5, 5, 3, 2, 1, 1},
    {10, 8, 8, 16, 3, 2, 1, 1},
    {11, 11, 3, 6, 5, 2, 1, 0},
    {6, 6, 4, 4, 1, 1, 1, 0},
    {8, 8, 3, 5, 3, 1, 2, 1},
    {16, 16, 16, 32, 3, 1, 1, 1},
    {12, 10, 13, 7, 1, 1, 1, 0},
    {4, 4, 17, 33, 1, 1, 1, 0},
    {16, 16, 16, 16, 3, 2, 1, 1},
    {2, 3, 6, 2, 7, 2, 1, 1},
    /* Channel counts around the DSP kernels' tiles (four channels, four or eight taps a step)
     * and the layer kinds at a smaller size. */
    {5, 5, 1, 4, 3, 1, 1, 1},
    {6, 5, 9, 5, 3, 1, 1, 1},
    {4, 6, 12, 8, 1, 1, 1, 0},
    {7, 7, 48, 8, 3, 1, 1, 1},
    {4, 4, 144, 24, 1, 1, 1, 0},
    {3, 3, 20, 36, 3, 1, 1, 1},
    {1, 1, 640, 12, 1, 1, 1, 0},
    {1, 2, 128, 30, 1, 1, 1, 0},
};

typedef struct {
  int32_t h, w, cin, cmid, cout, k, stride, same, residual;
} bottleneck_case;

/* Fused bottlenecks: the tiles of the expansion and projection, the depthwise groups and the
 * residual add inside the fused kernel, in both forms (expansion recomputed per tap, or cached). */
static const bottleneck_case kBottlenecks[] = {
    {12, 12, 8, 16, 32, 3, 2, 1, 0}, {7, 9, 5, 13, 7, 3, 2, 1, 0},   {9, 7, 8, 24, 8, 3, 1, 1, 1},
    {6, 6, 8, 20, 12, 5, 1, 0, 0},   {8, 8, 12, 36, 12, 3, 1, 1, 1},
};

static int8_t mid[kMaxOut], dw_out[kMaxOut], dw_filter[kMaxFilter], project_filter[kMaxFilter], workspace[4096];
static int32_t stage_tables[3][3][kMaxC]; /* per stage: bias, multiplier, shift */

static void check_bottlenecks(void) {
  for (int32_t i = 0; i < (int32_t)(sizeof kBottlenecks / sizeof kBottlenecks[0]); ++i) {
    const bottleneck_case c = kBottlenecks[i];
    int32_t ph, pw, in_base, out_base;
    const int32_t oh = out_size(c.h, c.k, c.stride, 1, c.same, &ph);
    const int32_t ow = out_size(c.w, c.k, c.stride, 1, c.same, &pw);
    const vmcu_shape4 is = {1, c.h, c.w, c.cin}, ms = {1, c.h, c.w, c.cmid}, ds = {1, oh, ow, c.cmid},
                      os = {1, oh, ow, c.cout};
    vmcu_bottleneck_params bp;
    memset(&bp, 0, sizeof bp);
    bp.has_expand = 1;
    bp.expand = random_params_into(c.cmid, stage_tables[0][0], stage_tables[0][1], stage_tables[0][2]);
    bp.expand.stride_h = bp.expand.stride_w = 1;
    bp.expand_filter = filter;
    bp.expand_bias = stage_tables[0][0];
    bp.tail.depthwise = random_params_into(c.cmid, stage_tables[1][0], stage_tables[1][1], stage_tables[1][2]);
    bp.tail.depthwise.stride_h = bp.tail.depthwise.stride_w = c.stride;
    bp.tail.depthwise.pad_h = ph;
    bp.tail.depthwise.pad_w = pw;
    bp.tail.depthwise.input_offset = -bp.expand.output_offset;
    bp.tail.kh = bp.tail.kw = c.k;
    bp.tail.dw_filter = dw_filter;
    bp.tail.dw_bias = stage_tables[1][0];
    bp.tail.project = random_params_into(c.cout, stage_tables[2][0], stage_tables[2][1], stage_tables[2][2]);
    bp.tail.project.stride_h = bp.tail.project.stride_w = 1;
    bp.tail.project.input_offset = -bp.tail.depthwise.output_offset;
    bp.tail.project_filter = project_filter;
    bp.tail.project_bias = stage_tables[2][0];
    bp.has_residual = c.residual;
    bp.residual_is_input1 = 1;
    bp.add.input1_offset = pick(-127, 128);
    bp.add.input2_offset = -bp.tail.project.output_offset;
    bp.add.output_offset = pick(-128, 127);
    bp.add.left_shift = 20;
    bp.add.input1_multiplier = (int32_t)(0x40000000u + (next() & 0x3FFFFFFFu));
    bp.add.input1_shift = pick(-4, -1);
    bp.add.input2_multiplier = (int32_t)(0x40000000u + (next() & 0x3FFFFFFFu));
    bp.add.input2_shift = pick(-4, -1);
    bp.add.output_multiplier = (int32_t)(0x40000000u + (next() & 0x3FFFFFFFu));
    bp.add.output_shift = pick(-20, -17);
    bp.add.act_min = -128;
    bp.add.act_max = 127;
    fill(in, vmcu_shape4_size(is), -128, 127);
    fill(filter, c.cmid * c.cin, -127, 127);
    fill(dw_filter, c.k * c.k * c.cmid, -127, 127);
    fill(project_filter, c.cout * c.cmid, -127, 127);
    /* The reference: the three kernels (and the ADD) one after the other. */
    vmcu_conv2d_s8(&bp.expand, is, in, (vmcu_shape4){c.cmid, 1, 1, c.cin}, filter, bp.expand_bias, ms, mid);
    vmcu_depthwise_conv2d_s8(&bp.tail.depthwise, ms, mid, (vmcu_shape4){1, c.k, c.k, c.cmid}, dw_filter,
                             bp.tail.dw_bias, ds, dw_out);
    vmcu_conv2d_s8(&bp.tail.project, ds, dw_out, (vmcu_shape4){c.cout, 1, 1, c.cmid}, project_filter,
                   bp.tail.project_bias, os, expected);
    if (c.residual) {
      memcpy(got, expected, (size_t)vmcu_shape4_size(os));
      vmcu_add_s8(&bp.add, vmcu_shape4_size(os), in, got, expected);
    }
    for (int32_t row_cache = 0; row_cache <= 1; ++row_cache) {
      bp.row_cache = row_cache;
      if (vmcu_seg_bottleneck_workspace_bytes(&bp, is, c.cmid, c.cout) > (int32_t)sizeof workspace)
        fail(row_cache ? "cached bottleneck workspace" : "bottleneck workspace", cases);
      vmcu_ring r = place(vmcu_shape4_size(is), vmcu_shape4_size(os), &in_base, &out_base);
      if (vmcu_seg_bottleneck_s8(&bp, &r, in_base, is, c.cmid, out_base, os, workspace) != 0) fail("bottleneck", cases);
      vmcu_ring_read(&r, out_base, 0, vmcu_shape4_size(os), got);
      check(row_cache ? "cached bottleneck" : "bottleneck", vmcu_shape4_size(os));
    }
  }
}

/* The kernels' one-SMLAL requantization (segment_internal.h) against TFLite's two-step form over
 * every right shift it takes (2 to 31): random sums and multipliers, the int32 extremes, and runs
 * of consecutive sums with multipliers that put products on the rounding ties. */
static void check_requantization(void) {
  static const int32_t extremes[] = {0, 1, -1, 2, -2, INT32_MIN, INT32_MAX, INT32_MIN + 1, INT32_MAX - 1};
  static const int32_t tie_multipliers[] = {1 << 30, (1 << 30) + (1 << 29), 0, INT32_MAX};
  uint32_t index = 0;
  for (int32_t shift = -31; shift <= -2; ++shift) {
    for (int32_t i = 0; i < 2000; ++i, ++index) {
      const int32_t acc = (int32_t)next() >> (next() % 32u);
      const int32_t multiplier = (int32_t)(next() >> 1);
      if (requantize_right_shift(acc, multiplier, shift) !=
          vmcu_multiply_by_quantized_multiplier(acc, multiplier, shift))
        fail("requantization", index);
    }
    for (int32_t a = 0; a < (int32_t)(sizeof extremes / sizeof extremes[0]); ++a)
      for (int32_t m = 0; m < (int32_t)(sizeof tie_multipliers / sizeof tie_multipliers[0]); ++m, ++index)
        if (requantize_right_shift(extremes[a], tie_multipliers[m], shift) !=
            vmcu_multiply_by_quantized_multiplier(extremes[a], tie_multipliers[m], shift))
          fail("requantization", index);
    for (int32_t acc = -300; acc <= 300; ++acc)
      for (int32_t m = 0; m < 2; ++m, ++index)
        if (requantize_right_shift((int32_t)((uint32_t)acc << (-shift - 2)), tie_multipliers[m], shift) !=
            vmcu_multiply_by_quantized_multiplier((int32_t)((uint32_t)acc << (-shift - 2)), tie_multipliers[m], shift))
          fail("requantization", index);
  }
}

int main(void) {
  const int32_t ncases = (int32_t)(sizeof kCases / sizeof kCases[0]);
  check_requantization();
  check_bottlenecks();
  for (int32_t i = 0; i < ncases; ++i) {
    const conv_case c = kCases[i];
    int32_t ph, pw, in_base, out_base;
    const int32_t oh = out_size(c.h, c.k, c.stride, c.dil, c.same, &ph);
    const int32_t ow = out_size(c.w, c.k, c.stride, c.dil, c.same, &pw);
    const vmcu_shape4 is = {1, c.h, c.w, c.cin};
    const int32_t in_bytes = vmcu_shape4_size(is);
    for (int32_t trial = 0; trial < 2; ++trial) {
      /* CONV_2D (pointwise when 1x1, stride 1, no padding). */
      vmcu_conv_params p = random_params(c.cout);
      p.stride_h = p.stride_w = c.stride;
      p.dilation_h = p.dilation_w = c.dil;
      p.pad_h = ph;
      p.pad_w = pw;
      const vmcu_shape4 fs = {c.cout, c.k, c.k, c.cin}, os = {1, oh, ow, c.cout};
      fill(in, in_bytes, -128, 127);
      fill(filter, vmcu_shape4_size(fs), -127, 127);
      vmcu_conv2d_s8(&p, is, in, fs, filter, bias, os, expected);
      vmcu_ring r = place(in_bytes, vmcu_shape4_size(os), &in_base, &out_base);
      if (vmcu_seg_conv2d_s8(&p, &r, in_base, is, fs, filter, bias, out_base, os, stage) != 0) fail("conv", cases);
      vmcu_ring_read(&r, out_base, 0, vmcu_shape4_size(os), got);
      check("conv", vmcu_shape4_size(os));
      if (c.k == 1 && c.stride == 1 && ph == 0 && pw == 0) {
        r = place(in_bytes, vmcu_shape4_size(os), &in_base, &out_base);
        vmcu_seg_pointwise_conv_s8(&p, &r, in_base, is, filter, bias, out_base, os, stage);
        vmcu_ring_read(&r, out_base, 0, vmcu_shape4_size(os), got);
        check("pointwise", vmcu_shape4_size(os));
      }
      /* DEPTHWISE_CONV_2D, multiplier 1 and 2; the in-place form for multiplier 1. */
      for (int32_t m = 1; m <= 2; ++m) {
        const vmcu_shape4 dfs = {1, c.k, c.k, c.cin * m}, dos = {1, oh, ow, c.cin * m};
        vmcu_conv_params d = random_params(c.cin * m);
        d.stride_h = d.stride_w = c.stride;
        d.dilation_h = d.dilation_w = c.dil;
        d.pad_h = ph;
        d.pad_w = pw;
        d.depth_multiplier = m;
        fill(filter, vmcu_shape4_size(dfs), -127, 127);
        vmcu_depthwise_conv2d_s8(&d, is, in, dfs, filter, bias, dos, expected);
        r = place(in_bytes, vmcu_shape4_size(dos), &in_base, &out_base);
        if (vmcu_seg_depthwise_conv2d_s8(&d, &r, in_base, is, dfs, filter, bias, out_base, dos, stage) != 0)
          fail("depthwise", cases);
        vmcu_ring_read(&r, out_base, 0, vmcu_shape4_size(dos), got);
        check("depthwise", vmcu_shape4_size(dos));
        if (m == 1 && vmcu_shape4_size(dos) <= in_bytes) {
          memcpy(got, in, (size_t)in_bytes);
          if (vmcu_depthwise_conv2d_inplace_s8(&d, is, got, dfs, filter, bias, dos, channel) != 0)
            fail("depthwise in place", cases);
          check("depthwise in place", vmcu_shape4_size(dos));
        }
      }
      /* FULLY_CONNECTED over the input as [batches][features]. */
      {
        const int32_t batches = c.h, depth = c.w * c.cin, units = c.cout;
        vmcu_fc_params f;
        f.input_offset = pick(-127, 128);
        f.filter_offset = trial == 0 ? 0 : pick(-12, 12); /* int8 weights are symmetric; uint8-style too */
        f.output_offset = pick(-128, 127);
        f.output_multiplier = mult[0];
        f.output_shift = pick(-12, -6);
        f.act_min = -128;
        f.act_max = 127;
        if (units * depth <= kMaxFilter && batches * units <= kMaxOut) {
          fill(filter, units * depth, -127, 127);
          vmcu_fully_connected_s8(&f, batches, depth, units, in, filter, bias, expected);
          r = place(in_bytes, batches * units, &in_base, &out_base);
          vmcu_seg_fully_connected_s8(&f, &r, in_base, batches, depth, units, filter, bias, out_base);
          vmcu_ring_read(&r, out_base, 0, batches * units, got);
          check("fully connected", batches * units);
        }
      }
    }
  }
  vmcu_board_print("vmcu-kernels: cases=");
  vmcu_board_print_u32(cases);
  vmcu_board_print(" checksum=");
  vmcu_board_print_u32(checksum);
  vmcu_board_print("\n");
  return 0;
}
