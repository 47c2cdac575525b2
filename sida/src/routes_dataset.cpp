#include "perfmem/sida/routes_dataset.h"

#include <algorithm>
#include <numeric>

#include "perfmem/core/progress.h"
#include "perfmem/core/safetensors.h"
#include "perfmem/sida/engine.h"
#include "perfmem/sida/predictor.h"
#include "perfmem/sida/serve.h"

namespace perfmem::sida {
namespace {

constexpr const char* kFormat = "sida-routes-1";

// The T largest logits of one router row, descending (ties: lower expert id first, as argmax).
void top_of_row(const float* logits, int64_t experts, int64_t top, std::vector<int32_t>& order, float* out_logits,
                int32_t* out_experts) {
  order.resize(size_t(experts));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + top, order.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  for (int64_t k = 0; k < top; ++k) {
    out_experts[k] = order[size_t(k)];
    out_logits[k] = logits[order[size_t(k)]];
  }
}

Result<int64_t> metadata_int(const SafetensorsFile& file, const std::string& key) {
  auto it = file.metadata().find(key);
  if (it == file.metadata().end())
    return input_error(file.path(), "metadata \"" + key + "\"", "the key to be present", "it missing");
  char* end = nullptr;
  const long long v = std::strtoll(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0' || v < 1)
    return input_error(file.path(), "metadata \"" + key + "\"", "a positive integer", it->second);
  return int64_t(v);
}

template <typename T>
Status read_tensor(const SafetensorsFile& file, const std::string& name, DType dtype, const Shape& shape,
                   std::vector<T>* out) {
  const TensorInfo* info = file.find(name);
  if (!info) return not_found_error(file.path(), "tensor \"" + name + "\"");
  if (info->dtype != dtype)
    return input_error(file.path(), "tensor \"" + name + "\"",
                       std::string("dtype ") + std::string(dtype_safetensors_name(dtype)),
                       std::string(dtype_safetensors_name(info->dtype)));
  if (info->shape != shape)
    return input_error(file.path(), "tensor \"" + name + "\"", "shape " + shape_to_string(shape),
                       shape_to_string(info->shape));
  out->resize(size_t(info->nbytes() / sizeof(T)));
  return file.read(*info, out->data(), info->nbytes());
}

}  // namespace

Result<RoutesDataset> collect_routes(const ModelWeights& model, const std::vector<std::vector<int32_t>>& corpus,
                                     const CollectOptions& options) {
  const SwitchConfig& c = model.config();
  if (corpus.empty()) return Status(StatusCode::kInvalidInput, "collect-routes: the corpus has no requests");
  if (options.top < 1) return input_error("--top", "value", "at least 1", std::to_string(options.top));
  if (options.validation_every < 2)
    return input_error("--validation-every", "value", "at least 2 (every N-th request is validation)",
                       std::to_string(options.validation_every));
  if (predicted_moe_layers(c) == 0)
    return input_error(model.dir() + "/config.json", "encoder", "at least one MoE layer to predict", "none");
  RoutesDataset data;
  data.num_moe_layers = predicted_moe_layers(c);
  data.num_experts = c.num_experts;
  data.top = std::min(options.top, c.num_experts);
  data.vocab_size = c.vocab_size;
  data.offsets.push_back(0);
  PERFMEM_ASSIGN_OR_RETURN(auto store, make_recording_store(model, options.direct_io));
  EngineOptions eo;
  eo.apply_capacity = options.apply_capacity;
  Engine engine(model, *store, eo);
  const int64_t M = data.num_moe_layers, T = data.top, E = c.num_experts;
  std::vector<size_t> window_base;  // first token in the dataset of each request of the window
  std::vector<int32_t> order;
  // Switch: the encoder's visits (step -1). Decoder-only: the prompt's pass (step 0, the only one:
  // one token is generated); a window of one request reports its visits as request -1.
  const bool decoder_only = c.is_decoder_only();
  engine.set_observer([&](const MoeLayerVisit& v) {
    if (v.decode_step != (decoder_only ? 0 : -1) || v.moe_layer >= M) return;
    const size_t base = window_base[size_t(std::max(v.window_request, 0))];
    for (size_t t = 0; t < v.positions.size(); ++t) {
      const size_t at = (base + size_t(v.positions[t])) * size_t(M * T) + size_t(v.moe_layer * T);
      top_of_row(&v.router_logits[t * size_t(E)], E, T, order, &data.top_logits[at], &data.top_experts[at]);
    }
  });
  if (options.window < 1) return input_error("--window", "value", "at least 1", std::to_string(options.window));
  // Runs a window's prompts through the predicted layers.
  auto run = [&](const std::vector<std::vector<int32_t>>& window) -> Status {
    if (!decoder_only) return engine.encode_window(window).status();
    return engine.generate_window(window, GenerateOptions{.max_new_tokens = 1}).status();
  };
  ProgressBar bar("collecting routes", int64_t(corpus.size()), stderr, options.show_progress);
  for (size_t first = 0; first < corpus.size(); first += size_t(options.window)) {
    const size_t end = std::min(corpus.size(), first + size_t(options.window));
    const std::vector<std::vector<int32_t>> window(corpus.begin() + long(first), corpus.begin() + long(end));
    window_base.clear();
    for (const auto& request : window) {
      window_base.push_back(data.tokens.size());
      data.tokens.insert(data.tokens.end(), request.begin(), request.end());
      data.offsets.push_back(int64_t(data.tokens.size()));
    }
    data.top_logits.resize(data.tokens.size() * size_t(M * T));
    data.top_experts.resize(data.tokens.size() * size_t(M * T));
    if (Status s = run(window); !s.ok()) {
      // Name the request: the window's error counts requests from the window's start.
      engine.set_observer({});
      for (size_t r = first; r < end; ++r)
        if (Status alone = run({corpus[r]}); !alone.ok())
          return alone.with_context("corpus request " + std::to_string(r));
      return s.with_context("corpus requests " + std::to_string(first) + " to " + std::to_string(end - 1));
    }
    for (size_t r = first; r < end; ++r) {
      data.validation.push_back(int64_t(r) % options.validation_every == options.validation_every - 1);
      bar.advance();
    }
  }
  bar.finish();
  return data;
}

Status write_routes_dataset(const std::string& path, const RoutesDataset& d) {
  const int64_t N = d.num_tokens(), R = d.num_requests();
  // The writer takes the shapes on trust: arrays that do not match them are refused here.
  const size_t cells = size_t(N) * size_t(d.num_moe_layers) * size_t(d.top);
  if (d.offsets.size() != size_t(R) + 1 || d.top_logits.size() != cells || d.top_experts.size() != cells)
    return input_error(path, "routes dataset", "offsets of R + 1 and top arrays of N x M x T entries",
                       "arrays of other sizes");
  SafetensorsWriter w;
  w.set_metadata("format", kFormat);
  w.set_metadata("num_experts", std::to_string(d.num_experts));
  w.set_metadata("num_moe_layers", std::to_string(d.num_moe_layers));
  w.set_metadata("top", std::to_string(d.top));
  w.set_metadata("vocab_size", std::to_string(d.vocab_size));
  w.add("tokens", DType::kI32, {N}, d.tokens.data());
  w.add("offsets", DType::kI64, {R + 1}, d.offsets.data());
  w.add("validation", DType::kU8, {R}, d.validation.data());
  w.add("top_logits", DType::kF32, {N, d.num_moe_layers, d.top}, d.top_logits.data());
  w.add("top_experts", DType::kI32, {N, d.num_moe_layers, d.top}, d.top_experts.data());
  return w.write(path);
}

Result<RoutesDataset> read_routes_dataset(const std::string& path) {
  PERFMEM_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::open(path));
  auto format = file.metadata().find("format");
  if (format == file.metadata().end() || format->second != kFormat)
    return input_error(path, "metadata \"format\"", std::string("\"") + kFormat + "\"",
                       format == file.metadata().end() ? "it missing" : "\"" + format->second + "\"");
  RoutesDataset d;
  PERFMEM_ASSIGN_OR_RETURN(d.num_experts, metadata_int(file, "num_experts"));
  PERFMEM_ASSIGN_OR_RETURN(d.num_moe_layers, metadata_int(file, "num_moe_layers"));
  PERFMEM_ASSIGN_OR_RETURN(d.top, metadata_int(file, "top"));
  PERFMEM_ASSIGN_OR_RETURN(d.vocab_size, metadata_int(file, "vocab_size"));
  if (d.top > d.num_experts)
    return input_error(path, "metadata \"top\"", "at most num_experts (" + std::to_string(d.num_experts) + ")",
                       std::to_string(d.top));
  const TensorInfo* tokens = file.find("tokens");
  const TensorInfo* validation = file.find("validation");
  if (!tokens || tokens->shape.size() != 1)
    return input_error(path, "tensor \"tokens\"", "shape [N]", tokens ? shape_to_string(tokens->shape) : "it missing");
  if (!validation || validation->shape.size() != 1)
    return input_error(path, "tensor \"validation\"", "shape [R]",
                       validation ? shape_to_string(validation->shape) : "it missing");
  const int64_t N = tokens->shape[0], R = validation->shape[0];
  PERFMEM_RETURN_IF_ERROR(read_tensor(file, "tokens", DType::kI32, {N}, &d.tokens));
  PERFMEM_RETURN_IF_ERROR(read_tensor(file, "validation", DType::kU8, {R}, &d.validation));
  PERFMEM_RETURN_IF_ERROR(read_tensor(file, "offsets", DType::kI64, {R + 1}, &d.offsets));
  // Shapes are checked against the file's own tensors, whose sizes the reader already bounded.
  PERFMEM_RETURN_IF_ERROR(read_tensor(file, "top_logits", DType::kF32, {N, d.num_moe_layers, d.top}, &d.top_logits));
  PERFMEM_RETURN_IF_ERROR(read_tensor(file, "top_experts", DType::kI32, {N, d.num_moe_layers, d.top}, &d.top_experts));
  if (R < 1 || d.offsets[0] != 0 || d.offsets[size_t(R)] != N)
    return input_error(path, "tensor \"offsets\"", "0 first and the token count (" + std::to_string(N) + ") last",
                       std::to_string(d.offsets[0]) + " .. " + std::to_string(d.offsets[size_t(R)]));
  for (int64_t r = 0; r < R; ++r)
    if (d.offsets[size_t(r + 1)] <= d.offsets[size_t(r)])
      return input_error(path, "tensor \"offsets\" at request " + std::to_string(r),
                         "increasing offsets (no empty request)",
                         std::to_string(d.offsets[size_t(r)]) + " then " + std::to_string(d.offsets[size_t(r + 1)]));
  for (int64_t i = 0; i < N; ++i)
    if (d.tokens[size_t(i)] < 0 || d.tokens[size_t(i)] >= d.vocab_size)
      return input_error(path, "tensor \"tokens\" at " + std::to_string(i), "an id below vocab_size",
                         std::to_string(d.tokens[size_t(i)]));
  for (size_t i = 0; i < d.top_experts.size(); ++i)
    if (d.top_experts[i] < 0 || d.top_experts[i] >= d.num_experts)
      return input_error(path, "tensor \"top_experts\" at " + std::to_string(i), "an expert id below num_experts",
                         std::to_string(d.top_experts[i]));
  return d;
}

}  // namespace perfmem::sida
