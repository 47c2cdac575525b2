/* The DSP kernels against the reference kernels on one layer each, run on a Cortex-M board under
 * QEMU: each kernel call sits between the board's counting markers, so the instruction-counting
 * plugin writes one count per call, in the order the lines below are printed:
 *   vmcu-kernel-bench: LAYER|KERNEL|MACS
 * MACS counts every window tap, padded ones included (H*W*C*9 for a 3x3 depthwise). The ring
 * kernel's output is compared with the reference's; the program exits 1 if they differ.
 * Built twice by kernel_table.sh: for the Cortex-M4 with its DSP extension and with
 * VMCU_NO_DSP (the plain forms). */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "vmcu/kernels.h"
#include "vmcu/segment_kernels.h"

enum { kMaxIn = 20 * 20 * 48, kMaxOut = 20 * 20 * 48, kMaxFilter = 640 * 128, kMaxC = 144 };

static int8_t in[kMaxIn], expected[kMaxOut], pool[kMaxIn + kMaxOut], filter[kMaxFilter], stage[kMaxC];
static int32_t bias[kMaxC], mult[kMaxC], shift[kMaxC];
static uint32_t rng_state = 0x62656e63u;

static uint32_t next(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 17;
  rng_state ^= rng_state << 5;
  return rng_state;
}
static void fill(int8_t* p, int32_t n, int32_t lo, int32_t hi) {
  for (int32_t i = 0; i < n; ++i) p[i] = (int8_t)(lo + (int32_t)(next() % (uint32_t)(hi - lo + 1)));
}

static void report(const char* layer, const char* kernel, uint32_t macs) {
  vmcu_board_print("vmcu-kernel-bench: ");
  vmcu_board_print(layer);
  vmcu_board_print("|");
  vmcu_board_print(kernel);
  vmcu_board_print("|");
  vmcu_board_print_u32(macs);
  vmcu_board_print("\n");
}

static void same_or_exit(const char* layer, const int8_t* got, int32_t n) {
  if (memcmp(got, expected, (size_t)n) == 0) return;
  vmcu_board_print("vmcu-kernel-bench: ");
  vmcu_board_print(layer);
  vmcu_board_print(": the ring kernel differs from the reference\n");
  vmcu_board_exit(1);
}

static vmcu_conv_params conv_params(int32_t channels, int32_t pad) {
  vmcu_conv_params p;
  memset(&p, 0, sizeof p);
  for (int32_t c = 0; c < channels; ++c) {
    bias[c] = (int32_t)(next() % 2001u) - 1000;
    mult[c] = (int32_t)(0x40000000u + (next() & 0x3FFFFFFFu));
    shift[c] = -8;
  }
  p.stride_h = p.stride_w = 1;
  p.dilation_h = p.dilation_w = 1;
  p.pad_h = p.pad_w = pad;
  p.depth_multiplier = 1;
  p.input_offset = 128; /* input zero point -128, as after a ReLU */
  p.output_offset = -128;
  p.act_min = -128;
  p.act_max = 127;
  p.output_multiplier = mult;
  p.output_shift = shift;
  return p;
}

/* A ring holding the input at 0 and the output after it (no overlap: the kernel's cost alone). */
static vmcu_ring ring_for(int32_t in_bytes, int32_t out_bytes) {
  vmcu_ring r = {pool, in_bytes + out_bytes, 0, 0};
  memcpy(pool, in, (size_t)in_bytes);
  return r;
}

static void pointwise(const char* layer, int32_t hw, int32_t cin, int32_t cout) {
  const vmcu_shape4 is = {1, hw, hw, cin}, fs = {cout, 1, 1, cin}, os = {1, hw, hw, cout};
  const int32_t in_bytes = vmcu_shape4_size(is), out_bytes = vmcu_shape4_size(os);
  const uint32_t macs = (uint32_t)(hw * hw * cin * cout);
  vmcu_conv_params p = conv_params(cout, 0);
  fill(in, in_bytes, -128, 127);
  fill(filter, cout * cin, -127, 127);
  report(layer, "reference", macs);
  vmcu_board_count_begin();
  vmcu_conv2d_s8(&p, is, in, fs, filter, bias, os, expected);
  vmcu_board_count_end();
  vmcu_ring r = ring_for(in_bytes, out_bytes);
  report(layer, "ring", macs);
  vmcu_board_count_begin();
  vmcu_seg_pointwise_conv_s8(&p, &r, 0, is, filter, bias, in_bytes, os, stage);
  vmcu_board_count_end();
  same_or_exit(layer, pool + in_bytes, out_bytes);
}

static void conv3x3(const char* layer, int32_t hw, int32_t cin, int32_t cout) {
  const vmcu_shape4 is = {1, hw, hw, cin}, fs = {cout, 3, 3, cin}, os = {1, hw, hw, cout};
  const int32_t in_bytes = vmcu_shape4_size(is), out_bytes = vmcu_shape4_size(os);
  const uint32_t macs = (uint32_t)(hw * hw * cout * 9 * cin);
  vmcu_conv_params p = conv_params(cout, 1);
  fill(in, in_bytes, -128, 127);
  fill(filter, vmcu_shape4_size(fs), -127, 127);
  report(layer, "reference", macs);
  vmcu_board_count_begin();
  vmcu_conv2d_s8(&p, is, in, fs, filter, bias, os, expected);
  vmcu_board_count_end();
  vmcu_ring r = ring_for(in_bytes, out_bytes);
  report(layer, "ring", macs);
  vmcu_board_count_begin();
  if (vmcu_seg_conv2d_s8(&p, &r, 0, is, fs, filter, bias, in_bytes, os, stage) != 0) vmcu_board_exit(1);
  vmcu_board_count_end();
  same_or_exit(layer, pool + in_bytes, out_bytes);
}

static void depthwise3x3(const char* layer, int32_t hw, int32_t c) {
  const vmcu_shape4 is = {1, hw, hw, c}, fs = {1, 3, 3, c}, os = {1, hw, hw, c};
  const int32_t bytes = vmcu_shape4_size(is);
  const uint32_t macs = (uint32_t)(hw * hw * c * 9);
  vmcu_conv_params p = conv_params(c, 1);
  fill(in, bytes, -128, 127);
  fill(filter, vmcu_shape4_size(fs), -127, 127);
  report(layer, "reference", macs);
  vmcu_board_count_begin();
  vmcu_depthwise_conv2d_s8(&p, is, in, fs, filter, bias, os, expected);
  vmcu_board_count_end();
  vmcu_ring r = ring_for(bytes, bytes);
  report(layer, "ring", macs);
  vmcu_board_count_begin();
  if (vmcu_seg_depthwise_conv2d_s8(&p, &r, 0, is, fs, filter, bias, bytes, os, stage) != 0) vmcu_board_exit(1);
  vmcu_board_count_end();
  same_or_exit(layer, pool + bytes, bytes);
}

static void fully_connected(const char* layer, int32_t in_depth, int32_t out_depth) {
  vmcu_fc_params p = {128, 0, -128, 0x55555555, -9, -128, 127};
  const uint32_t macs = (uint32_t)(in_depth * out_depth);
  (void)conv_params(out_depth, 0); /* the bias */
  fill(in, in_depth, -128, 127);
  fill(filter, in_depth * out_depth, -127, 127);
  report(layer, "reference", macs);
  vmcu_board_count_begin();
  vmcu_fully_connected_s8(&p, 1, in_depth, out_depth, in, filter, bias, expected);
  vmcu_board_count_end();
  vmcu_ring r = ring_for(in_depth, out_depth);
  report(layer, "ring", macs);
  vmcu_board_count_begin();
  vmcu_seg_fully_connected_s8(&p, &r, 0, 1, in_depth, out_depth, filter, bias, in_depth);
  vmcu_board_count_end();
  same_or_exit(layer, pool + in_depth, out_depth);
}

int main(void) {
  pointwise("pointwise 16x16, 32->64", 16, 32, 64);
  pointwise("pointwise 20x20, 16->48", 20, 16, 48);
  pointwise("pointwise 10x10, 144->24", 10, 144, 24);
  depthwise3x3("depthwise 3x3 s1 SAME, 20x20x48", 20, 48);
  depthwise3x3("depthwise 3x3 s1 SAME, 10x10x144", 10, 144);
  fully_connected("fully connected 640->128", 640, 128);
  fully_connected("fully connected 128->128", 128, 128);
  conv3x3("conv 3x3 s1 SAME, 16x16, 16->32", 16, 16, 32);
  vmcu_board_print("vmcu-kernel-bench: done\n");
  return 0;
}
