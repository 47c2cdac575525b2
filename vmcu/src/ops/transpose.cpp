// TRANSPOSE of an int8 tensor of rank <= 4 by a constant permutation.
#include "op_module.h"

namespace perfmem::vmcu::ops {

Status prepare_transpose(const PrepareContext& p, PreparedOp& po) {
  PERFMEM_RETURN_IF_ERROR(p.operand(0, ElementType::kInt8, -1, false, false));
  PERFMEM_RETURN_IF_ERROR(p.operand(1, ElementType::kInt32, 1, true, false));
  PERFMEM_RETURN_IF_ERROR(p.output(ElementType::kInt8, -1, false));
  const Tensor& in = p.in(0);
  const int rank = static_cast<int>(in.shape.size());
  if (rank > 4 || p.in(1).element_count() != rank)
    return p.fail("perm", std::to_string(rank) + " entries (rank <= 4)", shape_str(p.in(1).shape));
  const auto* perm = reinterpret_cast<const int32_t*>(p.in(1).data.data());
  std::vector<bool> seen(rank, false);
  std::vector<int32_t> expected;
  for (int d = 0; d < rank; ++d) {
    if (perm[d] < 0 || perm[d] >= rank || seen[perm[d]]) return p.fail("perm", "a permutation of 0..rank-1");
    seen[perm[d]] = true;
    expected.push_back(in.shape[perm[d]]);
  }
  const int lead = 4 - rank;
  for (int d = 0; d < 4; ++d) po.perm[d] = d < lead ? d : perm[d - lead] + lead;
  PERFMEM_RETURN_IF_ERROR(p.expect_output_shape(expected));
  po.in = to_shape4(in.shape);
  return Status::Ok();
}

Status eval_transpose(const EvalContext& e, PreparedOp& po) {
  vmcu_transpose_s8(po.in, e.in8(0), po.perm, e.out8());
  return Status::Ok();
}

}  // namespace perfmem::vmcu::ops
