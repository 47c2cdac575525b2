#include "perfmem/vmcu/quantization.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace perfmem::vmcu {

QuantizedMultiplier quantize_multiplier(double real) {
  QuantizedMultiplier q;
  if (real == 0.0 || !std::isfinite(real)) return q;
  int shift = 0;
  const double fraction = std::frexp(real, &shift);
  auto fixed = static_cast<int64_t>(std::round(fraction * static_cast<double>(int64_t{1} << 31)));
  if (fixed == (int64_t{1} << 31)) {
    fixed /= 2;
    ++shift;
  }
  if (shift < -31) {
    shift = 0;
    fixed = 0;
  }
  q.multiplier = static_cast<int32_t>(fixed);
  q.shift = shift;
  return q;
}

std::pair<int32_t, int32_t> activation_range(Activation activation, float scale, int32_t zero_point) {
  auto quantize = [&](float f) { return zero_point + static_cast<int32_t>(std::round(f / scale)); };
  int32_t lo = -128, hi = 127;
  switch (activation) {
    case Activation::kNone: break;
    case Activation::kRelu: lo = std::max(lo, quantize(0.0f)); break;
    case Activation::kRelu6:
      lo = std::max(lo, quantize(0.0f));
      hi = std::min(hi, quantize(6.0f));
      break;
    case Activation::kReluN1To1:
      lo = std::max(lo, quantize(-1.0f));
      hi = std::min(hi, quantize(1.0f));
      break;
  }
  return {lo, hi};
}

PaddedDim compute_padding(Padding padding, int32_t in, int32_t filter, int32_t stride, int32_t dilation) {
  PaddedDim d;
  const int32_t effective = (filter - 1) * dilation + 1;
  if (padding == Padding::kSame) {
    d.out = (in + stride - 1) / stride;
  } else {
    d.out = (in - effective + stride) / stride;
  }
  const int32_t total = std::max(0, (d.out - 1) * stride + effective - in);
  d.pad_before = total / 2;
  return d;
}

QuantizedMultiplier mean_multiplier(double input_over_output_scale, int64_t count) {
  QuantizedMultiplier q = quantize_multiplier(input_over_output_scale);
  if (count <= 0) return q;
  int extra = 0;
  while ((count >> (extra + 1)) > 0) ++extra;  // floor(log2(count))
  extra = std::min(extra, 32);
  extra = std::min(extra, 31 + q.shift);
  if (extra < 0) extra = 0;
  q.multiplier = static_cast<int32_t>((static_cast<int64_t>(q.multiplier) << extra) / count);
  q.shift -= extra;
  return q;
}

vmcu_softmax_params softmax_params(float input_scale, float beta) {
  constexpr int kScaledDiffIntegerBits = 5;
  const double real = std::min<double>(static_cast<double>(beta) * static_cast<double>(input_scale) *
                                           static_cast<double>(1 << (31 - kScaledDiffIntegerBits)),
                                       static_cast<double>((int64_t{1} << 31) - 1));
  const QuantizedMultiplier q = quantize_multiplier(real);
  vmcu_softmax_params p{};
  p.input_multiplier = q.multiplier;
  p.input_left_shift = q.shift;
  const double max_input_rescaled = 1.0 * ((1 << kScaledDiffIntegerBits) - 1) *
                                    static_cast<double>(int64_t{1} << (31 - kScaledDiffIntegerBits)) /
                                    static_cast<double>(int64_t{1} << q.shift);
  p.diff_min = -static_cast<int32_t>(std::floor(max_input_rescaled));
  return p;
}

vmcu_add_params add_params(float scale1, int32_t zp1, float scale2, int32_t zp2, float out_scale, int32_t out_zp,
                           Activation activation) {
  vmcu_add_params p{};
  p.input1_offset = -zp1;
  p.input2_offset = -zp2;
  p.output_offset = out_zp;
  p.left_shift = 20;
  const double twice_max = 2.0 * static_cast<double>(std::max(scale1, scale2));
  const QuantizedMultiplier m1 = quantize_multiplier(static_cast<double>(scale1) / twice_max);
  const QuantizedMultiplier m2 = quantize_multiplier(static_cast<double>(scale2) / twice_max);
  const QuantizedMultiplier mo =
      quantize_multiplier(twice_max / (static_cast<double>(1 << p.left_shift) * static_cast<double>(out_scale)));
  p.input1_multiplier = m1.multiplier;
  p.input1_shift = m1.shift;
  p.input2_multiplier = m2.multiplier;
  p.input2_shift = m2.shift;
  p.output_multiplier = mo.multiplier;
  p.output_shift = mo.shift;
  auto [lo, hi] = activation_range(activation, out_scale, out_zp);
  p.act_min = lo;
  p.act_max = hi;
  return p;
}

}  // namespace perfmem::vmcu
