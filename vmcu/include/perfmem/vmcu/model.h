// perfmem/vmcu/model.h: int8 TFLite models as a graph IR (tensors, operators, liveness).
//
//   auto graph = perfmem::vmcu::load_tflite("model.tflite");   // verifies, then imports
//   if (!graph) { std::cerr << graph.status().to_string(); return 1; }
//   for (const auto& op : graph->ops) std::cout << op_kind_name(op.kind) << "\n";
//   auto live = perfmem::vmcu::compute_liveness(*graph);        // first/last use per tensor
//
// Every file is run through the flatbuffers verifier before any field is read, then every
// index, shape and buffer size is checked, so a malformed file yields a Status that names the
// file, the place (tensor i / operator i NAME) and what was expected — never a crash. Operator
// semantics (shape compatibility per op) are checked by the executor's prepare step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "perfmem/core/status.h"

namespace perfmem::vmcu {

// TFLite TensorType codes (only those vmcu can hold; others are rejected on import).
enum class ElementType : int8_t { kFloat32 = 0, kInt32 = 2, kUInt8 = 3, kInt64 = 4, kInt16 = 7, kInt8 = 9 };

std::string_view element_type_name(ElementType type);
size_t element_size(ElementType type);

struct Quantization {
  std::vector<float> scales;         // one (per tensor) or one per channel
  std::vector<int64_t> zero_points;  // same length as scales
  int quantized_dimension = 0;
  bool present() const { return !scales.empty(); }
  bool per_channel() const { return scales.size() > 1; }
  float scale() const { return scales.empty() ? 0.0f : scales[0]; }
  int32_t zero_point() const { return zero_points.empty() ? 0 : static_cast<int32_t>(zero_points[0]); }
};

struct Tensor {
  std::string name;
  std::vector<int32_t> shape;
  ElementType type = ElementType::kInt8;
  Quantization quantization;
  std::vector<uint8_t> data;  // constant contents (weights, biases, shape operands); else empty
  bool is_constant = false;

  int64_t element_count() const;
  size_t bytes() const { return static_cast<size_t>(element_count()) * element_size(type); }
};

// The operators vmcu executes (TFLite builtin codes in parentheses).
enum class OpKind {
  kAdd,              // 0
  kAveragePool2D,    // 1
  kConv2D,           // 3
  kDepthwiseConv2D,  // 4
  kDequantize,       // 6
  kFullyConnected,   // 9
  kMaxPool2D,        // 17
  kReshape,          // 22
  kSoftmax,          // 25
  kPad,              // 34
  kTranspose,        // 39
  kMean,             // 40
  kQuantize,         // 114
};
// Number of OpKind values; every kind has one row in the operator table (src/ops/registry.cpp).
inline constexpr size_t kOpKindCount = static_cast<size_t>(OpKind::kQuantize) + 1;

std::string_view op_kind_name(OpKind kind);
int builtin_code(OpKind kind);
// TFLite's name for a builtin operator code ("CONV_2D", ...); "BUILTIN_<n>" when unknown.
std::string builtin_code_name(int code);

enum class Padding { kSame, kValid };
enum class Activation { kNone, kRelu, kReluN1To1, kRelu6 };

struct OpOptions {
  Padding padding = Padding::kValid;
  int32_t stride_h = 1, stride_w = 1;
  int32_t dilation_h = 1, dilation_w = 1;
  int32_t filter_h = 1, filter_w = 1;  // pooling window
  int32_t depth_multiplier = 1;
  Activation activation = Activation::kNone;
  float beta = 1.0f;       // softmax
  bool keep_dims = false;  // mean; fully connected keep_num_dims
};

struct Operator {
  OpKind kind = OpKind::kAdd;
  std::vector<int> inputs;  // tensor indices; -1 marks an omitted optional input (bias)
  std::vector<int> outputs;
  OpOptions options;
};

// One subgraph, operators in execution order.
struct Graph {
  std::string source;  // file name, for error messages
  std::vector<Tensor> tensors;
  std::vector<Operator> ops;
  std::vector<int> inputs, outputs;

  // "operator 3 (CONV_2D)"
  std::string op_place(size_t op_index) const;
};

// Reads, verifies and imports a .tflite file (first subgraph only; models with more are
// rejected as unsupported).
Result<Graph> load_tflite(const std::string& path);
// Same from memory; `source` names the bytes in errors.
Result<Graph> parse_tflite(std::span<const uint8_t> bytes, const std::string& source);

// First and last operator index using each tensor; -1/-1 for tensors no operator touches.
// Graph inputs are live from step 0, graph outputs until the last step. Constants are reported
// too (callers skip them: they live in flash).
struct Liveness {
  std::vector<int> first_use, last_use;
};
Liveness compute_liveness(const Graph& graph);

}  // namespace perfmem::vmcu
