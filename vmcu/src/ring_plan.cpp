// Ring layers, the trace-driven offset solver, placement, execution and the shadow verifier.
#include "perfmem/vmcu/ring_plan.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <limits>
#include <optional>
#include <random>

#include "perfmem/vmcu/executor.h"
#include "perfmem/vmcu/planner.h"
#include "perfmem/vmcu/quantization.h"
#include "ops/registry.h"
#include "prepared_op.h"
#include "ring_layer.h"
#include "vmcu/kernels.h"
#include "vmcu/segment_fused.h"
#include "vmcu/segment_kernels.h"

namespace perfmem::vmcu {

using ParamTable = std::vector<std::shared_ptr<const RingLayerParams>>;

// A finished plan and the parameters its layers index.
struct PlacedPlan {
  RingPlan plan;
  ParamTable params;
};

std::string_view ring_kernel_name(RingKernel kernel) {
  switch (kernel) {
    case RingKernel::kConv: return "conv";
    case RingKernel::kPointwise: return "pointwise";
    case RingKernel::kDepthwise: return "depthwise";
    case RingKernel::kFullyConnected: return "fully_connected";
    case RingKernel::kAdd: return "add";
    case RingKernel::kAveragePool: return "average_pool";
    case RingKernel::kMaxPool: return "max_pool";
    case RingKernel::kAlias: return "alias";
    case RingKernel::kQuantize: return "quantize";
    case RingKernel::kStaged: return "staged";
    case RingKernel::kBottleneck: return "fused_bottleneck";
    case RingKernel::kResidualBlock: return "fused_residual_block";
    case RingKernel::kStemBlock: return "fused_stem_block";
    case RingKernel::kTensorLevel: return "tensor_level";
    case RingKernel::kRelocate: return "relocate";
  }
  return "?";
}

std::string_view ring_placement_name(RingPlacement placement) {
  switch (placement) {
    case RingPlacement::kSegment: return "segment";
    case RingPlacement::kTensor: return "tensor";
    case RingPlacement::kMixed: return "mixed";
  }
  return "?";
}

RingDistances solve_distances(std::span<const RingAccess> trace) {
  // Backward sweep: lowest[k] = lowest address of input k read by any access after the current one.
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  int64_t lowest[2] = {kNone, kNone};
  RingDistances d;
  for (size_t i = trace.size(); i-- > 0;) {
    const RingAccess& a = trace[i];
    if (a.is_write && a.operand == VMCU_SEG_OUT) {
      const int64_t end = int64_t{a.offset} + a.length;
      for (int k = 0; k < 2; ++k)
        if (lowest[k] != kNone) d.input[k] = std::max(d.input[k], end - lowest[k]);
    } else if (a.operand == VMCU_SEG_IN0 || a.operand == VMCU_SEG_IN1) {
      int64_t& low = lowest[a.operand - 1];
      low = std::min(low, int64_t{a.offset});
    }
  }
  return d;
}

int32_t RingPlan::ring_offset(int tensor) const {
  const int64_t cap = static_cast<int64_t>(ring_bytes);
  int64_t r = base[tensor] % cap;
  if (r < 0) r += cap;
  return static_cast<int32_t>(r);
}

int32_t RingPlan::final_offset(int tensor) const {
  for (size_t l = layers.size(); l-- > 0;)
    if (layers[l].kernel == RingKernel::kRelocate && layers[l].output == tensor) return layers[l].ring_offset[0];
  return ring_offset(tensor);
}

namespace {

// Operator `index`'s reference eval (its module in the operator table) on prepared parameters:
// constant operands come from the graph, activation tensor t from `activation(t)`.
template <typename Activation>
Status eval_op(const Graph& g, int index, PreparedOp& po, const Activation& activation, std::span<uint8_t> out) {
  const Operator& op = g.ops[static_cast<size_t>(index)];
  ops::EvalContext ctx{g, static_cast<size_t>(index), {}, out};
  for (size_t k = 0; k < op.inputs.size() && k < ctx.inputs.size(); ++k) {
    const int t = op.inputs[k];
    if (t >= 0) ctx.inputs[k] = g.tensors[t].is_constant ? std::span<const uint8_t>(g.tensors[t].data) : activation(t);
  }
  return ops::registration(op.kind).eval(ctx, po);
}

// The workspace a layer's kernel touches according to its own parameters: the host allocates at
// least this much, so that a plan that gives a layer less (which the verifier then rejects) never
// makes the kernel write outside the host's buffer.
size_t kernel_workspace_bytes(const RingLayer& layer, const RingLayerParams& p) {
  if (layer.kernel == RingKernel::kBottleneck)
    return static_cast<size_t>(vmcu_seg_bottleneck_workspace_bytes(&p.bottleneck, p.in, p.mid_c, p.out.c));
  return layer.workspace_bytes;
}

// Executes one layer on a ring; `bases` = {output, input 0, input 1} ring offsets.
Status run_layer(const Graph& g, const RingLayer& layer, const RingLayerParams& p, const vmcu_ring& ring,
                 const int32_t bases[3], std::vector<int32_t>& workspace) {
  // int32 storage: pooling keeps accumulators in the workspace.
  const size_t words = std::max(layer.workspace_bytes, kernel_workspace_bytes(layer, p)) / 4 + 1;
  if (workspace.size() < words) workspace.resize(words);
  int8_t* stage = reinterpret_cast<int8_t*>(workspace.data());
  const std::string place = layer.ops.empty() ? std::string("a relocation between regions")
                                              : g.op_place(static_cast<size_t>(layer.ops.back()));
  switch (layer.kernel) {
    case RingKernel::kConv:
      if (vmcu_seg_conv2d_s8(&p.conv, &ring, bases[1], p.in, p.filter, p.weights, p.bias, bases[0], p.out, stage) != 0)
        return unsupported_error(g.source, place, "kernel windows larger than the segment kernels accept");
      return Status::Ok();
    case RingKernel::kPointwise:
      vmcu_seg_pointwise_conv_s8(&p.conv, &ring, bases[1], p.in, p.weights, p.bias, bases[0], p.out, stage);
      return Status::Ok();
    case RingKernel::kDepthwise:
      if (vmcu_seg_depthwise_conv2d_s8(&p.conv, &ring, bases[1], p.in, p.filter, p.weights, p.bias, bases[0], p.out,
                                       stage) != 0)
        return unsupported_error(g.source, place, "kernel windows larger than the segment kernels accept");
      return Status::Ok();
    case RingKernel::kFullyConnected:
      vmcu_seg_fully_connected_s8(&p.fc, &ring, bases[1], p.batches, p.in_depth, p.out_depth, p.weights, p.bias,
                                  bases[0]);
      return Status::Ok();
    case RingKernel::kAdd:
      vmcu_seg_add_s8(&p.add, &ring, bases[1], bases[2], p.out_bytes, bases[0]);
      return Status::Ok();
    case RingKernel::kAveragePool:
      if (vmcu_seg_average_pool_s8(&p.pool, &ring, bases[1], p.in, bases[0], p.out, workspace.data()) != 0)
        return input_error(g.source, place, "every pooling window to cover an input element");
      return Status::Ok();
    case RingKernel::kMaxPool:
      if (vmcu_seg_max_pool_s8(&p.pool, &ring, bases[1], p.in, bases[0], p.out, workspace.data()) != 0)
        return Status(StatusCode::kInternal, place + ": max pooling failed");
      return Status::Ok();
    case RingKernel::kAlias: return Status::Ok();  // the output is the input's storage
    case RingKernel::kRelocate: vmcu_ring_relocate(&ring, bases[1], bases[0], p.out_bytes); return Status::Ok();
    case RingKernel::kBottleneck:
      if (vmcu_seg_bottleneck_s8(&p.bottleneck, &ring, bases[1], p.in, p.mid_c, bases[0], p.out, stage) != 0)
        return unsupported_error(g.source, place, "kernel windows larger than the segment kernels accept");
      return Status::Ok();
    case RingKernel::kResidualBlock:
      if (vmcu_seg_residual_block_s8(&p.residual, &ring, bases[1], p.in, bases[0], p.out, stage) != 0)
        return unsupported_error(g.source, place, "kernel windows larger than the segment kernels accept");
      return Status::Ok();
    case RingKernel::kStemBlock:
      if (vmcu_seg_stem_block_s8(&p.stem, &ring, bases[1], p.in, bases[0], p.out, stage) != 0)
        return unsupported_error(g.source, place, "kernel windows larger than the segment kernels accept");
      return Status::Ok();
    case RingKernel::kQuantize: {
      // float32 -> int8, one element per step: read 4 bytes, write 1 (the output may cover the input).
      for (int32_t i = 0; i < p.out_bytes; ++i) {
        if (ring.trace) ring.trace(ring.trace_ctx, VMCU_SEG_IN0, 4 * i, 4, 0);
        float x = 0.0f;
        int8_t raw[4];
        vmcu_ring_read(&ring, bases[1], 4 * i, 4, raw);
        std::memcpy(&x, raw, 4);
        int8_t q = 0;
        vmcu_quantize_f32_s8(1, &x, p.scale, p.zero_point, &q);
        if (ring.trace) ring.trace(ring.trace_ctx, VMCU_SEG_OUT, i, 1, 1);
        vmcu_ring_write(&ring, bases[0], i, 1, &q);
      }
      return Status::Ok();
    }
    case RingKernel::kTensorLevel: {
      // TFLite Micro's way: the reference eval reads its inputs and writes its output in place in
      // the arena, where the greedy plan keeps operands that are live together apart.
      const auto whole = [&](int32_t base, size_t n) -> Result<std::span<uint8_t>> {
        if (base < 0 || static_cast<int64_t>(base) + static_cast<int64_t>(n) > ring.cap)
          return Status(StatusCode::kInternal, place + ": a tensor-level operand crosses the end of the arena");
        return std::span<uint8_t>(reinterpret_cast<uint8_t*>(ring.data) + base, n);
      };
      PERFMEM_ASSIGN_OR_RETURN(auto out, whole(bases[0], static_cast<size_t>(p.out_bytes)));
      std::span<const uint8_t> ins[2];
      for (size_t k = 0; k < layer.inputs.size(); ++k) {
        const size_t n = g.tensors[layer.inputs[k]].bytes();
        if (ring.trace)
          ring.trace(ring.trace_ctx, VMCU_SEG_IN0 + static_cast<int32_t>(k), 0, static_cast<int32_t>(n), 0);
        PERFMEM_ASSIGN_OR_RETURN(ins[k], whole(bases[k + 1], n));
        if (!ins[k].empty() && !out.empty() && ins[k].data() < out.data() + out.size() &&
            out.data() < ins[k].data() + ins[k].size())
          return Status(StatusCode::kInternal, place + ": a tensor-level output overlaps its input");
      }
      const auto activation = [&](int t) {
        for (size_t k = 0; k < layer.inputs.size(); ++k)
          if (layer.inputs[k] == t) return ins[k];
        return std::span<const uint8_t>();
      };
      PERFMEM_RETURN_IF_ERROR(eval_op(g, layer.ops.back(), *p.prepared, activation, out));
      if (ring.trace) ring.trace(ring.trace_ctx, VMCU_SEG_OUT, 0, p.out_bytes, 1);
      return Status::Ok();
    }
    case RingKernel::kStaged: {
      // The whole input into the workspace, the operator's reference eval there, the whole output
      // back into the ring (it may cover the input). The workspace holds [input | output]; with
      // MEAN's accumulators (its prepared scratch) that is the layer's workspace_bytes, and
      // nothing else is allocated.
      uint8_t* in = reinterpret_cast<uint8_t*>(workspace.data());
      uint8_t* out = in + p.stage_out_offset;
      if (ring.trace) ring.trace(ring.trace_ctx, VMCU_SEG_IN0, 0, p.in_bytes, 0);
      vmcu_ring_read(&ring, bases[1], 0, p.in_bytes, reinterpret_cast<int8_t*>(in));
      const std::span<const uint8_t> staged_in(in, static_cast<size_t>(p.in_bytes));
      PERFMEM_RETURN_IF_ERROR(eval_op(
          g, layer.ops.back(), *p.prepared, [&](int) { return staged_in; },
          std::span<uint8_t>(out, static_cast<size_t>(p.out_bytes))));
      if (ring.trace) ring.trace(ring.trace_ctx, VMCU_SEG_OUT, 0, p.out_bytes, 1);
      vmcu_ring_write(&ring, bases[0], 0, p.out_bytes, reinterpret_cast<const int8_t*>(out));
      return Status::Ok();
    }
  }
  return Status(StatusCode::kInternal, "unknown ring kernel");
}

void record_access(void* ctx, int32_t operand, int32_t offset, int32_t length, int32_t is_write) {
  static_cast<std::vector<RingAccess>*>(ctx)->push_back({operand, offset, length, is_write != 0});
}

// The trace of a layer's kernel on a scratch ring where the operands do not overlap.
Result<std::vector<RingAccess>> trace_layer(const Graph& g, const LayerDraft& layer) {
  const size_t out = g.tensors[layer.output].bytes();
  const size_t in0 = layer.inputs.empty() ? 0 : g.tensors[layer.inputs[0]].bytes();
  const size_t in1 = layer.inputs.size() < 2 ? 0 : g.tensors[layer.inputs[1]].bytes();
  std::vector<int8_t> scratch(std::max<size_t>(out + in0 + in1, 1), 0);
  std::vector<RingAccess> trace;
  vmcu_ring ring{scratch.data(), static_cast<int32_t>(scratch.size()), record_access, &trace};
  const int32_t bases[3] = {static_cast<int32_t>(in0 + in1), 0, static_cast<int32_t>(in0)};
  std::vector<int32_t> workspace;
  PERFMEM_RETURN_IF_ERROR(run_layer(g, layer, *layer.params, ring, bases, workspace));
  return trace;
}

// The prepared parameters of operator `index` for a staged or tensor-level layer.
Result<std::unique_ptr<PreparedOp>> prepared_params(const Graph& g, int index) {
  auto po = std::make_unique<PreparedOp>();
  PERFMEM_RETURN_IF_ERROR(prepare_op(g, static_cast<size_t>(index), *po));
  return po;
}

// PAD i folds into op i+1 when only H/W are padded with the input's zero point and op i+1, a
// VALID conv or depthwise conv, is the pad output's only reader.
bool pad_folds(const Graph& g, const Liveness& live, size_t i, int32_t pad_before[2]) {
  const Operator& pad = g.ops[i];
  if (pad.kind != OpKind::kPad || i + 1 >= g.ops.size()) return false;
  const Operator& next = g.ops[i + 1];
  if (next.kind != OpKind::kConv2D && next.kind != OpKind::kDepthwiseConv2D) return false;
  if (next.options.padding != Padding::kValid || next.inputs[0] != pad.outputs[0]) return false;
  const int padded = pad.outputs[0];
  if (live.last_use[padded] != static_cast<int>(i + 1)) return false;
  for (int t : g.outputs)
    if (t == padded) return false;
  const Tensor& in = g.tensors[pad.inputs[0]];
  const Tensor& out = g.tensors[padded];
  const Tensor& pads = g.tensors[pad.inputs[1]];
  if (in.shape.size() != 4 || pads.type != ElementType::kInt32 || pads.element_count() != 8) return false;
  if (in.quantization.zero_point() != out.quantization.zero_point() ||
      in.quantization.scale() != out.quantization.scale())
    return false;
  const auto* v = reinterpret_cast<const int32_t*>(pads.data.data());
  if (v[0] != 0 || v[1] != 0 || v[6] != 0 || v[7] != 0) return false;
  pad_before[0] = v[2];
  pad_before[1] = v[4];
  return true;
}

bool is_ring_tensor(const Graph& g, int t) { return t >= 0 && !g.tensors[t].is_constant; }

Result<std::vector<LayerDraft>> build_layers(const Graph& g) {
  const Liveness live = compute_liveness(g);
  std::vector<LayerDraft> layers;
  for (size_t i = 0; i < g.ops.size(); ++i) {
    LayerDraft layer;
    auto p = std::make_shared<RingLayerParams>();
    int32_t pad_before[2] = {0, 0};
    const bool folded = pad_folds(g, live, i, pad_before);
    if (folded) layer.ops.push_back(static_cast<int>(i++));
    const Operator& op = g.ops[i];
    layer.ops.push_back(static_cast<int>(i));
    layer.output = op.outputs[0];
    const int first_input = folded ? g.ops[i - 1].inputs[0] : op.inputs[0];
    for (size_t k = 0; k < op.inputs.size(); ++k) {
      const int t = k == 0 ? first_input : op.inputs[k];
      if (is_ring_tensor(g, t) && std::find(layer.inputs.begin(), layer.inputs.end(), t) == layer.inputs.end())
        layer.inputs.push_back(t);
    }
    p->in_bytes = layer.inputs.empty() ? 0 : static_cast<int32_t>(g.tensors[layer.inputs[0]].bytes());
    p->out_bytes = static_cast<int32_t>(g.tensors[layer.output].bytes());
    // A segment kernel when the operator's module has a lowering and its conditions hold;
    // otherwise the operator runs staged through its reference eval.
    bool done = false;
    if (const auto lower = ops::registration(op.kind).lower) {
      const ops::LowerContext ctx{g, i, live, first_input, folded, {pad_before[0], pad_before[1]}};
      PERFMEM_RETURN_IF_ERROR(lower(ctx, layer, *p, done));
    }
    if (!done) {
      if (folded) return Status(StatusCode::kInternal, "a folded PAD must precede a conv layer");
      if (layer.inputs.size() != 1)
        return unsupported_error(g.source, g.op_place(i),
                                 "operators without a segment kernel need exactly one activation input");
      layer.kernel = RingKernel::kStaged;
      PERFMEM_ASSIGN_OR_RETURN(p->prepared, prepared_params(g, static_cast<int>(i)));
      // Workspace [input | output]: a float output (DEQUANTIZE) starts 4-byte aligned; MEAN's
      // int32 accumulators (its prepared scratch) count as workspace too.
      const bool wide_output = g.tensors[layer.output].type != ElementType::kInt8;
      p->stage_out_offset = wide_output ? (p->in_bytes + 3) / 4 * 4 : p->in_bytes;
      layer.workspace_bytes = static_cast<size_t>(p->stage_out_offset) + static_cast<size_t>(p->out_bytes) +
                              p->prepared->scratch.size() * sizeof(int32_t);
    }
    layer.params = std::move(p);
    layers.push_back(std::move(layer));
  }
  return layers;
}

Status solve_layer(const Graph& g, LayerDraft& layer) {
  PERFMEM_ASSIGN_OR_RETURN(auto trace, trace_layer(g, layer));
  const RingDistances d = solve_distances(trace);
  layer.distance[0] = d.input[0];
  layer.distance[1] = d.input[1];
  return Status::Ok();
}

// A fused replacement for layers [first, last] of the unfused list.
struct FusionCandidate {
  size_t first = 0, last = 0;
  LayerDraft fused;
};

// Readers of each tensor (operator inputs).
std::vector<int> reader_counts(const Graph& g) {
  std::vector<int> readers(g.tensors.size(), 0);
  for (const Operator& op : g.ops)
    for (int t : op.inputs)
      if (t >= 0) ++readers[t];
  for (int t : g.outputs) ++readers[t];  // a graph output is read by the caller
  return readers;
}

std::shared_ptr<const RingLayerParams> with_parts(std::shared_ptr<RingLayerParams> p,
                                                  std::initializer_list<const LayerDraft*> parts) {
  for (const LayerDraft* l : parts)
    if (l) p->parts.push_back(l->params);
  return p;
}

// The other operand of an ADD layer reading `t`, or -1.
int add_partner(const RingLayer& add, int t) {
  if (add.kernel != RingKernel::kAdd || add.inputs.size() != 2) return -1;
  if (add.inputs[0] == t) return add.inputs[1];
  if (add.inputs[1] == t) return add.inputs[0];
  return -1;
}

// The depthwise -> projection tail of a fused block, from the two layers' parameters.
vmcu_dw_project_params dw_project(const RingLayerParams& dw, const RingLayerParams& project) {
  vmcu_dw_project_params t{};
  t.depthwise = dw.conv;
  t.kh = dw.filter.h;
  t.kw = dw.filter.w;
  t.dw_filter = dw.weights;
  t.dw_bias = dw.bias;
  t.project = project.conv;
  t.project_filter = project.weights;
  t.project_bias = project.bias;
  return t;
}

// expand? -> depthwise -> project -> add? starting at layer j; with `row_cache`, an expansion
// keeps its expanded pixels in a cache in the workspace instead of being recomputed per window tap.
bool match_bottleneck(const Graph& g, const std::vector<LayerDraft>& L, const std::vector<int>& readers, size_t j,
                      FusionCandidate& c, bool row_cache = false) {
  size_t k = j;
  const LayerDraft* expand = nullptr;
  if (L[k].kernel == RingKernel::kPointwise) expand = &L[k++];
  if (k + 1 >= L.size() || L[k].kernel != RingKernel::kDepthwise || L[k + 1].kernel != RingKernel::kPointwise)
    return false;
  const LayerDraft& dw = L[k];
  const LayerDraft& project = L[k + 1];
  const int x = expand ? expand->inputs[0] : dw.inputs[0];
  if (expand && (dw.inputs[0] != expand->output || readers[expand->output] != 1)) return false;
  // A folded PAD's input is the expand output; its own reader count was checked by the fold.
  if (dw.params->conv.depth_multiplier != 1 || project.inputs[0] != dw.output || readers[dw.output] != 1) return false;
  const LayerDraft* add = nullptr;
  if (k + 2 < L.size() && add_partner(L[k + 2], project.output) == x && readers[project.output] == 1 &&
      g.tensors[x].shape == g.tensors[project.output].shape)
    add = &L[k + 2];
  if (!expand && !add && false) return false;
  auto p = std::make_shared<RingLayerParams>();
  const RingLayerParams& dwp = *dw.params;
  const RingLayerParams& prp = *project.params;
  vmcu_bottleneck_params& b = p->bottleneck;
  b.has_expand = expand != nullptr;
  b.row_cache = expand != nullptr && row_cache;
  if (expand) {
    b.expand = expand->params->conv;
    b.expand_filter = expand->params->weights;
    b.expand_bias = expand->params->bias;
  }
  b.tail = dw_project(dwp, prp);
  if (add) {
    b.has_residual = 1;
    b.residual_is_input1 = add->inputs[0] == x;
    b.add = add->params->add;
  }
  p->in = ops::to_shape4(g.tensors[x].shape);
  p->mid_c = dwp.in.c;
  p->out = prp.out;
  p->in_bytes = static_cast<int32_t>(g.tensors[x].bytes());
  c.first = j;
  c.last = add ? k + 2 : k + 1;
  c.fused.kernel = RingKernel::kBottleneck;
  for (size_t l = c.first; l <= c.last; ++l) c.fused.ops.insert(c.fused.ops.end(), L[l].ops.begin(), L[l].ops.end());
  c.fused.inputs = {x};
  c.fused.output = add ? add->output : project.output;
  p->out_bytes = static_cast<int32_t>(g.tensors[c.fused.output].bytes());
  c.fused.workspace_bytes = static_cast<size_t>(vmcu_seg_bottleneck_workspace_bytes(&b, p->in, p->mid_c, p->out.c));
  c.fused.params = with_parts(std::move(p), {expand, &dw, &project, add});
  return true;
}

// conv1 -> conv2 -> add(shortcut) with the shortcut the block input or a 1x1 conv of it.
bool match_residual_block(const Graph& g, const std::vector<LayerDraft>& L, const std::vector<int>& readers, size_t j,
                          FusionCandidate& c) {
  if (j + 2 >= L.size()) return false;
  const LayerDraft& conv1 = L[j];
  const LayerDraft& conv2 = L[j + 1];
  auto is_conv = [](const RingLayer& l) { return l.kernel == RingKernel::kConv || l.kernel == RingKernel::kPointwise; };
  if (!is_conv(conv1) || !is_conv(conv2) || conv1.ops.size() != 1 || conv2.ops.size() != 1) return false;
  const int x = conv1.inputs[0];
  if (conv2.inputs[0] != conv1.output || readers[conv1.output] != 1 || readers[conv2.output] != 1) return false;
  const RingLayerParams& c2 = *conv2.params;
  if (c2.conv.dilation_h != 1 || c2.conv.dilation_w != 1) return false;
  const LayerDraft* shortcut = nullptr;
  size_t add_index = j + 2;
  if (add_partner(L[add_index], conv2.output) != x) {
    if (j + 3 >= L.size() || !is_conv(L[j + 2]) || L[j + 2].inputs[0] != x || L[j + 2].ops.size() != 1) return false;
    const RingLayerParams& sp = *L[j + 2].params;
    if (sp.filter.h != 1 || sp.filter.w != 1 || sp.conv.pad_h != 0 || sp.conv.pad_w != 0) return false;
    shortcut = &L[j + 2];
    add_index = j + 3;
    if (readers[shortcut->output] != 1 || add_partner(L[add_index], conv2.output) != shortcut->output) return false;
    if (g.tensors[shortcut->output].shape != g.tensors[conv2.output].shape) return false;
  } else if (g.tensors[x].shape != g.tensors[conv2.output].shape) {
    return false;
  }
  const LayerDraft& add = L[add_index];
  auto p = std::make_shared<RingLayerParams>();
  vmcu_residual_block_params& r = p->residual;
  const RingLayerParams& c1 = *conv1.params;
  r.conv1 = c1.conv;
  r.filter1_shape = c1.filter;
  r.filter1 = c1.weights;
  r.bias1 = c1.bias;
  r.mid_shape = c1.out;
  r.conv2 = c2.conv;
  r.filter2_shape = c2.filter;
  r.filter2 = c2.weights;
  r.bias2 = c2.bias;
  const int shortcut_tensor = shortcut ? shortcut->output : x;
  if (shortcut) {
    r.has_shortcut_conv = 1;
    r.shortcut = shortcut->params->conv;
    r.shortcut_filter = shortcut->params->weights;
    r.shortcut_bias = shortcut->params->bias;
  }
  r.shortcut_is_input1 = add.inputs[0] == shortcut_tensor;
  r.add = add.params->add;
  p->in = c1.in;
  p->out = c2.out;
  p->in_bytes = static_cast<int32_t>(g.tensors[x].bytes());
  p->out_bytes = static_cast<int32_t>(g.tensors[add.output].bytes());
  c.first = j;
  c.last = add_index;
  c.fused.kernel = RingKernel::kResidualBlock;
  for (size_t l = c.first; l <= c.last; ++l) c.fused.ops.insert(c.fused.ops.end(), L[l].ops.begin(), L[l].ops.end());
  c.fused.inputs = {x};
  c.fused.output = add.output;
  c.fused.workspace_bytes = static_cast<size_t>(vmcu_seg_residual_block_workspace_bytes(&r, p->out.c));
  c.fused.params = with_parts(std::move(p), {&conv1, &conv2, shortcut, &add});
  return true;
}

// conv (kxk, any stride: the network's stem) -> depthwise (multiplier 1) -> 1x1 project, where
// neither intermediate has another reader. The conv output never enters the ring (a row cache),
// so a block whose conv widens a small input (3 -> 16 channels) needs about |input| of ring.
bool match_stem_block(const std::vector<LayerDraft>& L, const std::vector<int>& readers, size_t j, FusionCandidate& c) {
  if (j + 2 >= L.size()) return false;
  const LayerDraft& conv = L[j];
  const LayerDraft& dw = L[j + 1];
  const LayerDraft& project = L[j + 2];
  if (conv.kernel != RingKernel::kConv || dw.kernel != RingKernel::kDepthwise ||
      project.kernel != RingKernel::kPointwise)
    return false;
  const RingLayerParams& cp = *conv.params;
  const RingLayerParams& dwp = *dw.params;
  const RingLayerParams& prp = *project.params;
  // A folded PAD in front of the depthwise reads the conv output; its shape is the unpadded one.
  if (dw.inputs[0] != conv.output || readers[conv.output] != 1 || dwp.conv.depth_multiplier != 1 ||
      project.inputs[0] != dw.output || readers[dw.output] != 1)
    return false;
  if (dwp.in.n != cp.out.n || dwp.in.h != cp.out.h || dwp.in.w != cp.out.w || dwp.in.c != cp.out.c) return false;
  auto p = std::make_shared<RingLayerParams>();
  vmcu_stem_block_params& s = p->stem;
  s.conv = cp.conv;
  s.conv_filter_shape = cp.filter;
  s.conv_filter = cp.weights;
  s.conv_bias = cp.bias;
  s.mid_shape = cp.out;
  s.tail = dw_project(dwp, prp);
  p->in = cp.in;
  p->out = prp.out;
  p->in_bytes = cp.in_bytes;
  p->out_bytes = prp.out_bytes;
  c.first = j;
  c.last = j + 2;
  c.fused.kernel = RingKernel::kStemBlock;
  for (size_t l = c.first; l <= c.last; ++l) c.fused.ops.insert(c.fused.ops.end(), L[l].ops.begin(), L[l].ops.end());
  c.fused.inputs = {conv.inputs[0]};
  c.fused.output = project.output;
  c.fused.workspace_bytes = static_cast<size_t>(vmcu_seg_stem_block_workspace_bytes(&s, p->out.c));
  c.fused.params = with_parts(std::move(p), {&conv, &dw, &project});
  return true;
}

std::vector<FusionCandidate> find_fusions(const Graph& g, const std::vector<LayerDraft>& layers) {
  const std::vector<int> readers = reader_counts(g);
  std::vector<FusionCandidate> out;
  for (size_t j = 0; j < layers.size(); ++j) {
    FusionCandidate c;
    if (match_stem_block(layers, readers, j, c) || match_bottleneck(g, layers, readers, j, c) ||
        match_residual_block(g, layers, readers, j, c))
      out.push_back(std::move(c));
  }
  return out;
}

// Moves the drafts into the plan as plain layers indexing `params`, with their ring offsets.
PlacedPlan finish_plan(RingPlan plan, std::vector<LayerDraft> drafts) {
  PlacedPlan out;
  for (LayerDraft& d : drafts) {
    RingLayer layer = d;
    layer.params_index = static_cast<int>(out.params.size());
    out.params.push_back(std::move(d.params));
    plan.layers.push_back(std::move(layer));
  }
  for (RingLayer& layer : plan.layers) {
    layer.ring_offset[0] = plan.ring_offset(layer.output);
    for (size_t k = 0; k < layer.inputs.size() && k < 2; ++k)
      layer.ring_offset[k + 1] = plan.ring_offset(layer.inputs[k]);
  }
  out.plan = std::move(plan);
  return out;
}

// Deliberately unsafe plans for the verifier's tests (create_ring_model_with_shrunk_distance).
struct ShrunkDistance {
  int layer = -1;
  int64_t bytes = 0;
  size_t workspace_bytes = 0;  // taken off the layer's workspace as well
};

Result<PlacedPlan> place(const Graph& g, std::vector<LayerDraft> layers, const ShrunkDistance& shrink = {}) {
  RingPlan plan;
  const size_t n = g.tensors.size();
  plan.base.assign(n, 0);
  plan.placed.assign(n, false);
  plan.first_layer.assign(n, -1);
  plan.last_layer.assign(n, -1);
  for (int t : g.inputs) {
    plan.placed[t] = true;
    plan.first_layer[t] = 0;
  }
  for (size_t l = 0; l < layers.size(); ++l) {
    for (int t : layers[l].inputs) plan.last_layer[t] = static_cast<int>(l);
    if (plan.first_layer[layers[l].output] < 0) plan.first_layer[layers[l].output] = static_cast<int>(l);
  }
  for (const LayerDraft& layer : layers)  // written but never read: live while being written
    plan.last_layer[layer.output] = std::max(plan.last_layer[layer.output], plan.first_layer[layer.output]);
  // Graph outputs are read by the caller after the last layer: they stay live past it, so no
  // layer (not even the last one reading them) may write over them.
  const int past_end = static_cast<int>(layers.size());
  for (int t : g.outputs) plan.last_layer[t] = past_end;
  for (int t : g.inputs)
    if (plan.last_layer[t] < 0) plan.last_layer[t] = 0;

  auto bytes = [&](int t) { return static_cast<int64_t>(g.tensors[t].bytes()); };
  for (size_t l = 0; l < layers.size(); ++l) {
    LayerDraft& layer = layers[l];
    const int li = static_cast<int>(l);
    if (li == shrink.layer) {
      layer.distance[0] -= shrink.bytes;
      layer.workspace_bytes -= std::min(layer.workspace_bytes, shrink.workspace_bytes);
    }
    const int out = layer.output;
    int64_t out_base = std::numeric_limits<int64_t>::max();
    if (layer.kernel == RingKernel::kAlias) {
      out_base = plan.base[layer.inputs[0]];
    } else {
      for (size_t k = 0; k < layer.inputs.size(); ++k) {
        const int t = layer.inputs[k];
        if (plan.last_layer[t] == li) out_base = std::min(out_base, plan.base[t] - layer.distance[k]);
      }
      for (size_t t = 0; t < n; ++t) {
        if (!plan.placed[t] || static_cast<int>(t) == out) continue;
        const bool live_now = plan.first_layer[t] <= li && plan.last_layer[t] >= li;
        const bool dies_here_as_input =
            plan.last_layer[t] == li &&
            std::find(layer.inputs.begin(), layer.inputs.end(), static_cast<int>(t)) != layer.inputs.end();
        if (live_now && !dies_here_as_input) out_base = std::min(out_base, plan.base[t] - bytes(out));
      }
      if (out_base == std::numeric_limits<int64_t>::max()) out_base = -bytes(out);
    }
    plan.base[out] = out_base;
    plan.placed[out] = true;
    // Span of everything live while this layer runs.
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
    for (size_t t = 0; t < n; ++t) {
      if (!plan.placed[t] || plan.first_layer[t] > li || plan.last_layer[t] < li || bytes(static_cast<int>(t)) == 0)
        continue;
      lo = std::min(lo, plan.base[t]);
      hi = std::max(hi, plan.base[t] + bytes(static_cast<int>(t)));
    }
    plan.span_per_layer.push_back(hi > lo ? static_cast<size_t>(hi - lo) : 0);
    plan.ring_bytes = std::max(plan.ring_bytes, plan.span_per_layer.back());
    plan.workspace_bytes = std::max(plan.workspace_bytes, layer.workspace_bytes);
  }
  plan.ring_bytes = std::max<size_t>(plan.ring_bytes, 1);
  plan.peak_bytes = plan.ring_bytes + plan.workspace_bytes;
  return finish_plan(std::move(plan), std::move(layers));
}

// The tensor-level plan: TFLite Micro's greedy arena, one kTensorLevel layer per operator.
Result<PlacedPlan> tensor_level_plan(const Graph& g) {
  const std::vector<BufferRequirement> reqs = planner_requirements(g, PlannerKind::kGreedy);
  const MemoryPlan arena = plan_memory(reqs, PlannerKind::kGreedy);
  PERFMEM_RETURN_IF_ERROR(verify_plan(reqs, arena));
  RingPlan plan;
  plan.placement = RingPlacement::kTensor;
  const size_t n = g.tensors.size();
  plan.base.assign(n, 0);
  plan.placed.assign(n, false);
  plan.first_layer.assign(n, -1);
  plan.last_layer.assign(n, -1);
  const Liveness live = compute_liveness(g);
  const int past_end = static_cast<int>(g.ops.size());
  for (size_t t = 0; t < n; ++t) {
    if (!is_ring_tensor(g, static_cast<int>(t))) continue;
    plan.placed[t] = true;  // zero-sized tensors (no requirement) sit at 0 and hold nothing
    plan.first_layer[t] = live.first_use[t];
    plan.last_layer[t] = live.last_use[t];
  }
  for (int t : g.outputs) plan.last_layer[t] = past_end;
  for (const BufferRequirement& r : reqs)
    plan.base[r.tensor] = static_cast<int64_t>(arena.placements[&r - reqs.data()].offset);
  std::vector<LayerDraft> drafts;
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const Operator& op = g.ops[i];
    LayerDraft layer;
    layer.ops = {static_cast<int>(i)};
    layer.kernel = RingKernel::kTensorLevel;
    layer.output = op.outputs[0];
    for (int t : op.inputs)
      if (is_ring_tensor(g, t) && std::find(layer.inputs.begin(), layer.inputs.end(), t) == layer.inputs.end())
        layer.inputs.push_back(t);
    if (layer.inputs.size() > 2)
      return unsupported_error(g.source, g.op_place(i), "at most two activation inputs per operator");
    auto p = std::make_shared<RingLayerParams>();
    p->out_bytes = static_cast<int32_t>(g.tensors[layer.output].bytes());
    p->in_bytes = layer.inputs.empty() ? 0 : static_cast<int32_t>(g.tensors[layer.inputs[0]].bytes());
    PERFMEM_ASSIGN_OR_RETURN(p->prepared, prepared_params(g, static_cast<int>(i)));
    layer.params = std::move(p);
    // Arena in use while the operator runs: the highest end among the live tensors.
    int64_t in_use = 0;
    for (size_t t = 0; t < n; ++t)
      if (plan.placed[t] && plan.first_layer[t] <= static_cast<int>(i) && plan.last_layer[t] >= static_cast<int>(i))
        in_use = std::max<int64_t>(in_use, plan.base[t] + static_cast<int64_t>(g.tensors[t].bytes()));
    plan.span_per_layer.push_back(static_cast<size_t>(in_use));
    drafts.push_back(std::move(layer));
  }
  plan.ring_bytes = std::max<size_t>(arena.peak_bytes, 1);
  plan.workspace_bytes = 0;
  plan.peak_bytes = plan.ring_bytes;
  return finish_plan(std::move(plan), std::move(drafts));
}

// A region of the segment-level layer list between two cuts, and what it needs either way.
struct Region {
  size_t first_layer = 0, end_layer = 0;  // segment-level layers [first, end)
  int first_op = 0, last_op = 0;          // the graph operators they execute
  int entry_tensor = -1;                  // the one tensor live at the cut before it (-1: region 0)
  size_t ring = 0, workspace = 0;         // segment level: largest span and workspace
  size_t arena = 0;                       // tensor level: highest end of the greedy offsets in use
};

// The tensor live between layers l-1 and l of `plan` if it is the only one (zero-sized tensors
// aside), else -1. Layers are ordered, so "live across" = written at or before l-1 (or a graph
// input) and read at or after l.
int only_live_tensor(const Graph& g, const RingPlan& plan, int before, int after) {
  int found = -1;
  for (size_t t = 0; t < g.tensors.size(); ++t) {
    if (!plan.placed[t] || g.tensors[t].bytes() == 0) continue;
    if (plan.first_layer[t] > before || plan.last_layer[t] < after) continue;
    if (found >= 0) return -1;
    found = static_cast<int>(t);
  }
  return found;
}

// The smallest mixed plan: per region between single-tensor cuts, its segment-level layers or
// its operators at tensor level, joined by kRelocate layers. Returns nothing when the network has
// no cut. Both inputs are verified-by-construction plans of the same graph: `segment` places
// every ring tensor in unwrapped addresses, `tensor` at greedy offsets with one layer per op.
std::optional<PlacedPlan> mixed_plan(const Graph& g, const PlacedPlan& segment, const PlacedPlan& tensor) {
  const RingPlan& sp = segment.plan;
  const RingPlan& tp = tensor.plan;
  const size_t layer_count = sp.layers.size();
  if (layer_count < 2 || tp.layers.size() != g.ops.size()) return std::nullopt;
  // Cuts: exactly one tensor live between two layers in both plans' lifetimes.
  std::vector<Region> regions(1);
  for (size_t l = 1; l < layer_count; ++l) {
    const int op_before = sp.layers[l - 1].ops.back(), op_after = sp.layers[l].ops.front();
    if (op_after != op_before + 1) return std::nullopt;  // layers cover the operators in order
    const int t = only_live_tensor(g, sp, static_cast<int>(l) - 1, static_cast<int>(l));
    if (t < 0 || only_live_tensor(g, tp, op_before, op_after) != t) continue;
    regions.back().end_layer = l;
    Region next;
    next.first_layer = l;
    next.entry_tensor = t;
    regions.push_back(next);
  }
  regions.back().end_layer = layer_count;
  if (regions.size() < 2) return std::nullopt;
  for (Region& r : regions) {
    r.first_op = sp.layers[r.first_layer].ops.front();
    r.last_op = sp.layers[r.end_layer - 1].ops.back();
    for (size_t l = r.first_layer; l < r.end_layer; ++l) {
      r.ring = std::max(r.ring, sp.span_per_layer[l]);
      r.workspace = std::max(r.workspace, sp.layers[l].workspace_bytes);
    }
    for (int op = r.first_op; op <= r.last_op; ++op) r.arena = std::max(r.arena, tp.span_per_layer[op]);
  }
  // Choose: for caps (ring, workspace) taken from the regions' own values, every region within
  // both caps runs at segment level and the others at tensor level; the memory is
  // max(segment rings, tensor arenas) + segment workspace. Try every pair of caps (a few hundred
  // regions at most); ties keep more regions at segment level.
  std::vector<bool> best_kind;  // true: segment level
  size_t best_bytes = std::numeric_limits<size_t>::max(), best_segment_regions = 0;
  for (const Region& ring_cap : regions) {
    for (const Region& workspace_cap : regions) {
      std::vector<bool> kind(regions.size());
      size_t ring = 0, arena = 0, workspace = 0, segment_regions = 0;
      for (size_t i = 0; i < regions.size(); ++i) {
        kind[i] = regions[i].ring <= ring_cap.ring && regions[i].workspace <= workspace_cap.workspace;
        if (kind[i]) {
          ring = std::max(ring, regions[i].ring);
          workspace = std::max(workspace, regions[i].workspace);
          ++segment_regions;
        } else {
          arena = std::max(arena, regions[i].arena);
        }
      }
      const size_t bytes = std::max<size_t>({ring, arena, 1}) + workspace;
      if (bytes < best_bytes || (bytes == best_bytes && segment_regions > best_segment_regions)) {
        best_bytes = bytes;
        best_segment_regions = segment_regions;
        best_kind = std::move(kind);
      }
    }
  }
  if (best_segment_regions == 0 || best_segment_regions == regions.size()) return std::nullopt;

  PlacedPlan out;
  RingPlan& plan = out.plan;
  plan.placement = RingPlacement::kMixed;
  size_t ring = 1;
  for (size_t i = 0; i < regions.size(); ++i) ring = std::max(ring, best_kind[i] ? regions[i].ring : regions[i].arena);
  plan.ring_bytes = ring;
  const int64_t cap = static_cast<int64_t>(ring);
  auto wrap = [&](int64_t unwrapped) { return static_cast<int32_t>(((unwrapped % cap) + cap) % cap); };
  const size_t n = g.tensors.size();
  plan.base.assign(n, 0);
  plan.placed.assign(n, false);
  auto add_layer = [&](RingLayer layer, std::shared_ptr<const RingLayerParams> params, size_t span) {
    layer.params_index = static_cast<int>(out.params.size());
    out.params.push_back(std::move(params));
    plan.layers.push_back(std::move(layer));
    plan.span_per_layer.push_back(span);
  };
  // Where a tensor sits in a region of either kind.
  auto offset_in = [&](bool segment_level, int t) { return segment_level ? wrap(sp.base[t]) : tp.ring_offset(t); };
  const int input = g.inputs[0];
  plan.placed[input] = true;
  plan.base[input] = offset_in(best_kind[0], input);
  for (size_t i = 0; i < regions.size(); ++i) {
    const Region& r = regions[i];
    const bool seg = best_kind[i];
    if (i > 0 && seg != best_kind[i - 1] &&
        offset_in(seg, r.entry_tensor) != offset_in(best_kind[i - 1], r.entry_tensor)) {
      const int t = r.entry_tensor;
      RingLayer move;
      move.kernel = RingKernel::kRelocate;
      move.inputs = {t};
      move.output = t;
      move.ring_offset[1] = offset_in(best_kind[i - 1], t);
      move.ring_offset[0] = offset_in(seg, t);
      auto params = std::make_shared<RingLayerParams>();
      params->in_bytes = params->out_bytes = static_cast<int32_t>(g.tensors[t].bytes());
      add_layer(std::move(move), std::move(params), g.tensors[t].bytes());
    }
    if (seg) {
      for (size_t l = r.first_layer; l < r.end_layer; ++l) {
        RingLayer layer = sp.layers[l];
        layer.ring_offset[0] = wrap(sp.base[layer.output]);
        for (size_t k = 0; k < layer.inputs.size() && k < 2; ++k)
          layer.ring_offset[k + 1] = wrap(sp.base[layer.inputs[k]]);
        if (!plan.placed[layer.output]) plan.base[layer.output] = sp.base[layer.output];
        plan.placed[layer.output] = true;
        plan.workspace_bytes = std::max(plan.workspace_bytes, layer.workspace_bytes);
        add_layer(std::move(layer), segment.params[static_cast<size_t>(sp.layers[l].params_index)],
                  sp.span_per_layer[l]);
      }
    } else {
      for (int op = r.first_op; op <= r.last_op; ++op) {
        const RingLayer& layer = tp.layers[static_cast<size_t>(op)];
        if (!plan.placed[layer.output]) plan.base[layer.output] = tp.base[layer.output];
        plan.placed[layer.output] = true;
        add_layer(layer, tensor.params[static_cast<size_t>(layer.params_index)], tp.span_per_layer[op]);
      }
    }
  }
  plan.peak_bytes = plan.ring_bytes + plan.workspace_bytes;
  // Lifetimes in the merged layer list: written first by its producer (graph input: before layer
  // 0), read last by its last reader (a relocation reads and writes the same tensor).
  plan.first_layer.assign(n, -1);
  plan.last_layer.assign(n, -1);
  plan.first_layer[input] = 0;
  for (size_t l = 0; l < plan.layers.size(); ++l) {
    const RingLayer& layer = plan.layers[l];
    for (int t : layer.inputs) plan.last_layer[t] = static_cast<int>(l);
    if (plan.first_layer[layer.output] < 0) plan.first_layer[layer.output] = static_cast<int>(l);
    plan.last_layer[layer.output] = std::max(plan.last_layer[layer.output], plan.first_layer[layer.output]);
  }
  if (plan.last_layer[input] < 0) plan.last_layer[input] = 0;
  for (int t : g.outputs) plan.last_layer[t] = static_cast<int>(plan.layers.size());
  return out;
}

// Shadow state of the verifier: the tensor each ring byte holds.
constexpr int32_t kUnwritten = -1;
constexpr int32_t kDead = -2;
// A workspace byte written as a stage (not as a cached intermediate byte) in the current layer.
constexpr int32_t kStage = -3;

struct Shadow {
  const Graph* graph = nullptr;
  const RingPlan* plan = nullptr;
  std::vector<int32_t> owner;
  int layer = 0;
  int operand_tensor[3] = {-1, -1, -1};
  int32_t bases[3] = {0, 0, 0};
  Status failure;
  size_t reads = 0, writes = 0;
  // The current layer's workspace: the bytes the plan gives it, and per byte what the layer
  // stored there (kUnwritten, kStage, or the offset of a cached intermediate byte). A layer's
  // workspace holds nothing when it starts.
  size_t workspace_bytes = 0;
  std::vector<int32_t> workspace_owner;
  int32_t cached_offset = -1;  // set by a VMCU_SEG_CACHED report, for the next workspace access

  std::string tensor_name(int32_t t) const {
    if (t == kUnwritten) return "nothing (never written)";
    if (t == kDead) return "a dead tensor";
    return "'" + graph->tensors[t].name + "'";
  }

  std::string layer_name() const {
    const RingLayer& l = plan->layers[static_cast<size_t>(layer)];
    const std::string what =
        l.ops.empty() ? std::string(ring_kernel_name(l.kernel)) : graph->op_place(static_cast<size_t>(l.ops.back()));
    return graph->source + ": layer " + std::to_string(layer) + " (" + what + ")";
  }

  static std::string workspace_content(int32_t owner) {
    if (owner == kUnwritten) return "nothing written in this layer";
    if (owner == kStage) return "a stage";
    return "byte " + std::to_string(owner) + " of the block's intermediate tensor";
  }

  // A workspace access: inside the plan's workspace for the layer, and a read finds what the
  // layer stored there (the cached byte it names, or a stage byte).
  void workspace_access(int32_t offset, int32_t length, bool is_write) {
    const int32_t cached = cached_offset;
    cached_offset = -1;
    if (!failure.ok()) return;
    if (offset < 0 || static_cast<size_t>(offset) + static_cast<size_t>(length) > workspace_bytes) {
      failure =
          Status(StatusCode::kInternal, layer_name() + " uses workspace bytes [" + std::to_string(offset) + ", " +
                                            std::to_string(int64_t{offset} + length) + ") but the plan gives it " +
                                            std::to_string(workspace_bytes) + " bytes");
      return;
    }
    for (int32_t j = 0; j < length; ++j) {
      const int32_t want = cached >= 0 ? cached + j : kStage;
      int32_t& owner = workspace_owner[static_cast<size_t>(offset + j)];
      if (is_write) {
        owner = want;
        ++writes;
        continue;
      }
      ++reads;
      if (owner != want) {
        failure = Status(StatusCode::kInternal, layer_name() + " reads workspace byte " + std::to_string(offset + j) +
                                                    " as " + workspace_content(want) + ", which holds " +
                                                    workspace_content(owner) +
                                                    ": the workspace was overwritten before its last read");
        return;
      }
    }
  }
};

void shadow_access(void* ctx, int32_t operand, int32_t offset, int32_t length, int32_t is_write) {
  Shadow& s = *static_cast<Shadow*>(ctx);
  if (operand == VMCU_SEG_CACHED) {
    s.cached_offset = offset;
    return;
  }
  if (operand == VMCU_SEG_WORKSPACE) {
    s.workspace_access(offset, length, is_write != 0);
    return;
  }
  const int32_t cap = static_cast<int32_t>(s.owner.size());
  const int tensor = s.operand_tensor[operand];
  for (int32_t j = 0; j < length; ++j) {
    int32_t pos = s.bases[operand] + offset + j;
    while (pos >= cap) pos -= cap;
    if (is_write) {
      s.owner[pos] = tensor;
      ++s.writes;
    } else {
      ++s.reads;
      if (s.owner[pos] != tensor && s.failure.ok()) {
        s.failure =
            Status(StatusCode::kInternal, s.layer_name() + " reads byte " + std::to_string(offset + j) + " of '" +
                                              s.graph->tensors[tensor].name + "' at ring offset " +
                                              std::to_string(pos) + ", which holds " + s.tensor_name(s.owner[pos]) +
                                              ": the plan overwrote it before its last read");
      }
    }
  }
}

// The segment-level plan: layers, solved distances, fusion choices, placement.
// The peak of the plan the planner returns for this segment-level plan: the smallest of it, the
// tensor-level plan and their best mixed plan (`tensor` null: no fallback, the segment plan's).
size_t returned_peak(const Graph& g, const RingPlanOptions& options, const PlacedPlan& segment,
                     const PlacedPlan* tensor) {
  size_t peak = segment.plan.peak_bytes;
  if (!tensor) return peak;
  peak = std::min(peak, tensor->plan.peak_bytes);
  if (options.per_region_choice)
    if (const auto mixed = mixed_plan(g, segment, *tensor)) peak = std::min(peak, mixed->plan.peak_bytes);
  return peak;
}

Result<PlacedPlan> segment_level_plan(const Graph& g, const RingPlanOptions& options, const ShrunkDistance& shrink,
                                      const PlacedPlan* tensor) {
  PERFMEM_ASSIGN_OR_RETURN(auto layers, build_layers(g));
  for (LayerDraft& l : layers) PERFMEM_RETURN_IF_ERROR(solve_layer(g, l));
  std::vector<FusionCandidate> candidates = options.fuse ? find_fusions(g, layers) : std::vector<FusionCandidate>{};
  for (FusionCandidate& c : candidates) PERFMEM_RETURN_IF_ERROR(solve_layer(g, c.fused));
  // Per block, fused or unfused, whichever needs less memory while the block's operators run
  // (ring in use + workspace), then the lower whole-network peak; ties stay unfused (fused
  // bottlenecks recompute their expansion).
  std::vector<const FusionCandidate*> chosen;
  auto compose = [&](const std::vector<const FusionCandidate*>& fused) {
    std::vector<LayerDraft> list;
    size_t next = 0;
    for (size_t j = 0; j < layers.size();) {
      if (next < fused.size() && fused[next]->first == j) {
        list.push_back(fused[next]->fused);
        j = fused[next++]->last + 1;
      } else {
        list.push_back(layers[j++]);
      }
    }
    return list;
  };
  auto cost = [&](const std::vector<const FusionCandidate*>& fused,
                  const FusionCandidate& block) -> Result<std::pair<size_t, size_t>> {
    PERFMEM_ASSIGN_OR_RETURN(auto placed, place(g, compose(fused)));
    const RingPlan& plan = placed.plan;
    size_t local = 0;
    for (size_t l = 0; l < plan.layers.size(); ++l)
      for (int op : plan.layers[l].ops)
        if (op >= block.fused.ops.front() && op <= block.fused.ops.back())
          local = std::max(local, plan.span_per_layer[l] + plan.layers[l].workspace_bytes);
    return std::make_pair(local, plan.peak_bytes);
  };
  for (const FusionCandidate& c : candidates) {
    if (!chosen.empty() && chosen.back()->last >= c.first) continue;  // overlaps an accepted block
    PERFMEM_ASSIGN_OR_RETURN(auto unfused_cost, cost(chosen, c));
    auto with = chosen;
    with.push_back(&c);
    PERFMEM_ASSIGN_OR_RETURN(auto fused_cost, cost(with, c));
    if (fused_cost < unfused_cost) chosen = std::move(with);
  }
  // Fused bottlenecks recompute their expansion: a block whose fusion does not lower the
  // network's peak is unfused again (the peak stays, the run gets faster).
  if (options.unfuse_below_peak && !chosen.empty()) {
    PERFMEM_ASSIGN_OR_RETURN(auto best, place(g, compose(chosen)));
    const size_t best_peak = best.plan.peak_bytes;
    for (size_t i = chosen.size(); i-- > 0;) {
      auto without = chosen;
      without.erase(without.begin() + static_cast<std::ptrdiff_t>(i));
      PERFMEM_ASSIGN_OR_RETURN(auto plan, place(g, compose(without)));
      if (plan.plan.peak_bytes <= best_peak) chosen = std::move(without);
    }
  }
  // Fused bottlenecks that recompute an expansion: each, in graph order, takes the faster form
  // whose returned peak (segment, tensor or mixed, whichever the planner returns) stays within the
  // growth budget over the recomputing plan's: unfused when that needs no more memory than the
  // row cache, else the row cache.
  std::deque<FusionCandidate> row_cached;  // stable addresses for `chosen`
  if (options.row_cache_peak_growth > 0 && !chosen.empty()) {
    const std::vector<int> readers = reader_counts(g);
    PERFMEM_ASSIGN_OR_RETURN(auto recomputing, place(g, compose(chosen)));
    const double budget =
        static_cast<double>(returned_peak(g, options, recomputing, tensor)) * (1.0 + options.row_cache_peak_growth);
    for (size_t i = 0; i < chosen.size();) {
      const FusionCandidate& block = *chosen[i];
      if (block.fused.kernel != RingKernel::kBottleneck || !block.fused.params->bottleneck.has_expand ||
          block.fused.params->bottleneck.row_cache) {
        ++i;
        continue;
      }
      FusionCandidate cached;
      if (!match_bottleneck(g, layers, readers, block.first, cached, true) || cached.last != block.last)
        return Status(StatusCode::kInternal, "a fused bottleneck does not match again with a row cache");
      PERFMEM_RETURN_IF_ERROR(solve_layer(g, cached.fused));
      row_cached.push_back(std::move(cached));
      auto with_cache = chosen;
      with_cache[i] = &row_cached.back();
      auto without = chosen;
      without.erase(without.begin() + static_cast<std::ptrdiff_t>(i));
      PERFMEM_ASSIGN_OR_RETURN(auto cache_plan, place(g, compose(with_cache)));
      PERFMEM_ASSIGN_OR_RETURN(auto unfused_plan, place(g, compose(without)));
      const size_t cache_peak = returned_peak(g, options, cache_plan, tensor);
      const size_t unfused_peak = returned_peak(g, options, unfused_plan, tensor);
      if (static_cast<double>(unfused_peak) <= budget && unfused_peak <= cache_peak) {
        chosen = std::move(without);  // index i now holds the next block
        continue;
      }
      if (static_cast<double>(cache_peak) <= budget) chosen = std::move(with_cache);
      ++i;
    }
  }
  return place(g, compose(chosen), shrink);
}

}  // namespace

struct RingModel::Impl {
  Graph graph;
  std::unique_ptr<Executor> reference;
  std::vector<int8_t> ring;
  std::vector<int32_t> workspace;
  ParamTable params;  // indexed by RingLayer::params_index
};

RingModel::RingModel() : impl_(std::make_unique<Impl>()) {}
RingModel::RingModel(RingModel&&) noexcept = default;
RingModel& RingModel::operator=(RingModel&&) noexcept = default;
RingModel::~RingModel() = default;

const Graph& RingModel::graph() const { return impl_->graph; }

const RingLayerParams& RingModel::layer_params(const RingLayer& layer) const {
  return *impl_->params.at(static_cast<size_t>(layer.params_index));
}

Result<RingModel> RingModel::create(Graph graph, const RingPlanOptions& options) {
  return create_impl(std::move(graph), options, -1, 0, 0);
}

Result<RingPlan> plan_ring(Graph graph, const RingPlanOptions& options) {
  PERFMEM_ASSIGN_OR_RETURN(auto model, RingModel::create(std::move(graph), options));
  return model.plan();
}

Result<RingModel> create_ring_model_with_shrunk_distance(Graph graph, int layer, int64_t bytes,
                                                         const RingPlanOptions& options) {
  return RingModel::create_impl(std::move(graph), options, layer, bytes, 0);
}

Result<RingModel> create_ring_model_with_shrunk_workspace(Graph graph, int layer, size_t bytes,
                                                          const RingPlanOptions& options) {
  return RingModel::create_impl(std::move(graph), options, layer, 0, bytes);
}

Result<RingModel> RingModel::create_impl(Graph graph, const RingPlanOptions& options, int shrink_layer,
                                         int64_t shrink_bytes, size_t shrink_workspace_bytes) {
  RingModel m;
  PERFMEM_ASSIGN_OR_RETURN(auto reference, Executor::create(graph));  // validates every operator
  m.impl_->reference = std::make_unique<Executor>(std::move(reference));
  m.impl_->graph = std::move(graph);
  const Graph& g = m.impl_->graph;
  if (g.inputs.size() != 1)
    return unsupported_error(g.source, "subgraph",
                             "models with exactly one input (found " + std::to_string(g.inputs.size()) + ")");
  for (const Tensor& t : g.tensors)
    if (!t.is_constant && t.bytes() > static_cast<size_t>(std::numeric_limits<int32_t>::max() / 4))
      return unsupported_error(g.source, "tensor " + t.name, "activations larger than 512 MiB");
  // The tensor-level plan (TFLite Micro's arena) first: the segment-level planner weighs its
  // row caches against the plan that will be returned.
  std::optional<PlacedPlan> tensor;
  if (options.tensor_level_fallback) {
    PERFMEM_ASSIGN_OR_RETURN(PlacedPlan t, tensor_level_plan(g));
    tensor = std::move(t);
  }
  Result<PlacedPlan> segment = segment_level_plan(
      g, options, ShrunkDistance{shrink_layer, shrink_bytes, shrink_workspace_bytes}, tensor ? &*tensor : nullptr);
  if (!segment.ok() && (!options.tensor_level_fallback || segment.status().code() != StatusCode::kUnsupported))
    return segment.status();
  // The smallest of: the segment-level plan, the tensor-level plan, the best mixed plan (ties in
  // that order, so the ring is kept whenever it costs nothing).
  PlacedPlan chosen;
  if (!segment.ok()) {
    chosen = std::move(*tensor);
  } else if (!options.tensor_level_fallback) {
    chosen = std::move(*segment);
  } else {
    std::optional<PlacedPlan> mixed;
    if (options.per_region_choice) mixed = mixed_plan(g, *segment, *tensor);
    if (tensor->plan.peak_bytes < segment->plan.peak_bytes) {
      chosen = std::move(*tensor);
    } else {
      chosen = std::move(*segment);
    }
    if (mixed && mixed->plan.peak_bytes < chosen.plan.peak_bytes) chosen = std::move(*mixed);
  }
  m.plan_ = std::move(chosen.plan);
  m.impl_->params = std::move(chosen.params);
  m.impl_->ring.assign(m.plan_.ring_bytes, 0);
  // No plan leaves this function unverified. Every kernel's access sequence depends only on the
  // shapes, never on the values, so one shadow-state run proves the placement for every input;
  // the probe input is fixed so that plans stay pure functions of the graph.
  const Tensor& in = g.tensors[g.inputs[0]];
  std::vector<uint8_t> probe(in.bytes());
  std::mt19937 rng(0x766d6375u);
  if (in.type == ElementType::kFloat32) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (size_t i = 0; i + 4 <= probe.size(); i += 4) {
      const float v = u(rng);
      std::memcpy(probe.data() + i, &v, 4);
    }
  } else {
    for (auto& b : probe) b = static_cast<uint8_t>(rng() >> 24);
  }
  auto checked = m.verify(probe);
  if (!checked.ok())
    return Status(StatusCode::kInternal,
                  "internal error: the vmcu plan failed its verifier and is not output: " + checked.status().message());
  return m;
}

Result<std::vector<uint8_t>> RingModel::execute(std::span<const uint8_t> input, bool shadow_on,
                                                RingVerifyReport* report) {
  const Graph& g = impl_->graph;
  const int in_t = g.inputs[0];
  if (input.size() != g.tensors[in_t].bytes())
    return input_error("input", "size",
                       std::to_string(g.tensors[in_t].bytes()) + " bytes (tensor '" + g.tensors[in_t].name + "')",
                       std::to_string(input.size()) + " bytes");
  std::vector<int8_t>& ring = impl_->ring;
  std::fill(ring.begin(), ring.end(), 0);
  vmcu_ring r{ring.data(), static_cast<int32_t>(ring.size()), nullptr, nullptr};
  Shadow shadow;
  if (shadow_on) {
    shadow.graph = &g;
    shadow.plan = &plan_;
    shadow.owner.assign(ring.size(), kUnwritten);
    r.trace = shadow_access;
    r.trace_ctx = &shadow;
  }
  const int32_t in_base = plan_.ring_offset(in_t);
  vmcu_ring_write(&r, in_base, 0, static_cast<int32_t>(input.size()), reinterpret_cast<const int8_t*>(input.data()));
  if (shadow_on)
    for (size_t j = 0; j < input.size(); ++j) shadow.owner[(static_cast<size_t>(in_base) + j) % ring.size()] = in_t;
  for (size_t l = 0; l < plan_.layers.size(); ++l) {
    const RingLayer& layer = plan_.layers[l];
    const int32_t* bases = layer.ring_offset;
    if (shadow_on) {
      shadow.layer = static_cast<int>(l);
      shadow.operand_tensor[0] = layer.output;
      shadow.operand_tensor[1] = layer.inputs.empty() ? -1 : layer.inputs[0];
      shadow.operand_tensor[2] = layer.inputs.size() < 2 ? -1 : layer.inputs[1];
      std::copy(bases, bases + 3, shadow.bases);
      shadow.workspace_bytes = layer.workspace_bytes;
      // Sized for what the kernel may touch; accesses past the plan's bytes fail above.
      shadow.workspace_owner.assign(
          std::max(layer.workspace_bytes,
                   kernel_workspace_bytes(layer, *impl_->params[static_cast<size_t>(layer.params_index)])),
          kUnwritten);
      shadow.cached_offset = -1;
    }
    PERFMEM_RETURN_IF_ERROR(
        run_layer(g, layer, *impl_->params[static_cast<size_t>(layer.params_index)], r, bases, impl_->workspace));
    if (!shadow_on) continue;
    if (!shadow.failure.ok()) return shadow.failure;
    const size_t cap = ring.size();
    if (layer.kernel == RingKernel::kRelocate) {
      // The rotation leaves only the moved tensor where the next region expects it: every other
      // byte is dead, so a plan that relocates while something else is live fails on its next read.
      for (size_t pos = 0; pos < cap; ++pos)
        if ((pos + cap - static_cast<size_t>(bases[0])) % cap >= g.tensors[layer.output].bytes())
          shadow.owner[pos] = kDead;
      continue;
    }
    if (layer.kernel == RingKernel::kAlias) {
      const int src = layer.inputs[0];
      for (size_t j = 0; j < g.tensors[src].bytes(); ++j) {
        int32_t& o = shadow.owner[(static_cast<size_t>(bases[1]) + j) % cap];
        if (o != src)
          return Status(StatusCode::kInternal, g.source + ": layer " + std::to_string(l) + " aliases '" +
                                                   g.tensors[src].name + "' but its bytes were overwritten");
        o = layer.output;
      }
    }
    // Tensors read for the last time are dead from here on.
    for (size_t k = 0; k < layer.inputs.size() && k < 2; ++k) {
      const int t = layer.inputs[k];
      if (plan_.last_layer[t] != static_cast<int>(l) || layer.kernel == RingKernel::kAlias) continue;
      if (std::find(g.outputs.begin(), g.outputs.end(), t) != g.outputs.end()) continue;
      const int32_t b = bases[k + 1];
      for (size_t j = 0; j < g.tensors[t].bytes(); ++j) {
        int32_t& o = shadow.owner[(static_cast<size_t>(b) + j) % cap];
        if (o == t) o = kDead;
      }
    }
  }
  const int out_t = g.outputs[0];
  std::vector<uint8_t> out(g.tensors[out_t].bytes());
  if (shadow_on) {
    for (int t : g.outputs) {
      const int32_t b = plan_.final_offset(t);
      for (size_t j = 0; j < g.tensors[t].bytes(); ++j)
        if (shadow.owner[(static_cast<size_t>(b) + j) % ring.size()] != t)
          return Status(StatusCode::kInternal, g.source + ": the graph output '" + g.tensors[t].name +
                                                   "' was overwritten after it was computed (byte " +
                                                   std::to_string(j) + ")");
    }
  }
  vmcu_ring_read(&r, plan_.final_offset(out_t), 0, static_cast<int32_t>(out.size()),
                 reinterpret_cast<int8_t*>(out.data()));
  if (report) {
    report->ring_bytes = ring.size();
    report->checked_reads = shadow.reads;
    report->checked_writes = shadow.writes;
  }
  return out;
}

Result<std::vector<uint8_t>> RingModel::run(std::span<const uint8_t> input) { return execute(input, false, nullptr); }

Result<RingVerifyReport> RingModel::verify(std::span<const uint8_t> input) {
  RingVerifyReport report;
  PERFMEM_ASSIGN_OR_RETURN(auto out, execute(input, true, &report));
  PERFMEM_ASSIGN_OR_RETURN(auto expected, impl_->reference->run(input));
  if (out != expected) {
    size_t j = 0;
    while (j < out.size() && out[j] == expected[j]) ++j;
    return Status(
        StatusCode::kInternal,
        impl_->graph.source + ": ring output differs from the reference executor at byte " + std::to_string(j));
  }
  report.bit_exact = true;
  return report;
}

Result<Graph> with_int8_input(Graph graph) {
  if (graph.inputs.size() != 1 || graph.ops.empty()) return graph;
  const Operator& first = graph.ops.front();
  const int in = graph.inputs[0];
  if (first.kind != OpKind::kQuantize || first.inputs.empty() || first.inputs[0] != in ||
      graph.tensors[in].type != ElementType::kFloat32)
    return graph;
  for (size_t i = 1; i < graph.ops.size(); ++i)
    for (int t : graph.ops[i].inputs)
      if (t == in) return graph;  // the float input is read again later: keep it
  graph.inputs[0] = first.outputs[0];
  graph.ops.erase(graph.ops.begin());
  return graph;
}

}  // namespace perfmem::vmcu
