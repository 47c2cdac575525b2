/* vmcu/segment_kernels.h: int8 kernels whose tensors live in a ring of memory (freestanding C).
 *
 *   static int8_t pool[RING_BYTES];
 *   vmcu_ring ring = {pool, RING_BYTES, 0, 0};          // no access trace on the board
 *   int8_t stage[64];                                     // one output pixel (Cout bytes)
 *   // input at ring offset 1200, output written 40 bytes "behind" it (the planned distance):
 *   vmcu_seg_conv2d_s8(&p, &ring, 1200, in_shape, filter_shape, filter, bias,
 *                      1160, out_shape, stage);
 *
 * A tensor in the ring is a base offset in [0, cap); its byte i lives at (base + i) mod cap, so a
 * tensor may wrap around the end of the pool. The kernels resolve the wrap once per outer tile
 * (one input pixel / one output pixel / one row): a compare-and-subtract gives the tile's position
 * and, when the tile straddles the end, the split point; inner loops then run on plain pointers.
 *
 * Loop order and the "steps" the offset solver reasons about (every read of a step happens
 * before that step's write, so a step may overwrite input that only it and earlier steps read):
 *   conv / depthwise / pooling: one step per output pixel in row-major order; the pixel's output
 *     channels are computed into `stage` (Cout bytes) and stored together at the end of the step.
 *   pointwise conv (1x1, stride 1, no padding): one step per pixel; the kernel stages whichever
 *     of the input pixel (Cin) or output pixel (Cout) is smaller (vmcu_seg_pointwise_stage_bytes).
 *   fully connected: one step per output element (the accumulator is the only state).
 *   add: one step per element.
 * Each kernel computes exactly what its reference twin in kernels.h computes, bit for bit.
 *
 * When ring->trace is set, every read and write is reported, in execution order, as a range
 * relative to the operand's own base (VMCU_SEG_OUT / VMCU_SEG_IN0 / VMCU_SEG_IN1). The host's
 * offset solver and safety verifier use this; on the board the pointer is 0 and costs one
 * predictable branch per tile.
 */
#ifndef VMCU_SEGMENT_KERNELS_H
#define VMCU_SEGMENT_KERNELS_H

#include <stdint.h>

#include "vmcu/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Trace operands. VMCU_SEG_WORKSPACE: a range of the layer's workspace (offset from its start).
 * VMCU_SEG_CACHED: reported just before a VMCU_SEG_WORKSPACE access of the same length, it names
 * the bytes of a fused block's intermediate tensor (offset in it) that the access stores or
 * loads, so that a verifier can check that a cache never serves a byte it has overwritten. */
enum { VMCU_SEG_OUT = 0, VMCU_SEG_IN0 = 1, VMCU_SEG_IN1 = 2, VMCU_SEG_WORKSPACE = 3, VMCU_SEG_CACHED = 4 };

/* Largest kernel window (kh * kw) the conv / depthwise / fused kernels accept: 7x7. Their tap
 * table lives on the stack (12-20 bytes per tap on Cortex-M, about 1 KB at this bound); larger
 * windows run as staged layers on the host. Pooling has no such bound. */
enum { VMCU_SEG_MAX_TAPS = 49 };

typedef void (*vmcu_ring_trace_fn)(void* ctx, int32_t operand, int32_t offset, int32_t length, int32_t is_write);

typedef struct {
  int8_t* data; /* cap bytes */
  int32_t cap;
  vmcu_ring_trace_fn trace; /* may be 0 */
  void* trace_ctx;
} vmcu_ring;

/* Ring position of byte `rel` (0 <= rel < cap) of a tensor based at `base` (0 <= base < cap). */
static inline int32_t vmcu_ring_pos(const vmcu_ring* r, int32_t base, int32_t rel) {
  int32_t p = base + rel;
  if (p >= r->cap) p -= r->cap;
  return p;
}

/* Copies between the ring and plain memory; length <= cap. */
void vmcu_ring_read(const vmcu_ring* r, int32_t base, int32_t rel, int32_t length, int8_t* dst);
void vmcu_ring_write(const vmcu_ring* r, int32_t base, int32_t rel, int32_t length, const int8_t* src);

/* Moves the `length` bytes based at `from` so that they are based at `to` (both ring offsets,
 * 0 <= from, to < cap, length <= cap), where the source and the destination may overlap and
 * either may wrap. Every other byte of the ring is garbage afterwards: it is meant for the one
 * tensor live between two regions of a plan. In place (no buffer): a copy in the order the
 * overlap allows (length bytes, one memmove per run in which neither side wraps), or where the tensor overlaps itself
 * both ways (length > k and length + k > cap, k = (to - from) mod cap) the whole ring rotated by k with three
 * reversals, 2 * cap byte swaps at most. */
void vmcu_ring_relocate(const vmcu_ring* r, int32_t from, int32_t to, int32_t length);

/* CONV_2D (any kernel, stride, padding, dilation). stage: out_shape.c bytes. Returns 0, or -1 if
 * the window has more than VMCU_SEG_MAX_TAPS taps. */
int vmcu_seg_conv2d_s8(const vmcu_conv_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 in_shape,
                       vmcu_shape4 filter_shape, const int8_t* filter, const int32_t* bias, int32_t out_base,
                       vmcu_shape4 out_shape, int8_t* stage);

/* Pointwise CONV_2D: 1x1 filter, stride 1, no padding. stage: vmcu_seg_pointwise_stage_bytes. */
int32_t vmcu_seg_pointwise_stage_bytes(int32_t in_c, int32_t out_c);
void vmcu_seg_pointwise_conv_s8(const vmcu_conv_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 in_shape,
                                const int8_t* filter, const int32_t* bias, int32_t out_base, vmcu_shape4 out_shape,
                                int8_t* stage);

/* DEPTHWISE_CONV_2D. stage: out_shape.c bytes. Returns 0, or -1 as vmcu_seg_conv2d_s8. */
int vmcu_seg_depthwise_conv2d_s8(const vmcu_conv_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 in_shape,
                                 vmcu_shape4 filter_shape, const int8_t* filter, const int32_t* bias, int32_t out_base,
                                 vmcu_shape4 out_shape, int8_t* stage);

/* FULLY_CONNECTED: in [batches][in_depth] -> out [batches][out_depth]. */
void vmcu_seg_fully_connected_s8(const vmcu_fc_params* p, const vmcu_ring* r, int32_t in_base, int32_t batches,
                                 int32_t in_depth, int32_t out_depth, const int8_t* weights, const int32_t* bias,
                                 int32_t out_base);

/* ADD of two same-sized tensors (either may be the output's own storage: steps are elements). */
void vmcu_seg_add_s8(const vmcu_add_params* p, const vmcu_ring* r, int32_t a_base, int32_t b_base, int32_t size,
                     int32_t out_base);

/* AVERAGE_POOL_2D / MAX_POOL_2D, any window size. workspace: vmcu_seg_pool_workspace_bytes
 * (an int32 accumulator and a staged output byte per channel), int32-aligned. Average returns -1
 * when a window holds no input element (as the reference), else 0. */
int32_t vmcu_seg_pool_workspace_bytes(int32_t channels);
int vmcu_seg_average_pool_s8(const vmcu_pool_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 in_shape,
                             int32_t out_base, vmcu_shape4 out_shape, int32_t* workspace);
int vmcu_seg_max_pool_s8(const vmcu_pool_params* p, const vmcu_ring* r, int32_t in_base, vmcu_shape4 in_shape,
                         int32_t out_base, vmcu_shape4 out_shape, int32_t* workspace);

/* Byte-for-byte copy (RESHAPE when the output is not laid over its input). Steps are bytes in
 * ascending order, so an output at or below its input (in ring order) is safe. */
void vmcu_seg_copy(const vmcu_ring* r, int32_t in_base, int32_t size, int32_t out_base);

#ifdef __cplusplus
}
#endif

#endif /* VMCU_SEGMENT_KERNELS_H */
