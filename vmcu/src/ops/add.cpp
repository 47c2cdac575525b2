// ADD: two int8 tensors of one shape, each rescaled to the output (no broadcasting).
#include "op_module.h"

namespace perfmem::vmcu::ops {

Status prepare_add(const PrepareContext& p, PreparedOp& po) {
  const OpOptions& o = p.op().options;
  PERFMEM_RETURN_IF_ERROR(p.operand(0, ElementType::kInt8, -1, false, true));
  PERFMEM_RETURN_IF_ERROR(p.operand(1, ElementType::kInt8, -1, false, true));
  PERFMEM_RETURN_IF_ERROR(p.output(ElementType::kInt8, -1, true));
  if (p.in(0).shape != p.in(1).shape)
    return p.fail("input shapes", "equal shapes (broadcasting is not supported)",
                  shape_str(p.in(0).shape) + " and " + shape_str(p.in(1).shape));
  PERFMEM_RETURN_IF_ERROR(p.expect_output_shape(p.in(0).shape));
  const Quantization& a = p.in(0).quantization;
  const Quantization& b = p.in(1).quantization;
  const Quantization& c = p.out().quantization;
  po.add = add_params(a.scale(), a.zero_point(), b.scale(), b.zero_point(), c.scale(), c.zero_point(), o.activation);
  PERFMEM_RETURN_IF_ERROR(p.check_multiplier({po.add.output_multiplier, po.add.output_shift}, "output rescale"));
  return Status::Ok();
}

Status eval_add(const EvalContext& e, PreparedOp& po) {
  vmcu_add_s8(&po.add, e.out_count(), e.in8(0), e.in8(1), e.out8());
  return Status::Ok();
}

Status lower_add(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done) {
  if (layer.inputs.size() != 2) return Status::Ok();  // a constant or repeated operand: staged
  PreparedOp po;
  PERFMEM_RETURN_IF_ERROR(prepare_op(c.graph, c.index, po));
  p.add = po.add;
  layer.kernel = RingKernel::kAdd;
  done = true;
  return Status::Ok();
}

}  // namespace perfmem::vmcu::ops
