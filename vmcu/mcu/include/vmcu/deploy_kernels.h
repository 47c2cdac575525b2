/* vmcu/deploy_kernels.h: the kernels a generated model library needs beyond kernels.h and the
 * segment kernels (freestanding C, same rules: no heap, only <stdint.h> and <string.h>).
 *
 *   // a float32 graph input quantized inside the ring, element by element:
 *   vmcu_seg_quantize_f32_s8(&ring, in_base, count, scale, zero_point, out_base);
 *   // TinyEngine's in-place depthwise conv: the output overwrites its input, one channel at a time:
 *   vmcu_depthwise_conv2d_inplace_s8(&p, in_shape, data, filter_shape, filter, bias, out_shape, channel);
 *
 * Each computes exactly what its reference twin computes, bit for bit:
 *   vmcu_seg_quantize_f32_s8          <-> vmcu_quantize_f32_s8 on the unwrapped tensor;
 *   vmcu_depthwise_conv2d_inplace_s8  <-> vmcu_depthwise_conv2d_s8 with separate buffers;
 *   vmcu_quantize_f32_bytes_s8 /
 *   vmcu_dequantize_s8_f32_bytes      <-> vmcu_quantize_f32_s8 / vmcu_dequantize_s8_f32 on float
 *                                         data at any byte offset (a planner that packs buffers
 *                                         without alignment may place a float tensor there; a
 *                                         Cortex-M faults on unaligned floating-point loads).
 */
#ifndef VMCU_DEPLOY_KERNELS_H
#define VMCU_DEPLOY_KERNELS_H

#include <stdint.h>

#include "vmcu/kernels.h"
#include "vmcu/segment_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* QUANTIZE float32 -> int8 in a ring: `count` floats at in_base, `count` bytes to out_base. One
 * step per element (read 4 bytes, write 1), so the output may cover the input at distance
 * 3 * count (the planner's solved distance). Reports accesses to r->trace like the segment kernels. */
void vmcu_seg_quantize_f32_s8(const vmcu_ring* r, int32_t in_base, int32_t count, float scale, int32_t zero_point,
                              int32_t out_base);

/* DEPTHWISE_CONV_2D with depth multiplier 1 computed in place: `data` holds the input
 * (in_shape) and receives the output (out_shape, out_shape.c == in_shape.c, no more elements
 * than the input). Per batch and channel, the input channel is copied to `channel`
 * (in_shape.h * in_shape.w bytes) and the output channel is computed from it; output channel c
 * only overwrites bytes of input channel c, which are already copied. Returns 0, or -1 when the
 * shapes do not allow it (then nothing is written). */
int vmcu_depthwise_conv2d_inplace_s8(const vmcu_conv_params* p, vmcu_shape4 in_shape, int8_t* data,
                                     vmcu_shape4 filter_shape, const int8_t* filter, const int32_t* bias,
                                     vmcu_shape4 out_shape, int8_t* channel);

/* QUANTIZE / DEQUANTIZE with the float side given as bytes at any alignment. */
void vmcu_quantize_f32_bytes_s8(int32_t size, const uint8_t* in, float scale, int32_t zero_point, int8_t* out);
void vmcu_dequantize_s8_f32_bytes(int32_t size, const int8_t* in, float scale, int32_t zero_point, uint8_t* out);

#ifdef __cplusplus
}
#endif

#endif /* VMCU_DEPLOY_KERNELS_H */
