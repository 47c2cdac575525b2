// AVERAGE_POOL_2D and MAX_POOL_2D: one prepare, input and output quantized alike.
#include "op_module.h"

#include "vmcu/segment_kernels.h"

namespace perfmem::vmcu::ops {

Status prepare_pool2d(const PrepareContext& p, PreparedOp& po) {
  const OpOptions& o = p.op().options;
  PERFMEM_RETURN_IF_ERROR(p.operand(0, ElementType::kInt8, 4, false, true));
  PERFMEM_RETURN_IF_ERROR(p.output(ElementType::kInt8, 4, true));
  if (o.stride_h < 1 || o.stride_w < 1 || o.filter_h < 1 || o.filter_w < 1)
    return p.fail("options", "strides and filter sizes >= 1");
  const Tensor& in = p.in(0);
  if (in.quantization.scale() != p.out().quantization.scale() ||
      in.quantization.zero_point() != p.out().quantization.zero_point())
    return p.fail("output quantization", "the input's scale and zero point");
  const PaddedDim ph = compute_padding(o.padding, in.shape[1], o.filter_h, o.stride_h, 1);
  const PaddedDim pw = compute_padding(o.padding, in.shape[2], o.filter_w, o.stride_w, 1);
  if (ph.out < 1 || pw.out < 1) return p.fail("window", "a window no larger than the input", shape_str(in.shape));
  if (int64_t{o.filter_h} * o.filter_w > kMaxAccumulationTerms)
    return p.fail("window", "at most 65536 elements", std::to_string(o.filter_h) + "x" + std::to_string(o.filter_w));
  PERFMEM_RETURN_IF_ERROR(p.expect_output_shape({in.shape[0], ph.out, pw.out, in.shape[3]}));
  po.pool = {o.stride_h, o.stride_w, o.filter_h, o.filter_w, ph.pad_before, pw.pad_before, 0, 0};
  auto [lo, hi] = activation_range(o.activation, p.out().quantization.scale(), p.out().quantization.zero_point());
  po.pool.act_min = lo;
  po.pool.act_max = hi;
  po.in = to_shape4(in.shape);
  po.out = to_shape4(p.out().shape);
  return Status::Ok();
}

Status eval_average_pool2d(const EvalContext& e, PreparedOp& po) {
  if (vmcu_average_pool_s8(&po.pool, po.in, e.in8(0), po.out, e.out8()) != 0)
    return input_error(e.graph.source, e.graph.op_place(e.index), "every pooling window to cover an input element");
  return Status::Ok();
}

Status eval_max_pool2d(const EvalContext& e, PreparedOp& po) {
  vmcu_max_pool_s8(&po.pool, po.in, e.in8(0), po.out, e.out8());
  return Status::Ok();
}

Status lower_pool2d(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done) {
  PreparedOp po;
  PERFMEM_RETURN_IF_ERROR(prepare_op(c.graph, c.index, po));
  p.pool = po.pool;
  p.in = po.in;
  p.out = po.out;
  layer.kernel = c.graph.ops[c.index].kind == OpKind::kAveragePool2D ? RingKernel::kAveragePool : RingKernel::kMaxPool;
  layer.workspace_bytes = static_cast<size_t>(vmcu_seg_pool_workspace_bytes(p.out.c));
  done = true;
  return Status::Ok();
}

}  // namespace perfmem::vmcu::ops
