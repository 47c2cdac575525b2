/* vmcu/segment_fused.h: fused multi-layer segment kernels (freestanding C), so that the large
 * intermediate tensors of a block never exist in the ring.
 *
 *   vmcu_bottleneck_params bp = {...};              // expand (optional), depthwise, project, add
 *   int8_t ws[VMCU_...];        // vmcu_seg_bottleneck_workspace_bytes(&bp, in_shape, mid, out)
 *   vmcu_seg_bottleneck_s8(&bp, &ring, in_base, in_shape, mid_c, out_base, out_shape, ws);
 *
 * Inverted bottleneck: 1x1 expand -> kxk depthwise (any stride / padding) -> 1x1 project
 * (-> + block input). One step per output pixel: the depthwise result goes to a Cmid-byte stage,
 * the projection and the residual add go to a Cout-byte stage that is stored over freed input.
 * The expanded tensor never enters the ring; with an expansion there are two forms:
 *   recompute (row_cache 0): each window tap is expanded from the input segments when the
 *     depthwise needs it (kh*kw expansions per output pixel: the vMCU paper's trade).
 *     Workspace = Cmid + Cout bytes.
 *   row cache (row_cache 1): the expanded pixels are computed once each, in raster order, when a
 *     window first needs them, into a ring of n = (span_h - 1) * W + span_w pixels (span =
 *     dilation * (k - 1) + 1; at most H * W): from a window's first pixel to its last, about
 *     span_h - 1 rows (a line buffer), pixel i in slot i mod n. The unfused layers' MACs.
 *     Workspace = n * Cmid + Cmid + Cout bytes (48 x 48 x 16, 3x3: 99 pixels, 1,584 + ...).
 * The cache expands pixels only when a window first needs them, so the output can still
 * overwrite the input that no later step reads (the planner measures the distance from the
 * trace, as for every kernel).
 *
 * Residual block: conv1 (any kernel / stride / padding) -> conv2 (stride 1) -> + shortcut, where
 * the shortcut is the block input or a 1x1 strided conv of it. conv1's output is kept only as
 * the last kh2 rows (a row cache in the workspace), each row computed once, on demand, in order;
 * one step per output pixel as above. Workspace = kh2 * W1 * C1 + Cout bytes.
 *
 * Stem block: conv (any kernel / stride / padding, typically the network's 3x3 stride-2 stem)
 * -> kxk depthwise (depth multiplier 1, any stride / padding / dilation) -> 1x1 project. The
 * conv's output is kept only as the rows the depthwise window spans (a row cache, each row
 * computed once, in order), so neither the conv's nor the depthwise's output enters the ring:
 * the block reads a small input (3 channels) and writes its output over the input rows it no
 * longer needs. One step per output pixel. Workspace = span * W1 * C1 + C1 + Cout bytes
 * (span = dilation * (kh - 1) + 1).
 *
 * All are bit-exact with running the reference kernels one after the other. Reads are reported
 * as VMCU_SEG_IN0 accesses of the block input, writes as VMCU_SEG_OUT (segment_kernels.h). The
 * bottleneck also reports its workspace accesses (VMCU_SEG_WORKSPACE; each row-cache access
 * preceded by VMCU_SEG_CACHED naming the expanded bytes it holds), so that the plan verifier
 * checks them against the workspace the plan gives the layer.
 */
#ifndef VMCU_SEGMENT_FUSED_H
#define VMCU_SEGMENT_FUSED_H

#include <stdint.h>

#include "vmcu/kernels.h"
#include "vmcu/segment_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The depthwise -> 1x1 projection that ends both the bottleneck and the stem block. */
typedef struct {
  vmcu_conv_params depthwise; /* stride, padding, dilation; depth_multiplier 1 */
  int32_t kh, kw;
  const int8_t* dw_filter; /* [kh][kw][mid] */
  const int32_t* dw_bias;
  vmcu_conv_params project; /* 1x1, filter [out][mid] */
  const int8_t* project_filter;
  const int32_t* project_bias;
} vmcu_dw_project_params;

typedef struct {
  int32_t has_expand;      /* 0: the depthwise reads the block input directly */
  int32_t row_cache;       /* with has_expand: 1 caches expanded pixels (each computed once), 0 recomputes */
  vmcu_conv_params expand; /* 1x1, filter [mid][in] */
  const int8_t* expand_filter;
  const int32_t* expand_bias;
  vmcu_dw_project_params tail;
  int32_t has_residual;       /* out = add(in, projected) (stride 1, in_c == out_c) */
  int32_t residual_is_input1; /* the block input is the ADD's first operand */
  vmcu_add_params add;
} vmcu_bottleneck_params;

/* Cmid + Cout, plus the cache's n * Cmid with the row cache. */
int32_t vmcu_seg_bottleneck_workspace_bytes(const vmcu_bottleneck_params* p, vmcu_shape4 in_shape, int32_t mid_c,
                                            int32_t out_c);
/* Returns 0, or -1 if the depthwise window exceeds VMCU_SEG_MAX_TAPS. */
int vmcu_seg_bottleneck_s8(const vmcu_bottleneck_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 in_shape,
                           int32_t mid_c, int32_t out_base, vmcu_shape4 out_shape, int8_t* workspace);

typedef struct {
  vmcu_conv_params conv1;
  vmcu_shape4 filter1_shape; /* [c1][kh][kw][in_c] */
  const int8_t* filter1;
  const int32_t* bias1;
  vmcu_shape4 mid_shape;     /* conv1's output [n][h1][w1][c1] */
  vmcu_conv_params conv2;    /* stride 1, dilation 1 */
  vmcu_shape4 filter2_shape; /* [out_c][kh2][kw2][c1] */
  const int8_t* filter2;
  const int32_t* bias2;
  int32_t has_shortcut_conv;     /* 0: the shortcut is the block input itself */
  vmcu_conv_params shortcut;     /* 1x1, stride shortcut.stride_h/w, no padding */
  const int8_t* shortcut_filter; /* [out_c][in_c] */
  const int32_t* shortcut_bias;
  int32_t shortcut_is_input1; /* the shortcut is the ADD's first operand */
  vmcu_add_params add;
} vmcu_residual_block_params;

int32_t vmcu_seg_residual_block_workspace_bytes(const vmcu_residual_block_params* p, int32_t out_c);
/* Returns 0, or -1 if a window exceeds VMCU_SEG_MAX_TAPS. */
int vmcu_seg_residual_block_s8(const vmcu_residual_block_params* p, const vmcu_ring* r, int32_t in_base,
                               vmcu_shape4 in_shape, int32_t out_base, vmcu_shape4 out_shape, int8_t* workspace);

typedef struct {
  vmcu_conv_params conv;
  vmcu_shape4 conv_filter_shape; /* [c1][kh][kw][in_c] */
  const int8_t* conv_filter;
  const int32_t* conv_bias;
  vmcu_shape4 mid_shape; /* the conv's output [n][h1][w1][c1] */
  vmcu_dw_project_params tail;
} vmcu_stem_block_params;

int32_t vmcu_seg_stem_block_workspace_bytes(const vmcu_stem_block_params* p, int32_t out_c);
/* Returns 0, or -1 if the conv or depthwise window exceeds VMCU_SEG_MAX_TAPS. */
int vmcu_seg_stem_block_s8(const vmcu_stem_block_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 in_shape,
                           int32_t out_base, vmcu_shape4 out_shape, int8_t* workspace);

#ifdef __cplusplus
}
#endif

#endif /* VMCU_SEGMENT_FUSED_H */
