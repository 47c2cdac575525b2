#include "perfmem/sida/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "perfmem/core/io.h"

namespace perfmem::sida {
namespace {

int64_t sparse_step(int64_t layers, int64_t sparse_layers, const std::optional<int64_t>& key) {
  if (key) return *key;
  return sparse_layers > 0 ? layers / sparse_layers : layers;
}

bool block_is_sparse(int64_t block, int64_t step) { return step > 0 && (block % step == 1 || step == 1); }

// Qwen2-MoE's rule (before mlp_only_layers): layer i is sparse when (i + 1) % step == 0.
bool qwen_eligible(int64_t block, int64_t step) { return step > 0 && (block + 1) % step == 0; }

// Sparse blocks among `layers` blocks: those with i % step == 1 (all of them when step == 1).
int64_t count_sparse(int64_t layers, int64_t step) {
  if (step <= 0 || layers <= 0) return 0;
  if (step == 1) return layers;
  return layers > 1 ? (layers - 2) / step + 1 : 0;
}

// The block index of the m-th sparse block (m < count_sparse).
int64_t nth_sparse_block(int64_t m, int64_t step) { return step == 1 ? m : 1 + m * step; }

Status require_positive(const std::string& file, const std::string& key, int64_t value) {
  if (value > 0) return Status::Ok();
  return input_error(file, "key \"" + key + "\"", "a positive integer", std::to_string(value));
}

// Reads an integer key strictly: nlohmann would truncate 4.5 to 4 (and read 1e9, a float, as
// 1000000000); Hugging Face refuses both where it builds the model, so they are refused here.
Status get_integer(const Json& json, const std::string& file, const std::string& key, int64_t* out, bool optional) {
  auto it = json.find(key);
  if (it == json.end() || (optional && it->is_null())) {  // null is Python's None: not given
    if (optional) return Status::Ok();
    return input_error(file, "key \"" + key + "\"", "the key to be present", "it missing");
  }
  if (!it->is_number_integer()) return input_error(file, "key \"" + key + "\"", "an integer", it->dump());
  if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX))
    return input_error(file, "key \"" + key + "\"", "an integer below 2^63", it->dump());
  *out = it->get<int64_t>();
  return Status::Ok();
}

// Every tensor of the model must have an element count whose fp32 bytes (times two, for an
// expert's pair) fit in 64 bits; products are checked without overflowing.
Status check_sizes(const SwitchConfig& c, const std::string& file) {
  struct Product {
    std::string keys;
    int64_t a, b;
  };
  // Keys as the family's config.json names them.
  const bool mixtral = c.is_decoder_only(), qwen = c.family == ModelFamily::kQwen2Moe;
  const std::string vocab = "\"vocab_size\"", d = mixtral ? "\"hidden_size\"" : "\"d_model\"",
                    ff = qwen      ? "\"moe_intermediate_size\""
                         : mixtral ? "\"intermediate_size\""
                                   : "\"d_ff\"",
                    heads = mixtral ? "\"num_attention_heads\"" : "\"num_heads\"",
                    d_kv = mixtral ? "\"hidden_size\" / \"num_attention_heads\"" : "\"d_kv\"",
                    experts = mixtral && !qwen ? "\"num_local_experts\"" : "\"num_experts\"";
  int64_t inner = 0;
  if (__builtin_mul_overflow(c.num_heads, c.d_kv, &inner))
    return input_error(file, "keys " + heads + " and " + d_kv, "a product that fits in 64 bits",
                       std::to_string(c.num_heads) + " x " + std::to_string(c.d_kv));
  const Product products[] = {
      {vocab + " and " + d, c.vocab_size, c.d_model},
      {d + " and " + ff, c.d_model, c.d_ff},
      {heads + ", " + d_kv + " and " + d, inner, c.d_model},
      {experts + " and " + d, c.num_experts, c.d_model},
      {"\"relative_attention_num_buckets\" and \"num_heads\"", c.relative_attention_num_buckets, c.num_heads},
  };
  for (const Product& p : products) {
    int64_t n = 0, bytes = 0;
    if (__builtin_mul_overflow(p.a, p.b, &n) || __builtin_mul_overflow(n, int64_t(8), &bytes))
      return input_error(file, std::string("keys ") + p.keys, "tensor sizes whose bytes fit in 64 bits",
                         std::to_string(p.a) + " x " + std::to_string(p.b));
  }
  return Status::Ok();
}

// Hugging Face's decoder start: decoder_start_token_id, else bos_token_id; -1 when neither.
// A key that is present must hold a token id (null counts as absent, as in Python).
Status read_decoder_start(const Json& json, const std::string& file, int64_t vocab, int64_t* out) {
  *out = -1;
  for (const char* key : {"decoder_start_token_id", "bos_token_id"}) {
    auto it = json.find(key);
    if (it == json.end() || it->is_null()) continue;
    int64_t id = -1;
    PERFMEM_RETURN_IF_ERROR(get_integer(json, file, key, &id, false));
    if (id < 0 || id >= vocab)
      return input_error(file, std::string("key \"") + key + "\"", "a token id below vocab_size", std::to_string(id));
    *out = id;
    return Status::Ok();
  }
  return Status::Ok();
}

// generate()'s eos_token_id and pad_token_id from `json` (config.json or generation_config.json):
// a missing or null key is None (no end id; pad -1); eos may be an integer or a list of them.
Status read_generation_ids(const Json& json, const std::string& file, int64_t vocab, SwitchConfig* c) {
  auto check_id = [&](const char* key, const Json& value, int64_t* out) -> Status {
    if (!value.is_number_integer())
      return input_error(file, std::string("key \"") + key + "\"", "a token id (an integer)", value.dump());
    const int64_t id =
        value.is_number_unsigned() && value.get<uint64_t>() > uint64_t(INT64_MAX) ? -1 : value.get<int64_t>();
    if (id < 0 || id >= vocab)
      return input_error(file, std::string("key \"") + key + "\"", "a token id below vocab_size", value.dump());
    *out = id;
    return Status::Ok();
  };
  c->generation_eos_ids.clear();
  c->generation_pad_token_id = -1;
  if (auto it = json.find("eos_token_id"); it != json.end() && !it->is_null()) {
    const Json ids = it->is_array() ? *it : Json::array({*it});
    for (const Json& id : ids)
      PERFMEM_RETURN_IF_ERROR(check_id("eos_token_id", id, &c->generation_eos_ids.emplace_back()));
  }
  if (auto it = json.find("pad_token_id"); it != json.end() && !it->is_null())
    PERFMEM_RETURN_IF_ERROR(check_id("pad_token_id", *it, &c->generation_pad_token_id));
  return Status::Ok();
}

// Hugging Face's MixtralConfig and Qwen2MoeConfig (transformers 4.40): hidden_size,
// intermediate_size (Mixtral: of an expert; Qwen2-MoE: of the dense layers, whose experts have
// moe_intermediate_size), num_hidden_layers, num_attention_heads, num_key_value_heads,
// num_local_experts (Qwen2-MoE: num_experts), num_experts_per_tok, rms_norm_eps, rope_theta,
// max_position_embeddings, sliding_window, tie_word_embeddings, bos/eos/pad ids; Qwen2-MoE adds
// shared_expert_intermediate_size, decoder_sparse_step, norm_topk_prob and mlp_only_layers.
// Absent keys take the constructor's defaults.
Result<SwitchConfig> parse_decoder_only_config(const Json& json, const std::string& file, ModelFamily family) {
  SwitchConfig c;
  c.family = family;
  DecoderOnlyConfig& o = c.decoder_only;
  const bool qwen = family == ModelFamily::kQwen2Moe;
  int64_t bos = 1, eos = 2, pad = -1;
  if (qwen) {  // Qwen2MoeConfig's defaults (Qwen1.5-MoE-A2.7B)
    c.vocab_size = 151936;
    c.d_model = 2048;
    c.d_ff = 1408;
    o.dense_intermediate_size = 5632;
    o.shared_expert_intermediate_size = 5632;
    c.num_decoder_layers = 24;
    c.num_heads = 16;
    o.num_key_value_heads = 16;
    c.num_experts = 60;
    c.experts_per_token = 4;
    c.layer_norm_epsilon = 1e-6;
    o.rope_theta = 10000;
    o.max_position_embeddings = 32768;
    o.sliding_window = 4096;  // transformers 4.40 applies it in the attention mask
    o.norm_topk_prob = false;
    o.attention_bias = true;
    bos = eos = -1;  // not set by Qwen2MoeConfig: None unless config.json names them
  } else {           // MixtralConfig's defaults (Mixtral-8x7B)
    c.vocab_size = 32000;
    c.d_model = 4096;
    c.d_ff = 14336;
    c.num_decoder_layers = 32;
    c.num_heads = 32;
    o.num_key_value_heads = 8;
    c.num_experts = 8;
    c.experts_per_token = 2;
    c.layer_norm_epsilon = 1e-5;
  }
  const char* experts_key = qwen ? "num_experts" : "num_local_experts";
  const char* expert_ff_key = qwen ? "moe_intermediate_size" : "intermediate_size";
  struct IntKey {
    const char* key;
    int64_t* value;
  };
  std::vector<IntKey> int_keys = {
      {"vocab_size", &c.vocab_size},
      {"hidden_size", &c.d_model},
      {expert_ff_key, &c.d_ff},
      {"num_hidden_layers", &c.num_decoder_layers},
      {"num_attention_heads", &c.num_heads},
      {"num_key_value_heads", &o.num_key_value_heads},
      {experts_key, &c.num_experts},
      {"num_experts_per_tok", &c.experts_per_token},
      {"max_position_embeddings", &o.max_position_embeddings},
      {"sliding_window", &o.sliding_window},
      {"bos_token_id", &bos},
      {"eos_token_id", &eos},
      {"pad_token_id", &pad},
  };
  if (qwen) {
    int_keys.push_back({"intermediate_size", &o.dense_intermediate_size});
    int_keys.push_back({"shared_expert_intermediate_size", &o.shared_expert_intermediate_size});
    int_keys.push_back({"decoder_sparse_step", &o.sparse_step});
  }
  for (const IntKey& k : int_keys) PERFMEM_RETURN_IF_ERROR(get_integer(json, file, k.key, k.value, true));
  if (qwen) {
    PERFMEM_RETURN_IF_ERROR(json_get(json, file, "norm_topk_prob", &o.norm_topk_prob, true));
    for (auto [key, value] :
         {std::pair{"intermediate_size", o.dense_intermediate_size}, {"decoder_sparse_step", o.sparse_step}})
      PERFMEM_RETURN_IF_ERROR(require_positive(file, key, value));
    if (o.shared_expert_intermediate_size < 0)
      return input_error(file, "key \"shared_expert_intermediate_size\"", "a non-negative integer",
                         std::to_string(o.shared_expert_intermediate_size));
    for (auto [key, size] : {std::pair{"intermediate_size", o.dense_intermediate_size},
                             {"shared_expert_intermediate_size", o.shared_expert_intermediate_size}}) {
      int64_t n = 0;
      if (__builtin_mul_overflow(c.d_model, size, &n) || __builtin_mul_overflow(n, int64_t(16), &n))
        return input_error(file, std::string("keys \"hidden_size\" and \"") + key + "\"",
                           "an MLP whose bytes fit in 64 bits",
                           std::to_string(c.d_model) + " x " + std::to_string(size));
    }
    if (auto it = json.find("mlp_only_layers"); it != json.end() && !it->is_null()) {
      if (!it->is_array()) return input_error(file, "key \"mlp_only_layers\"", "a list of layer indices", it->dump());
      for (const Json& v : *it) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0)
          return input_error(file, "key \"mlp_only_layers\"", "non-negative layer indices", v.dump());
        o.mlp_only_layers.push_back(v.get<int64_t>());
      }
      std::sort(o.mlp_only_layers.begin(), o.mlp_only_layers.end());
      o.mlp_only_layers.erase(std::unique(o.mlp_only_layers.begin(), o.mlp_only_layers.end()), o.mlp_only_layers.end());
    }
  }
  // A null num_key_value_heads is num_attention_heads (MixtralConfig's rule); null ids are None.
  if (auto it = json.find("num_key_value_heads"); it != json.end() && it->is_null())
    o.num_key_value_heads = c.num_heads;
  for (auto [key, value] : {std::pair{"bos_token_id", &bos}, {"eos_token_id", &eos}, {"pad_token_id", &pad}})
    if (auto it = json.find(key); it != json.end() && it->is_null()) *value = -1;
  // Absent: the constructor's default (above); null: no window.
  if (auto it = json.find("sliding_window"); it != json.end() && it->is_null()) o.sliding_window = 0;
  for (auto [key, value] : {std::pair{"vocab_size", c.vocab_size},
                            {"hidden_size", c.d_model},
                            {expert_ff_key, c.d_ff},
                            {"num_hidden_layers", c.num_decoder_layers},
                            {"num_attention_heads", c.num_heads},
                            {"num_key_value_heads", o.num_key_value_heads},
                            {experts_key, c.num_experts},
                            {"num_experts_per_tok", c.experts_per_token},
                            {"max_position_embeddings", o.max_position_embeddings}})
    PERFMEM_RETURN_IF_ERROR(require_positive(file, key, value));
  if (o.sliding_window < 0)
    return input_error(file, "key \"sliding_window\"", "a positive integer or null", std::to_string(o.sliding_window));
  if (c.experts_per_token > c.num_experts)
    return input_error(file, "key \"num_experts_per_tok\"",
                       std::string("at most ") + experts_key + " (" + std::to_string(c.num_experts) + ")",
                       std::to_string(c.experts_per_token));
  // MixtralAttention: head_dim = hidden_size // num_heads, and the product must give hidden_size.
  if (c.d_model % c.num_heads != 0)
    return input_error(file, "keys \"hidden_size\" and \"num_attention_heads\"",
                       "hidden_size divisible by num_attention_heads (as MixtralAttention requires)",
                       std::to_string(c.d_model) + " and " + std::to_string(c.num_heads));
  c.d_kv = c.d_model / c.num_heads;
  if (c.num_heads % o.num_key_value_heads != 0)
    return input_error(file, "keys \"num_attention_heads\" and \"num_key_value_heads\"",
                       "num_attention_heads divisible by num_key_value_heads (query heads share K/V in groups)",
                       std::to_string(c.num_heads) + " and " + std::to_string(o.num_key_value_heads));
  if (c.d_kv % 2 != 0)
    return input_error(file, "keys \"hidden_size\" and \"num_attention_heads\"",
                       "an even head dimension (rotary embeddings rotate pairs)", std::to_string(c.d_kv));
  PERFMEM_RETURN_IF_ERROR(json_get(json, file, "rms_norm_eps", &c.layer_norm_epsilon, true));
  PERFMEM_RETURN_IF_ERROR(json_get(json, file, "rope_theta", &o.rope_theta, true));
  if (!(c.layer_norm_epsilon > 0))
    return input_error(file, "key \"rms_norm_eps\"", "a positive number", std::to_string(c.layer_norm_epsilon));
  if (!(o.rope_theta > 0) || !std::isfinite(o.rope_theta))
    return input_error(file, "key \"rope_theta\"", "a positive number", std::to_string(o.rope_theta));
  PERFMEM_RETURN_IF_ERROR(json_get(json, file, "tie_word_embeddings", &o.tie_word_embeddings, true));
  PERFMEM_RETURN_IF_ERROR(check_sizes(c, file));
  // Three expert matrices and the stacked gate/up matrix: 3 * d_model * d_ff fp32 values.
  int64_t expert = 0;
  if (__builtin_mul_overflow(c.d_model * c.d_ff, int64_t(16), &expert))
    return input_error(file, std::string("keys \"hidden_size\" and \"") + expert_ff_key + "\"",
                       "an expert whose bytes fit in 64 bits",
                       std::to_string(c.d_model) + " x " + std::to_string(c.d_ff));
  std::string act = "silu";
  PERFMEM_RETURN_IF_ERROR(json_get(json, file, "hidden_act", &act, true));
  if (act != "silu")
    return unsupported_error(file, "key \"hidden_act\"", "value \"" + act + "\" (only \"silu\" is implemented)");
  if (auto it = json.find("rope_scaling"); it != json.end() && !it->is_null())
    return unsupported_error(file, "key \"rope_scaling\"", "value " + it->dump() + " (only null is implemented)");
  // Decoder-only: no encoder blocks, every decoder block a MoE layer.
  c.num_layers = 0;
  c.num_sparse_encoder_layers = 0;
  c.num_sparse_decoder_layers = c.num_decoder_layers;
  c.encoder_sparse_step_key = 0;
  c.decoder_sparse_step_key = 1;
  c.expert_capacity = 0;
  if (c.num_moe_layers() < 1)
    return unsupported_error(file, "keys \"decoder_sparse_step\" / \"mlp_only_layers\"",
                             "no sparse layer: a dense model (sida serves MoE models)");
  c.relative_attention_num_buckets = 0;
  c.relative_attention_max_distance = 0;
  for (auto [key, v] : {std::pair{"bos_token_id", bos}, {"eos_token_id", eos}, {"pad_token_id", pad}})
    if (v >= c.vocab_size)
      return input_error(file, std::string("key \"") + key + "\"", "a token id below vocab_size", std::to_string(v));
  o.bos_token_id = bos;
  c.eos_token_id = eos;
  c.pad_token_id = pad;
  c.decoder_start_token_id = -1;  // decoder-only: generation continues the prompt
  PERFMEM_RETURN_IF_ERROR(read_generation_ids(json, file, c.vocab_size, &c));
  return c;
}

}  // namespace

const char* model_family_name(ModelFamily family) {
  switch (family) {
    case ModelFamily::kMixtral: return "mixtral";
    case ModelFamily::kQwen2Moe: return "qwen2_moe";
    default: return "switch_transformers";
  }
}

bool SwitchConfig::is_generation_eos(int64_t id) const {
  return std::find(generation_eos_ids.begin(), generation_eos_ids.end(), id) != generation_eos_ids.end();
}
int64_t SwitchConfig::masked_pad_id() const {
  // Hugging Face: with no pad id but an end id, generate() pads with the first end id, which is
  // never masked; a pad id that is also an end id is not masked either.
  return generation_pad_token_id >= 0 && !is_generation_eos(generation_pad_token_id) ? generation_pad_token_id : -1;
}

int64_t SwitchConfig::encoder_sparse_step() const {
  return sparse_step(num_layers, num_sparse_encoder_layers, encoder_sparse_step_key);
}
int64_t SwitchConfig::decoder_sparse_step() const {
  return sparse_step(num_decoder_layers, num_sparse_decoder_layers, decoder_sparse_step_key);
}
bool SwitchConfig::encoder_block_is_sparse(int64_t block) const {
  return block_is_sparse(block, encoder_sparse_step());
}
bool SwitchConfig::decoder_block_is_sparse(int64_t block) const {
  if (family == ModelFamily::kQwen2Moe)
    return qwen_eligible(block, decoder_only.sparse_step) &&
           !std::binary_search(decoder_only.mlp_only_layers.begin(), decoder_only.mlp_only_layers.end(), block);
  return block_is_sparse(block, decoder_sparse_step());
}
int64_t SwitchConfig::num_encoder_moe_layers() const { return count_sparse(num_layers, encoder_sparse_step()); }
int64_t SwitchConfig::num_moe_layers() const {
  if (family == ModelFamily::kQwen2Moe) {
    const int64_t step = decoder_only.sparse_step;
    int64_t n = step > 0 ? num_decoder_layers / step : 0;
    for (int64_t e : decoder_only.mlp_only_layers)
      if (e < num_decoder_layers && qwen_eligible(e, step)) --n;
    return n;
  }
  return num_encoder_moe_layers() + count_sparse(num_decoder_layers, decoder_sparse_step());
}
SwitchConfig::MoeLayerPlace SwitchConfig::moe_layer_place(int64_t moe_layer) const {
  const int64_t encoder_layers = num_encoder_moe_layers();
  PERFMEM_CHECK(moe_layer >= 0 && moe_layer < num_moe_layers(),
                "moe layer " + std::to_string(moe_layer) + " out of range");
  if (family == ModelFamily::kQwen2Moe) {
    // The m-th eligible layer, moved past each mlp_only layer (sorted) at or before it.
    const int64_t step = decoder_only.sparse_step;
    int64_t block = (moe_layer + 1) * step - 1;
    for (int64_t e : decoder_only.mlp_only_layers)
      if (qwen_eligible(e, step) && e <= block) block += step;
    return {true, block};
  }
  if (moe_layer < encoder_layers) return {false, nth_sparse_block(moe_layer, encoder_sparse_step())};
  return {true, nth_sparse_block(moe_layer - encoder_layers, decoder_sparse_step())};
}

Result<SwitchConfig> parse_config(const Json& json, const std::string& file) {
  SwitchConfig c;
  struct IntKey {
    const char* key;
    int64_t* value;
    bool optional;
  };
  const IntKey int_keys[] = {
      {"vocab_size", &c.vocab_size, false},
      {"d_model", &c.d_model, false},
      {"d_ff", &c.d_ff, false},
      {"d_kv", &c.d_kv, false},
      {"num_heads", &c.num_heads, false},
      {"num_layers", &c.num_layers, false},
      {"num_decoder_layers", &c.num_decoder_layers, true},
      {"num_sparse_encoder_layers", &c.num_sparse_encoder_layers, true},
      {"num_sparse_decoder_layers", &c.num_sparse_decoder_layers, true},
      {"num_experts", &c.num_experts, false},
      {"expert_capacity", &c.expert_capacity, false},
      {"relative_attention_num_buckets", &c.relative_attention_num_buckets, true},
      {"relative_attention_max_distance", &c.relative_attention_max_distance, true},
      {"pad_token_id", &c.pad_token_id, true},
      {"eos_token_id", &c.eos_token_id, true},
  };
  if (!json.is_object()) return input_error(file, "top level", "a JSON object", json.type_name());
  std::string model_type;
  if (!json.contains("model_type"))
    return input_error(file, "key \"model_type\"", "\"switch_transformers\", \"mixtral\" or \"qwen2_moe\"",
                       "it missing: not a Switch Transformers model");
  PERFMEM_RETURN_IF_ERROR(json_get(json, file, "model_type", &model_type));
  if (model_type == "mixtral") return parse_decoder_only_config(json, file, ModelFamily::kMixtral);
  if (model_type == "qwen2_moe") return parse_decoder_only_config(json, file, ModelFamily::kQwen2Moe);
  if (model_type != "switch_transformers")
    return input_error(file, "key \"model_type\"", "\"switch_transformers\", \"mixtral\" or \"qwen2_moe\"",
                       "\"" + model_type + "\": not a Switch Transformers model");
  c.num_decoder_layers = -1;
  // Absent sparse counts are the constructor's defaults; they matter only without the step keys.
  c.num_sparse_encoder_layers = c.num_sparse_decoder_layers = kDefaultNumSparseLayers;
  for (const IntKey& k : int_keys) PERFMEM_RETURN_IF_ERROR(get_integer(json, file, k.key, k.value, k.optional));
  // Hugging Face's constructor: an absent num_decoder_layers is its default, 12 (whatever
  // num_layers is); only an explicit null means "as many as the encoder".
  c.num_decoder_layers_defaulted = !json.contains("num_decoder_layers");
  if (c.num_decoder_layers_defaulted) c.num_decoder_layers = kDefaultNumDecoderLayers;
  if (c.num_decoder_layers < 0) c.num_decoder_layers = c.num_layers;
  for (auto [key, step] : {std::pair{"encoder_sparse_step", &c.encoder_sparse_step_key},
                           {"decoder_sparse_step", &c.decoder_sparse_step_key}}) {
    int64_t v = 0;
    if (!json.contains(key)) continue;
    PERFMEM_RETURN_IF_ERROR(get_integer(json, file, key, &v, false));
    *step = v;
  }

  PERFMEM_RETURN_IF_ERROR(json_get(json, file, "layer_norm_epsilon", &c.layer_norm_epsilon, true));

  for (const char* key :
       {"vocab_size", "d_model", "d_ff", "d_kv", "num_heads", "num_layers", "num_decoder_layers", "num_experts",
        "expert_capacity", "relative_attention_num_buckets", "relative_attention_max_distance"}) {
    int64_t v = 0;
    for (const IntKey& k : int_keys)
      if (std::string(k.key) == key) v = *k.value;
    PERFMEM_RETURN_IF_ERROR(require_positive(file, key, v));
  }
  // The sparse counts are not range-checked: Hugging Face derives a step from them (a count
  // above the layer count gives step 0, no sparse block), and the tensors present decide.
  PERFMEM_RETURN_IF_ERROR(check_sizes(c, file));
  if (c.layer_norm_epsilon <= 0)
    return input_error(file, "key \"layer_norm_epsilon\"", "a positive number", std::to_string(c.layer_norm_epsilon));
  PERFMEM_RETURN_IF_ERROR(read_decoder_start(json, file, c.vocab_size, &c.decoder_start_token_id));
  for (auto [key, v] : {std::pair{"pad_token_id", c.pad_token_id}, {"eos_token_id", c.eos_token_id}})
    if (v < 0 || v >= c.vocab_size)
      return input_error(file, std::string("key \"") + key + "\"", "a token id below vocab_size", std::to_string(v));
  // Without generation_config.json, generate() takes these two from config.json (an absent key
  // is the constructor's default, read above; null is None).
  c.generation_eos_ids.clear();
  if (!json.contains("eos_token_id") || !json["eos_token_id"].is_null()) c.generation_eos_ids.push_back(c.eos_token_id);
  c.generation_pad_token_id = json.contains("pad_token_id") && json["pad_token_id"].is_null() ? -1 : c.pad_token_id;

  // Values the engine does not implement are refused rather than silently ignored.
  auto check_string = [&](const char* key, const char* wanted) -> Status {
    std::string v = wanted;
    PERFMEM_RETURN_IF_ERROR(json_get(json, file, key, &v, true));
    if (v != wanted)
      return unsupported_error(file, std::string("key \"") + key + "\"",
                               "value \"" + v + "\" (only \"" + wanted + "\" is implemented)");
    return Status::Ok();
  };
  PERFMEM_RETURN_IF_ERROR(check_string("dense_act_fn", "relu"));
  PERFMEM_RETURN_IF_ERROR(check_string("router_dtype", "float32"));
  PERFMEM_RETURN_IF_ERROR(check_string("feed_forward_proj", "relu"));
  auto check_bool = [&](const char* key, bool wanted) -> Status {
    bool v = wanted;
    PERFMEM_RETURN_IF_ERROR(json_get(json, file, key, &v, true));
    if (v != wanted)
      return unsupported_error(file, std::string("key \"") + key + "\"",
                               std::string("value ") + (v ? "true" : "false") + " (only " +
                                   (wanted ? "true" : "false") + " is implemented)");
    return Status::Ok();
  };
  PERFMEM_RETURN_IF_ERROR(check_bool("router_bias", false));
  PERFMEM_RETURN_IF_ERROR(check_bool("tie_word_embeddings", true));
  PERFMEM_RETURN_IF_ERROR(check_bool("is_encoder_decoder", true));
  return c;
}

Result<SwitchConfig> load_config(const std::string& dir) {
  std::string path = dir + "/config.json";
  PERFMEM_ASSIGN_OR_RETURN(Json json, read_json_file(path));
  PERFMEM_ASSIGN_OR_RETURN(SwitchConfig c, parse_config(json, path));
  const std::string generation_path = dir + "/generation_config.json";
  if (std::filesystem::exists(generation_path)) {
    PERFMEM_ASSIGN_OR_RETURN(Json generation, read_json_file(generation_path));
    if (!generation.is_object())
      return input_error(generation_path, "top level", "a JSON object", generation.type_name());
    if (!c.is_decoder_only())
      PERFMEM_RETURN_IF_ERROR(read_decoder_start(generation, generation_path, c.vocab_size, &c.decoder_start_token_id));
    PERFMEM_RETURN_IF_ERROR(read_generation_ids(generation, generation_path, c.vocab_size, &c));
  }
  return c;
}

Json config_to_json(const SwitchConfig& c) {
  Json j;
  if (c.is_decoder_only()) {
    const DecoderOnlyConfig& o = c.decoder_only;
    const bool qwen = c.family == ModelFamily::kQwen2Moe;
    j["architectures"] = Json::array({qwen ? "Qwen2MoeForCausalLM" : "MixtralForCausalLM"});
    j["model_type"] = model_family_name(c.family);
    j["vocab_size"] = c.vocab_size;
    j["hidden_size"] = c.d_model;
    j["num_hidden_layers"] = c.num_decoder_layers;
    j["num_attention_heads"] = c.num_heads;
    j["num_key_value_heads"] = o.num_key_value_heads;
    if (qwen) {
      j["intermediate_size"] = o.dense_intermediate_size;
      j["moe_intermediate_size"] = c.d_ff;
      j["shared_expert_intermediate_size"] = o.shared_expert_intermediate_size;
      j["num_experts"] = c.num_experts;
      j["decoder_sparse_step"] = o.sparse_step;
      j["norm_topk_prob"] = o.norm_topk_prob;
      j["mlp_only_layers"] = o.mlp_only_layers;
      j["use_sliding_window"] = false;
    } else {
      j["intermediate_size"] = c.d_ff;
      j["num_local_experts"] = c.num_experts;
    }
    j["num_experts_per_tok"] = c.experts_per_token;
    j["hidden_act"] = "silu";
    j["max_position_embeddings"] = o.max_position_embeddings;
    j["rms_norm_eps"] = c.layer_norm_epsilon;
    j["rope_theta"] = o.rope_theta;
    j["sliding_window"] = o.sliding_window > 0 ? Json(o.sliding_window) : Json(nullptr);
    j["tie_word_embeddings"] = o.tie_word_embeddings;
    j["bos_token_id"] = o.bos_token_id >= 0 ? Json(o.bos_token_id) : Json(nullptr);
    j["eos_token_id"] = c.eos_token_id >= 0 ? Json(c.eos_token_id) : Json(nullptr);
    j["pad_token_id"] = c.pad_token_id >= 0 ? Json(c.pad_token_id) : Json(nullptr);
    j["attention_dropout"] = 0.0;
    j["router_aux_loss_coef"] = 0.02;
    j["initializer_range"] = 0.02;
    j["use_cache"] = true;
    return j;
  }
  j["architectures"] = Json::array({"SwitchTransformersForConditionalGeneration"});
  j["model_type"] = "switch_transformers";
  j["vocab_size"] = c.vocab_size;
  j["d_model"] = c.d_model;
  j["d_ff"] = c.d_ff;
  j["d_kv"] = c.d_kv;
  j["num_heads"] = c.num_heads;
  j["num_layers"] = c.num_layers;
  j["num_decoder_layers"] = c.num_decoder_layers;
  j["num_sparse_encoder_layers"] = c.num_sparse_encoder_layers;
  j["num_sparse_decoder_layers"] = c.num_sparse_decoder_layers;
  j["num_experts"] = c.num_experts;
  j["expert_capacity"] = c.expert_capacity;
  j["relative_attention_num_buckets"] = c.relative_attention_num_buckets;
  j["relative_attention_max_distance"] = c.relative_attention_max_distance;
  j["layer_norm_epsilon"] = c.layer_norm_epsilon;
  j["pad_token_id"] = c.pad_token_id;
  j["eos_token_id"] = c.eos_token_id;
  if (c.decoder_start_token_id >= 0) j["decoder_start_token_id"] = c.decoder_start_token_id;
  j["encoder_sparse_step"] = c.encoder_sparse_step();
  j["decoder_sparse_step"] = c.decoder_sparse_step();
  j["dense_act_fn"] = "relu";
  j["router_dtype"] = "float32";
  j["router_bias"] = false;
  j["router_jitter_noise"] = 0.01;
  j["router_ignore_padding_tokens"] = false;
  j["tie_word_embeddings"] = true;
  j["is_encoder_decoder"] = true;
  j["dropout_rate"] = 0.1;
  j["initializer_factor"] = 1.0;
  j["use_cache"] = true;
  return j;
}

std::vector<std::string> preset_names() {
  return {"tiny",           "switch-base-8",   "switch-base-16",  "switch-base-32",
          "switch-base-64", "switch-base-128", "switch-base-256", "mixtral-tiny",
          "mixtral-bench",  "qwen2-moe-tiny"};
}

Result<SwitchConfig> preset_config(const std::string& name) {
  SwitchConfig c;  // defaults are switch-base-8
  if (name == "tiny") {
    c.vocab_size = 96;
    c.d_model = 32;
    c.d_ff = 48;
    c.d_kv = 8;
    c.num_heads = 4;
    c.num_layers = 4;
    c.num_decoder_layers = 4;
    c.num_sparse_encoder_layers = 2;
    c.num_sparse_decoder_layers = 2;
    c.num_experts = 4;
    c.expert_capacity = 64;
    return c;
  }
  if (name == "mixtral-tiny" || name == "mixtral-bench") {
    const bool tiny = name == "mixtral-tiny";
    SwitchConfig m;
    m.family = ModelFamily::kMixtral;
    m.vocab_size = tiny ? 96 : 32000;
    m.d_model = tiny ? 32 : 1024;
    m.d_ff = tiny ? 48 : 3584;
    m.num_heads = tiny ? 4 : 16;
    m.d_kv = m.d_model / m.num_heads;
    m.decoder_only.num_key_value_heads = tiny ? 2 : 4;
    m.decoder_only.max_position_embeddings = tiny ? 512 : 4096;
    m.decoder_only.rope_theta = 1e6;
    m.num_layers = 0;
    m.num_decoder_layers = tiny ? 3 : 4;
    m.num_sparse_encoder_layers = 0;
    m.num_sparse_decoder_layers = m.num_decoder_layers;
    m.encoder_sparse_step_key = 0;
    m.decoder_sparse_step_key = 1;
    m.num_experts = tiny ? 4 : 8;
    m.experts_per_token = 2;
    m.expert_capacity = 0;
    m.relative_attention_num_buckets = m.relative_attention_max_distance = 0;
    m.layer_norm_epsilon = 1e-5;
    m.decoder_only.bos_token_id = 1;
    m.eos_token_id = 2;
    m.pad_token_id = -1;
    m.generation_eos_ids = {2};
    m.generation_pad_token_id = -1;
    m.decoder_start_token_id = -1;
    return m;
  }
  if (name == "qwen2-moe-tiny") {
    // Mixtral-tiny's shapes with Qwen2-MoE's parts: 6 layers, every second one sparse
    // (decoder_sparse_step 2: layers 1, 3 and 5), top-2 of 6 small experts without
    // renormalisation, a shared expert, q/k/v biases. (No mlp_only_layers: transformers 4.40,
    // the conformance oracle, ignores that key.)
    PERFMEM_ASSIGN_OR_RETURN(SwitchConfig q, preset_config("mixtral-tiny"));
    q.family = ModelFamily::kQwen2Moe;
    q.d_ff = 24;
    q.num_experts = 6;
    q.num_decoder_layers = 6;
    q.decoder_only.dense_intermediate_size = 40;
    q.decoder_only.shared_expert_intermediate_size = 56;
    q.decoder_only.sparse_step = 2;
    q.decoder_only.norm_topk_prob = false;
    q.decoder_only.attention_bias = true;
    q.decoder_only.rope_theta = 10000;
    q.decoder_only.sliding_window = 512;
    q.layer_norm_epsilon = 1e-6;
    q.num_sparse_decoder_layers = q.num_decoder_layers;
    return q;
  }
  for (int64_t e : {8, 16, 32, 64, 128, 256}) {
    if (name == "switch-base-" + std::to_string(e)) {
      c.num_experts = e;
      return c;
    }
  }
  std::string known;
  for (const std::string& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  return Status(StatusCode::kInvalidInput, "unknown preset \"" + name + "\" (known: " + known + ")");
}

}  // namespace perfmem::sida
