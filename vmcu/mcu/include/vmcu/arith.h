/* vmcu/arith.h: TFLite's int8 fixed-point arithmetic, bit for bit, in freestanding C.
 *
 *   int32_t acc = ...;                                     // int32 dot product + bias
 *   acc = vmcu_multiply_by_quantized_multiplier(acc, multiplier, shift);
 *   acc += output_zero_point;
 *   out = vmcu_clamp_s8(acc, act_min, act_max);
 *
 * A real-valued rescale factor M (e.g. input_scale * weight_scale / output_scale) is stored as a
 * Q0.31 `multiplier` in [2^30, 2^31) and a power-of-two `shift` (M = multiplier * 2^(shift-31)).
 * The host computes them once (see perfmem/vmcu/quantization.h); kernels only ever see the
 * integers, so the same code runs on Cortex-M and on the host with identical results.
 *
 * Invariants: every function is total over its documented domain (no UB for any int32 input),
 * uses no heap and no libc; only <stdint.h>.
 */
#ifndef VMCU_ARITH_H
#define VMCU_ARITH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* (a * b * 2) / 2^32 rounded to nearest, ties toward +infinity (the nudge is +2^30 for a
 * non-negative product, 1 - 2^30 otherwise, then division truncates), saturating the overflow case
 * a == b == INT32_MIN (gemmlowp's SaturatingRoundingDoublingHighMul). */
static inline int32_t vmcu_sat_rounding_doubling_high_mul(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  int64_t ab = (int64_t)a * (int64_t)b;
  int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
  return (int32_t)((ab + nudge) / (1LL << 31));
}

/* x / 2^exponent rounded to nearest, ties away from zero; 0 <= exponent <= 31. */
static inline int32_t vmcu_rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)((1LL << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite's MultiplyByQuantizedMultiplier (double rounding: left shift, high mul, right shift).
 * shift > 0 multiplies by 2^shift first (multipliers >= 1), shift < 0 divides afterwards. */
static inline int32_t vmcu_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int shift) {
  const int left_shift = shift > 0 ? shift : 0;
  const int right_shift = shift > 0 ? 0 : -shift;
  /* Left shift in unsigned arithmetic: TFLite's x * (1 << s) wraps the same way. */
  const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
  return vmcu_rounding_divide_by_pot(vmcu_sat_rounding_doubling_high_mul(shifted, multiplier), right_shift);
}

static inline int32_t vmcu_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t vmcu_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }

/* Clamps to [lo, hi] (the fused activation range, itself inside [-128, 127]). */
static inline int8_t vmcu_clamp_s8(int32_t v, int32_t lo, int32_t hi) {
  return (int8_t)vmcu_min_i32(vmcu_max_i32(v, lo), hi);
}

/* Fixed-point helpers of TFLite's integer softmax (gemmlowp semantics, int32 raw values). */

/* x * 2^exponent with saturation (exponent > 0) or rounding division (exponent < 0). */
int32_t vmcu_saturating_rounding_mul_by_pot(int32_t x, int exponent);
/* exp(a) for a <= 0, a in Q(integer_bits).(31-integer_bits); result in Q0.31. */
int32_t vmcu_exp_on_negative_values(int32_t a, int integer_bits);
/* 1 / (1 + x) for x in [0, 1), x and result in Q0.31. */
int32_t vmcu_one_over_one_plus_x_for_x_in_0_1(int32_t x);
/* TFLite's GetReciprocal: reciprocal of x (Q(x_integer_digits)) as Q0.31 plus the number of
 * bits the true value lies above 1 (written to *num_bits_over_unit). x > 0. */
int32_t vmcu_get_reciprocal(int32_t x, int x_integer_digits, int* num_bits_over_unit);

/* round(x) half away from zero, as std::round on a float, saturated to the int32 range. */
int32_t vmcu_round_float_to_i32(float x);

#ifdef __cplusplus
}
#endif

#endif /* VMCU_ARITH_H */
