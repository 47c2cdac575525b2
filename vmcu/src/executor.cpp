// Prepare (validate + precompute integer parameters) and run, one reference kernel per op.
#include "perfmem/vmcu/executor.h"

#include <cmath>
#include <cstring>
#include <string>

#include "perfmem/vmcu/quantization.h"
#include "prepared_op.h"
#include "vmcu/kernels.h"

namespace perfmem::vmcu {

namespace {

constexpr int64_t kMaxAccumulationTerms = 65536;
// Host executor limit on the sum of activation bytes (a corrupt shape must not exhaust memory).
constexpr size_t kMaxActivationBytes = size_t{1} << 30;

vmcu_shape4 to_shape4(const std::vector<int32_t>& s) {
  int32_t d[4] = {1, 1, 1, 1};
  const size_t r = s.size();
  for (size_t i = 0; i < r && i < 4; ++i) d[4 - r + i] = s[i];
  return {d[0], d[1], d[2], d[3]};
}

std::string shape_str(const std::vector<int32_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

class Preparer {
 public:
  Preparer(const Graph& g, size_t index) : g_(g), op_(g.ops[index]), place_(g.op_place(index)) {}

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
  Status check_tensor(const Tensor& t, const std::string& what, ElementType type, int rank,
                      bool constant, bool quantized) const {
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

Status prepare_conv(const Preparer& p, PreparedOp& po, bool depthwise) {
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
                  std::to_string(o.stride_h) + "," + std::to_string(o.stride_w) + " / " +
                      std::to_string(o.dilation_h) + "," + std::to_string(o.dilation_w));
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
    const double real = static_cast<double>(in.quantization.scale()) * ws /
                        static_cast<double>(out.quantization.scale());
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

Status prepare(const Graph& g, size_t index, PreparedOp& po) {
  const Preparer p(g, index);
  const Operator& op = g.ops[index];
  const OpOptions& o = op.options;
  switch (op.kind) {
    case OpKind::kConv2D: return prepare_conv(p, po, false);
    case OpKind::kDepthwiseConv2D: return prepare_conv(p, po, true);
    case OpKind::kFullyConnected: {
      PERFMEM_RETURN_IF_ERROR(p.operand(0, ElementType::kInt8, -1, false, true));
      PERFMEM_RETURN_IF_ERROR(p.operand(1, ElementType::kInt8, 2, true, true));
      PERFMEM_RETURN_IF_ERROR(p.output(ElementType::kInt8, -1, true));
      const Tensor& in = p.in(0);
      const Tensor& w = p.in(1);
      const Tensor& out = p.out();
      if (w.quantization.per_channel())
        return p.fail("weights quantization", "one scale (per-tensor)", std::to_string(w.quantization.scales.size()) + " scales");
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
    case OpKind::kAdd: {
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
      po.add = add_params(a.scale(), a.zero_point(), b.scale(), b.zero_point(), c.scale(), c.zero_point(),
                          o.activation);
      PERFMEM_RETURN_IF_ERROR(p.check_multiplier({po.add.output_multiplier, po.add.output_shift}, "output rescale"));
      return Status::Ok();
    }
    case OpKind::kAveragePool2D:
    case OpKind::kMaxPool2D: {
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
    case OpKind::kMean: {
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
        if (!reduced[d]) expected.push_back(in.shape[d]);
        else if (o.keep_dims) expected.push_back(1);
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
      const QuantizedMultiplier q = mean_multiplier(static_cast<double>(in.quantization.scale()) /
                                                        static_cast<double>(p.out().quantization.scale()),
                                                    reduced_count);
      PERFMEM_RETURN_IF_ERROR(p.check_multiplier(q, "requantization scale"));
      po.multiplier = q.multiplier;
      po.shift = q.shift;
      po.scratch.assign(static_cast<size_t>(std::max<int64_t>(1, p.out().element_count())), 0);
      return Status::Ok();
    }
    case OpKind::kPad: {
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
      if (op.inputs.size() > 2 && op.inputs[2] >= 0) return unsupported_error(g.source, g.op_place(index), "PAD with a constant value operand");
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
    case OpKind::kReshape: {
      if (op.inputs.empty() || op.inputs[0] < 0) return p.fail("input 0", "a tensor", "none");
      const Tensor& in = p.in(0);
      if (in.type != p.out().type)
        return p.fail("output type", std::string(element_type_name(in.type)), std::string(element_type_name(p.out().type)));
      if (in.element_count() != p.out().element_count())
        return p.fail("output shape", std::to_string(in.element_count()) + " elements", shape_str(p.out().shape));
      return Status::Ok();
    }
    case OpKind::kTranspose: {
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
    case OpKind::kSoftmax: {
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
        return unsupported_error(p.source(), p.place(), "softmax with input scale x beta below 2^-27 (TFLite rejects it too)");
      return Status::Ok();
    }
    case OpKind::kQuantize: {
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
    case OpKind::kDequantize: {
      PERFMEM_RETURN_IF_ERROR(p.operand(0, ElementType::kInt8, -1, false, true));
      PERFMEM_RETURN_IF_ERROR(p.output(ElementType::kFloat32, -1, false));
      PERFMEM_RETURN_IF_ERROR(p.expect_output_shape(p.in(0).shape));
      po.scale = p.in(0).quantization.scale();
      po.in_zp = p.in(0).quantization.zero_point();
      return Status::Ok();
    }
  }
  return unsupported_error(g.source, g.op_place(index), "operator kind");
}

}  // namespace

Status prepare_op(const Graph& g, size_t index, PreparedOp& po) { return prepare(g, index, po); }

Executor::Executor(Executor&&) noexcept = default;
Executor& Executor::operator=(Executor&&) noexcept = default;
Executor::~Executor() = default;

Result<Executor> Executor::create(Graph graph) {
  Executor e;
  e.graph_ = std::move(graph);
  const Graph& g = e.graph_;
  // Several inputs only through run_with_inputs (the single-operator graphs of ring layers).
  if (g.inputs.empty() || g.outputs.size() != 1)
    return unsupported_error(g.source, "subgraph", "models with one input (or more) and exactly one output (found " +
                                                       std::to_string(g.inputs.size()) + " and " +
                                                       std::to_string(g.outputs.size()) + ")");
  // Every activation must be produced before it is read (or be the graph input).
  std::vector<bool> ready(g.tensors.size(), false);
  for (size_t t = 0; t < g.tensors.size(); ++t) ready[t] = g.tensors[t].is_constant;
  for (int t : g.inputs) {
    if (g.tensors[t].is_constant) return input_error(g.source, "subgraph input " + g.tensors[t].name, "an activation tensor", "constant data");
    ready[t] = true;
  }
  for (size_t i = 0; i < g.ops.size(); ++i) {
    for (int t : g.ops[i].inputs)
      if (t >= 0 && !ready[t])
        return input_error(g.source, g.op_place(i) + " input " + std::to_string(t) + " (" + g.tensors[t].name + ")",
                           "a tensor computed by an earlier operator", "one that is not yet computed");
    const int o = g.ops[i].outputs[0];
    if (ready[o])
      return input_error(g.source, g.op_place(i) + " output (" + g.tensors[o].name + ")",
                         "a tensor written exactly once", "one already written or constant");
    auto po = std::make_unique<PreparedOp>();
    PERFMEM_RETURN_IF_ERROR(prepare(g, i, *po));
    e.prepared_.push_back(std::move(po));
    ready[o] = true;
  }
  for (int t : g.outputs)
    if (!ready[t]) return input_error(g.source, "subgraph output " + g.tensors[t].name, "a computed tensor", "never written");
  size_t activation_bytes = 0;
  for (const auto& t : g.tensors)
    if (!t.is_constant) activation_bytes += t.bytes();
  if (activation_bytes > kMaxActivationBytes)
    return unsupported_error(g.source, "tensors", "activations of " + std::to_string(activation_bytes) +
                                                       " bytes in total (the host executor's limit is 1 GiB)");
  e.buffers_.resize(g.tensors.size());
  for (size_t t = 0; t < g.tensors.size(); ++t)
    if (!g.tensors[t].is_constant) e.buffers_[t].assign(g.tensors[t].bytes(), 0);
  return e;
}

size_t Executor::input_bytes() const { return graph_.tensors[graph_.inputs[0]].bytes(); }
size_t Executor::output_bytes() const { return graph_.tensors[graph_.outputs[0]].bytes(); }

std::span<const uint8_t> Executor::tensor_bytes(int tensor) const {
  const Tensor& t = graph_.tensors[tensor];
  if (t.is_constant) return t.data;
  return buffers_[tensor];
}

Result<std::vector<uint8_t>> Executor::run(std::span<const uint8_t> input) {
  if (graph_.inputs.size() != 1)
    return unsupported_error(graph_.source, "subgraph", "models with exactly one input for a run (found " +
                                                            std::to_string(graph_.inputs.size()) + ")");
  const std::span<const uint8_t> inputs[1] = {input};
  return run_with_inputs(inputs);
}

Result<std::vector<uint8_t>> Executor::run_with_inputs(std::span<const std::span<const uint8_t>> inputs) {
  if (inputs.size() != graph_.inputs.size())
    return input_error("input", "count", std::to_string(graph_.inputs.size()) + " (one per graph input)",
                       std::to_string(inputs.size()));
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& in_t = graph_.tensors[graph_.inputs[k]];
    if (inputs[k].size() != in_t.bytes())
      return input_error("input", "size", std::to_string(in_t.bytes()) + " bytes (" +
                                              std::string(element_type_name(in_t.type)) + " tensor '" + in_t.name + "')",
                         std::to_string(inputs[k].size()) + " bytes");
    if (!inputs[k].empty()) std::memcpy(buffers_[graph_.inputs[k]].data(), inputs[k].data(), inputs[k].size());
  }
  auto s8 = [&](int t) { return reinterpret_cast<const int8_t*>(tensor_bytes(t).data()); };
  auto out8 = [&](int t) { return reinterpret_cast<int8_t*>(buffers_[t].data()); };
  auto bias = [&](const Operator& op) -> const int32_t* {
    if (op.inputs.size() < 3 || op.inputs[2] < 0) return nullptr;
    return reinterpret_cast<const int32_t*>(graph_.tensors[op.inputs[2]].data.data());
  };
  for (size_t i = 0; i < graph_.ops.size(); ++i) {
    const Operator& op = graph_.ops[i];
    PreparedOp& po = *prepared_[i];
    const int o = op.outputs[0];
    const int32_t n_out = static_cast<int32_t>(graph_.tensors[o].element_count());
    switch (op.kind) {
      case OpKind::kConv2D:
        vmcu_conv2d_s8(&po.conv, po.in, s8(op.inputs[0]), po.filter, s8(op.inputs[1]), bias(op), po.out, out8(o));
        break;
      case OpKind::kDepthwiseConv2D:
        vmcu_depthwise_conv2d_s8(&po.conv, po.in, s8(op.inputs[0]), po.filter, s8(op.inputs[1]), bias(op), po.out,
                                 out8(o));
        break;
      case OpKind::kFullyConnected:
        vmcu_fully_connected_s8(&po.fc, po.batches, po.in_depth, po.out_depth, s8(op.inputs[0]), s8(op.inputs[1]),
                                bias(op), out8(o));
        break;
      case OpKind::kAdd:
        vmcu_add_s8(&po.add, n_out, s8(op.inputs[0]), s8(op.inputs[1]), out8(o));
        break;
      case OpKind::kAveragePool2D:
        if (vmcu_average_pool_s8(&po.pool, po.in, s8(op.inputs[0]), po.out, out8(o)) != 0)
          return input_error(graph_.source, graph_.op_place(i), "every pooling window to cover an input element");
        break;
      case OpKind::kMaxPool2D:
        vmcu_max_pool_s8(&po.pool, po.in, s8(op.inputs[0]), po.out, out8(o));
        break;
      case OpKind::kMean:
        vmcu_mean_s8(po.in, s8(op.inputs[0]), po.axis_mask, po.scratch.data(), po.in_zp, po.multiplier, po.shift,
                     po.out_zp, out8(o));
        break;
      case OpKind::kPad:
        vmcu_pad_s8(po.in, s8(op.inputs[0]), po.pad_before, po.pad_after, po.pad_value, out8(o));
        break;
      case OpKind::kReshape: {
        auto src = tensor_bytes(op.inputs[0]);
        std::memcpy(buffers_[o].data(), src.data(), src.size());
        break;
      }
      case OpKind::kTranspose:
        vmcu_transpose_s8(po.in, s8(op.inputs[0]), po.perm, out8(o));
        break;
      case OpKind::kSoftmax:
        vmcu_softmax_s8(&po.softmax, po.rows, po.depth, s8(op.inputs[0]), out8(o));
        break;
      case OpKind::kQuantize:
        if (po.float_input)
          vmcu_quantize_f32_s8(n_out, reinterpret_cast<const float*>(tensor_bytes(op.inputs[0]).data()), po.scale,
                               po.out_zp, out8(o));
        else
          vmcu_requantize_s8(n_out, s8(op.inputs[0]), po.in_zp, po.multiplier, po.shift, po.out_zp, out8(o));
        break;
      case OpKind::kDequantize:
        vmcu_dequantize_s8_f32(n_out, s8(op.inputs[0]), po.scale, po.in_zp, reinterpret_cast<float*>(buffers_[o].data()));
        break;
    }
  }
  return buffers_[graph_.outputs[0]];
}

}  // namespace perfmem::vmcu
