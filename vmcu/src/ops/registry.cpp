#include "registry.h"

#include <cstddef>

namespace perfmem::vmcu::ops {

namespace {

// One row per OpKind, in enum order.
constexpr OpRegistration kRegistry[] = {
    {OpKind::kAdd, 0, "ADD", prepare_add, eval_add, lower_add},
    {OpKind::kAveragePool2D, 1, "AVERAGE_POOL_2D", prepare_pool2d, eval_average_pool2d, lower_pool2d},
    {OpKind::kConv2D, 3, "CONV_2D", prepare_conv2d, eval_conv2d, lower_conv2d},
    {OpKind::kDepthwiseConv2D, 4, "DEPTHWISE_CONV_2D", prepare_depthwise_conv2d, eval_depthwise_conv2d,
     lower_depthwise_conv2d},
    {OpKind::kDequantize, 6, "DEQUANTIZE", prepare_dequantize, eval_dequantize, nullptr},
    {OpKind::kFullyConnected, 9, "FULLY_CONNECTED", prepare_fully_connected, eval_fully_connected,
     lower_fully_connected},
    {OpKind::kMaxPool2D, 17, "MAX_POOL_2D", prepare_pool2d, eval_max_pool2d, lower_pool2d},
    {OpKind::kReshape, 22, "RESHAPE", prepare_reshape, eval_reshape, lower_reshape},
    {OpKind::kSoftmax, 25, "SOFTMAX", prepare_softmax, eval_softmax, nullptr},
    {OpKind::kPad, 34, "PAD", prepare_pad, eval_pad, nullptr},
    {OpKind::kTranspose, 39, "TRANSPOSE", prepare_transpose, eval_transpose, nullptr},
    {OpKind::kMean, 40, "MEAN", prepare_mean, eval_mean, nullptr},
    {OpKind::kQuantize, 114, "QUANTIZE", prepare_quantize, eval_quantize, lower_quantize},
};

constexpr bool in_kind_order() {
  for (size_t k = 0; k < std::size(kRegistry); ++k)
    if (static_cast<size_t>(kRegistry[k].kind) != k) return false;
  return true;
}
static_assert(std::size(kRegistry) == kOpKindCount, "one registration per OpKind");
static_assert(in_kind_order(), "registrations are indexed by OpKind");

}  // namespace

vmcu_shape4 to_shape4(const std::vector<int32_t>& s) {
  int32_t d[4] = {1, 1, 1, 1};
  const size_t r = s.size();
  for (size_t i = 0; i < r && i < 4; ++i) d[4 - r + i] = s[i];
  return {d[0], d[1], d[2], d[3]};
}

std::string shape_str(const std::vector<int32_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

std::span<const OpRegistration> registrations() { return kRegistry; }

const OpRegistration& registration(OpKind kind) { return kRegistry[static_cast<size_t>(kind)]; }

const OpRegistration* find_builtin(int code) {
  for (const auto& r : kRegistry)
    if (r.builtin_code == code) return &r;
  return nullptr;
}

}  // namespace perfmem::vmcu::ops
