#include "perfmem/sida/config.h"

#include "perfmem/core/io.h"

namespace perfmem::sida {
namespace {

int64_t sparse_step(int64_t layers, int64_t sparse_layers) {
  return sparse_layers > 0 ? layers / sparse_layers : layers;
}

bool block_is_sparse(int64_t block, int64_t step) {
  return step > 0 && (block % step == 1 || step == 1);
}

Status require_positive(const std::string& file, const std::string& key, int64_t value) {
  if (value > 0) return Status::Ok();
  return input_error(file, "key \"" + key + "\"", "a positive integer", std::to_string(value));
}

}  // namespace

int64_t SwitchConfig::encoder_sparse_step() const {
  return sparse_step(num_layers, num_sparse_encoder_layers);
}
int64_t SwitchConfig::decoder_sparse_step() const {
  return sparse_step(num_decoder_layers, num_sparse_decoder_layers);
}
bool SwitchConfig::encoder_block_is_sparse(int64_t block) const {
  return block_is_sparse(block, encoder_sparse_step());
}
bool SwitchConfig::decoder_block_is_sparse(int64_t block) const {
  return block_is_sparse(block, decoder_sparse_step());
}
int64_t SwitchConfig::num_encoder_moe_layers() const {
  int64_t n = 0;
  for (int64_t i = 0; i < num_layers; ++i) n += encoder_block_is_sparse(i);
  return n;
}
int64_t SwitchConfig::num_moe_layers() const {
  int64_t n = num_encoder_moe_layers();
  for (int64_t i = 0; i < num_decoder_layers; ++i) n += decoder_block_is_sparse(i);
  return n;
}
SwitchConfig::MoeLayerPlace SwitchConfig::moe_layer_place(int64_t moe_layer) const {
  int64_t m = 0;
  for (int64_t i = 0; i < num_layers; ++i)
    if (encoder_block_is_sparse(i) && m++ == moe_layer) return {false, i};
  for (int64_t i = 0; i < num_decoder_layers; ++i)
    if (decoder_block_is_sparse(i) && m++ == moe_layer) return {true, i};
  PERFMEM_CHECK(false, "moe layer " + std::to_string(moe_layer) + " out of range");
  return {};
}

Result<SwitchConfig> parse_config(const Json& json, const std::string& file) {
  SwitchConfig c;
  struct IntKey { const char* key; int64_t* value; bool optional; };
  const IntKey int_keys[] = {
      {"vocab_size", &c.vocab_size, false},
      {"d_model", &c.d_model, false},
      {"d_ff", &c.d_ff, false},
      {"d_kv", &c.d_kv, false},
      {"num_heads", &c.num_heads, false},
      {"num_layers", &c.num_layers, false},
      {"num_decoder_layers", &c.num_decoder_layers, true},
      {"num_sparse_encoder_layers", &c.num_sparse_encoder_layers, false},
      {"num_sparse_decoder_layers", &c.num_sparse_decoder_layers, false},
      {"num_experts", &c.num_experts, false},
      {"expert_capacity", &c.expert_capacity, false},
      {"relative_attention_num_buckets", &c.relative_attention_num_buckets, true},
      {"relative_attention_max_distance", &c.relative_attention_max_distance, true},
      {"pad_token_id", &c.pad_token_id, true},
      {"eos_token_id", &c.eos_token_id, true},
      {"decoder_start_token_id", &c.decoder_start_token_id, true},
  };
  c.num_decoder_layers = -1;
  for (const IntKey& k : int_keys)
    PERFMEM_RETURN_IF_ERROR(json_get(json, file, k.key, k.value, k.optional));
  if (c.num_decoder_layers < 0) c.num_decoder_layers = c.num_layers;
  PERFMEM_RETURN_IF_ERROR(json_get(json, file, "layer_norm_epsilon", &c.layer_norm_epsilon, true));

  for (const char* key : {"vocab_size", "d_model", "d_ff", "d_kv", "num_heads", "num_layers",
                          "num_decoder_layers", "num_experts", "expert_capacity",
                          "relative_attention_num_buckets", "relative_attention_max_distance"}) {
    int64_t v = 0;
    for (const IntKey& k : int_keys)
      if (std::string(k.key) == key) v = *k.value;
    PERFMEM_RETURN_IF_ERROR(require_positive(file, key, v));
  }
  if (c.num_sparse_encoder_layers < 0 || c.num_sparse_encoder_layers > c.num_layers)
    return input_error(file, "key \"num_sparse_encoder_layers\"",
                       "a count between 0 and num_layers", std::to_string(c.num_sparse_encoder_layers));
  if (c.num_sparse_decoder_layers < 0 || c.num_sparse_decoder_layers > c.num_decoder_layers)
    return input_error(file, "key \"num_sparse_decoder_layers\"",
                       "a count between 0 and num_decoder_layers",
                       std::to_string(c.num_sparse_decoder_layers));
  if (c.layer_norm_epsilon <= 0)
    return input_error(file, "key \"layer_norm_epsilon\"", "a positive number",
                       std::to_string(c.layer_norm_epsilon));
  for (auto [key, v] : {std::pair{"pad_token_id", c.pad_token_id}, {"eos_token_id", c.eos_token_id},
                        {"decoder_start_token_id", c.decoder_start_token_id}})
    if (v < 0 || v >= c.vocab_size)
      return input_error(file, std::string("key \"") + key + "\"", "a token id below vocab_size",
                         std::to_string(v));

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
  return parse_config(json, path);
}

Json config_to_json(const SwitchConfig& c) {
  Json j;
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
  j["decoder_start_token_id"] = c.decoder_start_token_id;
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
  return {"tiny", "switch-base-8", "switch-base-16", "switch-base-32",
          "switch-base-64", "switch-base-128", "switch-base-256"};
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
