/* Fixed-point math behind TFLite's int8 softmax. Raw int32 values; the Q format of each value
 * is written beside it. Products of Qa and Qb values are Q(a+b) via the doubling high mul. */
#include "vmcu/arith.h"

static int32_t fx_mul(int32_t a, int32_t b) { return vmcu_sat_rounding_doubling_high_mul(a, b); }

int32_t vmcu_saturating_rounding_mul_by_pot(int32_t x, int exponent) {
  if (exponent > 0) {
    const int32_t threshold = (int32_t)((1LL << (31 - exponent)) - 1);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((uint32_t)x << exponent);
  }
  if (exponent < 0) return vmcu_rounding_divide_by_pot(x, -exponent);
  return x;
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: Taylor series around -1/8. */
static int32_t exp_on_interval_minus_quarter_to_zero(int32_t a) {
  const int32_t exp_minus_one_eighth = 1895147668;
  const int32_t one_third = 715827883;
  const int32_t x = a + (1 << 28); /* a + 1/8 */
  const int32_t x2 = fx_mul(x, x);
  const int32_t x3 = fx_mul(x2, x);
  const int32_t x4 = fx_mul(x2, x2);
  const int32_t x4_over_4 = vmcu_saturating_rounding_mul_by_pot(x4, -2);
  const int32_t poly = vmcu_saturating_rounding_mul_by_pot(fx_mul(x4_over_4 + x3, one_third) + x2, -1);
  return exp_minus_one_eighth + fx_mul(exp_minus_one_eighth, x + poly);
}

int32_t vmcu_exp_on_negative_values(int32_t a, int integer_bits) {
  const int fractional_bits = 31 - integer_bits;
  const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_quarter = (a & mask) - one_quarter;
  int32_t result = exp_on_interval_minus_quarter_to_zero(
      vmcu_saturating_rounding_mul_by_pot(a_mod_quarter_minus_quarter, integer_bits));
  const int32_t remainder = a_mod_quarter_minus_quarter - a;
  /* exp(-2^k) for k = -2..4 in Q0.31: multiply in each power of two present in -a. */
  static const int32_t kMultipliers[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
  for (int k = -2; k <= 4; ++k) {
    if (integer_bits > k) {
      const int shift = fractional_bits + k;
      if (remainder & (int32_t)(1u << shift)) result = fx_mul(result, kMultipliers[k + 2]);
    }
  }
  if (integer_bits > 5) {
    const int32_t clamp = -((int32_t)1 << (36 - integer_bits)); /* -32.0 */
    if (a < clamp) result = 0;
  }
  if (a == 0) result = INT32_MAX; /* One() in Q0.31 */
  return result;
}

static int32_t rounding_half_sum(int32_t a, int32_t b) {
  const int64_t sum = (int64_t)a + (int64_t)b;
  const int64_t sign = sum >= 0 ? 1 : -1;
  return (int32_t)((sum + sign) / 2);
}

int32_t vmcu_one_over_one_plus_x_for_x_in_0_1(int32_t a) {
  /* Newton-Raphson on the half denominator (1 + a) / 2, iterates in Q2.29. */
  const int32_t half_denominator = rounding_half_sum(a, INT32_MAX); /* Q0.31 */
  const int32_t c48_over_17 = 1515870810;                           /* Q2.29 */
  const int32_t cneg32_over_17 = -1010580540;                       /* Q2.29 */
  int32_t x = c48_over_17 + fx_mul(half_denominator, cneg32_over_17);
  const int32_t one_q2 = (int32_t)1 << 29;
  for (int i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = fx_mul(half_denominator, x); /* Q2 */
    const int32_t one_minus = one_q2 - half_denominator_times_x;          /* Q2 */
    x = x + vmcu_saturating_rounding_mul_by_pot(fx_mul(x, one_minus), 2); /* Q4->Q2 */
  }
  /* x / 2 as Q1.30 (same raw), then rescaled to Q0.31. */
  return vmcu_saturating_rounding_mul_by_pot(x, 1);
}

static int count_leading_zeros_u32(uint32_t x) {
  if (x == 0) return 32;
  int n = 0;
  while (!(x & 0x80000000u)) {
    x <<= 1;
    ++n;
  }
  return n;
}

int32_t vmcu_get_reciprocal(int32_t x, int x_integer_digits, int* num_bits_over_unit) {
  const int headroom_plus_one = count_leading_zeros_u32((uint32_t)x);
  *num_bits_over_unit = x_integer_digits - headroom_plus_one;
  const int32_t shifted_sum_minus_one = (int32_t)(((uint32_t)x << headroom_plus_one) - ((uint32_t)1 << 31));
  return vmcu_one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
}

int32_t vmcu_round_float_to_i32(float x) {
  if (!(x == x)) return 0; /* NaN */
  if (x >= 2147483520.0f) return INT32_MAX;
  if (x <= -2147483648.0f) return INT32_MIN;
  const float ax = x < 0 ? -x : x;
  int32_t i = (int32_t)ax; /* truncation; exact for |x| < 2^31 */
  if (ax - (float)i >= 0.5f) ++i;
  return x < 0 ? -i : i;
}
