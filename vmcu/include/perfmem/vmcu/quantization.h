// perfmem/vmcu/quantization.h: host-side preparation of TFLite's integer parameters.
//
//   auto [multiplier, shift] = perfmem::vmcu::quantize_multiplier(in_scale * w_scale / out_scale);
//   auto [lo, hi] = perfmem::vmcu::activation_range(Activation::kRelu6, out_scale, out_zp);
//
// These mirror TFLite's QuantizeMultiplier / CalculateActivationRangeQuantized /
// ComputePadding, including their float-vs-double choices, because a single differing bit in a
// multiplier breaks bit-exactness with the interpreter.
#pragma once

#include <cstdint>
#include <utility>

#include "perfmem/vmcu/model.h"
#include "vmcu/kernels.h"

namespace perfmem::vmcu {

struct QuantizedMultiplier {
  int32_t multiplier = 0;  // Q0.31 in [2^30, 2^31), or 0 for a zero real multiplier
  int shift = 0;           // real = multiplier * 2^(shift - 31)
};

QuantizedMultiplier quantize_multiplier(double real_multiplier);

// Clamp bounds of a fused activation for an int8 output with this scale and zero point.
std::pair<int32_t, int32_t> activation_range(Activation activation, float scale, int32_t zero_point);

// Output size and padding-before of one spatial dimension (TFLite's ComputePaddingHeightWidth).
struct PaddedDim {
  int32_t out = 0;
  int32_t pad_before = 0;
};
PaddedDim compute_padding(Padding padding, int32_t in, int32_t filter, int32_t stride, int32_t dilation);

// MEAN over `count` elements: the input/output rescale with the 1/count folded in, as TFLite's
// QuantizedMeanOrSum does (floor(log2 count) extra bits of precision, at most 32, and the
// resulting shift kept >= -31).
QuantizedMultiplier mean_multiplier(double input_over_output_scale, int64_t count);

// Softmax parameters from the input scale and beta (TFLite's PreprocessSoftmaxScaling with 5
// integer bits, and the matching diff_min).
vmcu_softmax_params softmax_params(float input_scale, float beta);

// ADD parameters (left shift 20, both inputs rescaled to twice the larger input scale).
vmcu_add_params add_params(float scale1, int32_t zp1, float scale2, int32_t zp2, float out_scale, int32_t out_zp,
                           Activation activation);

}  // namespace perfmem::vmcu
