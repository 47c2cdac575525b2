// TFLite flatbuffer import: verify, then copy into the Graph IR with every index checked.
#include "perfmem/vmcu/model.h"

#include <algorithm>
#include <limits>

#include "flatbuffers/flatbuffers.h"
#include "perfmem/core/io.h"
#include "ops/registry.h"
#include "tflite_subset_generated.h"

namespace perfmem::vmcu {
namespace fb = tflite_subset;

std::string_view element_type_name(ElementType type) {
  switch (type) {
    case ElementType::kFloat32: return "float32";
    case ElementType::kInt32: return "int32";
    case ElementType::kUInt8: return "uint8";
    case ElementType::kInt64: return "int64";
    case ElementType::kInt16: return "int16";
    case ElementType::kInt8: return "int8";
  }
  return "?";
}

size_t element_size(ElementType type) {
  switch (type) {
    case ElementType::kFloat32:
    case ElementType::kInt32: return 4;
    case ElementType::kInt64: return 8;
    case ElementType::kInt16: return 2;
    case ElementType::kUInt8:
    case ElementType::kInt8: return 1;
  }
  return 1;
}

int64_t Tensor::element_count() const {
  int64_t n = 1;
  for (int32_t d : shape) n *= d;
  return n;
}

namespace {

// Names of common builtins vmcu does not run, so errors can say what the file asked for.
struct CodeName {
  int code;
  const char* name;
};
constexpr CodeName kOtherNames[] = {
    {2, "CONCATENATION"}, {5, "DEPTH_TO_SPACE"}, {8, "FLOOR"},        {12, "L2_POOL_2D"}, {14, "LOGISTIC"},
    {16, "LSTM"},         {18, "MUL"},           {19, "RELU"},        {21, "RELU6"},      {23, "RESIZE_BILINEAR"},
    {28, "TANH"},         {32, "CUSTOM"},        {36, "GATHER"},      {41, "SUB"},        {42, "DIV"},
    {43, "SQUEEZE"},      {45, "STRIDED_SLICE"}, {49, "SPLIT"},       {53, "CAST"},       {54, "PRELU"},
    {55, "MAXIMUM"},      {57, "MINIMUM"},       {60, "PADV2"},       {70, "SHAPE"},      {77, "MIRROR_PAD"},
    {81, "SUM"},          {97, "HARD_SWISH"},    {117, "HARD_SWISH"},
};

std::string supported_list() {
  std::string s;
  for (const auto& op : ops::registrations()) {
    if (!s.empty()) s += ", ";
    s += op.name;
  }
  return s;
}

Result<ElementType> convert_type(int8_t raw, const std::string& source, const std::string& place) {
  switch (raw) {
    case 0: return ElementType::kFloat32;
    case 2: return ElementType::kInt32;
    case 3: return ElementType::kUInt8;
    case 4: return ElementType::kInt64;
    case 7: return ElementType::kInt16;
    case 9: return ElementType::kInt8;
    default:
      return unsupported_error(
          source, place,
          "tensor type code " + std::to_string(raw) + " (vmcu holds float32, int32, uint8, int64, int16, int8)");
  }
}

Activation convert_activation(fb::ActivationFunctionType a, bool* ok) {
  *ok = true;
  switch (a) {
    case fb::ActivationFunctionType_NONE: return Activation::kNone;
    case fb::ActivationFunctionType_RELU: return Activation::kRelu;
    case fb::ActivationFunctionType_RELU_N1_TO_1: return Activation::kReluN1To1;
    case fb::ActivationFunctionType_RELU6: return Activation::kRelu6;
    default: *ok = false; return Activation::kNone;
  }
}

Status import_options(const fb::Operator& op, Operator& out, const std::string& source, const std::string& place) {
  bool act_ok = true;
  auto missing = [&](const char* table) {
    return input_error(source, place, std::string("builtin options of type ") + table,
                       "options of union type " + std::to_string(static_cast<int>(op.builtin_options_type())));
  };
  OpOptions& o = out.options;
  switch (out.kind) {
    case OpKind::kConv2D: {
      const auto* opt = op.builtin_options_as_Conv2DOptions();
      if (!opt) return missing("Conv2DOptions");
      o.padding = opt->padding() == fb::Padding_VALID ? Padding::kValid : Padding::kSame;
      o.stride_w = opt->stride_w();
      o.stride_h = opt->stride_h();
      o.dilation_w = opt->dilation_w_factor();
      o.dilation_h = opt->dilation_h_factor();
      o.activation = convert_activation(opt->fused_activation_function(), &act_ok);
      break;
    }
    case OpKind::kDepthwiseConv2D: {
      const auto* opt = op.builtin_options_as_DepthwiseConv2DOptions();
      if (!opt) return missing("DepthwiseConv2DOptions");
      o.padding = opt->padding() == fb::Padding_VALID ? Padding::kValid : Padding::kSame;
      o.stride_w = opt->stride_w();
      o.stride_h = opt->stride_h();
      o.dilation_w = opt->dilation_w_factor();
      o.dilation_h = opt->dilation_h_factor();
      o.depth_multiplier = opt->depth_multiplier();
      o.activation = convert_activation(opt->fused_activation_function(), &act_ok);
      break;
    }
    case OpKind::kAveragePool2D:
    case OpKind::kMaxPool2D: {
      const auto* opt = op.builtin_options_as_Pool2DOptions();
      if (!opt) return missing("Pool2DOptions");
      o.padding = opt->padding() == fb::Padding_VALID ? Padding::kValid : Padding::kSame;
      o.stride_w = opt->stride_w();
      o.stride_h = opt->stride_h();
      o.filter_w = opt->filter_width();
      o.filter_h = opt->filter_height();
      o.activation = convert_activation(opt->fused_activation_function(), &act_ok);
      break;
    }
    case OpKind::kFullyConnected: {
      // Absent options mean TFLite's defaults (no activation, default weight format).
      if (const auto* opt = op.builtin_options_as_FullyConnectedOptions()) {
        if (opt->weights_format() != 0)
          return unsupported_error(source, place, "shuffled fully-connected weight format");
        o.activation = convert_activation(opt->fused_activation_function(), &act_ok);
        o.keep_dims = opt->keep_num_dims();
      }
      break;
    }
    case OpKind::kSoftmax: {
      if (const auto* opt = op.builtin_options_as_SoftmaxOptions()) o.beta = opt->beta();
      break;
    }
    case OpKind::kAdd: {
      if (const auto* opt = op.builtin_options_as_AddOptions())
        o.activation = convert_activation(opt->fused_activation_function(), &act_ok);
      break;
    }
    case OpKind::kMean: {
      if (const auto* opt = op.builtin_options_as_ReducerOptions()) o.keep_dims = opt->keep_dims();
      break;
    }
    default: break;
  }
  if (!act_ok) return unsupported_error(source, place, "fused activation other than NONE/RELU/RELU_N1_TO_1/RELU6");
  return Status::Ok();
}

}  // namespace

std::string_view op_kind_name(OpKind kind) {
  if (static_cast<size_t>(kind) >= kOpKindCount) return "?";
  return ops::registration(kind).name;
}

int builtin_code(OpKind kind) {
  if (static_cast<size_t>(kind) >= kOpKindCount) return -1;
  return ops::registration(kind).builtin_code;
}

std::string builtin_code_name(int code) {
  if (const ops::OpRegistration* op = ops::find_builtin(code)) return op->name;
  for (const auto& op : kOtherNames)
    if (op.code == code) return op.name;
  return "BUILTIN_" + std::to_string(code);
}

std::string Graph::op_place(size_t op_index) const {
  std::string name = op_index < ops.size() ? std::string(op_kind_name(ops[op_index].kind)) : "?";
  return "operator " + std::to_string(op_index) + " (" + name + ")";
}

Result<Graph> load_tflite(const std::string& path) {
  PERFMEM_ASSIGN_OR_RETURN(auto bytes, read_binary_file(path));
  return parse_tflite(bytes, path);
}

Result<Graph> parse_tflite(std::span<const uint8_t> bytes, const std::string& source) {
  if (bytes.size() < 8)
    return input_error(source, "file header", "a TFLite flatbuffer (at least 8 bytes)",
                       std::to_string(bytes.size()) + " bytes");
  if (!fb::ModelBufferHasIdentifier(bytes.data()))
    return input_error(source, "file identifier (bytes 4..7)", "\"TFL3\"",
                       "\"" + std::string(reinterpret_cast<const char*>(bytes.data()) + 4, 4) + "\"");
  if (bytes.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    return unsupported_error(source, "file", "flatbuffers larger than 2 GiB");
  flatbuffers::Verifier verifier(bytes.data(), bytes.size());
  if (!fb::VerifyModelBuffer(verifier))
    return input_error(source, "flatbuffer structure",
                       "a well-formed TFLite model (offsets, vectors and strings inside the file)",
                       "the flatbuffers verifier rejected it (truncated or corrupt file)");
  const fb::Model* model = fb::GetModel(bytes.data());
  if (model->version() != 3)
    return unsupported_error(source, "model version",
                             "schema version " + std::to_string(model->version()) + " (expected 3)");
  if (!model->subgraphs() || model->subgraphs()->size() == 0)
    return input_error(source, "subgraphs", "at least one subgraph", "none");
  if (model->subgraphs()->size() > 1)
    return unsupported_error(
        source, "subgraphs",
        std::to_string(model->subgraphs()->size()) + " subgraphs (vmcu runs single-subgraph models)");
  const fb::SubGraph* sg = model->subgraphs()->Get(0);
  const auto* buffers = model->buffers();
  const size_t num_buffers = buffers ? buffers->size() : 0;

  Graph g;
  g.source = source;
  const size_t num_tensors = sg->tensors() ? sg->tensors()->size() : 0;
  g.tensors.reserve(num_tensors);
  for (size_t i = 0; i < num_tensors; ++i) {
    const fb::Tensor* t = sg->tensors()->Get(static_cast<flatbuffers::uoffset_t>(i));
    const std::string place = "tensor " + std::to_string(i);
    Tensor out;
    out.name = t->name() ? t->name()->str() : "";
    PERFMEM_ASSIGN_OR_RETURN(out.type, convert_type(t->type(), source, place));
    if (t->is_variable()) return unsupported_error(source, place, "variable tensors");
    int64_t count = 1;
    if (t->shape()) {
      if (t->shape()->size() > 6)
        return unsupported_error(source, place, "rank " + std::to_string(t->shape()->size()) + " (at most 6)");
      for (int32_t d : *t->shape()) {
        if (d < 0) return input_error(source, place + " shape", "non-negative dimensions", std::to_string(d));
        count *= d;
        if (count > (int64_t{1} << 31))
          return input_error(source, place + " shape", "fewer than 2^31 elements", "more");
        out.shape.push_back(d);
      }
    }
    if (t->buffer() >= num_buffers && !(t->buffer() == 0 && num_buffers == 0))
      return input_error(source, place + " buffer index", "< " + std::to_string(num_buffers),
                         std::to_string(t->buffer()));
    if (t->buffer() != 0 || num_buffers > 0) {
      const fb::Buffer* b = buffers->Get(t->buffer());
      if (b->offset() > 1 || b->size() != 0)
        return unsupported_error(source, place, "buffer stored outside the flatbuffer (offset/size)");
      if (b->data() && b->data()->size() > 0) {
        if (b->data()->size() != out.bytes())
          return input_error(source, place + " (" + out.name + ") data",
                             std::to_string(out.bytes()) + " bytes for its shape and type",
                             std::to_string(b->data()->size()) + " bytes");
        out.data.assign(b->data()->begin(), b->data()->end());
        out.is_constant = true;
      }
    }
    if (const auto* q = t->quantization()) {
      const size_t ns = q->scale() ? q->scale()->size() : 0;
      const size_t nz = q->zero_point() ? q->zero_point()->size() : 0;
      if (ns > 0) {
        if (nz != ns)
          return input_error(source, place + " quantization", std::to_string(ns) + " zero points (one per scale)",
                             std::to_string(nz));
        out.quantization.scales.assign(q->scale()->begin(), q->scale()->end());
        out.quantization.zero_points.assign(q->zero_point()->begin(), q->zero_point()->end());
        out.quantization.quantized_dimension = q->quantized_dimension();
        if (ns > 1) {
          const int qd = q->quantized_dimension();
          if (qd < 0 || qd >= static_cast<int>(out.shape.size()) || out.shape[qd] != static_cast<int32_t>(ns))
            return input_error(source, place + " quantization", "one scale per slice of the quantized dimension",
                               std::to_string(ns) + " scales, quantized_dimension " + std::to_string(qd));
        }
        for (float s : out.quantization.scales)
          if (!(s > 0.0f) || s != s || s > 1e30f)
            return input_error(source, place + " quantization", "positive finite scales", std::to_string(s));
        for (int64_t z : out.quantization.zero_points)
          if (z < -32768 || z > 65535)
            return input_error(source, place + " quantization", "zero points in the integer type's range",
                               std::to_string(z));
      }
    }
    g.tensors.push_back(std::move(out));
  }

  auto check_index_list = [&](const flatbuffers::Vector<int32_t>* list, const std::string& place, bool allow_omitted,
                              std::vector<int>& out) -> Status {
    if (!list) return Status::Ok();
    for (int32_t idx : *list) {
      if (idx == -1 && allow_omitted) {
        out.push_back(-1);
        continue;
      }
      if (idx < 0 || static_cast<size_t>(idx) >= num_tensors)
        return input_error(source, place, "tensor indices in [0, " + std::to_string(num_tensors) + ")",
                           std::to_string(idx));
      out.push_back(idx);
    }
    return Status::Ok();
  };
  PERFMEM_RETURN_IF_ERROR(check_index_list(sg->inputs(), "subgraph inputs", false, g.inputs));
  PERFMEM_RETURN_IF_ERROR(check_index_list(sg->outputs(), "subgraph outputs", false, g.outputs));
  if (g.inputs.empty() || g.outputs.empty())
    return input_error(source, "subgraph", "at least one input and one output tensor", "none");

  const size_t num_codes = model->operator_codes() ? model->operator_codes()->size() : 0;
  const size_t num_ops = sg->operators() ? sg->operators()->size() : 0;
  for (size_t i = 0; i < num_ops; ++i) {
    const fb::Operator* op = sg->operators()->Get(static_cast<flatbuffers::uoffset_t>(i));
    std::string place = "operator " + std::to_string(i);
    if (op->opcode_index() >= num_codes)
      return input_error(source, place + " opcode_index", "< " + std::to_string(num_codes),
                         std::to_string(op->opcode_index()));
    const fb::OperatorCode* oc = model->operator_codes()->Get(op->opcode_index());
    // Old files set only the deprecated byte; new ones set both, the larger being the truth.
    const int code = std::max<int>(oc->builtin_code(), oc->deprecated_builtin_code());
    const ops::OpRegistration* info = ops::find_builtin(code);
    if (!info) {
      std::string name = builtin_code_name(code);
      if (code == 32 && oc->custom_code()) name += " " + oc->custom_code()->str();
      return unsupported_error(source, place + " (" + name + ")",
                               "operator " + name + " is not supported by vmcu (supported: " + supported_list() + ")");
    }
    place += std::string(" (") + info->name + ")";
    Operator out;
    out.kind = info->kind;
    PERFMEM_RETURN_IF_ERROR(check_index_list(op->inputs(), place + " inputs", true, out.inputs));
    PERFMEM_RETURN_IF_ERROR(check_index_list(op->outputs(), place + " outputs", false, out.outputs));
    if (out.outputs.size() != 1)
      return input_error(source, place + " outputs", "exactly 1 output", std::to_string(out.outputs.size()));
    PERFMEM_RETURN_IF_ERROR(import_options(*op, out, source, place));
    g.ops.push_back(std::move(out));
  }
  return g;
}

Liveness compute_liveness(const Graph& graph) {
  Liveness l;
  l.first_use.assign(graph.tensors.size(), -1);
  l.last_use.assign(graph.tensors.size(), -1);
  auto touch = [&](int t, int step) {
    if (t < 0) return;
    if (l.first_use[t] < 0 || step < l.first_use[t]) l.first_use[t] = step;
    l.last_use[t] = std::max(l.last_use[t], step);
  };
  for (int t : graph.inputs) touch(t, 0);
  for (size_t i = 0; i < graph.ops.size(); ++i) {
    for (int t : graph.ops[i].inputs) touch(t, static_cast<int>(i));
    for (int t : graph.ops[i].outputs) touch(t, static_cast<int>(i));
  }
  const int last = graph.ops.empty() ? 0 : static_cast<int>(graph.ops.size()) - 1;
  for (int t : graph.outputs) touch(t, last);
  return l;
}

}  // namespace perfmem::vmcu
