// Model builder: a spec expands to a layer list, each layer appends int8 tensors and ops, and
// the result is serialized with the flatc-generated builder API.
#include "perfmem/vmcu/builder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "flatbuffers/flatbuffers.h"
#include "perfmem/core/json.h"
#include "perfmem/vmcu/model.h"
#include "perfmem/vmcu/quantization.h"
#include "tflite_subset_generated.h"

namespace perfmem::vmcu {
namespace fb = tflite_subset;
using nlohmann::json;

namespace {

struct BTensor {
  std::string name;
  std::vector<int32_t> shape;
  int8_t type = 9;  // TFLite INT8
  std::vector<float> scales;
  std::vector<int64_t> zero_points;
  int quantized_dimension = 0;
  std::vector<uint8_t> data;
};

struct BOp {
  OpKind kind;
  std::vector<int> inputs;
  int output;
  OpOptions options;
  std::vector<int32_t> new_shape;  // reshape
};

// Activation quantization: ReLU6 outputs cover [0, 6]; others roughly unit-variance values.
struct ActQuant {
  float scale;
  int64_t zero_point;
};
ActQuant act_quant(Activation a) {
  if (a == Activation::kRelu6) return {6.0f / 255.0f, -128};
  if (a == Activation::kRelu) return {8.0f / 255.0f, -128};
  return {8.0f / 255.0f, 0};
}

class Builder {
 public:
  Builder(uint32_t seed, std::string source) : rng_(seed), source_(std::move(source)) {}

  int add_tensor(BTensor t) {
    tensors_.push_back(std::move(t));
    return static_cast<int>(tensors_.size()) - 1;
  }
  int activation(const std::string& name, std::vector<int32_t> shape, ActQuant q) {
    BTensor t;
    t.name = name;
    t.shape = std::move(shape);
    t.scales = {q.scale};
    t.zero_points = {q.zero_point};
    return add_tensor(std::move(t));
  }
  const BTensor& tensor(int i) const { return tensors_[i]; }

  // Symmetric int8 weights, per output channel scale ~ sqrt(3 / fan_in) / 127 (x0.5..1.5).
  int weights(const std::string& name, std::vector<int32_t> shape, int channel_dim, int fan_in, bool per_channel) {
    BTensor t;
    t.name = name;
    t.shape = shape;
    int64_t n = 1;
    for (int32_t d : shape) n *= d;
    std::uniform_int_distribution<int> q(-127, 127);
    t.data.resize(static_cast<size_t>(n));
    for (auto& b : t.data) b = static_cast<uint8_t>(static_cast<int8_t>(q(rng_)));
    std::uniform_real_distribution<float> factor(0.5f, 1.5f);
    const float base = std::sqrt(3.0f / static_cast<float>(std::max(fan_in, 1))) / 127.0f;
    const int channels = per_channel ? shape[channel_dim] : 1;
    for (int c = 0; c < channels; ++c) {
      t.scales.push_back(base * factor(rng_));
      t.zero_points.push_back(0);
    }
    t.quantized_dimension = per_channel ? channel_dim : 0;
    return add_tensor(std::move(t));
  }
  // int32 bias with scale input_scale * weight_scale[c], real values ~ U(-0.1, 0.1).
  int bias(const std::string& name, int input, int weights_tensor, int channels) {
    BTensor t;
    t.name = name;
    t.type = 2;
    t.shape = {channels};
    const BTensor& w = tensors_[weights_tensor];
    const float in_scale = tensors_[input].scales[0];
    std::uniform_real_distribution<float> real(-0.1f, 0.1f);
    t.data.resize(static_cast<size_t>(channels) * 4);
    for (int c = 0; c < channels; ++c) {
      const float s = in_scale * w.scales[w.scales.size() == 1 ? 0 : c];
      t.scales.push_back(s);
      t.zero_points.push_back(0);
      const int32_t v = static_cast<int32_t>(std::lround(real(rng_) / s));
      std::memcpy(t.data.data() + 4 * c, &v, 4);
    }
    return add_tensor(std::move(t));
  }
  int const_i32(const std::string& name, const std::vector<int32_t>& values, std::vector<int32_t> shape) {
    BTensor t;
    t.name = name;
    t.type = 2;
    t.shape = std::move(shape);
    t.data.resize(values.size() * 4);
    std::memcpy(t.data.data(), values.data(), t.data.size());
    return add_tensor(std::move(t));
  }
  void op(BOp o) { ops_.push_back(std::move(o)); }

  // Layers: each takes the current tensor and returns the new one.
  int conv(int x, const std::string& name, int kernel, int out_c, int stride, Padding pad, Activation act,
           bool depthwise, int depth_multiplier) {
    const std::vector<int32_t> s = tensors_[x].shape;  // a copy: adding tensors reallocates
    const int in_c = s[3];
    const PaddedDim ph = compute_padding(pad, s[1], kernel, stride, 1);
    const PaddedDim pw = compute_padding(pad, s[2], kernel, stride, 1);
    if (depthwise) out_c = in_c * depth_multiplier;
    const int w = depthwise
                      ? weights(name + "/weights", {1, kernel, kernel, out_c}, 3, kernel * kernel, true)
                      : weights(name + "/weights", {out_c, kernel, kernel, in_c}, 0, kernel * kernel * in_c, true);
    const int b = bias(name + "/bias", x, w, out_c);
    const int y = activation(name, {s[0], ph.out, pw.out, out_c}, act_quant(act));
    BOp o{depthwise ? OpKind::kDepthwiseConv2D : OpKind::kConv2D, {x, w, b}, y, {}, {}};
    o.options.padding = pad;
    o.options.stride_h = o.options.stride_w = stride;
    o.options.activation = act;
    o.options.depth_multiplier = depthwise ? depth_multiplier : 1;
    op(std::move(o));
    return y;
  }
  int flatten(int x, const std::string& name) {
    const std::vector<int32_t> s = tensors_[x].shape;  // a copy: adding tensors reallocates
    if (s.size() == 2) return x;
    int32_t n = 1;
    for (size_t i = 1; i < s.size(); ++i) n *= s[i];
    std::vector<int32_t> shape = {s[0], n};
    const int shape_t = const_i32(name + "/shape", shape, {2});
    BTensor t = tensors_[x];
    t.name = name;
    t.shape = shape;
    t.data.clear();
    const int y = add_tensor(std::move(t));
    op({OpKind::kReshape, {x, shape_t}, y, {}, shape});
    return y;
  }
  int fully_connected(int x, const std::string& name, int units, Activation act) {
    x = flatten(x, name + "/flatten");
    const auto s = tensors_[x].shape;
    const int w = weights(name + "/weights", {units, s[1]}, 0, s[1], false);
    const int b = bias(name + "/bias", x, w, units);
    const int y = activation(name, {s[0], units}, act_quant(act));
    BOp o{OpKind::kFullyConnected, {x, w, b}, y, {}, {}};
    o.options.activation = act;
    op(std::move(o));
    return y;
  }
  int pool(int x, const std::string& name, bool average, int kh, int kw, int stride, Padding pad) {
    const auto s = tensors_[x].shape;
    const PaddedDim ph = compute_padding(pad, s[1], kh, stride, 1);
    const PaddedDim pw = compute_padding(pad, s[2], kw, stride, 1);
    BTensor t = tensors_[x];
    t.name = name;
    t.shape = {s[0], ph.out, pw.out, s[3]};
    t.data.clear();
    const int y = add_tensor(std::move(t));
    BOp o{average ? OpKind::kAveragePool2D : OpKind::kMaxPool2D, {x}, y, {}, {}};
    o.options.padding = pad;
    o.options.stride_h = o.options.stride_w = stride;
    o.options.filter_h = kh;
    o.options.filter_w = kw;
    op(std::move(o));
    return y;
  }
  // MEAN over H and W; the output scale differs from the input's so the rescale is exercised.
  int mean(int x, const std::string& name, bool keep_dims) {
    const auto s = tensors_[x].shape;
    const int axes = const_i32(name + "/axes", {1, 2}, {2});
    BTensor t = tensors_[x];
    t.name = name;
    t.shape = keep_dims ? std::vector<int32_t>{s[0], 1, 1, s[3]} : std::vector<int32_t>{s[0], s[3]};
    t.scales = {tensors_[x].scales[0] * 0.75f};
    t.zero_points = {std::clamp<int64_t>(tensors_[x].zero_points[0] + 5, -128, 127)};
    t.data.clear();
    const int y = add_tensor(std::move(t));
    BOp o{OpKind::kMean, {x, axes}, y, {}, {}};
    o.options.keep_dims = keep_dims;
    op(std::move(o));
    return y;
  }
  int add(int a, int b, const std::string& name) {
    const int y = activation(name, tensors_[a].shape, {8.0f * 1.4f / 255.0f, 0});
    op({OpKind::kAdd, {a, b}, y, {}, {}});
    return y;
  }
  int softmax(int x, const std::string& name) {
    const int y = activation(name, tensors_[x].shape, {1.0f / 256.0f, -128});
    BOp o{OpKind::kSoftmax, {x}, y, {}, {}};
    o.options.beta = 1.0f;
    op(std::move(o));
    return y;
  }
  int bottleneck(int x, const std::string& name, int mid, int out_c, int kernel, int stride, bool residual) {
    const int in = x;
    if (mid != tensors_[x].shape[3])
      x = conv(x, name + "/expand", 1, mid, 1, Padding::kSame, Activation::kRelu6, false, 1);
    x = conv(x, name + "/depthwise", kernel, 0, stride, Padding::kSame, Activation::kRelu6, true, 1);
    x = conv(x, name + "/project", 1, out_c, 1, Padding::kSame, Activation::kNone, false, 1);
    if (residual) x = add(in, x, name + "/add");
    return x;
  }

  std::vector<uint8_t> serialize(int input, int output) {
    flatbuffers::FlatBufferBuilder fbb(1 << 16);
    std::vector<int> codes;  // builtin code per opcode index
    std::vector<flatbuffers::Offset<fb::Buffer>> buffers;
    buffers.push_back(fb::CreateBuffer(fbb));
    std::vector<flatbuffers::Offset<fb::Tensor>> tensors;
    for (const auto& t : tensors_) {
      uint32_t buffer = 0;
      if (!t.data.empty()) {
        fbb.ForceVectorAlignment(t.data.size(), 1, 16);
        auto data = fbb.CreateVector(t.data);
        buffers.push_back(fb::CreateBuffer(fbb, data));
        buffer = static_cast<uint32_t>(buffers.size() - 1);
      }
      flatbuffers::Offset<fb::QuantizationParameters> q = 0;
      if (!t.scales.empty())
        q = fb::CreateQuantizationParameters(fbb, 0, 0, fbb.CreateVector(t.scales), fbb.CreateVector(t.zero_points),
                                             fb::QuantizationDetails_NONE, 0, t.quantized_dimension);
      tensors.push_back(fb::CreateTensor(fbb, fbb.CreateVector(t.shape), t.type, buffer, fbb.CreateString(t.name), q));
    }
    std::vector<flatbuffers::Offset<fb::Operator>> ops;
    for (const auto& o : ops_) {
      const int code = builtin_code(o.kind);
      auto it = std::find(codes.begin(), codes.end(), code);
      if (it == codes.end()) {
        codes.push_back(code);
        it = codes.end() - 1;
      }
      const uint32_t opcode_index = static_cast<uint32_t>(it - codes.begin());
      const auto act =
          static_cast<fb::ActivationFunctionType>(static_cast<int>(o.options.activation == Activation::kRelu6  ? 3
                                                                   : o.options.activation == Activation::kRelu ? 1
                                                                                                               : 0));
      const auto pad = o.options.padding == Padding::kSame ? fb::Padding_SAME : fb::Padding_VALID;
      fb::BuiltinOptions type = fb::BuiltinOptions_NONE;
      flatbuffers::Offset<void> options = 0;
      switch (o.kind) {
        case OpKind::kConv2D:
          type = fb::BuiltinOptions_Conv2DOptions;
          options = fb::CreateConv2DOptions(fbb, pad, o.options.stride_w, o.options.stride_h, act).Union();
          break;
        case OpKind::kDepthwiseConv2D:
          type = fb::BuiltinOptions_DepthwiseConv2DOptions;
          options = fb::CreateDepthwiseConv2DOptions(fbb, pad, o.options.stride_w, o.options.stride_h,
                                                     o.options.depth_multiplier, act)
                        .Union();
          break;
        case OpKind::kAveragePool2D:
        case OpKind::kMaxPool2D:
          type = fb::BuiltinOptions_Pool2DOptions;
          options = fb::CreatePool2DOptions(fbb, pad, o.options.stride_w, o.options.stride_h, o.options.filter_w,
                                            o.options.filter_h, act)
                        .Union();
          break;
        case OpKind::kFullyConnected:
          type = fb::BuiltinOptions_FullyConnectedOptions;
          options = fb::CreateFullyConnectedOptions(fbb, act).Union();
          break;
        case OpKind::kSoftmax:
          type = fb::BuiltinOptions_SoftmaxOptions;
          options = fb::CreateSoftmaxOptions(fbb, o.options.beta).Union();
          break;
        case OpKind::kAdd:
          type = fb::BuiltinOptions_AddOptions;
          options = fb::CreateAddOptions(fbb, act).Union();
          break;
        case OpKind::kMean:
          type = fb::BuiltinOptions_ReducerOptions;
          options = fb::CreateReducerOptions(fbb, o.options.keep_dims).Union();
          break;
        case OpKind::kReshape:
          type = fb::BuiltinOptions_ReshapeOptions;
          options = fb::CreateReshapeOptions(fbb, fbb.CreateVector(o.new_shape)).Union();
          break;
        default: break;
      }
      ops.push_back(fb::CreateOperator(fbb, opcode_index, fbb.CreateVector(o.inputs),
                                       fbb.CreateVector(std::vector<int32_t>{o.output}), type, options));
    }
    std::vector<flatbuffers::Offset<fb::OperatorCode>> opcodes;
    for (int code : codes) {
      const int version = code == builtin_code(OpKind::kReshape)          ? 1
                          : code == builtin_code(OpKind::kFullyConnected) ? 4
                          : code == builtin_code(OpKind::kAdd) || code == builtin_code(OpKind::kSoftmax) ||
                                  code == builtin_code(OpKind::kMean) || code == builtin_code(OpKind::kAveragePool2D) ||
                                  code == builtin_code(OpKind::kMaxPool2D)
                              ? 2
                              : 3;
      opcodes.push_back(fb::CreateOperatorCode(fbb, static_cast<int8_t>(std::min(code, 127)), 0, version, code));
    }
    auto subgraph = fb::CreateSubGraph(fbb, fbb.CreateVector(tensors), fbb.CreateVector(std::vector<int32_t>{input}),
                                       fbb.CreateVector(std::vector<int32_t>{output}), fbb.CreateVector(ops),
                                       fbb.CreateString("main"));
    std::vector<flatbuffers::Offset<fb::SubGraph>> subgraphs{subgraph};
    auto model = fb::CreateModel(fbb, 3, fbb.CreateVector(opcodes), fbb.CreateVector(subgraphs),
                                 fbb.CreateString("perfmem vmcu build-model"), fbb.CreateVector(buffers));
    fb::FinishModelBuffer(fbb, model);
    return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
  }

  std::mt19937& rng() { return rng_; }

 private:
  std::vector<BTensor> tensors_;
  std::vector<BOp> ops_;
  std::mt19937 rng_;
  std::string source_;
};

// Reads spec fields with errors naming the JSON path.
class SpecReader {
 public:
  explicit SpecReader(std::string source) : source_(std::move(source)) {}
  Result<int> integer(const json& obj, const std::string& path, const char* key, int def, int lo, int hi,
                      bool required = false) const {
    if (!obj.contains(key)) {
      if (required)
        return input_error(source_, path + "." + key,
                           "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]", "nothing");
      return def;
    }
    const json& v = obj.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
      return input_error(source_, path + "." + key,
                         "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]", v.dump());
    return static_cast<int>(v.get<int64_t>());
  }
  Result<Padding> padding(const json& obj, const std::string& path) const {
    if (!obj.contains("padding")) return Padding::kSame;
    const json& v = obj.at("padding");
    if (v == "same") return Padding::kSame;
    if (v == "valid") return Padding::kValid;
    return input_error(source_, path + ".padding", "\"same\" or \"valid\"", v.dump());
  }
  Result<Activation> activation(const json& obj, const std::string& path, Activation def) const {
    if (!obj.contains("activation")) return def;
    const json& v = obj.at("activation");
    if (v == "none") return Activation::kNone;
    if (v == "relu") return Activation::kRelu;
    if (v == "relu6") return Activation::kRelu6;
    return input_error(source_, path + ".activation", "\"none\", \"relu\" or \"relu6\"", v.dump());
  }
  // Rejects a field the spec format does not define (a misspelt field would otherwise be
  // silently replaced by its default).
  Status only_fields(const json& obj, const std::string& path, std::initializer_list<const char*> known) const {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      if (std::any_of(known.begin(), known.end(), [&](const char* k) { return it.key() == k; })) continue;
      std::string list;
      for (const char* k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      return input_error(source_, path + "." + it.key(), "a known field (" + list + ")", "an unknown field");
    }
    return Status::Ok();
  }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

int make_divisible(double v, int divisor = 8) {
  int n = std::max(divisor, static_cast<int>(v + divisor / 2.0) / divisor * divisor);
  if (n < 0.9 * v) n += divisor;
  return n;
}

// MobileNetV2 (Sandler et al.) as a layer list: stem, 17 inverted bottlenecks, head, classifier.
json mobilenetv2_layers(double width, int classes) {
  json layers = json::array();
  layers.push_back({{"type", "conv"},
                    {"kernel", 3},
                    {"out_channels", make_divisible(32 * width)},
                    {"stride", 2},
                    {"activation", "relu6"}});
  const int settings[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},      {6, 32, 3, 2}, {6, 64, 4, 2},
                              {6, 96, 3, 1}, {1 * 6, 160, 3, 2}, {6, 320, 1, 1}};
  int in_c = make_divisible(32 * width);
  for (const auto& s : settings) {
    const int out_c = make_divisible(s[1] * width);
    for (int i = 0; i < s[2]; ++i) {
      const int stride = i == 0 ? s[3] : 1;
      layers.push_back({{"type", "bottleneck"},
                        {"mid_channels", in_c * s[0]},
                        {"out_channels", out_c},
                        {"kernel", 3},
                        {"stride", stride},
                        {"residual", stride == 1 && in_c == out_c}});
      in_c = out_c;
    }
  }
  const int last = width > 1.0 ? make_divisible(1280 * width) : 1280;
  layers.push_back({{"type", "pointwise"}, {"out_channels", last}, {"activation", "relu6"}});
  layers.push_back({{"type", "global_avgpool"}});
  layers.push_back({{"type", "fully_connected"}, {"units", classes}});
  layers.push_back({{"type", "softmax"}});
  return layers;
}

// The fields each layer type reads (an unknown type is reported after this check passes).
Status known_layer_fields(const SpecReader& r, const json& l, const std::string& path, const std::string& type) {
  if (type == "conv" || type == "pointwise")
    return r.only_fields(l, path, {"type", "kernel", "out_channels", "stride", "padding", "activation"});
  if (type == "depthwise")
    return r.only_fields(l, path, {"type", "kernel", "stride", "padding", "depth_multiplier", "activation"});
  if (type == "bottleneck")
    return r.only_fields(l, path, {"type", "mid_channels", "out_channels", "kernel", "stride", "residual"});
  if (type == "avgpool" || type == "maxpool") return r.only_fields(l, path, {"type", "kernel", "stride", "padding"});
  if (type == "global_avgpool" || type == "softmax") return r.only_fields(l, path, {"type"});
  if (type == "mean") return r.only_fields(l, path, {"type", "keep_dims"});
  if (type == "fully_connected") return r.only_fields(l, path, {"type", "units", "activation"});
  return Status::Ok();
}

// Deepest nesting of arrays and objects a spec may have (a valid spec needs 3); checked
// before parsing because the parser recurses once per level.
constexpr int kMaxSpecDepth = 32;

// Byte offset where the nesting of `text` first exceeds kMaxSpecDepth, or -1.
int64_t too_deep_at(const std::string& text) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > kMaxSpecDepth) return static_cast<int64_t>(i);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return -1;
}

}  // namespace

Result<std::vector<uint8_t>> build_model_from_json(const std::string& json_text, const std::string& source) {
  if (const int64_t at = too_deep_at(json_text); at >= 0)
    return input_error(source, "JSON (byte " + std::to_string(at) + ")",
                       "arrays and objects nested at most " + std::to_string(kMaxSpecDepth) + " deep",
                       "deeper nesting");
  json spec;
  try {
    spec = json::parse(json_text);
  } catch (const json::parse_error& e) {
    return input_error(source, "JSON (byte " + std::to_string(e.byte) + ")", "a valid JSON document", e.what());
  }
  if (!spec.is_object()) return input_error(source, "top level", "a JSON object", spec.dump().substr(0, 40));
  SpecReader r(source);
  PERFMEM_RETURN_IF_ERROR(spec.contains("mobilenetv2") ? r.only_fields(spec, "$", {"mobilenetv2", "seed"})
                                                       : r.only_fields(spec, "$", {"seed", "input", "layers"}));
  PERFMEM_ASSIGN_OR_RETURN(int seed, r.integer(spec, "$", "seed", 1, 0, 1 << 30));
  Builder b(static_cast<uint32_t>(seed), source);

  json layers;
  std::vector<int32_t> input_shape;
  if (spec.contains("mobilenetv2")) {
    const json& m = spec.at("mobilenetv2");
    if (!m.is_object()) return input_error(source, "mobilenetv2", "an object", m.dump());
    PERFMEM_RETURN_IF_ERROR(r.only_fields(m, "mobilenetv2", {"width", "resolution", "classes"}));
    double width = 1.0;
    if (m.contains("width")) {
      if (!m.at("width").is_number() || m.at("width").get<double>() <= 0 || m.at("width").get<double>() > 4)
        return input_error(source, "mobilenetv2.width", "a number in (0, 4]", m.at("width").dump());
      width = m.at("width").get<double>();
    }
    PERFMEM_ASSIGN_OR_RETURN(int res, r.integer(m, "mobilenetv2", "resolution", 224, 32, 1024));
    PERFMEM_ASSIGN_OR_RETURN(int classes, r.integer(m, "mobilenetv2", "classes", 1000, 1, 100000));
    layers = mobilenetv2_layers(width, classes);
    input_shape = {1, res, res, 3};
  } else {
    if (!spec.contains("input") || !spec.at("input").is_array() || spec.at("input").empty() ||
        spec.at("input").size() > 4)
      return input_error(source, "input", "an array of 1 to 4 positive dimensions (e.g. [1, 80, 80, 16])",
                         spec.contains("input") ? spec.at("input").dump() : "nothing");
    for (const auto& d : spec.at("input")) {
      if (!d.is_number_integer() || d.get<int64_t>() < 1 || d.get<int64_t>() > 65536)
        return input_error(source, "input", "positive integer dimensions", d.dump());
      input_shape.push_back(static_cast<int32_t>(d.get<int64_t>()));
    }
    if (!spec.contains("layers") || !spec.at("layers").is_array() || spec.at("layers").empty())
      return input_error(source, "layers", "a non-empty array of layer objects");
    layers = spec.at("layers");
  }
  const int input = b.activation("input", input_shape, {1.0f / 32.0f, 0});
  int x = input;
  int64_t elements = 1;
  for (int32_t d : input_shape) elements *= d;
  if (elements > (int64_t{1} << 28))
    return input_error(source, "input", "at most 2^28 elements", std::to_string(elements));
  for (size_t i = 0; i < layers.size(); ++i) {
    const json& l = layers[i];
    const std::string path = "layers[" + std::to_string(i) + "]";
    const std::string name = "l" + std::to_string(i);
    if (!l.is_object() || !l.contains("type") || !l.at("type").is_string())
      return input_error(source, path, "an object with a string \"type\"", l.dump());
    const std::string type = l.at("type").get<std::string>();
    PERFMEM_RETURN_IF_ERROR(known_layer_fields(r, l, path, type));
    const auto shape = b.tensor(x).shape;
    const bool spatial = shape.size() == 4;
    auto need_spatial = [&]() -> Status {
      if (!spatial)
        return input_error(source, path, "a rank-4 NHWC input for layer type '" + type + "'",
                           "rank " + std::to_string(shape.size()));
      return Status::Ok();
    };
    if (type == "conv" || type == "pointwise" || type == "depthwise") {
      PERFMEM_RETURN_IF_ERROR(need_spatial());
      PERFMEM_ASSIGN_OR_RETURN(int kernel, r.integer(l, path, "kernel", type == "pointwise" ? 1 : 3, 1, 15));
      if (type == "pointwise" && kernel != 1)
        return input_error(source, path + ".kernel", "1 for a pointwise layer", std::to_string(kernel));
      PERFMEM_ASSIGN_OR_RETURN(int stride, r.integer(l, path, "stride", 1, 1, 8));
      PERFMEM_ASSIGN_OR_RETURN(Padding pad, r.padding(l, path));
      PERFMEM_ASSIGN_OR_RETURN(Activation act,
                               r.activation(l, path, type == "pointwise" ? Activation::kNone : Activation::kRelu6));
      int out_c = 0, mult = 1;
      if (type == "depthwise") {
        PERFMEM_ASSIGN_OR_RETURN(mult, r.integer(l, path, "depth_multiplier", 1, 1, 64));
      } else {
        PERFMEM_ASSIGN_OR_RETURN(out_c, r.integer(l, path, "out_channels", 0, 1, 16384, true));
      }
      if (pad == Padding::kValid && (kernel > shape[1] || kernel > shape[2]))
        return input_error(source, path + ".kernel",
                           "at most the input size " + std::to_string(shape[1]) + "x" + std::to_string(shape[2]),
                           std::to_string(kernel));
      if (int64_t{kernel} * kernel * shape[3] * std::max(out_c, shape[3] * mult) > (int64_t{1} << 26))
        return input_error(source, path, "at most 2^26 weights per layer");
      x = b.conv(x, name, kernel, out_c, stride, pad, act, type == "depthwise", mult);
    } else if (type == "bottleneck") {
      PERFMEM_RETURN_IF_ERROR(need_spatial());
      PERFMEM_ASSIGN_OR_RETURN(int mid, r.integer(l, path, "mid_channels", 0, 1, 16384, true));
      PERFMEM_ASSIGN_OR_RETURN(int out_c, r.integer(l, path, "out_channels", 0, 1, 16384, true));
      PERFMEM_ASSIGN_OR_RETURN(int kernel, r.integer(l, path, "kernel", 3, 1, 15));
      PERFMEM_ASSIGN_OR_RETURN(int stride, r.integer(l, path, "stride", 1, 1, 8));
      bool residual = false;
      if (l.contains("residual")) {
        if (!l.at("residual").is_boolean())
          return input_error(source, path + ".residual", "true or false", l.at("residual").dump());
        residual = l.at("residual").get<bool>();
      }
      if (int64_t{mid} * (shape[3] + kernel * kernel + out_c) > (int64_t{1} << 26))
        return input_error(source, path, "at most 2^26 weights per block");
      if (residual && (stride != 1 || out_c != shape[3]))
        return input_error(source, path + ".residual",
                           "stride 1 and out_channels == input channels (" + std::to_string(shape[3]) + ")",
                           "stride " + std::to_string(stride) + ", out_channels " + std::to_string(out_c));
      x = b.bottleneck(x, name, mid, out_c, kernel, stride, residual);
    } else if (type == "avgpool" || type == "maxpool" || type == "global_avgpool") {
      PERFMEM_RETURN_IF_ERROR(need_spatial());
      if (type == "global_avgpool") {
        x = b.pool(x, name, true, shape[1], shape[2], 1, Padding::kValid);
      } else {
        PERFMEM_ASSIGN_OR_RETURN(int kernel, r.integer(l, path, "kernel", 2, 1, 64));
        PERFMEM_ASSIGN_OR_RETURN(int stride, r.integer(l, path, "stride", kernel, 1, 64));
        PERFMEM_ASSIGN_OR_RETURN(Padding pad, r.padding(l, path));
        if (pad == Padding::kValid && (kernel > shape[1] || kernel > shape[2]))
          return input_error(source, path + ".kernel", "at most the input size", std::to_string(kernel));
        x = b.pool(x, name, type == "avgpool", kernel, kernel, stride, pad);
      }
    } else if (type == "mean") {
      PERFMEM_RETURN_IF_ERROR(need_spatial());
      bool keep_dims = true;
      if (l.contains("keep_dims")) {
        if (!l.at("keep_dims").is_boolean())
          return input_error(source, path + ".keep_dims", "true or false", l.at("keep_dims").dump());
        keep_dims = l.at("keep_dims").get<bool>();
      }
      x = b.mean(x, name, keep_dims);
    } else if (type == "fully_connected") {
      PERFMEM_ASSIGN_OR_RETURN(int units, r.integer(l, path, "units", 0, 1, 1 << 20, true));
      PERFMEM_ASSIGN_OR_RETURN(Activation act, r.activation(l, path, Activation::kNone));
      if (elements / shape[0] * units > (int64_t{1} << 26))
        return input_error(source, path + ".units", "at most 2^26 weights per layer", std::to_string(units));
      x = b.fully_connected(x, name, units, act);
    } else if (type == "softmax") {
      x = b.softmax(x, name);
    } else {
      return input_error(source, path + ".type",
                         "one of conv, pointwise, depthwise, bottleneck, avgpool, maxpool, global_avgpool, mean, "
                         "fully_connected, softmax",
                         "\"" + type + "\"");
    }
    elements = 1;
    for (int32_t d : b.tensor(x).shape) elements *= d;
    if (elements < 1 || elements > (int64_t{1} << 28))
      return input_error(source, path, "an output of 1 to 2^28 elements", std::to_string(elements));
  }
  return b.serialize(input, x);
}

}  // namespace perfmem::vmcu
