/* vmcu/kernels.h: reference int8 kernels with TFLite's exact arithmetic (freestanding C).
 *
 *   vmcu_conv_params p = {0};
 *   p.stride_h = p.stride_w = 1; p.dilation_h = p.dilation_w = 1;
 *   p.pad_h = p.pad_w = 1;                       // SAME 3x3: pad before = total / 2
 *   p.input_offset = -input_zero_point;  p.output_offset = output_zero_point;
 *   p.act_min = -128; p.act_max = 127;           // or the fused ReLU/ReLU6 clamp
 *   p.output_multiplier = mult; p.output_shift = shift;   // one per output channel
 *   vmcu_conv2d_s8(&p, in_shape, in, filter_shape, filter, bias, out_shape, out);
 *
 * Layouts follow TFLite: activations NHWC; conv filters OHWI; depthwise filters 1HW(C*M);
 * fully-connected weights [out_depth][in_depth]. Biases are int32 with scale in*weight scale.
 * Every kernel is a plain loop nest over output elements: it is the "twin" that optimised and
 * segment-level kernels are compared against, bit for bit. No heap, no libc except string.h;
 * callers own all buffers. Inputs and outputs must not alias unless a kernel says so.
 */
#ifndef VMCU_KERNELS_H
#define VMCU_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A 4-D NHWC shape (rank < 4 tensors are padded with leading 1s). */
typedef struct {
  int32_t n, h, w, c;
} vmcu_shape4;

static inline int32_t vmcu_shape4_size(vmcu_shape4 s) { return s.n * s.h * s.w * s.c; }

/* Convolution and depthwise convolution. pad_h/pad_w are the padding *before* the first row /
 * column (TFLite's ComputePadding); the padding after is implied by the output size. */
typedef struct {
  int32_t stride_h, stride_w;
  int32_t dilation_h, dilation_w;
  int32_t pad_h, pad_w;
  int32_t depth_multiplier;         /* depthwise only: output channels per input channel */
  int32_t input_offset;             /* -input zero point */
  int32_t output_offset;            /* +output zero point */
  int32_t act_min, act_max;         /* fused activation clamp, within [-128, 127] */
  const int32_t* output_multiplier; /* per output channel (repeat for per-tensor weights) */
  const int32_t* output_shift;      /* per output channel */
} vmcu_conv_params;

/* CONV_2D: filter_shape = {out_c, kh, kw, in_c}; bias may be NULL. */
void vmcu_conv2d_s8(const vmcu_conv_params* p, vmcu_shape4 in_shape, const int8_t* in, vmcu_shape4 filter_shape,
                    const int8_t* filter, const int32_t* bias, vmcu_shape4 out_shape, int8_t* out);

/* DEPTHWISE_CONV_2D: filter_shape = {1, kh, kw, in_c * depth_multiplier}; output channel
 * ic * depth_multiplier + m reads input channel ic. bias may be NULL. */
void vmcu_depthwise_conv2d_s8(const vmcu_conv_params* p, vmcu_shape4 in_shape, const int8_t* in,
                              vmcu_shape4 filter_shape, const int8_t* filter, const int32_t* bias,
                              vmcu_shape4 out_shape, int8_t* out);

typedef struct {
  int32_t input_offset, filter_offset, output_offset;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
} vmcu_fc_params;

/* FULLY_CONNECTED: out[b][o] = sum_i (in[b][i] + in_off) * (w[o][i] + w_off) + bias[o],
 * requantized. bias may be NULL. */
void vmcu_fully_connected_s8(const vmcu_fc_params* p, int32_t batches, int32_t in_depth, int32_t out_depth,
                             const int8_t* in, const int8_t* weights, const int32_t* bias, int8_t* out);

/* ADD of two same-shaped tensors: both inputs rescaled to a common 2^left_shift-scaled domain,
 * summed, rescaled to the output (TFLite's int8 ADD). out may alias a or b (elementwise). */
typedef struct {
  int32_t input1_offset, input2_offset, output_offset;
  int32_t left_shift;
  int32_t input1_multiplier, input1_shift;
  int32_t input2_multiplier, input2_shift;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
} vmcu_add_params;

void vmcu_add_s8(const vmcu_add_params* p, int32_t size, const int8_t* a, const int8_t* b, int8_t* out);

typedef struct {
  int32_t stride_h, stride_w;
  int32_t filter_h, filter_w;
  int32_t pad_h, pad_w;
  int32_t act_min, act_max;
} vmcu_pool_params;

/* AVERAGE_POOL_2D: mean of the in-bounds window, rounded half away from zero.
 * Returns 0, or -1 when some window holds no input element (TFLite rejects that too). */
int vmcu_average_pool_s8(const vmcu_pool_params* p, vmcu_shape4 in_shape, const int8_t* in, vmcu_shape4 out_shape,
                         int8_t* out);
/* MAX_POOL_2D over the in-bounds window. */
void vmcu_max_pool_s8(const vmcu_pool_params* p, vmcu_shape4 in_shape, const int8_t* in, vmcu_shape4 out_shape,
                      int8_t* out);

/* MEAN over the axes flagged in axis_mask (bit d = dimension d of in_shape as n,h,w,c), as
 * TFLite's integer QuantizedMeanOrSum (its only int8 MEAN path in 2.14, keep_dims or not): raw int8 values summed in
 * int32, minus input_zero_point * count, rescaled by multiplier/shift, plus output_zero_point, clamped. The division by
 * the element count is folded into multiplier/shift by the host (perfmem::vmcu::mean_multiplier). scratch: one int32
 * per output element. */
void vmcu_mean_s8(vmcu_shape4 in_shape, const int8_t* in, uint32_t axis_mask, int32_t* scratch,
                  int32_t input_zero_point, int32_t multiplier, int32_t shift, int32_t output_zero_point, int8_t* out);

/* SOFTMAX along the last dimension (rows x depth), TFLite's integer algorithm. The parameters
 * come from the input scale and beta (see vmcu_softmax_params in the host library); the output
 * has scale 1/256 and zero point -128. */
typedef struct {
  int32_t input_multiplier;
  int32_t input_left_shift;
  int32_t diff_min;
} vmcu_softmax_params;

void vmcu_softmax_s8(const vmcu_softmax_params* p, int32_t rows, int32_t depth, const int8_t* in, int8_t* out);

/* QUANTIZE float32 -> int8: round(x / scale) + zero_point, clamped (float division). */
void vmcu_quantize_f32_s8(int32_t size, const float* in, float scale, int32_t zero_point, int8_t* out);
/* QUANTIZE int8 -> int8 (requantize): multiplier/shift from in_scale / out_scale. */
void vmcu_requantize_s8(int32_t size, const int8_t* in, int32_t input_zero_point, int32_t multiplier, int32_t shift,
                        int32_t output_zero_point, int8_t* out);
/* DEQUANTIZE int8 -> float32: (float)((double)scale * (q - zero_point)). */
void vmcu_dequantize_s8_f32(int32_t size, const int8_t* in, float scale, int32_t zero_point, float* out);

/* PAD with a constant: pad_before/pad_after per dimension (n, h, w, c). */
void vmcu_pad_s8(vmcu_shape4 in_shape, const int8_t* in, const int32_t pad_before[4], const int32_t pad_after[4],
                 int8_t value, int8_t* out);

/* TRANSPOSE: out dimension d is input dimension perm[d] (rank 4, shapes padded with 1s). */
void vmcu_transpose_s8(vmcu_shape4 in_shape, const int8_t* in, const int32_t perm[4], int8_t* out);

#ifdef __cplusplus
}
#endif

#endif /* VMCU_KERNELS_H */
