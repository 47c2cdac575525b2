// MEAN over constant axes, as TFLite 2.14's integer reference.
#include "op_module.h"

#include <algorithm>

namespace perfmem::vmcu::ops {

Status prepare_mean(const PrepareContext& p, PreparedOp& po) {
  const OpOptions& o = p.op().options;
  PERFMEM_RETURN_IF_ERROR(p.operand(0, ElementType::kInt8, -1, false, true));
  PERFMEM_RETURN_IF_ERROR(p.operand(1, ElementType::kInt32, -1, true, false));
  PERFMEM_RETURN_IF_ERROR(p.output(ElementType::kInt8, -1, true));
  const Tensor& in = p.in(0);
  if (in.shape.size() > 4) return p.fail("input rank", "at most 4", shape_str(in.shape));
  const int rank = static_cast<int>(in.shape.size());
  const auto* axes = reinterpret_cast<const int32_t*>(p.in(1).data.data());
  std::vector<bool> reduced(rank, false);
  for (int64_t i = 0; i < p.in(1).element_count(); ++i) {
    int32_t a = axes[i] < 0 ? axes[i] + rank : axes[i];
    if (a < 0 || a >= rank) return p.fail("axis", "values in [-rank, rank)", std::to_string(axes[i]));
    reduced[a] = true;
  }
  std::vector<int32_t> expected;
  int64_t reduced_count = 1;
  for (int d = 0; d < rank; ++d)
    if (reduced[d]) reduced_count *= in.shape[d];
  if (reduced_count > (int64_t{1} << 23))
    return p.fail("axis", "at most 2^23 reduced elements (int32 sums)", std::to_string(reduced_count));
  for (int d = 0; d < rank; ++d) {
    if (!reduced[d])
      expected.push_back(in.shape[d]);
    else if (o.keep_dims)
      expected.push_back(1);
    po.axis_mask |= reduced[d] ? (1u << (4 - rank + d)) : 0u;
  }
  PERFMEM_RETURN_IF_ERROR(p.expect_output_shape(expected));
  po.in = to_shape4(in.shape);
  // TFLite 2.14's reference MEAN takes one integer path for every axis set, keep_dims or not
  // (QuantizedMeanOrSum): 1/count is folded into the multiplier with floor(log2 count)
  // extra bits. Rescaling first and then dividing by H*W (the older 4-D keep_dims kernel)
  // differs by one step whenever H*W is not a power of two.
  po.in_zp = in.quantization.zero_point();
  po.out_zp = p.out().quantization.zero_point();
  const QuantizedMultiplier q = mean_multiplier(
      static_cast<double>(in.quantization.scale()) / static_cast<double>(p.out().quantization.scale()), reduced_count);
  PERFMEM_RETURN_IF_ERROR(p.check_multiplier(q, "requantization scale"));
  po.multiplier = q.multiplier;
  po.shift = q.shift;
  po.scratch.assign(static_cast<size_t>(std::max<int64_t>(1, p.out().element_count())), 0);
  return Status::Ok();
}

Status eval_mean(const EvalContext& e, PreparedOp& po) {
  vmcu_mean_s8(po.in, e.in8(0), po.axis_mask, po.scratch.data(), po.in_zp, po.multiplier, po.shift, po.out_zp,
               e.out8());
  return Status::Ok();
}

}  // namespace perfmem::vmcu::ops
