/* Kernels of generated model libraries (see deploy_kernels.h for the contract). */
#include "vmcu/deploy_kernels.h"

#include <string.h>

#include "vmcu/arith.h"

void vmcu_seg_quantize_f32_s8(const vmcu_ring* r, int32_t in_base, int32_t count, float scale, int32_t zero_point,
                              int32_t out_base) {
  for (int32_t i = 0; i < count; ++i) {
    int8_t raw[4];
    float x;
    int8_t q;
    if (r->trace) r->trace(r->trace_ctx, VMCU_SEG_IN0, 4 * i, 4, 0);
    vmcu_ring_read(r, in_base, 4 * i, 4, raw);
    memcpy(&x, raw, 4);
    vmcu_quantize_f32_s8(1, &x, scale, zero_point, &q);
    if (r->trace) r->trace(r->trace_ctx, VMCU_SEG_OUT, i, 1, 1);
    vmcu_ring_write(r, out_base, i, 1, &q);
  }
}

int vmcu_depthwise_conv2d_inplace_s8(const vmcu_conv_params* p, vmcu_shape4 is, int8_t* data, vmcu_shape4 fs,
                                     const int8_t* filter, const int32_t* bias, vmcu_shape4 os, int8_t* channel) {
  const int32_t plane = is.h * is.w;
  if (p->depth_multiplier != 1 || os.c != is.c || os.n != is.n || os.h * os.w > plane) return -1;
  for (int32_t b = 0; b < is.n; ++b) {
    int8_t* batch = data + b * plane * is.c; /* input and output batches start at the same byte */
    for (int32_t c = 0; c < is.c; ++c) {
      for (int32_t i = 0; i < plane; ++i) channel[i] = batch[i * is.c + c];
      for (int32_t oy = 0; oy < os.h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        for (int32_t ox = 0; ox < os.w; ++ox) {
          const int32_t x0 = ox * p->stride_w - p->pad_w;
          int32_t acc = 0;
          for (int32_t ky = 0; ky < fs.h; ++ky) {
            const int32_t iy = y0 + p->dilation_h * ky;
            if (iy < 0 || iy >= is.h) continue;
            for (int32_t kx = 0; kx < fs.w; ++kx) {
              const int32_t ix = x0 + p->dilation_w * kx;
              if (ix < 0 || ix >= is.w) continue;
              acc +=
                  ((int32_t)channel[iy * is.w + ix] + p->input_offset) * (int32_t)filter[(ky * fs.w + kx) * fs.c + c];
            }
          }
          /* Two's-complement wrap, as the reference twin (a corrupt bias must not be UB). */
          if (bias) acc = (int32_t)((uint32_t)acc + (uint32_t)bias[c]);
          acc = vmcu_multiply_by_quantized_multiplier(acc, p->output_multiplier[c], (int)p->output_shift[c]);
          batch[(oy * os.w + ox) * os.c + c] = vmcu_clamp_s8(acc + p->output_offset, p->act_min, p->act_max);
        }
      }
    }
  }
  return 0;
}

void vmcu_quantize_f32_bytes_s8(int32_t size, const uint8_t* in, float scale, int32_t zero_point, int8_t* out) {
  for (int32_t i = 0; i < size; ++i) {
    float x;
    memcpy(&x, in + 4 * i, 4);
    vmcu_quantize_f32_s8(1, &x, scale, zero_point, out + i);
  }
}

void vmcu_dequantize_s8_f32_bytes(int32_t size, const int8_t* in, float scale, int32_t zero_point, uint8_t* out) {
  for (int32_t i = 0; i < size; ++i) {
    float x;
    vmcu_dequantize_s8_f32(1, in + i, scale, zero_point, &x);
    memcpy(out + 4 * i, &x, 4);
  }
}
