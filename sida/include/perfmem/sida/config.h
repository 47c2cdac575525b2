// Model configuration: Hugging Face's config.json fields, presets, validation, for every model
// family the engine implements (ModelFamily). One struct holds the family-independent part that
// the expert store, policies, pipeline, predictor and server read (vocabulary, d_model, the MoE
// layers and their experts, the expert layout, generation ids) and each family's own keys.
//
//   auto cfg = perfmem::sida::load_config("switch-base-8/");          // reads config.json
//   if (!cfg) { std::cerr << cfg.status().to_string(); return 1; }
//   for (int64_t i = 0; i < cfg->num_layers; ++i)
//     if (cfg->encoder_block_is_sparse(i)) ...;                         // blocks 1, 3, 5, ...
//   auto tiny = perfmem::sida::preset_config("tiny");                  // for tests and the demo
//
// Only what the engine implements is accepted: model_type "switch_transformers", ReLU
// feed-forward, an fp32 router without bias, tied embeddings. Anything else is an "unsupported"
// error naming config.json and the key. Integer keys must be JSON integers (4.5 or 1e9 written as
// a float are refused, as Hugging Face refuses them when it builds the model), and sizes whose
// products would overflow 64 bits are refused before anything is allocated.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "perfmem/core/json.h"
#include "perfmem/core/status.h"

namespace perfmem::sida {

// SwitchTransformersConfig's defaults for keys config.json may omit: the decoder depth, and the
// sparse block counts the steps derive from when config.json names no step.
inline constexpr int64_t kDefaultNumDecoderLayers = 12;
inline constexpr int64_t kDefaultNumSparseLayers = 3;

// The families: config reading (parse_config dispatches on model_type), tensor names and resident
// weights (ModelWeights::load) and per-layer compute (Engine) are each family's own; everything
// downstream of the expert layout is shared.
//   kSwitch:  switch_transformers, T5 encoder-decoder, top-1 routers, experts relu(x wiᵀ) woᵀ.
//   kMixtral: mixtral, decoder-only (RMSNorm, RoPE, grouped-query attention), top-k routers
//             (softmax, top-k, renormalised), experts w2(silu(x w1ᵀ) * (x w3ᵀ)).
//   kQwen2Moe: qwen2_moe, Mixtral's layers plus q/k/v biases, top-k routing renormalised only
//             with norm_topk_prob, a shared expert scaled by sigmoid(shared_expert_gate · x),
//             MoE layers where (i + 1) % decoder_sparse_step == 0 and i is not in
//             mlp_only_layers, dense SwiGLU MLPs elsewhere.
enum class ModelFamily { kSwitch, kMixtral, kQwen2Moe };
const char* model_family_name(ModelFamily family);

// Keys of decoder-only families (Mixtral) that have no Switch counterpart.
struct DecoderOnlyConfig {
  int64_t num_key_value_heads = 8;  // grouped-query attention: heads share K/V in groups
  double rope_theta = 1e6;
  int64_t max_position_embeddings = 4096 * 32;
  int64_t sliding_window = 0;  // 0: none; else a position attends to itself and this many before it
  bool tie_word_embeddings = false;
  int64_t bos_token_id = -1;  // what a tokenizer prepends (-1: none)
  // Qwen2-MoE (Mixtral: renormalised top-k, every layer sparse, no shared expert, no biases).
  bool norm_topk_prob = true;
  bool attention_bias = false;                  // q/k/v projections carry biases
  int64_t dense_intermediate_size = 0;          // the dense layers' MLP (intermediate_size)
  int64_t shared_expert_intermediate_size = 0;  // 0: no shared expert
  int64_t sparse_step = 1;                      // layer i is sparse when (i + 1) % step == 0
  std::vector<int64_t> mlp_only_layers;         // sorted, distinct: dense whatever the step says
};

// The family-independent name for new code; SwitchConfig is kept for the Switch callers.
struct SwitchConfig;
using ModelConfig = SwitchConfig;

struct SwitchConfig {
  ModelFamily family = ModelFamily::kSwitch;
  // Experts each token goes to: 1 for Switch, num_experts_per_tok for Mixtral.
  int64_t experts_per_token = 1;
  DecoderOnlyConfig decoder_only;  // decoder-only families only
  // Mapping of decoder-only families onto the fields below: d_model = hidden_size, d_ff =
  // intermediate_size (of one expert), num_heads = num_attention_heads, d_kv = head_dim,
  // num_layers = 0 (no encoder), num_decoder_layers = num_hidden_layers, every decoder block
  // sparse (decoder_sparse_step_key = 1), layer_norm_epsilon = rms_norm_eps.
  int64_t vocab_size = 32128;
  int64_t d_model = 768;
  int64_t d_ff = 3072;
  int64_t d_kv = 64;
  int64_t num_heads = 12;
  int64_t num_layers = 12;          // encoder blocks
  int64_t num_decoder_layers = 12;  // decoder blocks
  // True when config.json has no num_decoder_layers key: Hugging Face then builds
  // kDefaultNumDecoderLayers decoder blocks (not num_layers), and so does parse_config().
  bool num_decoder_layers_defaulted = false;
  int64_t num_sparse_encoder_layers = 6;
  int64_t num_sparse_decoder_layers = 6;
  int64_t num_experts = 8;
  int64_t expert_capacity = 64;  // per expert and per sequence, as in Hugging Face
  int64_t relative_attention_num_buckets = 32;
  int64_t relative_attention_max_distance = 128;
  double layer_norm_epsilon = 1e-6;
  int64_t pad_token_id = 0;  // config.json's: the id that pads a batch
  int64_t eos_token_id = 1;  // config.json's: the id a tokenizer appends
  // What generate() reads from generation_config.json when the folder has one, else from
  // config.json: the ids that end a sequence (an integer or a list there; none: only
  // max_new_tokens ends it) and the pad id (-1: none). See masked_pad_id().
  std::vector<int64_t> generation_eos_ids = {1};
  int64_t generation_pad_token_id = 0;
  // The first decoder input. -1 when neither generation_config.json nor config.json gives it
  // (nor a bos_token_id): generation is then refused, as Hugging Face refuses it.
  int64_t decoder_start_token_id = 0;
  // config.json's encoder_sparse_step / decoder_sparse_step. Hugging Face writes both and, when
  // present, they decide which blocks are sparse (PretrainedConfig sets extra keys after the
  // constructor computed the step from the counts). Absent: the step comes from the counts.
  std::optional<int64_t> encoder_sparse_step_key, decoder_sparse_step_key;

  bool is_decoder_only() const { return family != ModelFamily::kSwitch; }
  // Gated experts (Mixtral) hold two input matrices, gate (w1) and up (w3), stacked in one
  // [2 * d_ff, d_model] matrix in fast memory; Switch's hold wi [d_ff, d_model].
  bool gated_experts() const { return is_decoder_only(); }
  int64_t expert_in_rows() const { return gated_experts() ? 2 * d_ff : d_ff; }

  bool is_generation_eos(int64_t id) const;
  // The id that generate() masks as an attention key inside a request (it builds the mask
  // ids != pad), or -1: none when there is no pad id or the pad id also ends sequences.
  int64_t masked_pad_id() const;

  // parse_config() guarantees that this and every tensor size of the model fit in 64 bits.
  int64_t inner_dim() const { return num_heads * d_kv; }
  // Hugging Face's rule: step = layers / sparse layers (integer division; with zero sparse layers
  // the step is the layer count, its own quirk), unless the config names the step; block i is
  // sparse when step > 0 and (i % step == 1 or step == 1).
  int64_t encoder_sparse_step() const;
  int64_t decoder_sparse_step() const;
  bool encoder_block_is_sparse(int64_t block) const;
  bool decoder_block_is_sparse(int64_t block) const;
  // MoE layers in execution order: encoder sparse blocks, then decoder sparse blocks.
  // moe_layer_place(m) = (is_decoder, block index). Closed forms: no loop over the blocks.
  int64_t num_moe_layers() const;
  int64_t num_encoder_moe_layers() const;
  struct MoeLayerPlace {
    bool decoder;
    int64_t block;
  };
  MoeLayerPlace moe_layer_place(int64_t moe_layer) const;

  // Bytes of one expert (input matrix or matrices + output matrix) at 4 bytes per weight, the
  // compute precision.
  uint64_t expert_f32_bytes() const {
    return static_cast<uint64_t>(expert_in_rows() + d_ff) * static_cast<uint64_t>(d_model) * 4;
  }
};

// Parses Hugging Face's config JSON of a family the engine implements (model_type
// "switch_transformers" or "mixtral"); `file` names it in errors.
Result<SwitchConfig> parse_config(const Json& json, const std::string& file);
// Reads DIR/config.json, and the generation settings from DIR/generation_config.json when that
// file exists (Hugging Face's generate() reads them there): the decoder start token
// (decoder_start_token_id, else bos_token_id), eos_token_id (an integer or a list) and
// pad_token_id; a key absent there is None for generate(), whatever config.json says.
Result<SwitchConfig> load_config(const std::string& dir);
// A config.json that Hugging Face's config class of the family accepts.
Json config_to_json(const SwitchConfig& config);

// "tiny" (a few hundred KB, for tests and the demo) or "switch-base-N", N in 8..256: the real
// shapes of google/switch-base-N; "mixtral-tiny" (tests) and "mixtral-bench" (Mixtral-shaped
// layers: hidden 1024, intermediate 3584, 8 experts top-2, 16 heads / 4 KV heads, vocab 32000,
// 4 layers; for benchmarks); "qwen2-moe-tiny" (tests: shared expert, a dense layer).
Result<SwitchConfig> preset_config(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace perfmem::sida
