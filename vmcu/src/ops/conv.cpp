// CONV_2D and DEPTHWISE_CONV_2D: one prepare (the filter layout and channel rule differ).
#include "op_module.h"

#include <utility>

#include "vmcu/segment_kernels.h"

namespace perfmem::vmcu::ops {

namespace {

Status prepare_conv(const PrepareContext& p, PreparedOp& po, bool depthwise) {
  const Operator& op = p.op();
  PERFMEM_RETURN_IF_ERROR(p.operand(0, ElementType::kInt8, 4, false, true));
  PERFMEM_RETURN_IF_ERROR(p.operand(1, ElementType::kInt8, 4, true, true));
  PERFMEM_RETURN_IF_ERROR(p.output(ElementType::kInt8, 4, true));
  const Tensor& in = p.in(0);
  const Tensor& w = p.in(1);
  const Tensor& out = p.out();
  const OpOptions& o = op.options;
  if (o.stride_h < 1 || o.stride_w < 1 || o.dilation_h < 1 || o.dilation_w < 1)
    return p.fail("options", "strides and dilations >= 1",
                  std::to_string(o.stride_h) + "," + std::to_string(o.stride_w) + " / " + std::to_string(o.dilation_h) +
                      "," + std::to_string(o.dilation_w));
  const int32_t kh = w.shape[1], kw = w.shape[2];
  int32_t out_c = 0;
  if (depthwise) {
    out_c = w.shape[3];
    if (w.shape[0] != 1) return p.fail("filter shape", "[1,kh,kw,C*M]", shape_str(w.shape));
    if (in.shape[3] == 0 || out_c % in.shape[3] != 0)
      return p.fail("filter shape", "output channels a multiple of the input's " + std::to_string(in.shape[3]),
                    shape_str(w.shape));
    const int32_t m = out_c / in.shape[3];
    if (o.depth_multiplier != 0 && o.depth_multiplier != m)
      return p.fail("depth_multiplier", std::to_string(m) + " (filter channels / input channels)",
                    std::to_string(o.depth_multiplier));
    po.conv.depth_multiplier = m;
  } else {
    out_c = w.shape[0];
    if (w.shape[3] != in.shape[3])
      return p.fail("filter shape", "input channels " + std::to_string(in.shape[3]) + " (no grouped conv)",
                    shape_str(w.shape));
    po.conv.depth_multiplier = 1;
  }
  if (kh < 1 || kw < 1) return p.fail("filter shape", "a non-empty kernel", shape_str(w.shape));
  // int32 accumulators must not overflow: |(q - zp) * w| < 2^15, so at most 2^16 terms.
  if (int64_t{kh} * kw * (depthwise ? 1 : in.shape[3]) > kMaxAccumulationTerms)
    return unsupported_error(p.source(), p.place(), "kernels with more than 65536 multiply-accumulates per output");
  const size_t nscales = w.quantization.scales.size();
  if (nscales != 1 && nscales != static_cast<size_t>(out_c))
    return p.fail("filter quantization", "1 or " + std::to_string(out_c) + " scales", std::to_string(nscales));
  for (int64_t z : w.quantization.zero_points)
    if (z != 0) return p.fail("filter zero point", "0 (symmetric int8 weights)", std::to_string(z));
  const PaddedDim ph = compute_padding(o.padding, in.shape[1], kh, o.stride_h, o.dilation_h);
  const PaddedDim pw = compute_padding(o.padding, in.shape[2], kw, o.stride_w, o.dilation_w);
  if (ph.out < 1 || pw.out < 1) return p.fail("kernel", "a kernel no larger than the input", shape_str(in.shape));
  PERFMEM_RETURN_IF_ERROR(p.expect_output_shape({in.shape[0], ph.out, pw.out, out_c}));
  if (op.inputs.size() > 2 && op.inputs[2] >= 0) {
    PERFMEM_RETURN_IF_ERROR(p.operand(2, ElementType::kInt32, -1, true, false));
    if (p.in(2).element_count() != out_c)
      return p.fail("bias", std::to_string(out_c) + " elements", shape_str(p.in(2).shape));
  }
  po.multipliers.resize(out_c);
  po.shifts.resize(out_c);
  for (int32_t c = 0; c < out_c; ++c) {
    const double ws = static_cast<double>(w.quantization.scales[nscales == 1 ? 0 : c]);
    const double real =
        static_cast<double>(in.quantization.scale()) * ws / static_cast<double>(out.quantization.scale());
    const QuantizedMultiplier q = quantize_multiplier(real);
    PERFMEM_RETURN_IF_ERROR(p.check_multiplier(q, "requantization scale of channel " + std::to_string(c)));
    po.multipliers[c] = q.multiplier;
    po.shifts[c] = q.shift;
  }
  po.conv.stride_h = o.stride_h;
  po.conv.stride_w = o.stride_w;
  po.conv.dilation_h = o.dilation_h;
  po.conv.dilation_w = o.dilation_w;
  po.conv.pad_h = ph.pad_before;
  po.conv.pad_w = pw.pad_before;
  po.conv.input_offset = -in.quantization.zero_point();
  po.conv.output_offset = out.quantization.zero_point();
  auto [lo, hi] = activation_range(o.activation, out.quantization.scale(), out.quantization.zero_point());
  po.conv.act_min = lo;
  po.conv.act_max = hi;
  po.conv.output_multiplier = po.multipliers.data();
  po.conv.output_shift = po.shifts.data();
  po.in = to_shape4(in.shape);
  po.filter = to_shape4(w.shape);
  po.out = to_shape4(out.shape);
  return Status::Ok();
}

}  // namespace

Status prepare_conv2d(const PrepareContext& p, PreparedOp& po) { return prepare_conv(p, po, false); }

Status eval_conv2d(const EvalContext& e, PreparedOp& po) {
  vmcu_conv2d_s8(&po.conv, po.in, e.in8(0), po.filter, e.in8(1), e.bias(), po.out, e.out8());
  return Status::Ok();
}

Status prepare_depthwise_conv2d(const PrepareContext& p, PreparedOp& po) { return prepare_conv(p, po, true); }

Status eval_depthwise_conv2d(const EvalContext& e, PreparedOp& po) {
  vmcu_depthwise_conv2d_s8(&po.conv, po.in, e.in8(0), po.filter, e.in8(1), e.bias(), po.out, e.out8());
  return Status::Ok();
}

namespace {

// Conv and depthwise layers: parameters from the shared prepare; a folded PAD replaces the input
// shape and the padding (same quantization, checked before folding). Kernels with more taps
// than a segment kernel holds run staged.
Status lower_conv_family(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done) {
  const Graph& g = c.graph;
  const Operator& op = g.ops[c.index];
  const OpOptions& o = op.options;
  PreparedOp po;
  PERFMEM_RETURN_IF_ERROR(prepare_op(g, c.index, po));
  p.multipliers = std::move(po.multipliers);
  p.shifts = std::move(po.shifts);
  p.conv = po.conv;
  p.conv.output_multiplier = p.multipliers.data();
  p.conv.output_shift = p.shifts.data();
  if (c.folded) {
    p.conv.pad_h = c.pad_before[0];
    p.conv.pad_w = c.pad_before[1];
  }
  p.in = to_shape4(g.tensors[c.first_input].shape);
  p.filter = po.filter;
  p.out = po.out;
  p.weights = reinterpret_cast<const int8_t*>(g.tensors[op.inputs[1]].data.data());
  p.bias = op.inputs.size() > 2 && op.inputs[2] >= 0
               ? reinterpret_cast<const int32_t*>(g.tensors[op.inputs[2]].data.data())
               : nullptr;
  if (p.filter.h * p.filter.w > VMCU_SEG_MAX_TAPS) return Status::Ok();
  const bool pointwise = op.kind == OpKind::kConv2D && p.filter.h == 1 && p.filter.w == 1 && o.stride_h == 1 &&
                         o.stride_w == 1 && p.conv.pad_h == 0 && p.conv.pad_w == 0 && p.in.h == p.out.h &&
                         p.in.w == p.out.w;
  if (op.kind == OpKind::kDepthwiseConv2D) {
    layer.kernel = RingKernel::kDepthwise;
    layer.workspace_bytes = static_cast<size_t>(p.out.c);
  } else if (pointwise) {
    layer.kernel = RingKernel::kPointwise;
    layer.workspace_bytes = static_cast<size_t>(vmcu_seg_pointwise_stage_bytes(p.in.c, p.out.c));
  } else {
    layer.kernel = RingKernel::kConv;
    layer.workspace_bytes = static_cast<size_t>(p.out.c);
  }
  done = true;
  return Status::Ok();
}

}  // namespace

Status lower_conv2d(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done) {
  return lower_conv_family(c, layer, p, done);
}

Status lower_depthwise_conv2d(const LowerContext& c, LayerDraft& layer, RingLayerParams& p, bool& done) {
  return lower_conv_family(c, layer, p, done);
}

}  // namespace perfmem::vmcu::ops
