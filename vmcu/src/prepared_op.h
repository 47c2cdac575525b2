// Internal to vmcu_lib: one operator's validated, precomputed kernel parameters, shared by the
// reference executor and the ring planner's layers (one place computes requantization
// multipliers, activation clamps and padding for every operator).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/vmcu/model.h"
#include "vmcu/kernels.h"

namespace perfmem::vmcu {

struct PreparedOp {
  vmcu_conv_params conv{};
  vmcu_fc_params fc{};
  vmcu_add_params add{};
  vmcu_pool_params pool{};
  vmcu_softmax_params softmax{};
  std::vector<int32_t> multipliers, shifts;  // per output channel (conv, depthwise)
  vmcu_shape4 in{}, filter{}, out{};
  int32_t batches = 0, in_depth = 0, out_depth = 0;  // fully connected
  int32_t rows = 0, depth = 0;                       // softmax
  int32_t pad_before[4] = {0, 0, 0, 0}, pad_after[4] = {0, 0, 0, 0};
  int8_t pad_value = 0;
  int32_t perm[4] = {0, 1, 2, 3};
  uint32_t axis_mask = 0;
  std::vector<int32_t> scratch;
  int32_t multiplier = 0, shift = 0, in_zp = 0, out_zp = 0;  // requantize
  float scale = 0.0f;                                        // quantize / dequantize
  bool float_input = false;
};

// Checks operator `index` of `g` (operand types, shapes, quantization) and fills `po` with what
// its reference kernel needs; errors name the file, the operator and what was expected.
Status prepare_op(const Graph& g, size_t index, PreparedOp& po);

}  // namespace perfmem::vmcu
