// SOFTMAX over the last axis, output quantized as TFLite requires (1/256, -128).
#include "op_module.h"

#include <cmath>

namespace perfmem::vmcu::ops {

Status prepare_softmax(const PrepareContext& p, PreparedOp& po) {
  const OpOptions& o = p.op().options;
  PERFMEM_RETURN_IF_ERROR(p.operand(0, ElementType::kInt8, -1, false, true));
  PERFMEM_RETURN_IF_ERROR(p.output(ElementType::kInt8, -1, true));
  const Tensor& in = p.in(0);
  PERFMEM_RETURN_IF_ERROR(p.expect_output_shape(in.shape));
  if (p.out().quantization.zero_point() != -128 || p.out().quantization.scale() != 1.0f / 256)
    return p.fail("output quantization", "scale 1/256 and zero point -128");
  po.depth = in.shape.empty() ? 1 : in.shape.back();
  po.rows = po.depth == 0 ? 0 : static_cast<int32_t>(in.element_count() / po.depth);
  if (!(o.beta > 0.0f) || !std::isfinite(o.beta))
    return p.fail("beta", "a positive finite number", std::to_string(o.beta));
  po.softmax = softmax_params(in.quantization.scale(), o.beta);
  if (po.softmax.input_left_shift < 0 || po.softmax.input_left_shift > 31 || po.softmax.input_multiplier <= 0)
    return unsupported_error(p.source(), p.place(),
                             "softmax with input scale x beta below 2^-27 (TFLite rejects it too)");
  return Status::Ok();
}

Status eval_softmax(const EvalContext& e, PreparedOp& po) {
  vmcu_softmax_s8(&po.softmax, po.rows, po.depth, e.in8(0), e.out8());
  return Status::Ok();
}

}  // namespace perfmem::vmcu::ops
