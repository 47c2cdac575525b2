#include "perfmem/sida/predictor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>
#include <unordered_map>

#include "perfmem/core/fast_math.h"
#include "perfmem/core/io.h"
#include "perfmem/core/safetensors.h"
#include "perfmem/sida/kernels.h"
#include "perfmem/sida/serve.h"

namespace perfmem::sida {
namespace {

// A JSON integer within [lo, hi] (a float such as 4.5 or 1e9 is refused, not truncated).
Status config_int(const Json& j, const std::string& file, const std::string& key, int64_t lo, int64_t hi,
                  int64_t* out) {
  auto it = j.find(key);
  if (it == j.end()) return input_error(file, "key \"" + key + "\"", "the key to be present", "it missing");
  if (!it->is_number_integer()) return input_error(file, "key \"" + key + "\"", "a JSON integer", it->dump());
  const int64_t v = it->get<int64_t>();
  if (v < lo || v > hi)
    return input_error(file, "key \"" + key + "\"", std::to_string(lo) + " to " + std::to_string(hi),
                       std::to_string(v));
  *out = v;
  return Status::Ok();
}

// x86-64: the gate loop is cloned for AVX-512, AVX2 and the baseline (chosen once per process);
// elsewhere it compiles to the native SIMD as it is. The file builds with -fno-trapping-math so
// that fast_math's NaN selects vectorise.
#if defined(__x86_64__)
#define PERFMEM_SIDA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PERFMEM_SIDA_CLONES
#endif

float sigmoid_reference(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

Result<PredictorConfig> read_predictor_config(const std::string& dir) {
  const std::string file = dir + "/" + kPredictorConfigFile;
  PERFMEM_ASSIGN_OR_RETURN(Json j, read_json_file(file));
  if (!j.is_object()) return input_error(file, "top level", "a JSON object", j.type_name());
  auto format = j.find("format");
  if (format == j.end() || !format->is_string() || format->get<std::string>() != kPredictorFormat)
    return input_error(file, "key \"format\"", std::string("\"") + kPredictorFormat + "\"",
                       format == j.end() ? "it missing" : format->dump());
  PredictorConfig c;
  // Bounds keep every product of sizes far inside 64 bits (and match what the models hold).
  PERFMEM_RETURN_IF_ERROR(config_int(j, file, "d_model", 1, 1 << 16, &c.d_model));
  PERFMEM_RETURN_IF_ERROR(config_int(j, file, "hidden", 1, 1 << 16, &c.hidden));
  PERFMEM_RETURN_IF_ERROR(config_int(j, file, "lstm_layers", 1, 16, &c.lstm_layers));
  if (auto it = j.find("bidirectional"); it != j.end()) {
    if (!it->is_boolean()) return input_error(file, "key \"bidirectional\"", "true or false", it->dump());
    c.bidirectional = it->get<bool>();
    if (c.bidirectional && c.hidden % 2 != 0)
      return input_error(file, "key \"hidden\"", "an even width (bidirectional: half per direction)",
                         std::to_string(c.hidden));
  }
  PERFMEM_RETURN_IF_ERROR(config_int(j, file, "num_moe_layers", 1, 1 << 12, &c.num_moe_layers));
  PERFMEM_RETURN_IF_ERROR(config_int(j, file, "num_experts", 1, 1 << 16, &c.num_experts));
  PERFMEM_RETURN_IF_ERROR(config_int(j, file, "vocab_size", 1, int64_t(1) << 24, &c.vocab_size));
  return c;
}

Status write_predictor_config(const std::string& dir, const PredictorConfig& c, const Json& training) {
  Json j = {{"format", kPredictorFormat},
            {"d_model", c.d_model},
            {"hidden", c.hidden},
            {"lstm_layers", c.lstm_layers},
            {"bidirectional", c.bidirectional},
            {"num_moe_layers", c.num_moe_layers},
            {"num_experts", c.num_experts},
            {"vocab_size", c.vocab_size}};
  if (!training.is_null()) j["training"] = training;
  return write_text_file(dir + "/" + kPredictorConfigFile, j.dump(2) + "\n");
}

Status check_predictor_fits(const PredictorConfig& c, const ModelWeights& model, const std::string& dir) {
  const SwitchConfig& m = model.config();
  const std::string where = dir + " vs " + model.dir();
  auto same = [&](const char* what, int64_t mine, int64_t model_value) -> Status {
    if (mine == model_value) return Status::Ok();
    return input_error(where, what, "the model's " + std::to_string(model_value), std::to_string(mine));
  };
  PERFMEM_RETURN_IF_ERROR(same("d_model", c.d_model, m.d_model));
  PERFMEM_RETURN_IF_ERROR(same("vocab_size", c.vocab_size, m.vocab_size));
  PERFMEM_RETURN_IF_ERROR(same("num_experts", c.num_experts, m.num_experts));
  return same(m.is_decoder_only() ? "num_moe_layers (MoE layers)" : "num_moe_layers (encoder MoE layers)",
              c.num_moe_layers, predicted_moe_layers(m));
}

int64_t predicted_moe_layers(const SwitchConfig& config) {
  return config.is_decoder_only() ? config.num_moe_layers() : config.num_encoder_moe_layers();
}

const float* predictor_embedding(const ModelWeights& model) {
  return model.config().is_decoder_only() ? model.embed_tokens : model.shared;
}

std::vector<std::string> lstm_direction_suffixes(const PredictorConfig& config) {
  if (config.bidirectional) return {"", "_reverse"};
  return {""};
}

std::vector<std::pair<std::string, Shape>> predictor_tensor_shapes(const PredictorConfig& c) {
  const int64_t H = c.hidden;
  std::vector<std::pair<std::string, Shape>> out = {{"input.weight", {H, c.d_model}}, {"input.bias", {H}}};
  const int64_t D = lstm_units(c);
  for (int64_t k = 0; k < c.lstm_layers; ++k) {
    for (const std::string& suffix : lstm_direction_suffixes(c)) {
      const std::string l = std::to_string(k) + suffix;
      out.push_back({"lstm.weight_ih_l" + l, {4 * D, H}});  // a layer's input: u, or both directions' h
      out.push_back({"lstm.weight_hh_l" + l, {4 * D, D}});
      out.push_back({"lstm.bias_ih_l" + l, {4 * D}});
      out.push_back({"lstm.bias_hh_l" + l, {4 * D}});
    }
  }
  out.push_back({"residual.weight", {H, H}});
  out.push_back({"residual.bias", {H}});
  out.push_back({"heads.weight", {c.num_moe_layers, c.num_experts, H}});
  out.push_back({"heads.bias", {c.num_moe_layers, c.num_experts}});
  return out;
}

Result<std::map<std::string, std::vector<float>>> read_predictor_tensors(const std::string& dir,
                                                                         const PredictorConfig& config) {
  PERFMEM_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::open(dir + "/" + kPredictorWeightsFile));
  const auto shapes = predictor_tensor_shapes(config);
  std::map<std::string, std::vector<float>> out;
  for (const auto& [name, shape] : shapes) {
    const TensorInfo* info = file.find(name);
    if (!info) return not_found_error(file.path(), "tensor \"" + name + "\"");
    if (info->dtype != DType::kF32)
      return input_error(file.path(), "tensor \"" + name + "\"", "dtype F32",
                         std::string(dtype_safetensors_name(info->dtype)));
    if (info->shape != shape)
      return input_error(file.path(), "tensor \"" + name + "\"", "shape " + shape_to_string(shape),
                         shape_to_string(info->shape));
    std::vector<float> v(static_cast<size_t>(info->nbytes() / sizeof(float)));
    PERFMEM_RETURN_IF_ERROR(file.read(*info, v.data(), info->nbytes()));
    for (float x : v)
      if (!std::isfinite(x))
        return input_error(file.path(), "tensor \"" + name + "\"", "finite values", "NaN or infinity");
    out.emplace(name, std::move(v));
  }
  if (file.tensors().size() != shapes.size())
    return input_error(file.path(), "tensors", std::to_string(shapes.size()) + " tensors (config.json's layout)",
                       std::to_string(file.tensors().size()));
  return out;
}

Result<std::unique_ptr<Predictor>> Predictor::load(const std::string& dir, const ModelWeights& model) {
  PERFMEM_ASSIGN_OR_RETURN(PredictorConfig c, read_predictor_config(dir));
  PERFMEM_RETURN_IF_ERROR(check_predictor_fits(c, model, dir));
  PERFMEM_ASSIGN_OR_RETURN(auto t, read_predictor_tensors(dir, c));
  std::unique_ptr<Predictor> p(new Predictor());
  p->config_ = c;
  p->embedding_ = predictor_embedding(model);
  p->experts_per_token_ = model.config().experts_per_token;
  const int64_t H = c.hidden;
  p->input_ = PackedWeights(t["input.weight"].data(), H, c.d_model);
  p->input_bias_ = std::move(t["input.bias"]);
  const int64_t D = lstm_units(c);
  for (int64_t k = 0; k < c.lstm_layers; ++k) {
    for (const std::string& suffix : lstm_direction_suffixes(c)) {
      const std::string l = std::to_string(k) + suffix;
      p->w_ih_.emplace_back(t["lstm.weight_ih_l" + l].data(), 4 * D, H);
      p->w_hh_.emplace_back(t["lstm.weight_hh_l" + l].data(), 4 * D, D);
      std::vector<float> b = t["lstm.bias_ih_l" + l];
      const std::vector<float>& bh = t["lstm.bias_hh_l" + l];
      for (size_t i = 0; i < b.size(); ++i) b[i] += bh[i];
      p->lstm_bias_.push_back(std::move(b));
    }
  }
  p->residual_ = PackedWeights(t["residual.weight"].data(), H, H);
  p->residual_bias_ = std::move(t["residual.bias"]);
  p->heads_ = PackedWeights(t["heads.weight"].data(), c.num_moe_layers * c.num_experts, H);
  p->heads_bias_ = std::move(t["heads.bias"]);
  return p;
}

void sparsemax(const float* z, int64_t n, float* p) {
  std::vector<float> sorted(z, z + n);
  std::sort(sorted.begin(), sorted.end(), std::greater<float>());
  // The support is the largest k with 1 + k z_(k) > Σ_{j≤k} z_(j); tau puts the kept mass at 1.
  float cumulative = 0, tau = 0;
  for (int64_t k = 1; k <= n; ++k) {
    cumulative += sorted[size_t(k - 1)];
    if (float(k) * sorted[size_t(k - 1)] > cumulative - 1) tau = (cumulative - 1) / float(k);
  }
  for (int64_t i = 0; i < n; ++i) p[i] = std::max(z[i] - tau, 0.0f);
}

void top_k_indices(const float* scores, int64_t n, int64_t k, int32_t* out) {
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  k = std::min(k, n);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int32_t a, int32_t b) { return scores[a] > scores[b] || (scores[a] == scores[b] && a < b); });
  std::copy_n(order.begin(), k, out);
}

std::vector<float> Predictor::forward(const std::vector<int32_t>& tokens, bool reference) const {
  const int64_t L = int64_t(tokens.size()), d = config_.d_model, H = config_.hidden;
  const int64_t ME = config_.num_moe_layers * config_.num_experts;
  auto gemm = [reference](const PackedWeights& w, int64_t rows, const float* const* x, float* const* y,
                          const GemmEpilogue& epilogue) {
    if (reference)
      packed_gemm_reference(w, rows, x, y, epilogue);
    else
      packed_gemm(w, rows, x, y, epilogue);
  };
  auto rows_of = [](std::vector<float>& m, int64_t rows, int64_t width) {
    std::vector<float*> r(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) r[size_t(i)] = m.data() + i * width;
    return r;
  };
  std::vector<const float*> x(static_cast<size_t>(L));
  for (int64_t t = 0; t < L; ++t) x[size_t(t)] = embedding_ + int64_t(tokens[size_t(t)]) * d;

  // The compressed input u = relu(W_in x + b).
  std::vector<float> u(static_cast<size_t>(L * H));
  auto u_rows = rows_of(u, L, H);
  gemm(input_, L, x.data(), u_rows.data(), {.bias = input_bias_.data()});
  for (float& v : u) v = std::max(v, 0.0f);

  // The LSTM layers: per direction, the input projections of all steps in one product, then the
  // recurrence, left to right or right to left; direction dir writes columns [dir D, (dir + 1) D) of
  // the layer's output rows, which the next layer reads whole.
  const int64_t D = lstm_units(config_), directions = config_.bidirectional ? 2 : 1;
  std::vector<float> in = u, out(static_cast<size_t>(L * H)), gates(static_cast<size_t>(L * 4 * D)),
                     cell(static_cast<size_t>(D));
  auto gate_rows = rows_of(gates, L, 4 * D);
  for (size_t k = 0; k < w_ih_.size(); k += size_t(directions)) {
    auto in_rows = rows_of(in, L, H);
    for (int64_t dir = 0; dir < directions; ++dir) {
      gemm(w_ih_[k + size_t(dir)], L, in_rows.data(), gate_rows.data(), {.bias = lstm_bias_[k + size_t(dir)].data()});
      std::fill(cell.begin(), cell.end(), 0.0f);
      for (int64_t step = 0; step < L; ++step) {
        const int64_t t = dir == 0 ? step : L - 1 - step, previous = dir == 0 ? t - 1 : t + 1;
        float* g = gate_rows[size_t(t)];
        if (step > 0) {  // the first step's h_prev = 0 adds nothing
          const float* h_prev = out.data() + previous * H + dir * D;
          gemm(w_hh_[k + size_t(dir)], 1, &h_prev, &g, {.accumulate = true});
        }
        float* h = out.data() + t * H + dir * D;
        if (reference)
          lstm_cell_step_reference(g, cell.data(), h, D);
        else
          lstm_cell_step(g, cell.data(), h, D);
      }
    }
    std::swap(in, out);
  }
  const std::vector<float>& o = in;

  // Sparsemax self-attention c = A o, then the residual W_res u + b added by the product.
  std::vector<float> ctx(static_cast<size_t>(L * H), 0.0f), scores(static_cast<size_t>(L)), a(static_cast<size_t>(L));
  for (int64_t i = 0; i < L; ++i) {
    for (int64_t j = 0; j < L; ++j) scores[size_t(j)] = lane_dot(&o[size_t(i * H)], &o[size_t(j * H)], H);
    sparsemax(scores.data(), L, a.data());
    float sum = 0;
    for (float v : a) sum += v;
    sum = std::max(sum, 1e-12f);
    float* c = ctx.data() + i * H;
    for (int64_t j = 0; j < L; ++j) {
      if (a[size_t(j)] == 0) continue;
      const float w = a[size_t(j)] / sum;
      for (int64_t h = 0; h < H; ++h) c[h] += w * o[size_t(j * H + h)];
    }
  }
  auto ctx_rows = rows_of(ctx, L, H);
  gemm(residual_, L, const_cast<const float* const*>(u_rows.data()), ctx_rows.data(),
       {.bias = residual_bias_.data(), .accumulate = true});

  std::vector<float> logits(static_cast<size_t>(L * ME));
  auto logit_rows = rows_of(logits, L, ME);
  gemm(heads_, L, const_cast<const float* const*>(ctx_rows.data()), logit_rows.data(), {.bias = heads_bias_.data()});
  return logits;
}

std::vector<int32_t> Predictor::predict(const std::vector<int32_t>& tokens, int64_t k) const {
  const int64_t L = int64_t(tokens.size()), M = config_.num_moe_layers, E = config_.num_experts;
  k = std::clamp<int64_t>(k, 1, E);
  const std::vector<float> logits = forward(tokens);
  std::vector<int32_t> out(static_cast<size_t>(L * M * k));
  for (int64_t r = 0; r < L * M; ++r) top_k_indices(&logits[size_t(r * E)], E, k, &out[size_t(r * k)]);
  return out;
}

Predictor::Routes Predictor::predict_routes(const std::vector<int32_t>& tokens, int64_t plan_k) const {
  const int64_t E = config_.num_experts;
  const std::vector<float> logits = forward(tokens);
  Routes out;
  const size_t cells = logits.size() / size_t(E);
  out.expert.resize(cells);
  out.prob.resize(cells);
  out.plan_k = std::clamp<int64_t>(std::max(plan_k, experts_per_token_), 1, E);
  const size_t pk = size_t(out.plan_k);
  out.plan.resize(cells * pk);
  out.plan_prob.resize(cells * pk);
  for (size_t i = 0; i < cells; ++i) top_k_indices(&logits[i * size_t(E)], E, out.plan_k, &out.plan[i * pk]);
  for (size_t i = 0; i < cells; ++i) {
    const float* row = &logits[i * size_t(E)];
    int32_t best = 0;
    for (int64_t e = 1; e < E; ++e)
      if (row[e] > row[best]) best = int32_t(e);
    float sum = 0;
    for (int64_t e = 0; e < E; ++e) sum += std::exp(row[e] - row[best]);
    out.expert[i] = best;
    out.prob[i] = 1.0f / sum;
    for (size_t j = 0; j < pk; ++j) out.plan_prob[i * pk + j] = std::exp(row[out.plan[i * pk + j]] - row[best]) / sum;
  }
  return out;
}

bool valid_replace_top_k(int64_t k) {
  return std::find(std::begin(kReplaceTopKs), std::end(kReplaceTopKs), k) != std::end(kReplaceTopKs);
}

void replacement_choice(const Predictor::Routes& routes, size_t cell, int64_t k, int32_t* experts, float* scales) {
  PERFMEM_CHECK(valid_replace_top_k(k) && routes.plan_k >= k, "replacement top-k not planned");
  PERFMEM_CHECK((cell + 1) * size_t(routes.plan_k) <= routes.plan.size(), "replacement cell past the predicted routes");
  // plan[.., 0] and plan_prob[.., 0] are expert and prob: top-1 is the predicted expert scaled by
  // its probability.
  static constexpr float kTop1[] = {1.0f}, kDegrading[] = {0.5f, 0.25f, 0.25f};
  const float* factors = k == 1 ? kTop1 : kDegrading;
  const size_t pk = size_t(routes.plan_k);
  for (int64_t j = 0; j < k; ++j) {
    experts[j] = routes.plan[cell * pk + size_t(j)];
    scales[j] = factors[j] * routes.plan_prob[cell * pk + size_t(j)];
  }
}

void predicted_top_k_choice(const Predictor::Routes& routes, size_t cell, int64_t k, bool normalize, int32_t* experts,
                            float* scales) {
  PERFMEM_CHECK(k >= 1 && routes.plan_k >= k, "replacement top-k not planned");
  PERFMEM_CHECK((cell + 1) * size_t(routes.plan_k) <= routes.plan.size(), "replacement cell past the predicted routes");
  const size_t pk = size_t(routes.plan_k);
  float sum = 0;
  for (int64_t j = 0; j < k; ++j) sum += routes.plan_prob[cell * pk + size_t(j)];
  if (!normalize) sum = 1;
  for (int64_t j = 0; j < k; ++j) {
    experts[j] = routes.plan[cell * pk + size_t(j)];
    scales[j] = routes.plan_prob[cell * pk + size_t(j)] / sum;
  }
}

Status check_router_replacement(const ModelWeights& model, const Predictor& predictor, int64_t replace_top_k) {
  const SwitchConfig& c = model.config();
  if (c.is_decoder_only() && replace_top_k != 1)
    return input_error("--replace-top-k", "value",
                       "1 for a decoder-only model (its prompt's tokens go to the predicted "
                       "num_experts_per_tok experts, weighted by its router's rule)",
                       std::to_string(replace_top_k));
  if (!valid_replace_top_k(replace_top_k))
    return input_error("--replace-top-k", "value", "1 or 3 (SiDA's top-1, or its top-3 with degrading factors)",
                       std::to_string(replace_top_k));
  if (replace_top_k > c.num_experts)
    return input_error("--replace-top-k", "value", "at most the model's " + std::to_string(c.num_experts) + " experts",
                       std::to_string(replace_top_k));
  return check_predictor_fits(predictor.config(), model, "the predictor");
}

int64_t replaced_experts_per_token(const SwitchConfig& config, int64_t replace_top_k) {
  return config.is_decoder_only() ? config.experts_per_token : replace_top_k;
}

std::string replaced_router_description(const SwitchConfig& config, int64_t replace_top_k) {
  if (config.is_decoder_only())
    return "replaced by the predictor (prompt tokens, top-" + std::to_string(config.experts_per_token) +
           " by the router's rule)";
  return replace_top_k == 1 ? "replaced by the predictor (encoder, top-1)"
                            : "replaced by the predictor (encoder, top-3, degrading factors 0.5, 0.25, 0.25)";
}

RouterReplacement predicted_router_replacement(const ModelWeights& model, const Predictor& predictor,
                                               int64_t replace_top_k, RoutesOfSequence routes_of) {
  const SwitchConfig& c = model.config();
  const int64_t k = replaced_experts_per_token(c, replace_top_k), M = predictor.config().num_moe_layers;
  const bool decoder_only = c.is_decoder_only(), normalize = c.decoder_only.norm_topk_prob;
  return [=, routes_of = std::move(routes_of)](int32_t sequence, int64_t moe_layer, int32_t position, int32_t* experts,
                                               float* scales) {
    const size_t cell = size_t(position) * size_t(M) + size_t(moe_layer);
    if (decoder_only)
      predicted_top_k_choice(routes_of(sequence), cell, k, normalize, experts, scales);
    else
      replacement_choice(routes_of(sequence), cell, k, experts, scales);
  };
}

PERFMEM_SIDA_CLONES void lstm_cell_step(const float* __restrict g, float* __restrict cell, float* __restrict h,
                                        int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const float i = fast_sigmoid(g[j]), f = fast_sigmoid(g[H + j]), c = fast_tanh(g[2 * H + j]),
                o = fast_sigmoid(g[3 * H + j]);
    cell[j] = f * cell[j] + i * c;
    h[j] = o * fast_tanh(cell[j]);
  }
}

void lstm_cell_step_reference(const float* g, float* cell, float* h, int64_t H) {
  for (int64_t j = 0; j < H; ++j) {
    const float i = sigmoid_reference(g[j]), f = sigmoid_reference(g[H + j]), c = std::tanh(g[2 * H + j]),
                o = sigmoid_reference(g[3 * H + j]);
    cell[j] = f * cell[j] + i * c;
    h[j] = o * std::tanh(cell[j]);
  }
}

std::vector<int32_t> accesses_of_routes(const std::vector<Predictor::Routes>& routes, int64_t M, int64_t E,
                                        bool layer_by_layer) {
  std::vector<int32_t> out;
  std::vector<uint8_t> used(static_cast<size_t>(M * E), 0);  // id = m * E + e
  auto flush = [&] {
    for (size_t id = 0; id < used.size(); ++id)
      if (used[id]) out.push_back(int32_t(id));
    std::fill(used.begin(), used.end(), 0);
  };
  for (const Predictor::Routes& r : routes) {
    const size_t k = size_t(r.plan_k);
    for (size_t i = 0; i < r.plan.size(); ++i) used[((i / k) % size_t(M)) * size_t(E) + size_t(r.plan[i])] = 1;
    if (!layer_by_layer) flush();  // ascending ids = layer by layer, experts ascending
  }
  if (layer_by_layer) flush();
  return out;
}

std::vector<int32_t> predicted_accesses(const Predictor& predictor, const std::vector<std::vector<int32_t>>& requests,
                                        bool layer_by_layer, int64_t plan_k) {
  std::vector<Predictor::Routes> routes;
  for (const auto& request : requests) routes.push_back(predictor.predict_routes(request, plan_k));
  return accesses_of_routes(routes, predictor.config().num_moe_layers, predictor.config().num_experts, layer_by_layer);
}

Json compare_to_exact(const ServeReport& exact, const ServeReport& replaced) {
  double enc_diff = 0, enc_norm = 0, logit_diff = 0, logit_norm = 0;
  uint64_t ids = 0, ids_same = 0, sequences_same = 0, steps_compared = 0;
  const size_t n = std::min(exact.results.size(), replaced.results.size());
  for (size_t r = 0; r < n; ++r) {
    const RequestResult &a = exact.results[r], &b = replaced.results[r];
    for (size_t i = 0; i < std::min(a.encoder_hidden.size(), b.encoder_hidden.size()); ++i) {
      enc_diff += double(a.encoder_hidden[i] - b.encoder_hidden[i]) * double(a.encoder_hidden[i] - b.encoder_hidden[i]);
      enc_norm += double(a.encoder_hidden[i]) * double(a.encoder_hidden[i]);
    }
    const size_t len = std::max(a.generated.size(), b.generated.size());
    ids += len;
    bool prefix_same = true;
    for (size_t s = 0; s < len; ++s) {
      const bool same = s < a.generated.size() && s < b.generated.size() && a.generated[s] == b.generated[s];
      ids_same += same;
      if (prefix_same && s < a.logits.size() && s < b.logits.size() && a.logits[s].size() == b.logits[s].size()) {
        ++steps_compared;
        for (size_t v = 0; v < a.logits[s].size(); ++v) {
          logit_diff += double(a.logits[s][v] - b.logits[s][v]) * double(a.logits[s][v] - b.logits[s][v]);
          logit_norm += double(a.logits[s][v]) * double(a.logits[s][v]);
        }
      }
      prefix_same = prefix_same && same;
    }
    sequences_same += a.generated == b.generated;
  }
  Json j = {{"requests", n},
            {"encoder_relative_error", enc_norm > 0 ? std::sqrt(enc_diff / enc_norm) : 0.0},
            {"generated_ids", ids},
            {"generated_id_agreement", ids ? double(ids_same) / double(ids) : 1.0},
            {"sequences_identical", sequences_same},
            {"logit_steps_compared", steps_compared},
            {"logits_relative_error", logit_norm > 0 ? std::sqrt(logit_diff / logit_norm) : 0.0}};
  return j;
}

// ---- evaluation ----

Result<PredictorEval> evaluate_predictor(const Predictor* predictor, const RoutesDataset& data, int64_t k) {
  const int64_t M = data.num_moe_layers, E = data.num_experts, T = data.top;
  if (k < 1) return input_error("--top-k", "value", "at least 1", std::to_string(k));
  k = std::min(k, E);
  if (predictor && (predictor->config().num_moe_layers != M || predictor->config().num_experts != E))
    return Status(StatusCode::kInvalidInput,
                  "eval-predictor: the predictor and the routes dataset differ in MoE "
                  "layers or experts");
  auto teacher = [&](int64_t token, int64_t m) { return data.top_experts[size_t((token * M + m) * T)]; };
  // Baselines from the training split: per layer, expert counts; per token id, its own counts.
  std::vector<float> layer_counts(static_cast<size_t>(M * E), 0.0f);
  std::unordered_map<int32_t, std::vector<float>> token_counts;
  for (int64_t r = 0; r < data.num_requests(); ++r) {
    if (data.validation[size_t(r)]) continue;
    for (int64_t n = data.offsets[size_t(r)]; n < data.offsets[size_t(r + 1)]; ++n) {
      auto& tc = token_counts[data.tokens[size_t(n)]];
      if (tc.empty()) tc.assign(size_t(M * E), 0.0f);
      for (int64_t m = 0; m < M; ++m) {
        layer_counts[size_t(m * E + teacher(n, m))] += 1;
        tc[size_t(m * E + teacher(n, m))] += 1;
      }
    }
  }
  std::vector<int32_t> frequent(static_cast<size_t>(M * k));
  for (int64_t m = 0; m < M; ++m) top_k_indices(&layer_counts[size_t(m * E)], E, k, &frequent[size_t(m * k)]);
  // A token's guesses: its own most frequent experts (those it was seen with), then the layer's.
  auto token_guess = [&](int32_t token, int64_t m, int32_t* out) {
    int64_t filled = 0;
    auto it = token_counts.find(token);
    if (it != token_counts.end()) {
      std::vector<int32_t> own(static_cast<size_t>(k));
      top_k_indices(&it->second[size_t(m * E)], E, k, own.data());
      for (int32_t e : own)
        if (it->second[size_t(m * E + e)] > 0) out[filled++] = e;
    }
    for (int64_t j = 0; filled < k && j < k; ++j) {
      const int32_t e = frequent[size_t(m * k + j)];
      if (std::find(out, out + filled, e) == out + filled) out[filled++] = e;
    }
  };

  PredictorEval eval;
  eval.has_predictor = predictor != nullptr;
  eval.k = k;
  eval.layers.assign(size_t(M), LayerHits{});
  std::vector<int32_t> guess(static_cast<size_t>(k));
  double predictor_s = 0;
  for (int64_t r = 0; r < data.num_requests(); ++r) {
    if (!data.validation[size_t(r)]) continue;
    const int64_t first = data.offsets[size_t(r)], len = data.offsets[size_t(r + 1)] - first;
    ++eval.validation_requests;
    eval.validation_tokens += len;
    std::vector<int32_t> predicted;
    if (predictor) {
      const std::vector<int32_t> tokens(data.tokens.begin() + first, data.tokens.begin() + first + len);
      const auto start = std::chrono::steady_clock::now();
      predicted = predictor->predict(tokens, k);
      predictor_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    for (int64_t p = 0; p < len; ++p)
      for (int64_t m = 0; m < M; ++m) {
        LayerHits& h = eval.layers[size_t(m)];
        const int32_t want = teacher(first + p, m);
        auto score = [&](const int32_t* g, double* top1, double* topk) {
          *top1 += g[0] == want;
          *topk += std::find(g, g + k, want) != g + k;
        };
        ++h.tokens;
        if (predictor) score(&predicted[size_t((p * M + m) * k)], &h.predictor_top1, &h.predictor_topk);
        score(&frequent[size_t(m * k)], &h.frequent_top1, &h.frequent_topk);
        token_guess(data.tokens[size_t(first + p)], m, guess.data());
        score(guess.data(), &h.token_top1, &h.token_topk);
      }
  }
  if (eval.validation_tokens == 0)
    return Status(StatusCode::kInvalidInput, "eval-predictor: the routes dataset has no validation requests");
  int64_t cells = 0;
  for (LayerHits& h : eval.layers) {
    eval.mean.predictor_top1 += h.predictor_top1;
    eval.mean.predictor_topk += h.predictor_topk;
    eval.mean.frequent_top1 += h.frequent_top1;
    eval.mean.frequent_topk += h.frequent_topk;
    eval.mean.token_top1 += h.token_top1;
    eval.mean.token_topk += h.token_topk;
    cells += h.tokens;
    for (double* v :
         {&h.predictor_top1, &h.predictor_topk, &h.frequent_top1, &h.frequent_topk, &h.token_top1, &h.token_topk})
      *v /= double(h.tokens);
  }
  eval.mean.tokens = cells;
  for (double* v : {&eval.mean.predictor_top1, &eval.mean.predictor_topk, &eval.mean.frequent_top1,
                    &eval.mean.frequent_topk, &eval.mean.token_top1, &eval.mean.token_topk})
    *v /= double(cells);
  if (predictor) {
    eval.predictor_ms_per_request = 1e3 * predictor_s / double(eval.validation_requests);
    eval.predictor_us_per_token = 1e6 * predictor_s / double(eval.validation_tokens);
  }
  return eval;
}

namespace {
Json hits_to_json(const LayerHits& h, bool with_predictor) {
  Json j = {{"tokens", h.tokens},
            {"frequent_top1", h.frequent_top1},
            {"frequent_topk", h.frequent_topk},
            {"token_table_top1", h.token_top1},
            {"token_table_topk", h.token_topk}};
  if (with_predictor) {
    j["predictor_top1"] = h.predictor_top1;
    j["predictor_topk"] = h.predictor_topk;
  }
  return j;
}
}  // namespace

Json predictor_eval_to_json(const PredictorEval& eval) {
  const bool with_predictor = eval.has_predictor;
  Json layers = Json::array();
  for (const LayerHits& h : eval.layers) layers.push_back(hits_to_json(h, with_predictor));
  Json j = {{"k", eval.k},
            {"validation_requests", eval.validation_requests},
            {"validation_tokens", eval.validation_tokens},
            {"layers", layers},
            {"mean", hits_to_json(eval.mean, with_predictor)}};
  if (with_predictor) {
    j["predictor_ms_per_request"] = eval.predictor_ms_per_request;
    j["predictor_us_per_token"] = eval.predictor_us_per_token;
  }
  return j;
}

std::string predictor_eval_to_text(const PredictorEval& eval) {
  const bool with_predictor = eval.has_predictor;
  std::ostringstream s;
  char line[160];
  s << "hit rate of the router's choice on the validation split (" << eval.validation_requests << " requests, "
    << eval.validation_tokens << " tokens), top-1 / top-" << eval.k << ":\n";
  std::snprintf(line, sizeof line, "%-8s %17s %17s %17s\n", "layer", "predictor", "frequent expert", "token table");
  s << line;
  auto row = [&](const std::string& name, const LayerHits& h) {
    char pred[32] = "-";
    if (with_predictor)
      std::snprintf(pred, sizeof pred, "%6.1f%% / %5.1f%%", 100 * h.predictor_top1, 100 * h.predictor_topk);
    std::snprintf(line, sizeof line, "%-8s %17s  %6.1f%% / %5.1f%%  %6.1f%% / %5.1f%%\n", name.c_str(), pred,
                  100 * h.frequent_top1, 100 * h.frequent_topk, 100 * h.token_top1, 100 * h.token_topk);
    s << line;
  };
  for (size_t m = 0; m < eval.layers.size(); ++m) row(std::to_string(m), eval.layers[m]);
  row("mean", eval.mean);
  if (with_predictor) {
    std::snprintf(line, sizeof line, "predictor cost: %.3f ms per request, %.2f us per token\n",
                  eval.predictor_ms_per_request, eval.predictor_us_per_token);
    s << line;
  }
  return s.str();
}

}  // namespace perfmem::sida
