// Internal to vmcu_lib: what an operator module sees. Each operator family has one file under
// ops/ (conv.cpp, pooling.cpp, ...) with two functions per operator:
//   prepare: checks operand types, shapes and quantization and precomputes what the kernels
//            need (requantization multipliers, activation clamps, padding) into a PreparedOp;
//            the reference executor and the ring lowering both call it, so the two never
//            disagree on an operator's parameters;
//   eval:    runs the operator's reference kernel on prepared parameters;
//   lower:   (operators with a ring segment kernel) turns it into a ring layer.
// registry.h lists the modules in one table indexed by OpKind.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/vmcu/model.h"
#include "perfmem/vmcu/quantization.h"
#include "../prepared_op.h"
#include "../ring_layer.h"
#include "vmcu/kernels.h"

namespace perfmem::vmcu::ops {

// int32 accumulators must not overflow: |(q - zp) * w| < 2^15, so at most 2^16 terms.
inline constexpr int64_t kMaxAccumulationTerms = 65536;

// A shape of rank <= 4 as NHWC, leading dimensions 1.
vmcu_shape4 to_shape4(const std::vector<int32_t>& s);
std::string shape_str(const std::vector<int32_t>& s);

// Operator `index` of a graph during prepare; its errors name the file and the operator.
class PrepareContext {
 public:
  PrepareContext(const Graph& g, size_t index) : g_(g), op_(g.ops[index]), place_(g.op_place(index)) {}

  Status fail(const std::string& what, const std::string& expected, const std::string& found = {}) const {
    return input_error(g_.source, place_ + " " + what, expected, found);
  }

  // Operand i exists, has the given type, rank (or -1 for any) and, if asked, is constant.
  Status operand(size_t i, ElementType type, int rank, bool constant, bool quantized) const {
    const std::string what = "input " + std::to_string(i);
    if (i >= op_.inputs.size() || op_.inputs[i] < 0) return fail(what, "a tensor", "none");
    const Tensor& t = g_.tensors[op_.inputs[i]];
    return check_tensor(t, what, type, rank, constant, quantized);
  }
  Status output(ElementType type, int rank, bool quantized) const {
    return check_tensor(out(), "output", type, rank, false, quantized);
  }
  Status check_tensor(const Tensor& t, const std::string& what, ElementType type, int rank, bool constant,
                      bool quantized) const {
    if (t.type != type)
      return fail(what + " (" + t.name + ") type", std::string(element_type_name(type)),
                  std::string(element_type_name(t.type)));
    if (rank >= 0 && static_cast<int>(t.shape.size()) != rank)
      return fail(what + " (" + t.name + ") rank", std::to_string(rank), shape_str(t.shape));
    if (constant && !t.is_constant) return fail(what + " (" + t.name + ")", "constant data", "an activation");
    if (!constant && t.is_constant && what == "output")
      return fail(what + " (" + t.name + ")", "a computed tensor", "constant data");
    if (quantized && !t.quantization.present())
      return fail(what + " (" + t.name + ") quantization", "scale and zero point", "none");
    if (quantized && !constant && t.quantization.per_channel())
      return fail(what + " (" + t.name + ") quantization", "one scale (activations are quantized per tensor)",
                  std::to_string(t.quantization.scales.size()) + " scales");
    if (quantized && type == ElementType::kInt8 && !t.quantization.per_channel() &&
        (t.quantization.zero_point() < -128 || t.quantization.zero_point() > 127))
      return fail(what + " (" + t.name + ") zero point", "a value in [-128, 127]",
                  std::to_string(t.quantization.zero_point()));
    return Status::Ok();
  }
  const Tensor& in(size_t i) const { return g_.tensors[op_.inputs[i]]; }
  const Tensor& out() const { return g_.tensors[op_.outputs[0]]; }
  Status expect_output_shape(const std::vector<int32_t>& shape) const {
    if (out().shape != shape)
      return fail("output (" + out().name + ") shape", shape_str(shape), shape_str(out().shape));
    return Status::Ok();
  }
  const Operator& op() const { return op_; }
  const std::string& place() const { return place_; }
  // The kernels shift by `shift` within int32: real multipliers must lie in [2^-32, 2^30).
  Status check_multiplier(const QuantizedMultiplier& q, const std::string& what) const {
    if (q.shift > 30 || q.multiplier < 0)
      return fail(what, "a real multiplier in [0, 2^30) (sane input/weight/output scales)",
                  std::to_string(q.multiplier) + " x 2^" + std::to_string(q.shift - 31));
    return Status::Ok();
  }
  const std::string& source() const { return g_.source; }

 private:
  const Graph& g_;
  const Operator& op_;
  std::string place_;
};

// Operand bytes of operator `index` during eval. Inputs 0..2 (empty where omitted; later inputs
// are never read by a kernel); the output buffer has the output tensor's size.
struct EvalContext {
  const Graph& graph;
  size_t index;
  std::array<std::span<const uint8_t>, 3> inputs;
  std::span<uint8_t> output;

  const Operator& op() const { return graph.ops[index]; }
  const int8_t* in8(size_t k) const { return reinterpret_cast<const int8_t*>(inputs[k].data()); }
  int8_t* out8() const { return reinterpret_cast<int8_t*>(output.data()); }
  int32_t out_count() const { return static_cast<int32_t>(graph.tensors[op().outputs[0]].element_count()); }
  // The optional bias (input 2), or nullptr when the operator has none.
  const int32_t* bias() const {
    const Operator& o = op();
    if (o.inputs.size() < 3 || o.inputs[2] < 0) return nullptr;
    return reinterpret_cast<const int32_t*>(inputs[2].data());
  }
};

// Operator `index` being lowered to a ring layer: the layer's inputs and output are set;
// `first_input` is the layer's first activation (the input of a PAD folded into a conv, when
// `folded`, with `pad_before` its H/W padding).
struct LowerContext {
  const Graph& graph;
  size_t index;
  const Liveness& live;
  int first_input;
  bool folded;
  int32_t pad_before[2];
};

using PrepareFn = Status (*)(const PrepareContext&, PreparedOp&);
using EvalFn = Status (*)(const EvalContext&, PreparedOp&);
// Picks the layer's segment kernel and fills its parameters and workspace; sets `done` only
// when a segment kernel takes the operator (its conditions may fail: the layer then runs
// staged). Parameters come from the operator's prepare, never recomputed.
using LowerFn = Status (*)(const LowerContext&, LayerDraft&, RingLayerParams&, bool& done);

// The modules (one line per operator; the table is in registry.cpp). Ring lowerings exist for
// the operators with a segment kernel.
Status lower_conv2d(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done);
Status lower_depthwise_conv2d(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done);
Status lower_fully_connected(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done);
Status lower_add(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done);
Status lower_pool2d(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done);
Status lower_reshape(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done);
Status lower_quantize(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done);
Status prepare_conv2d(const PrepareContext& p, PreparedOp& po);
Status eval_conv2d(const EvalContext& e, PreparedOp& po);
Status prepare_depthwise_conv2d(const PrepareContext& p, PreparedOp& po);
Status eval_depthwise_conv2d(const EvalContext& e, PreparedOp& po);
Status prepare_fully_connected(const PrepareContext& p, PreparedOp& po);
Status eval_fully_connected(const EvalContext& e, PreparedOp& po);
Status prepare_add(const PrepareContext& p, PreparedOp& po);
Status eval_add(const EvalContext& e, PreparedOp& po);
Status prepare_pool2d(const PrepareContext& p, PreparedOp& po);  // average and max
Status eval_average_pool2d(const EvalContext& e, PreparedOp& po);
Status eval_max_pool2d(const EvalContext& e, PreparedOp& po);
Status prepare_mean(const PrepareContext& p, PreparedOp& po);
Status eval_mean(const EvalContext& e, PreparedOp& po);
Status prepare_pad(const PrepareContext& p, PreparedOp& po);
Status eval_pad(const EvalContext& e, PreparedOp& po);
Status prepare_reshape(const PrepareContext& p, PreparedOp& po);
Status eval_reshape(const EvalContext& e, PreparedOp& po);
Status prepare_transpose(const PrepareContext& p, PreparedOp& po);
Status eval_transpose(const EvalContext& e, PreparedOp& po);
Status prepare_softmax(const PrepareContext& p, PreparedOp& po);
Status eval_softmax(const EvalContext& e, PreparedOp& po);
Status prepare_quantize(const PrepareContext& p, PreparedOp& po);
Status eval_quantize(const EvalContext& e, PreparedOp& po);
Status prepare_dequantize(const PrepareContext& p, PreparedOp& po);
Status eval_dequantize(const EvalContext& e, PreparedOp& po);

}  // namespace perfmem::vmcu::ops
