// QUANTIZE (float32 or int8 in, int8 out) and DEQUANTIZE (int8 in, float32 out).
#include "op_module.h"

namespace perfmem::vmcu::ops {

Status prepare_quantize(const PrepareContext& p, PreparedOp& po) {
  const Operator& op = p.op();
  if (op.inputs.empty() || op.inputs[0] < 0) return p.fail("input 0", "a tensor", "none");
  PERFMEM_RETURN_IF_ERROR(p.output(ElementType::kInt8, -1, true));
  const Tensor& in = p.in(0);
  PERFMEM_RETURN_IF_ERROR(p.expect_output_shape(in.shape));
  po.out_zp = p.out().quantization.zero_point();
  if (in.type == ElementType::kFloat32) {
    po.float_input = true;
    po.scale = p.out().quantization.scale();
    return Status::Ok();
  }
  PERFMEM_RETURN_IF_ERROR(p.operand(0, ElementType::kInt8, -1, false, true));
  const QuantizedMultiplier q = quantize_multiplier(static_cast<double>(in.quantization.scale()) /
                                                    static_cast<double>(p.out().quantization.scale()));
  PERFMEM_RETURN_IF_ERROR(p.check_multiplier(q, "requantization scale"));
  po.multiplier = q.multiplier;
  po.shift = q.shift;
  po.in_zp = in.quantization.zero_point();
  return Status::Ok();
}

Status eval_quantize(const EvalContext& e, PreparedOp& po) {
  if (po.float_input)
    vmcu_quantize_f32_s8(e.out_count(), reinterpret_cast<const float*>(e.inputs[0].data()), po.scale, po.out_zp,
                         e.out8());
  else
    vmcu_requantize_s8(e.out_count(), e.in8(0), po.in_zp, po.multiplier, po.shift, po.out_zp, e.out8());
  return Status::Ok();
}

Status prepare_dequantize(const PrepareContext& p, PreparedOp& po) {
  PERFMEM_RETURN_IF_ERROR(p.operand(0, ElementType::kInt8, -1, false, true));
  PERFMEM_RETURN_IF_ERROR(p.output(ElementType::kFloat32, -1, false));
  PERFMEM_RETURN_IF_ERROR(p.expect_output_shape(p.in(0).shape));
  po.scale = p.in(0).quantization.scale();
  po.in_zp = p.in(0).quantization.zero_point();
  return Status::Ok();
}

Status eval_dequantize(const EvalContext& e, PreparedOp& po) {
  vmcu_dequantize_s8_f32(e.out_count(), e.in8(0), po.scale, po.in_zp, reinterpret_cast<float*>(e.output.data()));
  return Status::Ok();
}

// Only float input has a segment kernel; int8 requantization runs staged.
Status lower_quantize(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done) {
  const Graph& g = c.graph;
  const Operator& op = g.ops[c.index];
  if (g.tensors[op.inputs[0]].type != ElementType::kFloat32) return Status::Ok();
  p.scale = g.tensors[op.outputs[0]].quantization.scale();
  p.zero_point = g.tensors[op.outputs[0]].quantization.zero_point();
  layer.kernel = RingKernel::kQuantize;
  done = true;
  return Status::Ok();
}

}  // namespace perfmem::vmcu::ops
