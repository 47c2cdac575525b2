// A memory plan emitted as C: constants, straight-line kernel calls, one static arena.
#include "perfmem/vmcu/codegen.h"

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "perfmem/vmcu/planner.h"
#include "perfmem/vmcu/ring_plan.h"
#include "mcu_sources.h"
#include "prepared_op.h"
#include "ring_layer.h"

namespace perfmem::vmcu {

std::string_view compile_planner_name(CompilePlanner planner) {
  switch (planner) {
    case CompilePlanner::kVmcu: return "vmcu";
    case CompilePlanner::kGreedy: return "greedy";
    case CompilePlanner::kTinyEngine: return "tinyengine";
  }
  return "?";
}

std::string_view compile_target_name(CompileTarget target) {
  switch (target) {
    case CompileTarget::kHost: return "host";
    case CompileTarget::kCortexM4: return "cortex-m4";
    case CompileTarget::kCortexM7: return "cortex-m7";
  }
  return "?";
}

Result<CompilePlanner> parse_compile_planner(std::string_view name) {
  for (CompilePlanner p : {CompilePlanner::kVmcu, CompilePlanner::kGreedy, CompilePlanner::kTinyEngine})
    if (compile_planner_name(p) == name) return p;
  return input_error("--planner", "value", "vmcu, greedy or tinyengine", std::string(name));
}

std::string_view kernel_choice_name(KernelChoice kernels) {
  return kernels == KernelChoice::kOptimized ? "optimized" : "reference";
}

Result<KernelChoice> parse_kernel_choice(std::string_view name) {
  for (KernelChoice k : {KernelChoice::kOptimized, KernelChoice::kReference})
    if (kernel_choice_name(k) == name) return k;
  return input_error("--kernels", "value", "optimized or reference", std::string(name));
}

Result<CompileTarget> parse_compile_target(std::string_view name) {
  for (CompileTarget t : {CompileTarget::kHost, CompileTarget::kCortexM4, CompileTarget::kCortexM7})
    if (compile_target_name(t) == name) return t;
  return input_error("--target", "value", "host, cortex-m4 or cortex-m7", std::string(name));
}

namespace {

// C literals. INT32_MIN has no literal of type int32_t in C.
std::string i32(int64_t v) {
  if (v == INT32_MIN) return "(-2147483647 - 1)";
  return std::to_string(v);
}

// Hex float: exact, so the board divides by the same float the host does.
Result<std::string> f32(float v, const std::string& what) {
  if (!std::isfinite(v)) return Status(StatusCode::kUnsupported, what + ": a non-finite scale");
  char buf[64];
  std::snprintf(buf, sizeof buf, "%af", static_cast<double>(v));
  return std::string(buf);
}

std::string shape_init(vmcu_shape4 s) {
  return "{" + i32(s.n) + ", " + i32(s.h) + ", " + i32(s.w) + ", " + i32(s.c) + "}";
}
std::string shape_arg(vmcu_shape4 s) { return "(vmcu_shape4)" + shape_init(s); }

std::string identifier(const std::string& name) {
  std::string out;
  for (char c : name) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

// The constant section and the body of vmcu_model_run, built together.
class Emitter {
 public:
  explicit Emitter(const Graph& g) : g_(g) {
    for (size_t t = 0; t < g.tensors.size(); ++t)
      if (g.tensors[t].is_constant && !g.tensors[t].data.empty())
        by_pointer_[g.tensors[t].data.data()] = static_cast<int>(t);
  }

  std::ostringstream data, body;
  size_t weight_bytes = 0;
  size_t stage_bytes = 0;  // vmcu_stage: the largest pixel an optimised tensor-level call stages

  // The const array holding constant tensor t (emitted once).
  Result<std::string> tensor_array(int t) {
    if (auto it = tensor_names_.find(t); it != tensor_names_.end()) return it->second;
    const Tensor& tensor = g_.tensors[t];
    const std::string name = "c" + std::to_string(t);
    data << "/* tensor " << t << " '" << identifier(tensor.name) << "' */\n";
    if (tensor.type == ElementType::kInt8) {
      data << "static const int8_t " << name << "[" << std::max<size_t>(tensor.data.size(), 1) << "] = {";
      for (size_t i = 0; i < tensor.data.size(); ++i)
        data << (i % 24 ? " " : "\n  ") << static_cast<int>(static_cast<int8_t>(tensor.data[i])) << ",";
    } else if (tensor.type == ElementType::kInt32) {
      const size_t n = tensor.data.size() / 4;
      data << "static const int32_t " << name << "[" << std::max<size_t>(n, 1) << "] = {";
      for (size_t i = 0; i < n; ++i) {
        int32_t v;
        std::memcpy(&v, tensor.data.data() + 4 * i, 4);
        data << (i % 12 ? " " : "\n  ") << i32(v) << ",";
      }
    } else {
      return unsupported_error(g_.source, "tensor " + std::to_string(t) + " (" + tensor.name + ")",
                               "int8 or int32 constant operands in generated code");
    }
    data << "\n};\n";
    weight_bytes += tensor.data.size();
    tensor_names_[t] = name;
    return name;
  }

  // The array behind a kernel's constant pointer (weights, bias), or "0" for none.
  Result<std::string> constant(const void* p, const std::string& what) {
    if (!p) return std::string("0");
    auto it = by_pointer_.find(p);
    if (it == by_pointer_.end())
      return Status(StatusCode::kInternal, what + ": a kernel constant that is no graph tensor");
    return tensor_array(it->second);
  }

  // An int32 table (per-channel multipliers / shifts), shared between layers with equal contents.
  std::string table(const int32_t* p, size_t n) {
    std::vector<int32_t> v(p, p + n);
    if (auto it = tables_.find(v); it != tables_.end()) return it->second;
    const std::string name = "q" + std::to_string(tables_.size());
    data << "static const int32_t " << name << "[" << std::max<size_t>(n, 1) << "] = {";
    for (size_t i = 0; i < n; ++i) data << (i % 12 ? " " : "\n  ") << i32(v[i]) << ",";
    data << "\n};\n";
    weight_bytes += 4 * n;
    tables_[v] = name;
    return name;
  }

  std::string conv(const vmcu_conv_params& p, int32_t channels) {
    std::ostringstream o;
    o << "{.stride_h = " << p.stride_h << ", .stride_w = " << p.stride_w << ", .dilation_h = " << p.dilation_h
      << ", .dilation_w = " << p.dilation_w << ", .pad_h = " << p.pad_h << ", .pad_w = " << p.pad_w
      << ", .depth_multiplier = " << p.depth_multiplier << ", .input_offset = " << i32(p.input_offset)
      << ", .output_offset = " << i32(p.output_offset) << ", .act_min = " << p.act_min << ", .act_max = " << p.act_max
      << ", .output_multiplier = " << table(p.output_multiplier, static_cast<size_t>(channels))
      << ", .output_shift = " << table(p.output_shift, static_cast<size_t>(channels)) << "}";
    return o.str();
  }
  static std::string fc(const vmcu_fc_params& p) {
    std::ostringstream o;
    o << "{.input_offset = " << i32(p.input_offset) << ", .filter_offset = " << i32(p.filter_offset)
      << ", .output_offset = " << i32(p.output_offset) << ", .output_multiplier = " << i32(p.output_multiplier)
      << ", .output_shift = " << i32(p.output_shift) << ", .act_min = " << p.act_min << ", .act_max = " << p.act_max
      << "}";
    return o.str();
  }
  static std::string add(const vmcu_add_params& p) {
    std::ostringstream o;
    o << "{.input1_offset = " << i32(p.input1_offset) << ", .input2_offset = " << i32(p.input2_offset)
      << ", .output_offset = " << i32(p.output_offset) << ", .left_shift = " << p.left_shift
      << ", .input1_multiplier = " << i32(p.input1_multiplier) << ", .input1_shift = " << i32(p.input1_shift)
      << ", .input2_multiplier = " << i32(p.input2_multiplier) << ", .input2_shift = " << i32(p.input2_shift)
      << ", .output_multiplier = " << i32(p.output_multiplier) << ", .output_shift = " << i32(p.output_shift)
      << ", .act_min = " << p.act_min << ", .act_max = " << p.act_max << "}";
    return o.str();
  }
  static std::string pool(const vmcu_pool_params& p) {
    std::ostringstream o;
    o << "{.stride_h = " << p.stride_h << ", .stride_w = " << p.stride_w << ", .filter_h = " << p.filter_h
      << ", .filter_w = " << p.filter_w << ", .pad_h = " << p.pad_h << ", .pad_w = " << p.pad_w
      << ", .act_min = " << p.act_min << ", .act_max = " << p.act_max << "}";
    return o.str();
  }
  Result<std::string> dw_project(const vmcu_dw_project_params& t, int32_t mid_c, int32_t out_c,
                                 const std::string& what) {
    PERFMEM_ASSIGN_OR_RETURN(auto dwf, constant(t.dw_filter, what));
    PERFMEM_ASSIGN_OR_RETURN(auto dwb, constant(t.dw_bias, what));
    PERFMEM_ASSIGN_OR_RETURN(auto pf, constant(t.project_filter, what));
    PERFMEM_ASSIGN_OR_RETURN(auto pb, constant(t.project_bias, what));
    return "{.depthwise = " + conv(t.depthwise, mid_c) + ", .kh = " + i32(t.kh) + ", .kw = " + i32(t.kw) +
           ", .dw_filter = " + dwf + ", .dw_bias = " + dwb + ", .project = " + conv(t.project, out_c) +
           ", .project_filter = " + pf + ", .project_bias = " + pb + "}";
  }

  // `static const TYPE NAME = INIT;` in the constant section; returns NAME.
  std::string declare(const std::string& type, const std::string& name, const std::string& init) {
    data << "static const " << type << " " << name << " = " << init << ";\n";
    return name;
  }

 private:
  const Graph& g_;
  std::map<const void*, int> by_pointer_;
  std::map<int, std::string> tensor_names_;
  std::map<std::vector<int32_t>, std::string> tables_;
};

// How an operator's reference kernel reaches its operands in generated code.
struct OpOperands {
  std::function<std::string(int)> activation;  // tensor -> `int8_t*` expression
  std::string out;                             // `int8_t*` expression
  std::string channel_workspace;               // in-place depthwise: `int8_t*` (else empty)
  bool in_place = false;                       // the output is input 0's storage
  std::string scratch;                         // MEAN: `int32_t*` expression
  // Set when the activations are whole tensors in `ring` that the output does not overlap
  // (tensor-level plans): tensor -> ring offset. Convolutions and fully-connected layers then
  // call the ring kernels (the DSP forms on cores that have it) instead of the reference ones.
  std::function<int64_t(int)> ring_offset;
};

// The ring kernel for a tensor-level convolution or fully-connected layer, when `x` allows it;
// returns false when the reference kernel must run (in place, or a window over VMCU_SEG_MAX_TAPS).
bool emit_optimized_op(Emitter& e, const Operator& op, int index, const PreparedOp& po, const OpOperands& x,
                       const std::string& p, const std::string& w, const std::string& bias) {
  if (!x.ring_offset || x.in_place) return false;
  std::ostream& b = e.body;
  const std::string in = std::to_string(x.ring_offset(op.inputs[0]));
  const std::string out = std::to_string(x.ring_offset(op.outputs[0]));
  if (op.kind == OpKind::kFullyConnected) {
    b << "  vmcu_seg_fully_connected_s8(&" << p << ", &ring, " << in << ", " << po.batches << ", " << po.in_depth
      << ", " << po.out_depth << ", " << w << ", " << bias << ", " << out << ");\n";
    return true;
  }
  if (po.filter.h * po.filter.w > VMCU_SEG_MAX_TAPS) return false;
  const bool pointwise = op.kind == OpKind::kConv2D && po.filter.h == 1 && po.filter.w == 1 && po.conv.stride_h == 1 &&
                         po.conv.stride_w == 1 && po.conv.pad_h == 0 && po.conv.pad_w == 0;
  e.stage_bytes = std::max(e.stage_bytes, static_cast<size_t>(po.out.c));
  if (pointwise) {
    b << "  vmcu_seg_pointwise_conv_s8(&" << p << ", &ring, " << in << ", " << shape_arg(po.in) << ", " << w << ", "
      << bias << ", " << out << ", " << shape_arg(po.out) << ", vmcu_stage);\n";
    return true;
  }
  b << "  if (" << (op.kind == OpKind::kConv2D ? "vmcu_seg_conv2d_s8" : "vmcu_seg_depthwise_conv2d_s8") << "(&" << p
    << ", &ring, " << in << ", " << shape_arg(po.in) << ", " << shape_arg(po.filter) << ", " << w << ", " << bias
    << ", " << out << ", " << shape_arg(po.out) << ", vmcu_stage) != 0) return " << index + 1 << ";\n";
  return true;
}

// One operator through its reference kernel (the same call its eval makes on the host).
Status emit_op(Emitter& e, const Graph& g, int index, const PreparedOp& po, const OpOperands& x,
               const std::string& label) {
  const Operator& op = g.ops[static_cast<size_t>(index)];
  const std::string place = g.op_place(static_cast<size_t>(index));
  auto input = [&](size_t k) -> Result<std::string> {
    if (k >= op.inputs.size() || op.inputs[k] < 0) return std::string("0");
    const int t = op.inputs[k];
    if (g.tensors[t].is_constant) return e.tensor_array(t);
    return x.activation(t);
  };
  const int32_t out_count = static_cast<int32_t>(g.tensors[op.outputs[0]].element_count());
  std::ostream& b = e.body;
  switch (op.kind) {
    case OpKind::kConv2D:
    case OpKind::kDepthwiseConv2D: {
      PERFMEM_ASSIGN_OR_RETURN(auto in, input(0));
      PERFMEM_ASSIGN_OR_RETURN(auto w, input(1));
      PERFMEM_ASSIGN_OR_RETURN(auto bias, input(2));
      const std::string p = e.declare("vmcu_conv_params", label, e.conv(po.conv, po.out.c));
      if (emit_optimized_op(e, op, index, po, x, p, w, bias)) return Status::Ok();
      if (x.in_place) {
        if (op.kind != OpKind::kDepthwiseConv2D || x.channel_workspace.empty())
          return Status(StatusCode::kInternal, place + ": an in-place convolution without its channel workspace");
        b << "  if (vmcu_depthwise_conv2d_inplace_s8(&" << p << ", " << shape_arg(po.in) << ", " << x.out << ", "
          << shape_arg(po.filter) << ", " << w << ", " << bias << ", " << shape_arg(po.out) << ", "
          << x.channel_workspace << ") != 0) return " << index + 1 << ";\n";
        return Status::Ok();
      }
      b << "  " << (op.kind == OpKind::kConv2D ? "vmcu_conv2d_s8" : "vmcu_depthwise_conv2d_s8") << "(&" << p << ", "
        << shape_arg(po.in) << ", " << in << ", " << shape_arg(po.filter) << ", " << w << ", " << bias << ", "
        << shape_arg(po.out) << ", " << x.out << ");\n";
      return Status::Ok();
    }
    case OpKind::kFullyConnected: {
      PERFMEM_ASSIGN_OR_RETURN(auto in, input(0));
      PERFMEM_ASSIGN_OR_RETURN(auto w, input(1));
      PERFMEM_ASSIGN_OR_RETURN(auto bias, input(2));
      const std::string p = e.declare("vmcu_fc_params", label, Emitter::fc(po.fc));
      if (emit_optimized_op(e, op, index, po, x, p, w, bias)) return Status::Ok();
      b << "  vmcu_fully_connected_s8(&" << p << ", " << po.batches << ", " << po.in_depth << ", " << po.out_depth
        << ", " << in << ", " << w << ", " << bias << ", " << x.out << ");\n";
      return Status::Ok();
    }
    case OpKind::kAdd: {
      PERFMEM_ASSIGN_OR_RETURN(auto a, input(0));
      PERFMEM_ASSIGN_OR_RETURN(auto c, input(1));
      const std::string p = e.declare("vmcu_add_params", label, Emitter::add(po.add));
      b << "  vmcu_add_s8(&" << p << ", " << out_count << ", " << a << ", " << c << ", " << x.out << ");\n";
      return Status::Ok();
    }
    case OpKind::kAveragePool2D:
    case OpKind::kMaxPool2D: {
      PERFMEM_ASSIGN_OR_RETURN(auto in, input(0));
      const std::string p = e.declare("vmcu_pool_params", label, Emitter::pool(po.pool));
      if (op.kind == OpKind::kAveragePool2D)
        b << "  if (vmcu_average_pool_s8(&" << p << ", " << shape_arg(po.in) << ", " << in << ", " << shape_arg(po.out)
          << ", " << x.out << ") != 0) return " << index + 1 << ";\n";
      else
        b << "  vmcu_max_pool_s8(&" << p << ", " << shape_arg(po.in) << ", " << in << ", " << shape_arg(po.out) << ", "
          << x.out << ");\n";
      return Status::Ok();
    }
    case OpKind::kMean: {
      PERFMEM_ASSIGN_OR_RETURN(auto in, input(0));
      b << "  vmcu_mean_s8(" << shape_arg(po.in) << ", " << in << ", " << po.axis_mask << "u, " << x.scratch << ", "
        << i32(po.in_zp) << ", " << i32(po.multiplier) << ", " << i32(po.shift) << ", " << i32(po.out_zp) << ", "
        << x.out << ");\n";
      return Status::Ok();
    }
    case OpKind::kSoftmax: {
      PERFMEM_ASSIGN_OR_RETURN(auto in, input(0));
      const vmcu_softmax_params& s = po.softmax;
      const std::string p = e.declare("vmcu_softmax_params", label,
                                      "{.input_multiplier = " + i32(s.input_multiplier) + ", .input_left_shift = " +
                                          i32(s.input_left_shift) + ", .diff_min = " + i32(s.diff_min) + "}");
      b << "  vmcu_softmax_s8(&" << p << ", " << po.rows << ", " << po.depth << ", " << in << ", " << x.out << ");\n";
      return Status::Ok();
    }
    case OpKind::kQuantize: {
      PERFMEM_ASSIGN_OR_RETURN(auto in, input(0));
      if (po.float_input) {
        PERFMEM_ASSIGN_OR_RETURN(auto scale, f32(po.scale, place));
        b << "  vmcu_quantize_f32_bytes_s8(" << out_count << ", (const uint8_t*)(" << in << "), " << scale << ", "
          << i32(po.out_zp) << ", " << x.out << ");\n";
      } else {
        b << "  vmcu_requantize_s8(" << out_count << ", " << in << ", " << i32(po.in_zp) << ", " << i32(po.multiplier)
          << ", " << i32(po.shift) << ", " << i32(po.out_zp) << ", " << x.out << ");\n";
      }
      return Status::Ok();
    }
    case OpKind::kDequantize: {
      PERFMEM_ASSIGN_OR_RETURN(auto in, input(0));
      PERFMEM_ASSIGN_OR_RETURN(auto scale, f32(po.scale, place));
      b << "  vmcu_dequantize_s8_f32_bytes(" << out_count << ", " << in << ", " << scale << ", " << i32(po.in_zp)
        << ", (uint8_t*)(" << x.out << "));\n";
      return Status::Ok();
    }
    case OpKind::kPad: {
      PERFMEM_ASSIGN_OR_RETURN(auto in, input(0));
      const auto four = [](const int32_t* v) {
        return "{" + i32(v[0]) + ", " + i32(v[1]) + ", " + i32(v[2]) + ", " + i32(v[3]) + "}";
      };
      e.declare("int32_t", label + "_before[4]", four(po.pad_before));
      e.declare("int32_t", label + "_after[4]", four(po.pad_after));
      b << "  vmcu_pad_s8(" << shape_arg(po.in) << ", " << in << ", " << label << "_before, " << label << "_after, "
        << static_cast<int>(po.pad_value) << ", " << x.out << ");\n";
      return Status::Ok();
    }
    case OpKind::kTranspose: {
      PERFMEM_ASSIGN_OR_RETURN(auto in, input(0));
      const int32_t* v = po.perm;
      e.declare("int32_t", label + "_perm[4]",
                "{" + i32(v[0]) + ", " + i32(v[1]) + ", " + i32(v[2]) + ", " + i32(v[3]) + "}");
      b << "  vmcu_transpose_s8(" << shape_arg(po.in) << ", " << in << ", " << label << "_perm, " << x.out << ");\n";
      return Status::Ok();
    }
    case OpKind::kReshape: {
      PERFMEM_ASSIGN_OR_RETURN(auto in, input(0));
      if (x.in_place) {
        b << "  /* the output is the input's storage */\n";
      } else {
        b << "  memmove(" << x.out << ", " << in << ", " << g.tensors[op.outputs[0]].bytes() << "u);\n";
      }
      return Status::Ok();
    }
  }
  return unsupported_error(g.source, place, "an operator with a C kernel");
}

// The library's pieces besides the constants and the body.
struct Layout {
  std::string planner, placement;
  size_t arena_bytes = 0;      // = the planner's peak
  size_t workspace_bytes = 0;  // the arena's first bytes (the ring follows)
  size_t ring_bytes = 0;
  size_t scratch_words = 0;
  bool fused = false;
  size_t layers = 0;
};

// The ring plan: every layer kind as the host runs it (ring_plan.cpp's run_layer).
Status emit_ring_plan(Emitter& e, const RingModel& model, KernelChoice kernels, Layout& layout) {
  const Graph& g = model.graph();
  const RingPlan& plan = model.plan();
  layout.placement = std::string(ring_placement_name(plan.placement));
  layout.ring_bytes = plan.ring_bytes;
  layout.workspace_bytes = plan.workspace_bytes;
  layout.arena_bytes = plan.peak_bytes;
  std::ostream& b = e.body;
  for (size_t l = 0; l < plan.layers.size(); ++l) {
    const RingLayer& layer = plan.layers[l];
    const RingLayerParams& p = model.layer_params(layer);
    const int32_t* at = layer.ring_offset;
    const std::string label = "l" + std::to_string(l);
    // Relocations between regions execute no operator.
    const std::string place = layer.ops.empty() ? "tensor '" + identifier(g.tensors[layer.output].name) + "'"
                                                : g.op_place(static_cast<size_t>(layer.ops.back()));
    const int fail = static_cast<int>(l) + 1;
    b << "  /* layer " << l << ": " << ring_kernel_name(layer.kernel) << ", " << place << " */\n";
    auto weights = [&](const void* ptr) { return e.constant(ptr, place); };
    switch (layer.kernel) {
      case RingKernel::kConv:
      case RingKernel::kDepthwise: {
        PERFMEM_ASSIGN_OR_RETURN(auto w, weights(p.weights));
        PERFMEM_ASSIGN_OR_RETURN(auto bias, weights(p.bias));
        const std::string q = e.declare("vmcu_conv_params", label, e.conv(p.conv, p.out.c));
        b << "  if (" << (layer.kernel == RingKernel::kConv ? "vmcu_seg_conv2d_s8" : "vmcu_seg_depthwise_conv2d_s8")
          << "(&" << q << ", &ring, " << at[1] << ", " << shape_arg(p.in) << ", " << shape_arg(p.filter) << ", " << w
          << ", " << bias << ", " << at[0] << ", " << shape_arg(p.out) << ", ws) != 0) return " << fail << ";\n";
        break;
      }
      case RingKernel::kPointwise: {
        PERFMEM_ASSIGN_OR_RETURN(auto w, weights(p.weights));
        PERFMEM_ASSIGN_OR_RETURN(auto bias, weights(p.bias));
        const std::string q = e.declare("vmcu_conv_params", label, e.conv(p.conv, p.out.c));
        b << "  vmcu_seg_pointwise_conv_s8(&" << q << ", &ring, " << at[1] << ", " << shape_arg(p.in) << ", " << w
          << ", " << bias << ", " << at[0] << ", " << shape_arg(p.out) << ", ws);\n";
        break;
      }
      case RingKernel::kFullyConnected: {
        PERFMEM_ASSIGN_OR_RETURN(auto w, weights(p.weights));
        PERFMEM_ASSIGN_OR_RETURN(auto bias, weights(p.bias));
        const std::string q = e.declare("vmcu_fc_params", label, Emitter::fc(p.fc));
        b << "  vmcu_seg_fully_connected_s8(&" << q << ", &ring, " << at[1] << ", " << p.batches << ", " << p.in_depth
          << ", " << p.out_depth << ", " << w << ", " << bias << ", " << at[0] << ");\n";
        break;
      }
      case RingKernel::kAdd: {
        const std::string q = e.declare("vmcu_add_params", label, Emitter::add(p.add));
        b << "  vmcu_seg_add_s8(&" << q << ", &ring, " << at[1] << ", " << at[2] << ", " << p.out_bytes << ", " << at[0]
          << ");\n";
        break;
      }
      case RingKernel::kAveragePool:
      case RingKernel::kMaxPool: {
        const std::string q = e.declare("vmcu_pool_params", label, Emitter::pool(p.pool));
        b << "  if ("
          << (layer.kernel == RingKernel::kAveragePool ? "vmcu_seg_average_pool_s8" : "vmcu_seg_max_pool_s8") << "(&"
          << q << ", &ring, " << at[1] << ", " << shape_arg(p.in) << ", " << at[0] << ", " << shape_arg(p.out)
          << ", ws32) != 0) return " << fail << ";\n";
        break;
      }
      case RingKernel::kAlias: b << "  /* the output is the input's storage */\n"; break;
      case RingKernel::kRelocate:
        // Between a segment-level and a tensor-level region: the one live tensor moves (an
        // in-place rotation of the ring, no buffer).
        b << "  vmcu_ring_relocate(&ring, " << at[1] << ", " << at[0] << ", " << p.out_bytes << ");\n";
        break;
      case RingKernel::kQuantize: {
        PERFMEM_ASSIGN_OR_RETURN(auto scale, f32(p.scale, place));
        b << "  vmcu_seg_quantize_f32_s8(&ring, " << at[1] << ", " << p.out_bytes << ", " << scale << ", "
          << i32(p.zero_point) << ", " << at[0] << ");\n";
        break;
      }
      case RingKernel::kBottleneck: {
        layout.fused = true;
        const vmcu_bottleneck_params& f = p.bottleneck;
        std::string init = "{.has_expand = " + i32(f.has_expand);
        if (f.has_expand) {
          PERFMEM_ASSIGN_OR_RETURN(auto ef, weights(f.expand_filter));
          PERFMEM_ASSIGN_OR_RETURN(auto eb, weights(f.expand_bias));
          init += ", .row_cache = " + i32(f.row_cache) + ", .expand = " + e.conv(f.expand, p.mid_c) +
                  ", .expand_filter = " + ef + ", .expand_bias = " + eb;
        }
        PERFMEM_ASSIGN_OR_RETURN(auto tail, e.dw_project(f.tail, p.mid_c, p.out.c, place));
        init += ", .tail = " + tail + ", .has_residual = " + i32(f.has_residual) +
                ", .residual_is_input1 = " + i32(f.residual_is_input1);
        if (f.has_residual) init += ", .add = " + Emitter::add(f.add);
        const std::string q = e.declare("vmcu_bottleneck_params", label, init + "}");
        b << "  if (vmcu_seg_bottleneck_s8(&" << q << ", &ring, " << at[1] << ", " << shape_arg(p.in) << ", " << p.mid_c
          << ", " << at[0] << ", " << shape_arg(p.out) << ", ws) != 0) return " << fail << ";\n";
        break;
      }
      case RingKernel::kResidualBlock: {
        layout.fused = true;
        const vmcu_residual_block_params& r = p.residual;
        PERFMEM_ASSIGN_OR_RETURN(auto f1, weights(r.filter1));
        PERFMEM_ASSIGN_OR_RETURN(auto b1, weights(r.bias1));
        PERFMEM_ASSIGN_OR_RETURN(auto f2, weights(r.filter2));
        PERFMEM_ASSIGN_OR_RETURN(auto b2, weights(r.bias2));
        std::string init =
            "{.conv1 = " + e.conv(r.conv1, r.mid_shape.c) + ", .filter1_shape = " + shape_init(r.filter1_shape) +
            ", .filter1 = " + f1 + ", .bias1 = " + b1 + ", .mid_shape = " + shape_init(r.mid_shape) +
            ", .conv2 = " + e.conv(r.conv2, r.filter2_shape.n) + ", .filter2_shape = " + shape_init(r.filter2_shape) +
            ", .filter2 = " + f2 + ", .bias2 = " + b2 + ", .has_shortcut_conv = " + i32(r.has_shortcut_conv);
        if (r.has_shortcut_conv) {
          PERFMEM_ASSIGN_OR_RETURN(auto sf, weights(r.shortcut_filter));
          PERFMEM_ASSIGN_OR_RETURN(auto sb, weights(r.shortcut_bias));
          init += ", .shortcut = " + e.conv(r.shortcut, p.out.c) + ", .shortcut_filter = " + sf +
                  ", .shortcut_bias = " + sb;
        }
        init += ", .shortcut_is_input1 = " + i32(r.shortcut_is_input1) + ", .add = " + Emitter::add(r.add) + "}";
        const std::string q = e.declare("vmcu_residual_block_params", label, init);
        b << "  if (vmcu_seg_residual_block_s8(&" << q << ", &ring, " << at[1] << ", " << shape_arg(p.in) << ", "
          << at[0] << ", " << shape_arg(p.out) << ", ws) != 0) return " << fail << ";\n";
        break;
      }
      case RingKernel::kStemBlock: {
        layout.fused = true;
        const vmcu_stem_block_params& s = p.stem;
        PERFMEM_ASSIGN_OR_RETURN(auto cf, weights(s.conv_filter));
        PERFMEM_ASSIGN_OR_RETURN(auto cb, weights(s.conv_bias));
        PERFMEM_ASSIGN_OR_RETURN(auto tail, e.dw_project(s.tail, s.mid_shape.c, p.out.c, place));
        const std::string q = e.declare("vmcu_stem_block_params", label,
                                        "{.conv = " + e.conv(s.conv, s.mid_shape.c) +
                                            ", .conv_filter_shape = " + shape_init(s.conv_filter_shape) +
                                            ", .conv_filter = " + cf + ", .conv_bias = " + cb +
                                            ", .mid_shape = " + shape_init(s.mid_shape) + ", .tail = " + tail + "}");
        b << "  if (vmcu_seg_stem_block_s8(&" << q << ", &ring, " << at[1] << ", " << shape_arg(p.in) << ", " << at[0]
          << ", " << shape_arg(p.out) << ", ws) != 0) return " << fail << ";\n";
        break;
      }
      case RingKernel::kStaged: {
        // [input | output] in the workspace, as the host stages it; MEAN's accumulators follow
        // when they fit there aligned, else they use the scratch buffer.
        const int op_index = layer.ops.back();
        const PreparedOp& po = *p.prepared;
        OpOperands x;
        x.activation = [](int) { return std::string("ws"); };
        x.out = "(ws + " + std::to_string(p.stage_out_offset) + ")";
        const size_t acc_at = (static_cast<size_t>(p.stage_out_offset) + static_cast<size_t>(p.out_bytes) + 3) / 4 * 4;
        if (acc_at + po.scratch.size() * 4 <= plan.workspace_bytes) {
          x.scratch = "(ws32 + " + std::to_string(acc_at / 4) + ")";
        } else {
          x.scratch = "vmcu_scratch";
          layout.scratch_words = std::max(layout.scratch_words, po.scratch.size());
        }
        b << "  vmcu_ring_read(&ring, " << at[1] << ", 0, " << p.in_bytes << ", ws);\n";
        PERFMEM_RETURN_IF_ERROR(emit_op(e, g, op_index, po, x, label));
        b << "  vmcu_ring_write(&ring, " << at[0] << ", 0, " << p.out_bytes << ", " << x.out << ");\n";
        break;
      }
      case RingKernel::kTensorLevel: {
        // Whole tensors at their arena offsets, never overlapping while live (the greedy plan).
        const PreparedOp& po = *p.prepared;
        OpOperands x;
        std::map<int, int32_t> offset;
        for (size_t k = 0; k < layer.inputs.size() && k < 2; ++k) offset[layer.inputs[k]] = at[k + 1];
        x.activation = [offset](int t) { return "(ring.data + " + std::to_string(offset.at(t)) + ")"; };
        x.out = "(ring.data + " + std::to_string(at[0]) + ")";
        x.scratch = "vmcu_scratch";
        if (kernels == KernelChoice::kOptimized) {
          std::map<int, int64_t> ring_at(offset.begin(), offset.end());
          ring_at[layer.output] = at[0];
          x.ring_offset = [ring_at](int t) { return ring_at.at(t); };
        }
        if (!po.scratch.empty()) layout.scratch_words = std::max(layout.scratch_words, po.scratch.size());
        PERFMEM_RETURN_IF_ERROR(emit_op(e, g, layer.ops.back(), po, x, label));
        break;
      }
    }
  }
  layout.layers = plan.layers.size();
  return Status::Ok();
}

// A tensor-level planner's arena: one reference-kernel call per operator.
Status emit_tensor_plan(Emitter& e, const Graph& g, PlannerKind kind, KernelChoice kernels, Layout& layout,
                        std::vector<int64_t>& tensor_offset) {
  const std::vector<BufferRequirement> reqs = planner_requirements(g, kind);
  const MemoryPlan arena = plan_memory(reqs, kind);
  PERFMEM_RETURN_IF_ERROR(verify_plan(reqs, arena));
  layout.placement = "tensor";
  layout.ring_bytes = std::max<size_t>(arena.peak_bytes, 1);
  layout.arena_bytes = layout.ring_bytes;
  tensor_offset.assign(g.tensors.size(), 0);
  for (size_t i = 0; i < reqs.size(); ++i)
    tensor_offset[reqs[i].tensor] = static_cast<int64_t>(arena.placements[i].offset);
  const Liveness live = compute_liveness(g);
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const Operator& op = g.ops[i];
    const std::string place = g.op_place(i);
    PreparedOp po;
    PERFMEM_RETURN_IF_ERROR(prepare_op(g, i, po));
    OpOperands x;
    const int out_t = op.outputs[0];
    const auto ptr = [&](int t) { return "(arena + " + std::to_string(tensor_offset[t]) + ")"; };
    x.activation = ptr;
    x.out = ptr(out_t);
    x.scratch = "vmcu_scratch";
    if (kernels == KernelChoice::kOptimized) x.ring_offset = [&tensor_offset](int t) { return tensor_offset[t]; };
    if (!po.scratch.empty()) layout.scratch_words = std::max(layout.scratch_words, po.scratch.size());
    // An output laid over an input: only TinyEngine's legal hand-overs, at the same offset.
    const int64_t ob = tensor_offset[out_t], oe = ob + static_cast<int64_t>(g.tensors[out_t].bytes());
    for (size_t k = 0; k < op.inputs.size(); ++k) {
      const int t = op.inputs[k];
      if (t < 0 || g.tensors[t].is_constant || g.tensors[t].bytes() == 0 || ob == oe) continue;
      const int64_t ib = tensor_offset[t], ie = ib + static_cast<int64_t>(g.tensors[t].bytes());
      if (ie <= ob || oe <= ib) continue;
      const bool elementwise =
          op.kind == OpKind::kAdd || op.kind == OpKind::kReshape || (op.kind == OpKind::kQuantize && !po.float_input);
      const bool legal = ib == ob && live.last_use[t] == static_cast<int>(i) &&
                         (elementwise || (op.kind == OpKind::kDepthwiseConv2D && k == 0));
      if (!legal)
        return Status(StatusCode::kInternal, g.source + ": " + place + ": the " + std::string(planner_name(kind)) +
                                                 " plan lays the output over a live input it cannot overwrite");
      x.in_place = k == 0 || op.kind == OpKind::kAdd;
      if (op.kind == OpKind::kDepthwiseConv2D) {
        for (const Placement& w : arena.placements)
          if (w.is_workspace && w.first_use == static_cast<int>(i))
            x.channel_workspace = "(arena + " + std::to_string(w.offset) + ")";
      }
    }
    e.body << "  /* " << place << " */\n";
    PERFMEM_RETURN_IF_ERROR(emit_op(e, g, static_cast<int>(i), po, x, "op" + std::to_string(i)));
  }
  layout.layers = g.ops.size();
  return Status::Ok();
}

std::string quant_comment(const Tensor& t) {
  if (!t.quantization.present()) return "none";
  std::ostringstream o;
  o << "scale " << t.quantization.scale() << ", zero point " << t.quantization.zero_point();
  return o.str();
}

std::string c_type(ElementType t) {
  switch (t) {
    case ElementType::kFloat32: return "float";
    case ElementType::kInt32: return "int32_t";
    case ElementType::kUInt8: return "uint8_t";
    case ElementType::kInt64: return "int64_t";
    case ElementType::kInt16: return "int16_t";
    case ElementType::kInt8: return "int8_t";
  }
  return "?";
}

// model.h: the API and every fact the firmware needs about the model.
Result<std::string> header_text(const Graph& g, const CompileOptions& options, const Layout& layout) {
  const Tensor& in = g.tensors[g.inputs[0]];
  const Tensor& out = g.tensors[g.outputs[0]];
  std::ostringstream h;
  auto shape = [](const Tensor& t) {
    std::string s = "{";
    for (size_t i = 0; i < t.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
    return s + "}";
  };
  auto io = [&](const std::string& io_name, const Tensor& t) -> Result<std::string> {
    std::ostringstream o;
    const std::string up = io_name == "input" ? "INPUT" : "OUTPUT";
    PERFMEM_ASSIGN_OR_RETURN(auto scale, f32(t.quantization.scale(), io_name + " scale"));
    o << "/* The " << io_name << " tensor '" << identifier(t.name) << "': " << c_type(t.type) << " " << shape(t) << ", "
      << quant_comment(t) << " (real = scale * (q - zero_point)). */\n"
      << "#define VMCU_MODEL_" << up << "_BYTES " << t.bytes() << "u\n"
      << "#define VMCU_MODEL_" << up << "_TYPE " << c_type(t.type) << "\n"
      << "#define VMCU_MODEL_" << up << "_RANK " << t.shape.size() << "\n"
      << "#define VMCU_MODEL_" << up << "_SHAPE " << shape(t) << "\n"
      << "#define VMCU_MODEL_" << up << "_SCALE " << scale << "\n"
      << "#define VMCU_MODEL_" << up << "_ZERO_POINT " << t.quantization.zero_point() << "\n";
    return o.str();
  };
  PERFMEM_ASSIGN_OR_RETURN(auto in_text, io("input", in));
  PERFMEM_ASSIGN_OR_RETURN(auto out_text, io("output", out));
  h << "/* model.h: " << identifier(std::filesystem::path(g.source).filename().string())
    << " as a C library, generated by `vmcu compile` (planner " << compile_planner_name(options.planner) << ", target "
    << compile_target_name(options.target) << "). Do not edit.\n"
    << " *\n"
    << " *   #include \"model.h\"\n"
    << " *   static int8_t image[VMCU_MODEL_INPUT_BYTES];      (the input's type and layout, as bytes)\n"
    << " *   static int8_t scores[VMCU_MODEL_OUTPUT_BYTES];\n"
    << " *   if (vmcu_model_run(image, scores) != 0) { ... }\n"
    << " *\n"
    << " * Memory: one static arena of VMCU_MODEL_ARENA_BYTES (the " << compile_planner_name(options.planner)
    << " plan's peak: the workspace, then\n"
    << " * the activation area, " << layout.placement << " placement), plus VMCU_MODEL_SCRATCH_BYTES of int32 "
    << "accumulators that the plan does not\n"
    << " * count (MEAN under a tensor-level plan; usually 0). Weights, biases and requantization tables are const\n"
    << " * (flash). No heap, no libc beyond string.h. vmcu_model_run is not reentrant: it uses the one arena.\n"
    << " */\n"
    << "#ifndef VMCU_MODEL_H\n#define VMCU_MODEL_H\n\n#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" "
       "{\n#endif\n\n"
    << "#define VMCU_MODEL_PLANNER \"" << compile_planner_name(options.planner) << "\"\n"
    << "#define VMCU_MODEL_TARGET \"" << compile_target_name(options.target) << "\"\n"
    << "#define VMCU_MODEL_ARENA_BYTES " << layout.arena_bytes << "u\n"
    << "#define VMCU_MODEL_WORKSPACE_BYTES " << layout.workspace_bytes << "u /* the arena's first bytes */\n"
    << "#define VMCU_MODEL_RING_BYTES " << layout.ring_bytes << "u /* the activation area after them */\n"
    << "#define VMCU_MODEL_SCRATCH_BYTES " << layout.scratch_words * 4 << "u\n"
    << "#define VMCU_MODEL_LAYERS " << layout.layers << "u\n\n"
    << in_text << "\n"
    << out_text << "\n"
    << "/* Runs one inference: reads VMCU_MODEL_INPUT_BYTES from `input` (0: they are already in\n"
    << " * vmcu_model_input_buffer()), writes VMCU_MODEL_OUTPUT_BYTES to `output` (any alignment; the buffers\n"
    << " * may not overlap the arena otherwise). Returns 0, or 1 + the index of the layer (operator, under a\n"
    << " * tensor-level plan) whose kernel rejected its parameters: vmcu compile checked them all, so that\n"
    << " * means a corrupt build. The bytes equal `vmcu run` on the host for the same input, bit for bit. */\n"
    << "int vmcu_model_run(const void* input, void* output);\n\n"
    << "/* Where the input tensor lives in the arena (VMCU_MODEL_INPUT_BYTES contiguous bytes), so that a\n"
    << " * camera or DMA can fill it in place and save an input-sized buffer: then call\n"
    << " * vmcu_model_run(0, output). The bytes are consumed by the run (write them again each time). */\n"
    << "void* vmcu_model_input_buffer(void);\n\n"
    << "#ifdef __cplusplus\n}\n#endif\n\n#endif /* VMCU_MODEL_H */\n";
  return h.str();
}

std::string cpu_flags(CompileTarget target) {
  switch (target) {
    case CompileTarget::kCortexM4: return "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16";
    case CompileTarget::kCortexM7: return "-mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16";
    case CompileTarget::kHost: return "";
  }
  return "";
}

}  // namespace

Result<CompiledModel> compile_model(Graph graph, const CompileOptions& options) {
  if (graph.inputs.size() != 1 || graph.outputs.empty())
    return unsupported_error(graph.source, "subgraph",
                             "models with exactly one input and at least one output (found " +
                                 std::to_string(graph.inputs.size()) + " inputs)");
  Layout layout;
  layout.planner = std::string(compile_planner_name(options.planner));
  std::unique_ptr<RingModel> ring;
  std::unique_ptr<Graph> tensor_graph;
  std::vector<int64_t> tensor_offset;
  std::unique_ptr<Emitter> e;
  const Graph* g = nullptr;
  if (options.planner == CompilePlanner::kVmcu) {
    PERFMEM_ASSIGN_OR_RETURN(auto m, RingModel::create(std::move(graph), options.ring));
    ring = std::make_unique<RingModel>(std::move(m));
    g = &ring->graph();
    e = std::make_unique<Emitter>(*g);
    PERFMEM_RETURN_IF_ERROR(emit_ring_plan(*e, *ring, options.kernels, layout));
  } else {
    tensor_graph = std::make_unique<Graph>(std::move(graph));
    g = tensor_graph.get();
    e = std::make_unique<Emitter>(*g);
    const PlannerKind kind =
        options.planner == CompilePlanner::kGreedy ? PlannerKind::kGreedy : PlannerKind::kTinyEngine;
    PERFMEM_RETURN_IF_ERROR(emit_tensor_plan(*e, *g, kind, options.kernels, layout, tensor_offset));
  }
  const int in_t = g->inputs[0], out_t = g->outputs[0];
  const int64_t in_at = ring ? ring->plan().ring_offset(in_t) : tensor_offset[in_t];
  // A relocated graph output is read where its last relocation left it.
  const int64_t out_at = ring ? ring->plan().final_offset(out_t) : tensor_offset[out_t];
  const bool segments = ring != nullptr;

  CompiledModel lib;
  lib.plan_bytes = layout.arena_bytes;
  lib.scratch_bytes = layout.scratch_words * 4;
  lib.weight_bytes = e->weight_bytes;
  lib.stage_bytes = e->stage_bytes;
  lib.input_bytes = g->tensors[in_t].bytes();
  lib.output_bytes = g->tensors[out_t].bytes();
  lib.layers = layout.layers;
  PERFMEM_ASSIGN_OR_RETURN(auto header, header_text(*g, options, layout));

  std::ostringstream c;
  c << "/* model.c: generated by `vmcu compile` (planner " << layout.planner << ", " << layout.placement
    << " placement). Do not edit. */\n"
    << "#include \"model.h\"\n\n#include <string.h>\n\n#include \"vmcu/deploy_kernels.h\"\n#include "
       "\"vmcu/kernels.h\"\n"
    << (layout.fused ? "#include \"vmcu/segment_fused.h\"\n" : "") << "#include \"vmcu/segment_kernels.h\"\n\n"
    << "#if defined(__GNUC__) || defined(__clang__)\n#define VMCU_ALIGNED __attribute__((aligned(8)))\n#else\n"
    << "#define VMCU_ALIGNED\n#endif\n\n"
    << "/* The whole activation memory: the planner's peak, nothing more. */\n"
    << "static int8_t vmcu_arena[VMCU_MODEL_ARENA_BYTES] VMCU_ALIGNED;\n";
  if (layout.scratch_words) c << "static int32_t vmcu_scratch[" << layout.scratch_words << "];\n";
  if (e->stage_bytes)
    c << "/* One output pixel of a tensor-level convolution (the ring kernels stage it). */\n"
      << "static int8_t vmcu_stage[" << e->stage_bytes << "];\n";
  // The graph input sits at one offset of the activation area from the start; it never wraps
  // (a ring plan places it at ring offset 0, a tensor-level plan never wraps at all).
  if (static_cast<size_t>(in_at) + lib.input_bytes > layout.ring_bytes)
    return Status(StatusCode::kInternal, g->source + ": the graph input wraps around the end of the ring");
  c << "\nvoid* vmcu_model_input_buffer(void) { return vmcu_arena + VMCU_MODEL_WORKSPACE_BYTES + " << in_at << "; }\n";
  c << "\n"
    << e->data.str() << "\n"
    << "int vmcu_model_run(const void* input, void* output) {\n"
    << "  int8_t* const arena = vmcu_arena;\n"
    << "  const vmcu_ring ring = {vmcu_arena + VMCU_MODEL_WORKSPACE_BYTES, (int32_t)VMCU_MODEL_RING_BYTES, 0, 0};\n";
  if (segments) {
    c << "  int8_t* const ws = vmcu_arena; /* aligned: pooling keeps int32 accumulators here */\n"
      << "  int32_t* const ws32 = (int32_t*)(void*)vmcu_arena;\n"
      << "  (void)ws;\n  (void)ws32;\n";
  }
  c << "  (void)arena;\n"
    << "  if (input != 0 && input != ring.data + " << in_at << ")\n"
    << "    vmcu_ring_write(&ring, " << in_at << ", 0, (int32_t)VMCU_MODEL_INPUT_BYTES, (const int8_t*)input);\n"
    << e->body.str() << "  vmcu_ring_read(&ring, " << out_at
    << ", 0, (int32_t)VMCU_MODEL_OUTPUT_BYTES, (int8_t*)output);\n"
    << "  return 0;\n}\n";

  // Kernel sources: every freestanding file but the fused kernels, which only fused plans call.
  std::vector<std::string> sources;
  for (const McuSource& s : mcu_sources()) {
    const std::string path(s.path);
    if (path.rfind("board/", 0) == 0) continue;
    if (!layout.fused && path.find("segment_fused") != std::string::npos) continue;
    lib.files.push_back({"vmcu_kernels/" + path, std::string(s.text)});
    if (path.size() > 2 && path.compare(path.size() - 2, 2, ".c") == 0) sources.push_back("vmcu_kernels/" + path);
  }
  std::string cmake_sources, make_sources;
  for (const std::string& s : sources) {
    cmake_sources += "\n  ${CMAKE_CURRENT_LIST_DIR}/" + s;
    make_sources += " \\\n  $(VMCU_MODEL_DIR)/" + s;
  }
  const std::string flags = cpu_flags(options.target);
  std::ostringstream cmake;
  cmake << "# Generated by `vmcu compile`: the model as a static library. add_subdirectory(this folder), then\n"
        << "# target_link_libraries(firmware PRIVATE vmcu_model). C99, no heap, no other dependency.\n"
        << "cmake_minimum_required(VERSION 3.13)\n"
        << "add_library(vmcu_model STATIC ${CMAKE_CURRENT_LIST_DIR}/model.c" << cmake_sources << ")\n"
        << "target_include_directories(vmcu_model PUBLIC ${CMAKE_CURRENT_LIST_DIR} "
        << "${CMAKE_CURRENT_LIST_DIR}/vmcu_kernels/include)\n"
        << "set_target_properties(vmcu_model PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)\n"
        << "target_compile_options(vmcu_model PRIVATE -ffunction-sections -fdata-sections)\n";
  if (!flags.empty())
    cmake << "# Built for " << compile_target_name(options.target)
          << "; the firmware's toolchain file normally sets these for every target.\n"
          << "if(CMAKE_C_COMPILER MATCHES \"arm-none-eabi\")\n  target_compile_options(vmcu_model PUBLIC " << flags
          << ")\nendif()\n";
  std::ostringstream mk;
  mk << "# Generated by `vmcu compile`: include from a Makefile after setting VMCU_MODEL_DIR to this folder,\n"
     << "# then add $(VMCU_MODEL_SRCS) to the sources and $(VMCU_MODEL_CFLAGS) to CFLAGS.\n"
     << "VMCU_MODEL_DIR ?= .\n"
     << "VMCU_MODEL_SRCS = $(VMCU_MODEL_DIR)/model.c" << make_sources << "\n"
     << "VMCU_MODEL_CFLAGS = -std=c99 -I$(VMCU_MODEL_DIR) -I$(VMCU_MODEL_DIR)/vmcu_kernels/include "
     << "-ffunction-sections -fdata-sections" << (flags.empty() ? "" : " " + flags) << "\n";
  lib.files.push_back({"model.h", header});
  lib.files.push_back({"model.c", c.str()});
  lib.files.push_back({"CMakeLists.txt", cmake.str()});
  lib.files.push_back({"vmcu_model.mk", mk.str()});
  return lib;
}

Status write_library(const CompiledModel& model, const std::string& dir) {
  for (const GeneratedFile& f : model.files) {
    const std::filesystem::path path = std::filesystem::path(dir) / f.path;
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec)
      return Status(StatusCode::kIoError, path.parent_path().string() + ": cannot create folder: " + ec.message());
    std::ofstream out(path, std::ios::binary);
    out.write(f.text.data(), static_cast<std::streamsize>(f.text.size()));
    out.close();
    if (!out) return Status(StatusCode::kIoError, path.string() + ": cannot write");
  }
  return Status::Ok();
}

}  // namespace perfmem::vmcu
