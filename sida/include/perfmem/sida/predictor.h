// SiDA's expert predictor at serving time, in the project's own kernels (no LibTorch): it reads
// a request's token embeddings (rows of the model's input embedding: Switch's tied one, a
// decoder-only model's embed_tokens) and gives, for every predicted MoE layer at once, router-like
// logits over the experts for each token. The predicted layers (predicted_moe_layers) are the MoE
// layers the request's own tokens pass through before generation: Switch's encoder MoE layers
// (SiDA's setting); every MoE layer of a decoder-only model (Mixtral, Qwen2-MoE), for the prompt's
// tokens — generated tokens do not exist when the predictor runs, so their experts load on demand
// (exact mode: the true router decides either way).
//
//   auto p = perfmem::sida::Predictor::load("predictor/", model);    // config.json + safetensors
//   std::vector<float> logits = p->forward(tokens);                   // F32 [L, M, E]
//   auto top = p->predict(tokens, /*k=*/1);                           // I32 [L, M, k]
//
// Network (SiDA's "hash function"; H = hidden):
//   x_t = embedding[token_t]                         [L, d_model]
//   u   = relu(W_in x + b_in)                        [L, H]   (the compressed input)
//   o   = LSTM_2(LSTM_1(u))                          [L, H]   (PyTorch's gate order i, f, g, o)
//         bidirectional: each layer's output is [left-to-right h, right-to-left h], H/2 each
//   A   = sparsemax(o oᵀ) row-wise, rows L1-normalised
//   c   = A o + W_res u + b_res                      [L, H]   (the residual)
//   logits[:, m] = W_m c + b_m                       [L, E]   one head per MoE layer m
// The attention is over the whole request (the predictor runs before the model, when every token
// is known); the LSTM reads left to right (SiDA's network) or, with "bidirectional", both ways, so
// a token's state also sees the tokens after it, as the model's encoder does before its routers.
//
// Files (written by `sida train-predictor`): `config.json` {"format": "sida-predictor-1",
// "d_model", "hidden", "lstm_layers", "bidirectional" (optional, default false), "num_moe_layers",
// "num_experts", "vocab_size", "training": {...}} and `predictor.safetensors` with F32 tensors
// input.{weight [H, d], bias [H]}, lstm.{weight_ih_l{k} [4D, H], weight_hh_l{k} [4D, D],
// bias_ih_l{k}, bias_hh_l{k} [4D]} (D = H, or H/2 per direction when bidirectional, the right-to-left
// direction's tensors named with a suffix "_reverse", as PyTorch names them), residual.{weight
// [H, H], bias [H]}, heads.{weight [M, E, H], bias [M, E]}.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "perfmem/core/json.h"
#include "perfmem/core/packed_gemm.h"
#include "perfmem/core/status.h"
#include "perfmem/sida/checkpoint.h"
#include "perfmem/sida/engine.h"
#include "perfmem/sida/routes_dataset.h"

namespace perfmem::sida {

inline constexpr const char* kPredictorFormat = "sida-predictor-1";
inline constexpr const char* kPredictorConfigFile = "config.json";
inline constexpr const char* kPredictorWeightsFile = "predictor.safetensors";

struct PredictorConfig {
  int64_t d_model = 0;
  int64_t hidden = 0;
  int64_t lstm_layers = 2;
  bool bidirectional = false;  // hidden is then even: H/2 per direction
  int64_t num_moe_layers = 0;  // M: the predicted MoE layers (predicted_moe_layers)
  int64_t num_experts = 0;     // E
  int64_t vocab_size = 0;
};

// The MoE layers a predictor predicts for this model (ids 0..M-1): the encoder's MoE layers of a
// Switch model, every MoE layer of a decoder-only one (the prompt's tokens pass through them all).
int64_t predicted_moe_layers(const SwitchConfig& config);
// The embedding the predictor reads: F32 [vocab, d_model].
const float* predictor_embedding(const ModelWeights& model);

// Reads and validates dir/config.json (errors name the file and key).
Result<PredictorConfig> read_predictor_config(const std::string& dir);
// Writes dir/config.json; `training` (may be null) is stored under "training".
Status write_predictor_config(const std::string& dir, const PredictorConfig& config, const Json& training);
// The config's sizes must match the model's (the embedding it reads, the layers it predicts).
Status check_predictor_fits(const PredictorConfig& config, const ModelWeights& model, const std::string& dir);

// LSTM units per direction: hidden, or hidden / 2 when bidirectional.
inline int64_t lstm_units(const PredictorConfig& config) {
  return config.bidirectional ? config.hidden / 2 : config.hidden;
}
// The names' suffix of each direction's LSTM tensors ("" and, when bidirectional, "_reverse").
std::vector<std::string> lstm_direction_suffixes(const PredictorConfig& config);

// Every tensor of the file, by name, with its shape for `config` (the layout above).
std::vector<std::pair<std::string, Shape>> predictor_tensor_shapes(const PredictorConfig& config);
// Reads dir/predictor.safetensors: every tensor of predictor_tensor_shapes, F32, shapes checked
// (errors name the file and tensor); extra tensors are refused too.
Result<std::map<std::string, std::vector<float>>> read_predictor_tensors(const std::string& dir,
                                                                         const PredictorConfig& config);

class Predictor {
 public:
  // Loads dir/config.json and dir/predictor.safetensors, checking every tensor's dtype and shape
  // and that the predictor was trained for this model's sizes. The model must outlive it.
  static Result<std::unique_ptr<Predictor>> load(const std::string& dir, const ModelWeights& model);

  const PredictorConfig& config() const { return config_; }

  // F32 [L, M, E] logits for one request (ids in [0, vocab), checked by the caller). With
  // `reference`, every linear layer uses packed_gemm_reference: the same bits (packed_gemm's
  // invariant), by plain loops.
  std::vector<float> forward(const std::vector<int32_t>& tokens, bool reference = false) const;
  // The k best experts per token and layer, best first (ties: lower id): I32 [L, M, k].
  std::vector<int32_t> predict(const std::vector<int32_t>& tokens, int64_t k) const;
  // Each token's top-1 expert per layer and its probability (softmax over the E logits), and the
  // plan_k best experts (best first) that prefetch plans load.
  struct Routes {
    std::vector<int32_t> expert;  // [L, M]
    std::vector<float> prob;      // [L, M]
    int64_t plan_k = 1;
    std::vector<int32_t> plan;     // [L, M, plan_k]; plan[.., 0] == expert
    std::vector<float> plan_prob;  // [L, M, plan_k]: each plan expert's probability; [.., 0] == prob
  };
  // plan_k is raised to the model's experts per token (Mixtral: 2), the least a token uses.
  Routes predict_routes(const std::vector<int32_t>& tokens, int64_t plan_k = 1) const;

 private:
  Predictor() = default;
  PredictorConfig config_;
  const float* embedding_ = nullptr;  // the model's [V, d_model]
  int64_t experts_per_token_ = 1;     // the model's router k
  PackedWeights input_, residual_, heads_;
  // Per layer k and direction d (0: left to right, 1: right to left): index k * directions + d.
  std::vector<PackedWeights> w_ih_, w_hh_;
  std::vector<float> input_bias_, residual_bias_, heads_bias_;
  std::vector<std::vector<float>> lstm_bias_;  // b_ih + b_hh per layer and direction
};

// The expert accesses the predictor expects a window of requests to make in its predicted layers
// (ids moe_layer * E + e; they come first), in the engine's order: request by
// request, each MoE layer's distinct predicted experts in ascending id order; or, with
// `layer_by_layer` (window execution), the window's distinct experts per layer. Each token's
// plan_k best experts are taken (1: its top-1; more loads more experts and misses fewer). Switch's
// decoder layers and a decoder-only model's generated tokens are not predicted (their tokens do
// not exist yet).
std::vector<int32_t> predicted_accesses(const Predictor& predictor, const std::vector<std::vector<int32_t>>& requests,
                                        bool layer_by_layer, int64_t plan_k = 1);
// The same from routes already predicted (one per request; their `plan`).
std::vector<int32_t> accesses_of_routes(const std::vector<Predictor::Routes>& routes, int64_t num_moe_layers,
                                        int64_t num_experts, bool layer_by_layer);

// How far router replacement moved the outputs from exact mode, for the same requests (both runs
// with keep_outputs): encoder states' relative error (‖a − b‖ / ‖a‖ over all requests), generated
// ids agreeing position by position, whole sequences identical, and the logits' relative error
// over the steps whose earlier generated ids all agree (later steps decode different inputs).
Json compare_to_exact(const struct ServeReport& exact, const struct ServeReport& replaced);

// SiDA's router replacement for one token at one MoE layer (cell = position * M + layer) from its
// predicted routes: with k = 1 the predicted expert, scaled by its probability (SST2's setting);
// with k = 3 the three best, each scaled by its probability times a degrading factor 0.5, 0.25,
// 0.25 (MRPC's and MultiRC's). Other k are refused (kReplaceTopKs); routes.plan_k must be >= k.
inline constexpr int64_t kReplaceTopKs[] = {1, 3};
bool valid_replace_top_k(int64_t k);
void replacement_choice(const Predictor::Routes& routes, size_t cell, int64_t k, int32_t* experts, float* scales);
// A decoder-only model's router rule on the predicted logits instead of the router's: the k best
// experts, each scaled by its probability, divided by the k probabilities' sum when
// `normalize` (Mixtral; Qwen2-MoE's norm_topk_prob). routes.plan_k must be >= k.
void predicted_top_k_choice(const Predictor::Routes& routes, size_t cell, int64_t k, bool normalize, int32_t* experts,
                            float* scales);

// SiDA's router replacement as a whole (`sida run --replace-router`, `sida serve --replace-router`).
// Whether `predictor` can replace `model`'s routers with `replace_top_k` experts per token: it
// fits the model, the k is one of kReplaceTopKs and at most the model's experts, and it is 1 for a
// decoder-only model (whose prompt tokens take its num_experts_per_tok); errors name --replace-top-k.
Status check_router_replacement(const ModelWeights& model, const Predictor& predictor, int64_t replace_top_k);
// The experts a replaced token goes to: replace_top_k (Switch), num_experts_per_tok (decoder-only).
// Routes that drive the replacement must be predicted with at least this plan_k.
int64_t replaced_experts_per_token(const SwitchConfig& config, int64_t replace_top_k);
// How tokens are routed under the replacement, in words, for reports.
std::string replaced_router_description(const SwitchConfig& config, int64_t replace_top_k);
// The engine's callback (Engine::set_router_replacement, with replaced_experts_per_token): a
// token's experts and scales from routes_of(its sequence), by replacement_choice (Switch) or
// predicted_top_k_choice (decoder-only).
using RoutesOfSequence = std::function<const Predictor::Routes&(int32_t sequence)>;
RouterReplacement predicted_router_replacement(const ModelWeights& model, const Predictor& predictor,
                                               int64_t replace_top_k, RoutesOfSequence routes_of);

// The k largest of `n` scores, best first, ties to the lower index.
void top_k_indices(const float* scores, int64_t n, int64_t k, int32_t* out);

// One LSTM step's state from its gate pre-activations g [4H] (PyTorch's order: input, forget,
// cell, output): cell = σ(f) cell + σ(i) tanh(g_cell), h = σ(o) tanh(cell). The serving kernel
// runs the gates vectorised (core/fast_math.h: a few ulps from libm, NaN kept); its plain twin
// uses std::exp and std::tanh (Predictor::forward with `reference`).
void lstm_cell_step(const float* gates, float* cell, float* h, int64_t H);
void lstm_cell_step_reference(const float* gates, float* cell, float* h, int64_t H);

// Row-wise sparsemax of z [n] into p [n] (Martins & Astudillo 2016): the Euclidean projection
// onto the probability simplex; p sums to 1 and is zero below the threshold.
void sparsemax(const float* z, int64_t n, float* p);

// Hit rates on the validation split: the teacher's choice (top expert) among the k best guesses.
struct LayerHits {
  int64_t tokens = 0;
  double predictor_top1 = 0, predictor_topk = 0;
  double frequent_top1 = 0, frequent_topk = 0;  // the layer's most frequent experts (train split)
  double token_top1 = 0, token_topk = 0;        // token id → its most frequent experts (train split)
};
struct PredictorEval {
  bool has_predictor = false;  // false: baselines only
  int64_t k = 3;
  int64_t validation_requests = 0, validation_tokens = 0;
  std::vector<LayerHits> layers;  // per MoE layer
  LayerHits mean;                 // over layers (token-weighted)
  double predictor_ms_per_request = 0, predictor_us_per_token = 0;
};
// `predictor` null: baselines only.
Result<PredictorEval> evaluate_predictor(const Predictor* predictor, const RoutesDataset& data, int64_t k);
Json predictor_eval_to_json(const PredictorEval& eval);
std::string predictor_eval_to_text(const PredictorEval& eval);

}  // namespace perfmem::sida
