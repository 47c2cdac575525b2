// PAD with constant paddings and the output's zero point as the value.
#include "op_module.h"

namespace perfmem::vmcu::ops {

Status prepare_pad(const PrepareContext& p, PreparedOp& po) {
  const Operator& op = p.op();
  PERFMEM_RETURN_IF_ERROR(p.operand(0, ElementType::kInt8, -1, false, true));
  PERFMEM_RETURN_IF_ERROR(p.output(ElementType::kInt8, -1, true));
  const Tensor& in = p.in(0);
  const int rank = static_cast<int>(in.shape.size());
  if (rank > 4) return p.fail("input rank", "at most 4", shape_str(in.shape));
  if (op.inputs.size() < 2 || op.inputs[1] < 0) return p.fail("input 1", "paddings", "none");
  const Tensor& pads = p.in(1);
  if (!pads.is_constant || (pads.type != ElementType::kInt32 && pads.type != ElementType::kInt64) ||
      pads.element_count() != 2 * rank)
    return p.fail("paddings", "constant int32/int64 [" + std::to_string(rank) + ",2]", shape_str(pads.shape));
  if (op.inputs.size() > 2 && op.inputs[2] >= 0)
    return unsupported_error(p.source(), p.place(), "PAD with a constant value operand");
  std::vector<int32_t> expected;
  for (int d = 0; d < rank; ++d) {
    int64_t before, after;
    if (pads.type == ElementType::kInt32) {
      before = reinterpret_cast<const int32_t*>(pads.data.data())[2 * d];
      after = reinterpret_cast<const int32_t*>(pads.data.data())[2 * d + 1];
    } else {
      before = reinterpret_cast<const int64_t*>(pads.data.data())[2 * d];
      after = reinterpret_cast<const int64_t*>(pads.data.data())[2 * d + 1];
    }
    if (before < 0 || after < 0 || before > 65536 || after > 65536)
      return p.fail("paddings", "values in [0, 65536]", std::to_string(before) + "," + std::to_string(after));
    po.pad_before[4 - rank + d] = static_cast<int32_t>(before);
    po.pad_after[4 - rank + d] = static_cast<int32_t>(after);
    expected.push_back(in.shape[d] + static_cast<int32_t>(before + after));
  }
  PERFMEM_RETURN_IF_ERROR(p.expect_output_shape(expected));
  po.pad_value = static_cast<int8_t>(p.out().quantization.zero_point());
  po.in = to_shape4(in.shape);
  return Status::Ok();
}

Status eval_pad(const EvalContext& e, PreparedOp& po) {
  vmcu_pad_s8(po.in, e.in8(0), po.pad_before, po.pad_after, po.pad_value, e.out8());
  return Status::Ok();
}

}  // namespace perfmem::vmcu::ops
