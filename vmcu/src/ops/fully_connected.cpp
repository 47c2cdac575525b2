// FULLY_CONNECTED: per-tensor int8 weights, any input rank flattened to [batches, depth].
#include "op_module.h"

namespace perfmem::vmcu::ops {

Status prepare_fully_connected(const PrepareContext& p, PreparedOp& po) {
  const Operator& op = p.op();
  const OpOptions& o = p.op().options;
  PERFMEM_RETURN_IF_ERROR(p.operand(0, ElementType::kInt8, -1, false, true));
  PERFMEM_RETURN_IF_ERROR(p.operand(1, ElementType::kInt8, 2, true, true));
  PERFMEM_RETURN_IF_ERROR(p.output(ElementType::kInt8, -1, true));
  const Tensor& in = p.in(0);
  const Tensor& w = p.in(1);
  const Tensor& out = p.out();
  if (w.quantization.per_channel())
    return p.fail("weights quantization", "one scale (per-tensor)",
                  std::to_string(w.quantization.scales.size()) + " scales");
  po.out_depth = w.shape[0];
  po.in_depth = w.shape[1];
  if (po.in_depth < 1 || in.element_count() % po.in_depth != 0)
    return p.fail("input (" + in.name + ") shape", "a multiple of " + std::to_string(po.in_depth) + " elements",
                  shape_str(in.shape));
  po.batches = static_cast<int32_t>(in.element_count() / po.in_depth);
  if (po.in_depth > kMaxAccumulationTerms)
    return p.fail("weights shape", "at most 65536 inputs per output (int32 accumulation)", shape_str(w.shape));
  if (out.element_count() != int64_t{po.batches} * po.out_depth)
    return p.fail("output (" + out.name + ") shape",
                  std::to_string(po.batches) + "x" + std::to_string(po.out_depth) + " elements", shape_str(out.shape));
  if (op.inputs.size() > 2 && op.inputs[2] >= 0) {
    PERFMEM_RETURN_IF_ERROR(p.operand(2, ElementType::kInt32, -1, true, false));
    if (p.in(2).element_count() != po.out_depth)
      return p.fail("bias", std::to_string(po.out_depth) + " elements", shape_str(p.in(2).shape));
  }
  const double product = static_cast<double>(in.quantization.scale() * w.quantization.scale());
  const QuantizedMultiplier q = quantize_multiplier(product / static_cast<double>(out.quantization.scale()));
  PERFMEM_RETURN_IF_ERROR(p.check_multiplier(q, "requantization scale"));
  po.fc.input_offset = -in.quantization.zero_point();
  po.fc.filter_offset = -w.quantization.zero_point();
  po.fc.output_offset = out.quantization.zero_point();
  po.fc.output_multiplier = q.multiplier;
  po.fc.output_shift = q.shift;
  auto [lo, hi] = activation_range(o.activation, out.quantization.scale(), out.quantization.zero_point());
  po.fc.act_min = lo;
  po.fc.act_max = hi;
  return Status::Ok();
}

Status eval_fully_connected(const EvalContext& e, PreparedOp& po) {
  vmcu_fully_connected_s8(&po.fc, po.batches, po.in_depth, po.out_depth, e.in8(0), e.in8(1), e.bias(), e.out8());
  return Status::Ok();
}

Status lower_fully_connected(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done) {
  const Graph& g = c.graph;
  const Operator& op = g.ops[c.index];
  PreparedOp po;
  PERFMEM_RETURN_IF_ERROR(prepare_op(g, c.index, po));
  p.fc = po.fc;
  p.batches = po.batches;
  p.in_depth = po.in_depth;
  p.out_depth = po.out_depth;
  p.weights = reinterpret_cast<const int8_t*>(g.tensors[op.inputs[1]].data.data());
  p.bias = op.inputs.size() > 2 && op.inputs[2] >= 0
               ? reinterpret_cast<const int32_t*>(g.tensors[op.inputs[2]].data.data())
               : nullptr;
  layer.kernel = RingKernel::kFullyConnected;
  done = true;
  return Status::Ok();
}

}  // namespace perfmem::vmcu::ops
