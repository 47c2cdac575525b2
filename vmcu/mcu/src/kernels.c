/* Reference int8 kernels: direct loop nests mirroring TFLite's reference_integer_ops. */
#include "vmcu/kernels.h"

#include <string.h>

#include "vmcu/arith.h"

static inline int32_t idx4(vmcu_shape4 s, int32_t n, int32_t h, int32_t w, int32_t c) {
  return ((n * s.h + h) * s.w + w) * s.c + c;
}

/* Two's-complement wrap instead of undefined overflow: a corrupt bias must not be UB. Equal to
 * `a + b` whenever that does not overflow. */
static inline int32_t wrapping_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

static inline int8_t requantize_acc(int32_t acc, int32_t multiplier, int32_t shift, int32_t output_offset,
                                    int32_t act_min, int32_t act_max) {
  acc = vmcu_multiply_by_quantized_multiplier(acc, multiplier, (int)shift);
  return vmcu_clamp_s8(acc + output_offset, act_min, act_max);
}

void vmcu_conv2d_s8(const vmcu_conv_params* p, vmcu_shape4 is, const int8_t* in, vmcu_shape4 fs, const int8_t* filter,
                    const int32_t* bias, vmcu_shape4 os, int8_t* out) {
  for (int32_t b = 0; b < os.n; ++b) {
    for (int32_t oy = 0; oy < os.h; ++oy) {
      const int32_t in_y0 = oy * p->stride_h - p->pad_h;
      for (int32_t ox = 0; ox < os.w; ++ox) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        for (int32_t oc = 0; oc < os.c; ++oc) {
          int32_t acc = 0;
          for (int32_t ky = 0; ky < fs.h; ++ky) {
            const int32_t iy = in_y0 + p->dilation_h * ky;
            if (iy < 0 || iy >= is.h) continue;
            for (int32_t kx = 0; kx < fs.w; ++kx) {
              const int32_t ix = in_x0 + p->dilation_w * kx;
              if (ix < 0 || ix >= is.w) continue;
              const int8_t* ip = in + idx4(is, b, iy, ix, 0);
              const int8_t* fp = filter + idx4(fs, oc, ky, kx, 0);
              for (int32_t ic = 0; ic < is.c; ++ic) { acc += ((int32_t)ip[ic] + p->input_offset) * (int32_t)fp[ic]; }
            }
          }
          if (bias) acc = wrapping_add(acc, bias[oc]);
          out[idx4(os, b, oy, ox, oc)] = requantize_acc(acc, p->output_multiplier[oc], p->output_shift[oc],
                                                        p->output_offset, p->act_min, p->act_max);
        }
      }
    }
  }
}

void vmcu_depthwise_conv2d_s8(const vmcu_conv_params* p, vmcu_shape4 is, const int8_t* in, vmcu_shape4 fs,
                              const int8_t* filter, const int32_t* bias, vmcu_shape4 os, int8_t* out) {
  const int32_t mult = p->depth_multiplier;
  for (int32_t b = 0; b < os.n; ++b) {
    for (int32_t oy = 0; oy < os.h; ++oy) {
      const int32_t in_y0 = oy * p->stride_h - p->pad_h;
      for (int32_t ox = 0; ox < os.w; ++ox) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        for (int32_t ic = 0; ic < is.c; ++ic) {
          for (int32_t m = 0; m < mult; ++m) {
            const int32_t oc = ic * mult + m;
            int32_t acc = 0;
            for (int32_t ky = 0; ky < fs.h; ++ky) {
              const int32_t iy = in_y0 + p->dilation_h * ky;
              if (iy < 0 || iy >= is.h) continue;
              for (int32_t kx = 0; kx < fs.w; ++kx) {
                const int32_t ix = in_x0 + p->dilation_w * kx;
                if (ix < 0 || ix >= is.w) continue;
                acc +=
                    ((int32_t)in[idx4(is, b, iy, ix, ic)] + p->input_offset) * (int32_t)filter[idx4(fs, 0, ky, kx, oc)];
              }
            }
            if (bias) acc = wrapping_add(acc, bias[oc]);
            out[idx4(os, b, oy, ox, oc)] = requantize_acc(acc, p->output_multiplier[oc], p->output_shift[oc],
                                                          p->output_offset, p->act_min, p->act_max);
          }
        }
      }
    }
  }
}

void vmcu_fully_connected_s8(const vmcu_fc_params* p, int32_t batches, int32_t in_depth, int32_t out_depth,
                             const int8_t* in, const int8_t* weights, const int32_t* bias, int8_t* out) {
  for (int32_t b = 0; b < batches; ++b) {
    for (int32_t o = 0; o < out_depth; ++o) {
      int32_t acc = 0;
      const int8_t* row = in + b * in_depth;
      const int8_t* w = weights + o * in_depth;
      for (int32_t i = 0; i < in_depth; ++i) {
        acc += ((int32_t)row[i] + p->input_offset) * ((int32_t)w[i] + p->filter_offset);
      }
      if (bias) acc = wrapping_add(acc, bias[o]);
      out[b * out_depth + o] =
          requantize_acc(acc, p->output_multiplier, p->output_shift, p->output_offset, p->act_min, p->act_max);
    }
  }
}

void vmcu_add_s8(const vmcu_add_params* p, int32_t size, const int8_t* a, const int8_t* b, int8_t* out) {
  for (int32_t i = 0; i < size; ++i) {
    const int32_t shifted_a = (int32_t)((uint32_t)((int32_t)a[i] + p->input1_offset) << p->left_shift);
    const int32_t shifted_b = (int32_t)((uint32_t)((int32_t)b[i] + p->input2_offset) << p->left_shift);
    const int32_t scaled_a =
        vmcu_multiply_by_quantized_multiplier(shifted_a, p->input1_multiplier, (int)p->input1_shift);
    const int32_t scaled_b =
        vmcu_multiply_by_quantized_multiplier(shifted_b, p->input2_multiplier, (int)p->input2_shift);
    out[i] = requantize_acc(scaled_a + scaled_b, p->output_multiplier, p->output_shift, p->output_offset, p->act_min,
                            p->act_max);
  }
}

int vmcu_average_pool_s8(const vmcu_pool_params* p, vmcu_shape4 is, const int8_t* in, vmcu_shape4 os, int8_t* out) {
  for (int32_t b = 0; b < os.n; ++b) {
    for (int32_t oy = 0; oy < os.h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      const int32_t ky_start = vmcu_max_i32(0, -y0);
      const int32_t ky_end = vmcu_min_i32(p->filter_h, is.h - y0);
      for (int32_t ox = 0; ox < os.w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        const int32_t kx_start = vmcu_max_i32(0, -x0);
        const int32_t kx_end = vmcu_min_i32(p->filter_w, is.w - x0);
        for (int32_t c = 0; c < os.c; ++c) {
          int32_t acc = 0;
          int32_t count = 0;
          for (int32_t ky = ky_start; ky < ky_end; ++ky) {
            for (int32_t kx = kx_start; kx < kx_end; ++kx) {
              acc += in[idx4(is, b, y0 + ky, x0 + kx, c)];
              ++count;
            }
          }
          if (count == 0) return -1;
          acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
          out[idx4(os, b, oy, ox, c)] = vmcu_clamp_s8(acc, p->act_min, p->act_max);
        }
      }
    }
  }
  return 0;
}

void vmcu_max_pool_s8(const vmcu_pool_params* p, vmcu_shape4 is, const int8_t* in, vmcu_shape4 os, int8_t* out) {
  for (int32_t b = 0; b < os.n; ++b) {
    for (int32_t oy = 0; oy < os.h; ++oy) {
      const int32_t y0 = oy * p->stride_h - p->pad_h;
      const int32_t ky_start = vmcu_max_i32(0, -y0);
      const int32_t ky_end = vmcu_min_i32(p->filter_h, is.h - y0);
      for (int32_t ox = 0; ox < os.w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_w;
        const int32_t kx_start = vmcu_max_i32(0, -x0);
        const int32_t kx_end = vmcu_min_i32(p->filter_w, is.w - x0);
        for (int32_t c = 0; c < os.c; ++c) {
          int32_t best = -128;
          for (int32_t ky = ky_start; ky < ky_end; ++ky) {
            for (int32_t kx = kx_start; kx < kx_end; ++kx) {
              best = vmcu_max_i32(best, in[idx4(is, b, y0 + ky, x0 + kx, c)]);
            }
          }
          out[idx4(os, b, oy, ox, c)] = vmcu_clamp_s8(best, p->act_min, p->act_max);
        }
      }
    }
  }
}

void vmcu_mean_s8(vmcu_shape4 is, const int8_t* in, uint32_t axis_mask, int32_t* scratch, int32_t input_zero_point,
                  int32_t multiplier, int32_t shift, int32_t output_zero_point, int8_t* out) {
  const int32_t dims[4] = {is.n, is.h, is.w, is.c};
  int32_t kept[4];
  int32_t reduced_count = 1;
  int32_t out_count = 1;
  for (int d = 0; d < 4; ++d) {
    const int reduced = (axis_mask >> d) & 1u;
    kept[d] = reduced ? 1 : dims[d];
    if (reduced) reduced_count *= dims[d];
    out_count *= kept[d];
  }
  for (int32_t i = 0; i < out_count; ++i) scratch[i] = 0;
  for (int32_t n = 0; n < dims[0]; ++n)
    for (int32_t h = 0; h < dims[1]; ++h)
      for (int32_t w = 0; w < dims[2]; ++w)
        for (int32_t c = 0; c < dims[3]; ++c) {
          const int32_t on = kept[0] == 1 ? 0 : n, oh = kept[1] == 1 ? 0 : h;
          const int32_t ow = kept[2] == 1 ? 0 : w, oc = kept[3] == 1 ? 0 : c;
          scratch[((on * kept[1] + oh) * kept[2] + ow) * kept[3] + oc] +=
              in[((n * dims[1] + h) * dims[2] + w) * dims[3] + c];
        }
  if (reduced_count == 0) return;
  for (int32_t i = 0; i < out_count; ++i) {
    const int32_t shifted_sum = scratch[i] - input_zero_point * reduced_count;
    const int32_t v = vmcu_multiply_by_quantized_multiplier(shifted_sum, multiplier, (int)shift);
    out[i] = vmcu_clamp_s8(v + output_zero_point, -128, 127);
  }
}

/* The final division of TFLite's int8 softmax, x / 2^exponent. The exponent is
 * num_bits_over_unit + 23 and reaches 32..34 once the exponentials sum to 512 or more (>= 512
 * classes near the row maximum). TFLite's gemmlowp RoundingDivideByPOT then shifts an int32 by
 * 32 or more, undefined in C; the TFLite interpreter (x86) computes it with the mask cast to
 * int32 (all ones) and the shift count taken mod 32. That result is reproduced here with
 * defined arithmetic so the kernel stays bit-exact with TFLite on every target. */
static int32_t softmax_divide_by_pot(int32_t x, int exponent) {
  if (exponent < 32) return vmcu_rounding_divide_by_pot(x, exponent);
  const int32_t threshold = x < 0 ? 0 : -1; /* (all-ones mask >> 1) + (x < 0) */
  return (x >> (exponent - 32)) + (x > threshold ? 1 : 0);
}

void vmcu_softmax_s8(const vmcu_softmax_params* p, int32_t rows, int32_t depth, const int8_t* in, int8_t* out) {
  enum { kScaledDiffIntegerBits = 5, kAccumulationIntegerBits = 12 };
  for (int32_t r = 0; r < rows; ++r) {
    const int8_t* x = in + r * depth;
    int8_t* y = out + r * depth;
    int32_t max_in_row = -128;
    for (int32_t c = 0; c < depth; ++c) max_in_row = vmcu_max_i32(max_in_row, x[c]);
    int32_t sum_of_exps = 0; /* Q12.19 */
    for (int32_t c = 0; c < depth; ++c) {
      const int32_t diff = (int32_t)x[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t rescaled =
            vmcu_sat_rounding_doubling_high_mul((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
        const int32_t e = vmcu_exp_on_negative_values(rescaled, kScaledDiffIntegerBits);
        sum_of_exps = wrapping_add(sum_of_exps, vmcu_rounding_divide_by_pot(e, kAccumulationIntegerBits));
      }
    }
    int num_bits_over_unit = 0;
    const int32_t shifted_scale = vmcu_get_reciprocal(sum_of_exps, kAccumulationIntegerBits, &num_bits_over_unit);
    for (int32_t c = 0; c < depth; ++c) {
      const int32_t diff = (int32_t)x[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t rescaled =
            vmcu_sat_rounding_doubling_high_mul((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
        const int32_t e = vmcu_exp_on_negative_values(rescaled, kScaledDiffIntegerBits);
        const int32_t unsat =
            softmax_divide_by_pot(vmcu_sat_rounding_doubling_high_mul(shifted_scale, e), num_bits_over_unit + 31 - 8);
        y[c] = vmcu_clamp_s8(unsat - 128, -128, 127);
      } else {
        y[c] = -128;
      }
    }
  }
}

void vmcu_quantize_f32_s8(int32_t size, const float* in, float scale, int32_t zero_point, int8_t* out) {
  for (int32_t i = 0; i < size; ++i) {
    const int32_t q = vmcu_round_float_to_i32(in[i] / scale);
    /* Saturating add: q may be near the int32 limits for huge inputs. */
    const int64_t v = (int64_t)q + zero_point;
    out[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
  }
}

void vmcu_requantize_s8(int32_t size, const int8_t* in, int32_t input_zero_point, int32_t multiplier, int32_t shift,
                        int32_t output_zero_point, int8_t* out) {
  for (int32_t i = 0; i < size; ++i) {
    const int32_t v = vmcu_multiply_by_quantized_multiplier((int32_t)in[i] - input_zero_point, multiplier, (int)shift);
    out[i] = vmcu_clamp_s8(v + output_zero_point, -128, 127);
  }
}

void vmcu_dequantize_s8_f32(int32_t size, const int8_t* in, float scale, int32_t zero_point, float* out) {
  for (int32_t i = 0; i < size; ++i) { out[i] = (float)((double)scale * (double)((int32_t)in[i] - zero_point)); }
}

void vmcu_pad_s8(vmcu_shape4 is, const int8_t* in, const int32_t before[4], const int32_t after[4], int8_t value,
                 int8_t* out) {
  const vmcu_shape4 os = {is.n + before[0] + after[0], is.h + before[1] + after[1], is.w + before[2] + after[2],
                          is.c + before[3] + after[3]};
  memset(out, value, (size_t)vmcu_shape4_size(os));
  for (int32_t n = 0; n < is.n; ++n)
    for (int32_t h = 0; h < is.h; ++h)
      for (int32_t w = 0; w < is.w; ++w) {
        memcpy(out + idx4(os, n + before[0], h + before[1], w + before[2], before[3]), in + idx4(is, n, h, w, 0),
               (size_t)is.c);
      }
}

void vmcu_transpose_s8(vmcu_shape4 is, const int8_t* in, const int32_t perm[4], int8_t* out) {
  const int32_t dims[4] = {is.n, is.h, is.w, is.c};
  int32_t strides[4];
  strides[3] = 1;
  for (int d = 2; d >= 0; --d) strides[d] = strides[d + 1] * dims[d + 1];
  const int32_t od[4] = {dims[perm[0]], dims[perm[1]], dims[perm[2]], dims[perm[3]]};
  int32_t o = 0;
  for (int32_t a = 0; a < od[0]; ++a)
    for (int32_t b = 0; b < od[1]; ++b)
      for (int32_t c = 0; c < od[2]; ++c)
        for (int32_t d = 0; d < od[3]; ++d) {
          out[o++] = in[a * strides[perm[0]] + b * strides[perm[1]] + c * strides[perm[2]] + d * strides[perm[3]]];
        }
}
