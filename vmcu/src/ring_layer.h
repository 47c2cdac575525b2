// Internal to vmcu_lib: a ring layer while the plan is being made, and the parameters its
// segment kernel runs with. ring_plan.cpp builds, fuses, places and runs layers; the operator
// modules (ops/) lower their own operator to a layer (OpRegistration::lower).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "prepared_op.h"
#include "perfmem/vmcu/ring_plan.h"
#include "vmcu/kernels.h"
#include "vmcu/segment_fused.h"

namespace perfmem::vmcu {

struct RingLayerParams {
  vmcu_conv_params conv{};
  vmcu_fc_params fc{};
  vmcu_add_params add{};
  vmcu_pool_params pool{};
  std::vector<int32_t> multipliers, shifts;
  vmcu_shape4 in{}, filter{}, out{};
  int32_t batches = 0, in_depth = 0, out_depth = 0;
  const int8_t* weights = nullptr;
  const int32_t* bias = nullptr;
  float scale = 0.0f;  // quantize
  int32_t zero_point = 0;
  int32_t in_bytes = 0, out_bytes = 0;
  // Staged and tensor-level layers: the operator's prepared parameters (prepare_op), evaluated
  // by its module's eval on the layer's own bytes; no executor is involved. A unique_ptr because
  // PreparedOp points into itself (multipliers), and eval may use its scratch.
  std::unique_ptr<PreparedOp> prepared;
  int32_t stage_out_offset = 0;  // staged: the output's offset in the workspace (after the input)
  // Fused layers: the parameters of their operators (kept alive for the pointers below).
  std::vector<std::shared_ptr<const RingLayerParams>> parts;
  vmcu_bottleneck_params bottleneck{};
  vmcu_residual_block_params residual{};
  vmcu_stem_block_params stem{};
  int32_t mid_c = 0;
};

// A layer while the plan is being made: the plan's value plus the prepared parameters its
// kernel runs with (the finished plan refers to them by index; RingModel owns them).
struct LayerDraft : RingLayer {
  std::shared_ptr<const RingLayerParams> params;
};

}  // namespace perfmem::vmcu
