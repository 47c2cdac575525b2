// Reference kernels against hand-computed values and an independent double-precision model of
// TFLite's requantization (exact whenever the real result is not within 1e-6 of a rounding tie).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "perfmem/vmcu/quantization.h"
#include "vmcu/arith.h"
#include "vmcu/kernels.h"

namespace {
namespace vm = perfmem::vmcu;

TEST(VmcuArith, DoublingHighMulRoundsAndSaturates) {
  EXPECT_EQ(vmcu_sat_rounding_doubling_high_mul(INT32_MIN, INT32_MIN), INT32_MAX);
  EXPECT_EQ(vmcu_sat_rounding_doubling_high_mul(1 << 30, 1 << 30), 1 << 29);  // 0.5 * 0.5
  EXPECT_EQ(vmcu_sat_rounding_doubling_high_mul(3, 1 << 30), 2);              // 1.5 -> 2
  EXPECT_EQ(vmcu_sat_rounding_doubling_high_mul(-3, 1 << 30), -1);            // -1.5 -> -1 (gemmlowp)
  EXPECT_EQ(vmcu_sat_rounding_doubling_high_mul(-5, 1 << 30), -2);            // -2.5 -> -2
  EXPECT_EQ(vmcu_sat_rounding_doubling_high_mul(INT32_MAX, INT32_MAX), INT32_MAX - 1);
}

TEST(VmcuArith, RoundingDivideByPowerOfTwoTiesAwayFromZero) {
  EXPECT_EQ(vmcu_rounding_divide_by_pot(5, 1), 3);
  EXPECT_EQ(vmcu_rounding_divide_by_pot(-5, 1), -3);
  EXPECT_EQ(vmcu_rounding_divide_by_pot(7, 2), 2);
  EXPECT_EQ(vmcu_rounding_divide_by_pot(-7, 2), -2);
  EXPECT_EQ(vmcu_rounding_divide_by_pot(6, 2), 2);  // 1.5 -> 2
  EXPECT_EQ(vmcu_rounding_divide_by_pot(INT32_MIN, 31), -1);
  EXPECT_EQ(vmcu_rounding_divide_by_pot(123, 0), 123);
}

TEST(VmcuArith, QuantizeMultiplierMatchesTheRealValue) {
  for (double real : {1e-6, 0.0003, 0.25, 0.5, 0.75, 1.0, 1.9999, 3.5, 1234.5}) {
    const auto q = vm::quantize_multiplier(real);
    EXPECT_GE(q.multiplier, 1 << 30);
    EXPECT_NEAR(q.multiplier * std::ldexp(1.0, q.shift - 31), real, real * 1e-9);
    for (int32_t x : {1, -1, 3, 1000, -77777, 123456}) {
      const double exact = x * real;
      // Two roundings (high mul, then shift) can move a result that is near a tie by one.
      EXPECT_NEAR(vmcu_multiply_by_quantized_multiplier(x, q.multiplier, q.shift), exact, 1.0);
      if (std::abs(exact - std::floor(exact) - 0.5) < 1e-3 || std::abs(x) < 1000) continue;
      EXPECT_EQ(vmcu_multiply_by_quantized_multiplier(x, q.multiplier, q.shift), std::lround(exact))
          << "x=" << x << " real=" << real;
    }
  }
  EXPECT_EQ(vm::quantize_multiplier(0.0).multiplier, 0);
  EXPECT_EQ(vm::quantize_multiplier(1e-12).multiplier, 0);  // below 2^-31: TFLite flushes to 0
  // TFLite's double rounding, by hand: 0.25 = 2^30 * 2^-1 / 2^31; x = 1: high mul 0.5 -> 1,
  // then 1 / 2 -> 1 (ties away from zero), although 0.25 itself would round to 0.
  const auto quarter = vm::quantize_multiplier(0.25);
  EXPECT_EQ(quarter.multiplier, 1 << 30);
  EXPECT_EQ(quarter.shift, -1);
  EXPECT_EQ(vmcu_multiply_by_quantized_multiplier(1, quarter.multiplier, quarter.shift), 1);
}

TEST(VmcuArith, FloatRoundingIsHalfAwayFromZero) {
  EXPECT_EQ(vmcu_round_float_to_i32(2.5f), 3);
  EXPECT_EQ(vmcu_round_float_to_i32(-2.5f), -3);
  EXPECT_EQ(vmcu_round_float_to_i32(0.49999997f), 0);
  EXPECT_EQ(vmcu_round_float_to_i32(1e20f), INT32_MAX);
  EXPECT_EQ(vmcu_round_float_to_i32(-1e20f), INT32_MIN);
}

TEST(VmcuArith, ExpAndReciprocalAreAccurate) {
  for (double v : {-0.01, -0.3, -1.0, -2.5, -7.0, -20.0}) {
    const int32_t a = static_cast<int32_t>(std::lround(v * (1 << 26)));  // Q5.26
    const double got = vmcu_exp_on_negative_values(a, 5) / 2147483648.0;
    EXPECT_NEAR(got, std::exp(v), 2e-6) << v;
  }
  EXPECT_EQ(vmcu_exp_on_negative_values(0, 5), INT32_MAX);
  for (double x : {0.0, 0.3, 0.9}) {
    const double got = vmcu_one_over_one_plus_x_for_x_in_0_1(static_cast<int32_t>(x * 2147483647.0)) / 2147483648.0;
    EXPECT_NEAR(got, 1.0 / (1.0 + x), 1e-6) << x;
  }
}

// A conv problem with expected outputs from the real-valued formula.
struct ConvCase {
  vmcu_shape4 in, filter, out;
  std::vector<int8_t> input, weights;
  std::vector<int32_t> bias;
  float in_scale, out_scale;
  std::vector<float> w_scales;
  int32_t in_zp, out_zp;
  int stride, pad;
  bool depthwise;
  int mult;
};

std::vector<int8_t> expected_conv(const ConvCase& c) {
  std::vector<int8_t> out(vmcu_shape4_size(c.out));
  for (int32_t y = 0; y < c.out.h; ++y)
    for (int32_t x = 0; x < c.out.w; ++x)
      for (int32_t oc = 0; oc < c.out.c; ++oc) {
        int64_t acc = 0;
        for (int32_t ky = 0; ky < c.filter.h; ++ky)
          for (int32_t kx = 0; kx < c.filter.w; ++kx) {
            const int32_t iy = y * c.stride - c.pad + ky, ix = x * c.stride - c.pad + kx;
            if (iy < 0 || ix < 0 || iy >= c.in.h || ix >= c.in.w) continue;
            if (c.depthwise) {
              const int32_t ic = oc / c.mult;
              acc += (c.input[(iy * c.in.w + ix) * c.in.c + ic] - c.in_zp) *
                     c.weights[(ky * c.filter.w + kx) * c.filter.c + oc];
            } else {
              for (int32_t ic = 0; ic < c.in.c; ++ic)
                acc += (c.input[(iy * c.in.w + ix) * c.in.c + ic] - c.in_zp) *
                       c.weights[((oc * c.filter.h + ky) * c.filter.w + kx) * c.filter.c + ic];
            }
          }
        acc += c.bias[oc];
        const double real = static_cast<double>(acc) * c.in_scale * c.w_scales[oc] / c.out_scale;
        const double q = std::round(real) + c.out_zp;
        out[(y * c.out.w + x) * c.out.c + oc] = static_cast<int8_t>(std::clamp(q, -128.0, 127.0));
      }
  return out;
}

std::vector<int8_t> run_conv(const ConvCase& c) {
  std::vector<int32_t> mult, shift;
  for (float ws : c.w_scales) {
    auto q = vm::quantize_multiplier(static_cast<double>(c.in_scale) * ws / c.out_scale);
    mult.push_back(q.multiplier);
    shift.push_back(q.shift);
  }
  vmcu_conv_params p{};
  p.stride_h = p.stride_w = c.stride;
  p.dilation_h = p.dilation_w = 1;
  p.pad_h = p.pad_w = c.pad;
  p.depth_multiplier = c.mult;
  p.input_offset = -c.in_zp;
  p.output_offset = c.out_zp;
  p.act_min = -128;
  p.act_max = 127;
  p.output_multiplier = mult.data();
  p.output_shift = shift.data();
  std::vector<int8_t> out(vmcu_shape4_size(c.out));
  if (c.depthwise)
    vmcu_depthwise_conv2d_s8(&p, c.in, c.input.data(), c.filter, c.weights.data(), c.bias.data(), c.out, out.data());
  else
    vmcu_conv2d_s8(&p, c.in, c.input.data(), c.filter, c.weights.data(), c.bias.data(), c.out, out.data());
  return out;
}

std::vector<int8_t> pattern(int n, int seed) {
  std::vector<int8_t> v(n);
  uint32_t s = 2654435761u * (seed + 1);
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<int8_t>(static_cast<int>(s >> 24) - 128);
  }
  return v;
}

TEST(VmcuKernels, ConvHandComputed1x1) {
  // in (zp -128): [-128, -126] -> real offsets 0, 2; weights [3, -1]; bias 10; M = 0.5.
  ConvCase c{{1, 1, 1, 2},
             {1, 1, 1, 2},
             {1, 1, 1, 1},
             {-128, -126},
             {3, -1},
             {10},
             1.0f,
             1.0f,
             {0.5f},
             -128,
             127,
             1,
             0,
             false,
             1};
  auto out = run_conv(c);
  // acc = 0*3 + 2*(-1) + 10 = 8 -> 8*0.5 = 4 -> + 127 saturates to 127.
  EXPECT_EQ(out[0], 127);
  c.out_zp = 0;
  EXPECT_EQ(run_conv(c)[0], 4);
}

TEST(VmcuKernels, ConvSamePaddingOddSizeStride2PerChannelScales) {
  ConvCase c;
  c.in = {1, 7, 7, 3};
  c.filter = {4, 3, 3, 3};
  c.stride = 2;
  c.pad = 1;  // SAME: out 4, total pad (4-1)*2+3-7 = 2 -> 1 before
  const auto pd = vm::compute_padding(vm::Padding::kSame, 7, 3, 2, 1);
  EXPECT_EQ(pd.out, 4);
  EXPECT_EQ(pd.pad_before, 1);
  c.out = {1, 4, 4, 4};
  c.input = pattern(7 * 7 * 3, 1);
  c.weights = pattern(4 * 27, 2);
  for (auto& w : c.weights) w = static_cast<int8_t>(std::max<int>(w, -127));
  c.bias = {100, -2000, 0, 31};
  c.in_scale = 0.02f;
  c.out_scale = 0.05f;
  c.w_scales = {0.0001f, 0.01f, 0.1f, 0.003f};  // three orders of magnitude apart
  c.in_zp = 127;
  c.out_zp = -128;
  c.depthwise = false;
  c.mult = 1;
  EXPECT_EQ(run_conv(c), expected_conv(c));
  c.in_zp = -128;
  c.out_zp = 5;
  EXPECT_EQ(run_conv(c), expected_conv(c));
}

TEST(VmcuKernels, DepthwiseWithDepthMultiplier) {
  ConvCase c;
  c.in = {1, 5, 5, 2};
  c.filter = {1, 3, 3, 6};
  c.out = {1, 5, 5, 6};
  c.stride = 1;
  c.pad = 1;
  c.mult = 3;
  c.depthwise = true;
  c.input = pattern(50, 3);
  c.weights = pattern(54, 4);
  for (auto& w : c.weights) w = static_cast<int8_t>(std::max<int>(w, -127));
  c.bias = {1, 2, 3, -4, -5, 600};
  c.in_scale = 0.1f;
  c.out_scale = 0.5f;
  c.w_scales = {0.01f, 0.002f, 0.03f, 0.004f, 0.0005f, 0.006f};
  c.in_zp = 3;
  c.out_zp = -7;
  EXPECT_EQ(run_conv(c), expected_conv(c));
}

TEST(VmcuKernels, FullyConnectedBatchOfThreeAndSaturation) {
  const int batches = 3, in_depth = 4, out_depth = 2;
  std::vector<int8_t> in = {1, 2, 3, 4, -1, -2, -3, -4, 127, 127, 127, 127};
  std::vector<int8_t> w = {1, 1, 1, 1, 2, -1, 0, 1};
  std::vector<int32_t> bias = {0, 10};
  auto q = vm::quantize_multiplier(0.5);
  vmcu_fc_params p{0, 0, 0, q.multiplier, q.shift, -128, 127};
  std::vector<int8_t> out(batches * out_depth);
  vmcu_fully_connected_s8(&p, batches, in_depth, out_depth, in.data(), w.data(), bias.data(), out.data());
  // row0: 10 -> 5 ; 2-2+0+4+10 = 14 -> 7. row1: -10 -> -5 ; -14+20 = 6 -> 3.
  // row2: 508 -> 254 -> 127 (saturates) ; 254+10 = 264 -> 132 -> 127.
  EXPECT_EQ(out, (std::vector<int8_t>{5, 7, -5, 3, 127, 127}));
}

TEST(VmcuKernels, AddRescalesBothInputs) {
  vmcu_add_params p = vm::add_params(0.5f, 0, 0.25f, 10, 1.0f, -3, vm::Activation::kNone);
  std::vector<int8_t> a = {4, -4, 127}, b = {14, 6, 127}, out(3);
  vmcu_add_s8(&p, 3, a.data(), b.data(), out.data());
  // real a = 2, -2, 63.5; real b = 1, -1, 29.25 -> 3, -3, 92.75 -> q = 0, -6, 90 (93 - 3 = 90)
  EXPECT_EQ(out, (std::vector<int8_t>{0, -6, 90}));
  vmcu_add_params relu = vm::add_params(0.5f, 0, 0.25f, 10, 1.0f, -3, vm::Activation::kRelu);
  vmcu_add_s8(&relu, 3, a.data(), b.data(), out.data());
  EXPECT_EQ(out[1], -3);  // clamped at the zero point
}

TEST(VmcuKernels, PoolingRoundsAndSkipsPadding) {
  vmcu_pool_params p{2, 2, 2, 2, 0, 0, -128, 127};
  std::vector<int8_t> in = {1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6, 7, 8, 9, 10};  // 1x4x4x1
  std::vector<int8_t> out(4);
  ASSERT_EQ(vmcu_average_pool_s8(&p, {1, 4, 4, 1}, in.data(), {1, 2, 2, 1}, out.data()), 0);
  // windows: {1,2,5,6}=14/4=3.5->4 ; {3,4,-1,-2}=4/4=1 ; {-3,-4,7,8}=8/4=2 ; {-5,-6,9,10}=8/4=2
  EXPECT_EQ(out, (std::vector<int8_t>{4, 1, 2, 2}));
  vmcu_max_pool_s8(&p, {1, 4, 4, 1}, in.data(), {1, 2, 2, 1}, out.data());
  EXPECT_EQ(out, (std::vector<int8_t>{6, 4, 8, 10}));
  // 3x3 SAME on 1x1: only the centre is in bounds.
  vmcu_pool_params one{1, 1, 3, 3, 1, 1, -128, 127};
  int8_t x = -77, y = 0;
  ASSERT_EQ(vmcu_average_pool_s8(&one, {1, 1, 1, 1}, &x, {1, 1, 1, 1}, &y), 0);
  EXPECT_EQ(y, -77);
}

TEST(VmcuKernels, SoftmaxIsAProbabilityDistribution) {
  const auto p = vm::softmax_params(0.1f, 1.0f);
  std::vector<int8_t> in = {10, 10, -128, 127}, out(4);
  vmcu_softmax_s8(&p, 1, 4, in.data(), out.data());
  // exp(0)=1 for 127, exp(-11.7)≈8e-6 for 10s: nearly all mass on the last entry.
  EXPECT_EQ(out[3], 127);
  EXPECT_EQ(out[2], -128);
  std::vector<int8_t> flat = {5, 5, 5, 5}, o2(4);
  vmcu_softmax_s8(&p, 1, 4, flat.data(), o2.data());
  for (int8_t v : o2) EXPECT_EQ(v, -64);  // 0.25 * 256 - 128
}

// Equal inputs over 10, 512 and 1000 classes (input scale 1/32, beta 1). From 512 classes on
// the exponentials sum to 512 or more and TFLite's final division shifts by 32 or more; the
// expected bytes are what the TFLite 2.14 interpreter returns for the same rows (checked
// end to end by the conformance test's softmax cases).
TEST(VmcuKernels, SoftmaxOverManyClassesIsDefinedAndMatchesTflite) {
  const auto p = vm::softmax_params(1.0f / 32.0f, 1.0f);
  struct Case {
    int32_t classes;
    int8_t expected;
  };
  for (const Case c : {Case{10, -102}, Case{512, 127}, Case{1000, 127}}) {
    std::vector<int8_t> in(static_cast<size_t>(c.classes), 5), out(in.size(), 0);
    vmcu_softmax_s8(&p, 1, c.classes, in.data(), out.data());
    for (int8_t v : out) ASSERT_EQ(v, c.expected) << c.classes << " classes";
  }
}

TEST(VmcuKernels, QuantizeDequantizeMeanPadTranspose) {
  std::vector<float> f = {0.0f, 0.25f, -0.25f, 100.0f, 0.125f};
  std::vector<int8_t> q(5);
  vmcu_quantize_f32_s8(5, f.data(), 0.5f, -1, q.data());
  EXPECT_EQ(q, (std::vector<int8_t>{-1, 0, -2, 127, -1}));  // 0.5 rounds away from zero
  std::vector<float> back(5);
  vmcu_dequantize_s8_f32(5, q.data(), 0.5f, -1, back.data());
  EXPECT_FLOAT_EQ(back[2], -0.5f);
  std::vector<int8_t> m = {1, 2, 4, -1, -2, -4}, mo(2);  // 1x1x2x3, mean over c
  int32_t scratch[2];
  const auto mean_q = vm::mean_multiplier(1.0, 3);
  vmcu_mean_s8({1, 1, 2, 3}, m.data(), 1u << 3, scratch, 0, mean_q.multiplier, mean_q.shift, 0, mo.data());
  EXPECT_EQ(mo, (std::vector<int8_t>{2, -2}));            // 7/3 -> 2, -7/3 -> -2
  std::vector<int8_t> tin = {1, 2, 3, 4, 5, 6}, tout(6);  // 1x1x2x3 -> perm (0,1,3,2) -> 1x1x3x2
  const int32_t perm[4] = {0, 1, 3, 2};
  vmcu_transpose_s8({1, 1, 2, 3}, tin.data(), perm, tout.data());
  EXPECT_EQ(tout, (std::vector<int8_t>{1, 4, 2, 5, 3, 6}));
}

TEST(VmcuKernels, PadFillsWithTheValue) {
  std::vector<int8_t> in = {1, 2, 3, 4}, out(4 * 4);  // 1x2x2x1 padded by 1 on h and w
  const int32_t before[4] = {0, 1, 1, 0}, after[4] = {0, 1, 1, 0};
  vmcu_pad_s8({1, 2, 2, 1}, in.data(), before, after, -128, out.data());
  EXPECT_EQ(out,
            (std::vector<int8_t>{-128, -128, -128, -128, -128, 1, 2, -128, -128, 3, 4, -128, -128, -128, -128, -128}));
}

TEST(VmcuQuantization, ActivationRanges) {
  EXPECT_EQ(vm::activation_range(vm::Activation::kRelu6, 6.0f / 255, -128), (std::pair<int32_t, int32_t>{-128, 127}));
  EXPECT_EQ(vm::activation_range(vm::Activation::kRelu, 0.1f, 5), (std::pair<int32_t, int32_t>{5, 127}));
  EXPECT_EQ(vm::activation_range(vm::Activation::kRelu6, 0.1f, 0), (std::pair<int32_t, int32_t>{0, 60}));
  EXPECT_EQ(vm::activation_range(vm::Activation::kNone, 0.1f, 0), (std::pair<int32_t, int32_t>{-128, 127}));
}

}  // namespace
