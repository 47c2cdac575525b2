#include "perfmem/sida/checkpoint.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include "perfmem/core/io.h"
#include "perfmem/core/progress.h"

namespace perfmem::sida {
namespace {

// How a random tensor is initialised: uniform with this standard deviation around `mean`.
struct TensorSpec {
  std::string name;
  Shape shape;
  double stddev;
  double mean = 0.0;
};

std::string block_prefix(bool decoder, int64_t block) {
  return std::string(decoder ? "decoder" : "encoder") + ".block." + std::to_string(block) + ".layer.";
}

std::string mixtral_layer_prefix(int64_t layer) { return "model.layers." + std::to_string(layer) + "."; }

// A decoder-only family's names under model.layers.{i}.: the router, expert e's matrices.
std::string router_name(const SwitchConfig& c, int64_t layer) {
  return mixtral_layer_prefix(layer) +
         (c.family == ModelFamily::kQwen2Moe ? "mlp.gate.weight" : "block_sparse_moe.gate.weight");
}
std::string decoder_only_expert_name(const SwitchConfig& c, int64_t layer, int64_t expert, const std::string& matrix) {
  const bool qwen = c.family == ModelFamily::kQwen2Moe;
  std::string w = matrix;
  if (matrix == "wi") w = qwen ? "gate_proj" : "w1";
  if (matrix == "wo") w = qwen ? "down_proj" : "w2";
  if (matrix == "up") w = qwen ? "up_proj" : "w3";
  return mixtral_layer_prefix(layer) + (qwen ? "mlp.experts." : "block_sparse_moe.experts.") + std::to_string(expert) +
         "." + w + ".weight";
}

std::vector<TensorSpec> mixtral_tensor_specs(const SwitchConfig& c) {
  const int64_t d = c.d_model, inner = c.inner_dim(), kv = c.decoder_only.num_key_value_heads * c.d_kv;
  const double norm_std = 0.1;
  std::vector<TensorSpec> specs;
  specs.push_back({"model.embed_tokens.weight", {c.vocab_size, d}, 1.0});
  for (int64_t i = 0; i < c.num_decoder_layers; ++i) {
    const std::string p = mixtral_layer_prefix(i);
    specs.push_back({p + "input_layernorm.weight", {d}, norm_std, 1.0});
    specs.push_back({p + "self_attn.q_proj.weight", {inner, d}, std::pow(double(d), -0.5)});
    specs.push_back({p + "self_attn.k_proj.weight", {kv, d}, std::pow(double(d), -0.5)});
    specs.push_back({p + "self_attn.v_proj.weight", {kv, d}, std::pow(double(d), -0.5)});
    specs.push_back({p + "self_attn.o_proj.weight", {d, inner}, std::pow(double(inner), -0.5)});
    specs.push_back({p + "post_attention_layernorm.weight", {d}, norm_std, 1.0});
    const DecoderOnlyConfig& o = c.decoder_only;
    if (o.attention_bias) {
      specs.push_back({p + "self_attn.q_proj.bias", {inner}, 0.1});
      specs.push_back({p + "self_attn.k_proj.bias", {kv}, 0.1});
      specs.push_back({p + "self_attn.v_proj.bias", {kv}, 0.1});
    }
    auto mlp = [&](const std::string& mp, int64_t ff) {
      specs.push_back({mp + "gate_proj.weight", {ff, d}, std::pow(double(d), -0.5)});
      specs.push_back({mp + "up_proj.weight", {ff, d}, std::pow(double(d), -0.5)});
      specs.push_back({mp + "down_proj.weight", {d, ff}, std::pow(double(ff), -0.5)});
    };
    if (!c.decoder_block_is_sparse(i)) {
      mlp(p + "mlp.", o.dense_intermediate_size);
      continue;
    }
    specs.push_back({router_name(c, i), {c.num_experts, d}, std::pow(double(d), -0.5)});
    for (int64_t e = 0; e < c.num_experts; ++e) {
      specs.push_back({decoder_only_expert_name(c, i, e, "wi"), {c.d_ff, d}, std::pow(double(d), -0.5)});
      specs.push_back({decoder_only_expert_name(c, i, e, "wo"), {d, c.d_ff}, std::pow(double(c.d_ff), -0.5)});
      specs.push_back({decoder_only_expert_name(c, i, e, "up"), {c.d_ff, d}, std::pow(double(d), -0.5)});
    }
    if (o.shared_expert_intermediate_size > 0) {
      mlp(p + "mlp.shared_expert.", o.shared_expert_intermediate_size);
      specs.push_back({p + "mlp.shared_expert_gate.weight", {1, d}, std::pow(double(d), -0.5)});
    }
  }
  specs.push_back({"model.norm.weight", {d}, norm_std, 1.0});
  if (!c.decoder_only.tie_word_embeddings)
    specs.push_back({"lm_head.weight", {c.vocab_size, d}, std::pow(double(d), -0.5)});
  return specs;
}

std::vector<TensorSpec> model_tensor_specs(const SwitchConfig& c, bool lm_head) {
  if (c.is_decoder_only()) return mixtral_tensor_specs(c);
  const int64_t d = c.d_model, inner = c.inner_dim();
  const double norm_std = 0.1;  // norm weights around 1, not all equal, so a skipped norm shows
  std::vector<TensorSpec> specs;
  specs.push_back({"shared.weight", {c.vocab_size, d}, 1.0});
  auto attention = [&](const std::string& p, bool relative_bias) {
    specs.push_back({p + "q.weight", {inner, d}, std::pow(double(d * c.d_kv), -0.5)});
    specs.push_back({p + "k.weight", {inner, d}, std::pow(double(d), -0.5)});
    specs.push_back({p + "v.weight", {inner, d}, std::pow(double(d), -0.5)});
    specs.push_back({p + "o.weight", {d, inner}, std::pow(double(inner), -0.5)});
    if (relative_bias)
      specs.push_back({p + "relative_attention_bias.weight",
                       {c.relative_attention_num_buckets, c.num_heads},
                       std::pow(double(d), -0.5)});
  };
  auto feed_forward = [&](const std::string& p, bool sparse) {
    if (!sparse) {
      specs.push_back({p + "mlp.wi.weight", {c.d_ff, d}, std::pow(double(d), -0.5)});
      specs.push_back({p + "mlp.wo.weight", {d, c.d_ff}, std::pow(double(c.d_ff), -0.5)});
      return;
    }
    specs.push_back({p + "mlp.router.classifier.weight", {c.num_experts, d}, std::pow(double(d), -0.5)});
    for (int64_t e = 0; e < c.num_experts; ++e) {
      std::string ep = p + "mlp.experts.expert_" + std::to_string(e) + ".";
      specs.push_back({ep + "wi.weight", {c.d_ff, d}, std::pow(double(d), -0.5)});
      specs.push_back({ep + "wo.weight", {d, c.d_ff}, std::pow(double(c.d_ff), -0.5)});
    }
  };
  for (int decoder = 0; decoder < 2; ++decoder) {
    int64_t blocks = decoder ? c.num_decoder_layers : c.num_layers;
    for (int64_t i = 0; i < blocks; ++i) {
      std::string p = block_prefix(decoder, i);
      attention(p + "0.SelfAttention.", i == 0);
      specs.push_back({p + "0.layer_norm.weight", {d}, norm_std, 1.0});
      int ff = 1;
      if (decoder) {
        attention(p + "1.EncDecAttention.", false);
        specs.push_back({p + "1.layer_norm.weight", {d}, norm_std, 1.0});
        ff = 2;
      }
      bool sparse = decoder ? c.decoder_block_is_sparse(i) : c.encoder_block_is_sparse(i);
      feed_forward(p + std::to_string(ff) + ".", sparse);
      specs.push_back({p + std::to_string(ff) + ".layer_norm.weight", {d}, norm_std, 1.0});
    }
    specs.push_back({std::string(decoder ? "decoder" : "encoder") + ".final_layer_norm.weight", {d}, norm_std, 1.0});
  }
  if (lm_head) specs.push_back({"lm_head.weight", {c.vocab_size, d}, 1.0});
  return specs;
}

uint64_t hash_name(const std::string& name, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ (seed * 0x9E3779B97F4A7C15ull);
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// Deterministic uniform fill; xorshift is enough for weights and fast for 27 GB.
void fill_uniform(float* out, int64_t n, uint64_t state, double mean, double stddev) {
  const double half_width = stddev * std::sqrt(3.0);
  if (state == 0) state = 0x2545F4914F6CDD1Dull;
  for (int64_t i = 0; i < n; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    double u = double(state >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
    out[i] = float(mean + (2.0 * u - 1.0) * half_width);
  }
}

bool is_float_storage(DType d) { return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16; }

// Hugging Face ties these to one matrix (with tie_word_embeddings, which the config requires):
// a file may keep any one of them, e.g. safetensors' save_model keeps decoder.embed_tokens.weight.
constexpr const char* kTiedEmbeddingNames[] = {"shared.weight", "encoder.embed_tokens.weight",
                                               "decoder.embed_tokens.weight", "lm_head.weight"};

// Folders with only PyTorch's pickle format are named as such, with the conversion.
Status check_not_pickle_only(const std::string& dir) {
  namespace fs = std::filesystem;
  if (fs::exists(dir + "/model.safetensors") || fs::exists(dir + "/model.safetensors.index.json")) return Status::Ok();
  for (const char* name : {"pytorch_model.bin", "pytorch_model.bin.index.json"})
    if (fs::exists(dir + "/" + name))
      return unsupported_error(dir + "/" + name, "format",
                               "PyTorch pickle checkpoints are not read (only safetensors); convert it once with: " +
                                   pickle_conversion_command(dir));
  return Status::Ok();
}

// The config's sizes against the tensors present, before anything is sized from them: a config
// claiming 1e9 blocks or experts names the key and the tensor that is missing instead of
// allocating for them. Counts are computed in 128 bits, so no product overflows.
Status check_config_against_tensors(const SwitchConfig& c, const SafetensorsCheckpoint& ckpt,
                                    const std::string& config_path) {
  auto require = [&](const char* key, int64_t value, const std::string& tensor) -> Status {
    if (ckpt.find(tensor).file) return Status::Ok();
    return input_error(config_path, std::string("key \"") + key + "\"", "a size the checkpoint holds",
                       std::to_string(value) + ", but " + ckpt.path() + " has no tensor \"" + tensor + "\"");
  };
  PERFMEM_RETURN_IF_ERROR(
      require("num_layers", c.num_layers, block_prefix(false, c.num_layers - 1) + "0.SelfAttention.q.weight"));
  if (c.num_decoder_layers_defaulted) {
    const std::string last = block_prefix(true, c.num_decoder_layers - 1) + "0.SelfAttention.q.weight";
    if (!ckpt.find(last).file)
      return input_error(config_path, "key \"num_decoder_layers\"",
                         "the key, or a checkpoint of " + std::to_string(c.num_decoder_layers) +
                             " decoder blocks (Hugging Face's default when the key is absent)",
                         "no key, and " + ckpt.path() + " has no tensor \"" + last + "\"");
  }
  PERFMEM_RETURN_IF_ERROR(require("num_decoder_layers", c.num_decoder_layers,
                                  block_prefix(true, c.num_decoder_layers - 1) + "0.SelfAttention.q.weight"));
  const int64_t moe_layers = c.num_moe_layers();
  const size_t present = ckpt.tensor_names().size();
  // Each MoE layer needs its own router tensor, so more layers than tensors fails the count
  // check below; stopping there keeps this loop bounded by the file, whatever the config says.
  for (int64_t m = 0; m < moe_layers && uint64_t(m) < present; ++m) {
    const auto place = c.moe_layer_place(m);
    const std::string router =
        block_prefix(place.decoder, place.block) + (place.decoder ? "2" : "1") + ".mlp.router.classifier.weight";
    if (!ckpt.find(router).file)
      return input_error(config_path,
                         place.decoder ? "keys \"decoder_sparse_step\" / \"num_sparse_decoder_layers\""
                                       : "keys \"encoder_sparse_step\" / \"num_sparse_encoder_layers\"",
                         "the sparse blocks the checkpoint holds",
                         "step " + std::to_string(place.decoder ? c.decoder_sparse_step() : c.encoder_sparse_step()) +
                             ", which makes block " + std::to_string(place.block) + " sparse, but " + ckpt.path() +
                             " has no tensor \"" + router + "\"");
  }
  if (moe_layers > 0)
    PERFMEM_RETURN_IF_ERROR(require("num_experts", c.num_experts, expert_tensor_name(c, 0, c.num_experts - 1, "wi")));
  using u128 = unsigned __int128;
  const u128 encoder_blocks = u128(c.num_layers), decoder_blocks = u128(c.num_decoder_layers);
  const u128 sparse_blocks = u128(moe_layers);
  const u128 dense_blocks = encoder_blocks + decoder_blocks - sparse_blocks;
  // shared, 2 final norms, 2 relative biases; per block attention(s), norms, then the FFN.
  const u128 needed =
      5 + encoder_blocks * 6 + decoder_blocks * 11 + dense_blocks * 2 + sparse_blocks * (1 + 2 * u128(c.num_experts));
  if (needed > u128(present))
    return input_error(config_path, "sizes (num_layers, num_decoder_layers, sparse steps, num_experts)",
                       "no more tensors than " + ckpt.path() + " holds (" + std::to_string(present) + ")",
                       "more than that");
  return Status::Ok();
}

}  // namespace

std::string pickle_conversion_command(const std::string& dir) {
  return "python3 -c \"from transformers import SwitchTransformersForConditionalGeneration as M; "
         "M.from_pretrained('" +
         dir + "').save_pretrained('" + dir + "', safe_serialization=True)\"";
}

void convert_to_f32(DType dtype, const void* src, float* dst, size_t count) {
  // src may be at any byte offset (a safetensors data section need not be aligned, and O_DIRECT
  // reads leave the tensor where the file put it), so 16-bit values are read with memcpy.
  const auto* bytes = static_cast<const uint8_t*>(src);
  auto half_at = [bytes](size_t i) {
    uint16_t h;
    std::memcpy(&h, bytes + 2 * i, sizeof h);
    return h;
  };
  switch (dtype) {
    case DType::kF32: std::memcpy(dst, src, count * sizeof(float)); return;
    case DType::kBF16: {
      for (size_t i = 0; i < count; ++i) {
        uint32_t bits = uint32_t(half_at(i)) << 16;
        std::memcpy(&dst[i], &bits, 4);
      }
      return;
    }
    case DType::kF16: {
      for (size_t i = 0; i < count; ++i) dst[i] = f16_to_f32(half_at(i));
      return;
    }
    default: PERFMEM_CHECK(false, "convert_to_f32: unsupported dtype");
  }
}

std::string expert_tensor_name(const SwitchConfig& config, int64_t moe_layer, int64_t expert,
                               const std::string& matrix) {
  if (config.is_decoder_only())
    return decoder_only_expert_name(config, config.moe_layer_place(moe_layer).block, expert, matrix);
  auto place = config.moe_layer_place(moe_layer);
  return block_prefix(place.decoder, place.block) + (place.decoder ? "2" : "1") + ".mlp.experts.expert_" +
         std::to_string(expert) + "." + matrix + ".weight";
}

Result<const float*> ModelWeights::load_resident(const std::string& name, const Shape& shape) {
  PERFMEM_ASSIGN_OR_RETURN(auto entry, checkpoint_.get(name));
  const TensorInfo& info = *entry.info;
  if (info.shape != shape)
    return input_error(entry.file->path(), "tensor \"" + name + "\"", "shape " + shape_to_string(shape),
                       shape_to_string(info.shape));
  if (!is_float_storage(info.dtype))
    return input_error(entry.file->path(), "tensor \"" + name + "\"", "dtype F32, BF16 or F16",
                       std::string(dtype_safetensors_name(info.dtype)));
  const size_t count = static_cast<size_t>(shape_numel(shape));
  AlignedBuffer buf(count * sizeof(float));
  if (info.dtype == DType::kF32) {
    PERFMEM_RETURN_IF_ERROR(entry.file->read(info, buf.data(), info.nbytes()));
  } else {
    AlignedBuffer raw(info.nbytes());
    PERFMEM_RETURN_IF_ERROR(entry.file->read(info, raw.data(), info.nbytes()));
    convert_to_f32(info.dtype, raw.data(), buf.data_as<float>(), count);
  }
  const float* p = buf.data_as<float>();
  resident_bytes_ += buf.size();
  storage_.push_back(std::move(buf));
  return p;
}

Result<const PackedWeights*> ModelWeights::load_packed(const std::string& name, const Shape& shape) {
  PERFMEM_ASSIGN_OR_RETURN(const float* w, load_resident(name, shape));
  packed_.emplace_back(w, shape[0], shape[1]);
  // Only the packed form is kept: the plain copy was the last buffer stored.
  resident_bytes_ += packed_.back().bytes();
  resident_bytes_ -= storage_.back().size();
  storage_.pop_back();
  return &packed_.back();
}

Result<HalfMatrix> ModelWeights::load_half(const std::string& name) {
  PERFMEM_ASSIGN_OR_RETURN(auto entry, checkpoint_.get(name));
  if (entry.info->dtype != DType::kBF16 && entry.info->dtype != DType::kF16) return HalfMatrix{};
  AlignedBuffer raw(entry.info->nbytes());
  PERFMEM_RETURN_IF_ERROR(entry.file->read(*entry.info, raw.data(), entry.info->nbytes()));
  HalfMatrix m{raw.data_as<uint16_t>(), entry.info->dtype};
  resident_bytes_ += raw.size();
  storage_.push_back(std::move(raw));
  return m;
}

Result<SafetensorsCheckpoint::Entry> ModelWeights::locate_expert_matrix(const std::string& name, const Shape& shape) {
  PERFMEM_ASSIGN_OR_RETURN(auto entry, checkpoint_.get(name));
  if (entry.info->shape != shape)
    return input_error(entry.file->path(), "tensor \"" + name + "\"", "shape " + shape_to_string(shape),
                       shape_to_string(entry.info->shape));
  if (!is_float_storage(entry.info->dtype))
    return input_error(entry.file->path(), "tensor \"" + name + "\"", "dtype F32, BF16 or F16",
                       std::string(dtype_safetensors_name(entry.info->dtype)));
  expert_disk_bytes_ += entry.info->nbytes();
  return entry;
}

Result<std::unique_ptr<ModelWeights>> ModelWeights::load(const std::string& dir) {
  std::unique_ptr<ModelWeights> m(new ModelWeights());
  m->dir_ = dir;
  PERFMEM_ASSIGN_OR_RETURN(m->config_, load_config(dir));
  PERFMEM_RETURN_IF_ERROR(check_not_pickle_only(dir));
  PERFMEM_ASSIGN_OR_RETURN(m->checkpoint_, SafetensorsCheckpoint::open(dir));
  if (m->config_.is_decoder_only()) {
    PERFMEM_RETURN_IF_ERROR(m->load_decoder_only());
  } else {
    PERFMEM_RETURN_IF_ERROR(m->load_switch());
  }
  return m;
}

Status ModelWeights::load_decoder_only() {
  const SwitchConfig& c = config_;
  const std::string config_path = dir_ + "/config.json";
  const int64_t d = c.d_model, inner = c.inner_dim(), kv = c.decoder_only.num_key_value_heads * c.d_kv;
  const int64_t E = c.num_experts, L = c.num_decoder_layers;
  // The config's counts against the tensors present, before anything is sized from them.
  auto require = [&](const char* key, int64_t value, const std::string& tensor) -> Status {
    if (checkpoint_.find(tensor).file) return Status::Ok();
    return input_error(config_path, std::string("key \"") + key + "\"", "a size the checkpoint holds",
                       std::to_string(value) + ", but " + checkpoint_.path() + " has no tensor \"" + tensor + "\"");
  };
  const bool qwen = c.family == ModelFamily::kQwen2Moe;
  PERFMEM_RETURN_IF_ERROR(require("num_hidden_layers", L, mixtral_layer_prefix(L - 1) + "input_layernorm.weight"));
  // Qwen2-MoE: the layers the step (and mlp_only_layers) make sparse must hold routers. Each
  // needs its own tensor, so the loop stops within the file's tensor count.
  for (int64_t m = 0; qwen && m < c.num_moe_layers() && uint64_t(m) < checkpoint_.tensor_names().size(); ++m) {
    const int64_t block = c.moe_layer_place(m).block;
    if (!checkpoint_.find(router_name(c, block)).file)
      return input_error(
          config_path, "keys \"decoder_sparse_step\" / \"mlp_only_layers\"", "the sparse layers the checkpoint holds",
          "step " + std::to_string(c.decoder_only.sparse_step) + ", which makes layer " + std::to_string(block) +
              " sparse, but " + checkpoint_.path() + " has no tensor \"" + router_name(c, block) + "\"");
  }
  PERFMEM_RETURN_IF_ERROR(
      require(qwen ? "num_experts" : "num_local_experts", E, expert_tensor_name(c, 0, E - 1, "wi")));
  using u128 = unsigned __int128;
  const u128 needed = 2 + u128(L) * 6 + u128(c.num_moe_layers()) * (1 + 3 * u128(E));
  if (needed > u128(checkpoint_.tensor_names().size()))
    return input_error(config_path, "sizes (num_hidden_layers, num_local_experts)",
                       "no more tensors than " + checkpoint_.path() + " holds (" +
                           std::to_string(checkpoint_.tensor_names().size()) + ")",
                       "more than that");
  PERFMEM_ASSIGN_OR_RETURN(embed_tokens, load_resident("model.embed_tokens.weight", {c.vocab_size, d}));
  if (c.decoder_only.tie_word_embeddings) {
    lm_head = embed_tokens;
  } else {
    PERFMEM_ASSIGN_OR_RETURN(lm_head, load_resident("lm_head.weight", {c.vocab_size, d}));
    PERFMEM_ASSIGN_OR_RETURN(lm_head_half, load_half("lm_head.weight"));
  }
  PERFMEM_ASSIGN_OR_RETURN(final_norm, load_resident("model.norm.weight", {d}));
  const DecoderOnlyConfig& o = c.decoder_only;
  experts_.resize(static_cast<size_t>(c.num_moe_layers() * E));
  layers.resize(static_cast<size_t>(L));
  auto load_mlp = [&](const std::string& mp, int64_t ff, GatedMlpWeights* w) -> Status {
    PERFMEM_ASSIGN_OR_RETURN(w->gate, load_packed(mp + "gate_proj.weight", {ff, d}));
    PERFMEM_ASSIGN_OR_RETURN(w->up, load_packed(mp + "up_proj.weight", {ff, d}));
    PERFMEM_ASSIGN_OR_RETURN(w->down, load_packed(mp + "down_proj.weight", {d, ff}));
    return Status::Ok();
  };
  int64_t moe_layer = 0;
  for (int64_t i = 0; i < L; ++i) {
    DecoderLayerWeights& layer = layers[size_t(i)];
    const std::string p = mixtral_layer_prefix(i);
    PERFMEM_ASSIGN_OR_RETURN(layer.input_norm, load_resident(p + "input_layernorm.weight", {d}));
    PERFMEM_ASSIGN_OR_RETURN(layer.attention.q, load_packed(p + "self_attn.q_proj.weight", {inner, d}));
    PERFMEM_ASSIGN_OR_RETURN(layer.attention.k, load_packed(p + "self_attn.k_proj.weight", {kv, d}));
    PERFMEM_ASSIGN_OR_RETURN(layer.attention.v, load_packed(p + "self_attn.v_proj.weight", {kv, d}));
    PERFMEM_ASSIGN_OR_RETURN(layer.attention.o, load_packed(p + "self_attn.o_proj.weight", {d, inner}));
    PERFMEM_ASSIGN_OR_RETURN(layer.q_half, load_half(p + "self_attn.q_proj.weight"));
    PERFMEM_ASSIGN_OR_RETURN(layer.k_half, load_half(p + "self_attn.k_proj.weight"));
    PERFMEM_ASSIGN_OR_RETURN(layer.v_half, load_half(p + "self_attn.v_proj.weight"));
    PERFMEM_ASSIGN_OR_RETURN(layer.o_half, load_half(p + "self_attn.o_proj.weight"));
    if (o.attention_bias) {
      PERFMEM_ASSIGN_OR_RETURN(layer.q_bias, load_resident(p + "self_attn.q_proj.bias", {inner}));
      PERFMEM_ASSIGN_OR_RETURN(layer.k_bias, load_resident(p + "self_attn.k_proj.bias", {kv}));
      PERFMEM_ASSIGN_OR_RETURN(layer.v_bias, load_resident(p + "self_attn.v_proj.bias", {kv}));
    }
    PERFMEM_ASSIGN_OR_RETURN(layer.post_attention_norm, load_resident(p + "post_attention_layernorm.weight", {d}));
    if (!c.decoder_block_is_sparse(i)) {
      PERFMEM_RETURN_IF_ERROR(load_mlp(p + "mlp.", o.dense_intermediate_size, &layer.dense));
      continue;
    }
    PERFMEM_ASSIGN_OR_RETURN(layer.router, load_packed(router_name(c, i), {E, d}));
    if (o.shared_expert_intermediate_size > 0) {
      PERFMEM_RETURN_IF_ERROR(
          load_mlp(p + "mlp.shared_expert.", o.shared_expert_intermediate_size, &layer.shared_expert));
      PERFMEM_ASSIGN_OR_RETURN(layer.shared_expert_gate, load_packed(p + "mlp.shared_expert_gate.weight", {1, d}));
    }
    layer.moe_layer = moe_layer++;
    const int64_t m = layer.moe_layer;
    for (int64_t e = 0; e < E; ++e) {
      ExpertTensors& et = experts_[size_t(m * E + e)];
      PERFMEM_ASSIGN_OR_RETURN(auto w1, locate_expert_matrix(expert_tensor_name(c, m, e, "wi"), {c.d_ff, d}));
      PERFMEM_ASSIGN_OR_RETURN(auto w2, locate_expert_matrix(expert_tensor_name(c, m, e, "wo"), {d, c.d_ff}));
      PERFMEM_ASSIGN_OR_RETURN(auto w3, locate_expert_matrix(expert_tensor_name(c, m, e, "up"), {c.d_ff, d}));
      et = {w1.file, w1.info, w2.file, w2.info, w3.file, w3.info};
    }
  }
  return Status::Ok();
}

Status ModelWeights::load_switch() {
  ModelWeights* m = this;
  const std::string& dir = dir_;
  const SwitchConfig& c = m->config_;
  const int64_t d = c.d_model, inner = c.inner_dim();
  PERFMEM_RETURN_IF_ERROR(check_config_against_tensors(c, m->checkpoint_, dir + "/config.json"));

  std::string embedding;
  for (const char* name : kTiedEmbeddingNames)
    if (m->checkpoint_.find(name).file) {
      embedding = name;
      break;
    }
  if (embedding.empty())
    return not_found_error(m->checkpoint_.path(),
                           "tensor \"shared.weight\" (or a tied alias: encoder.embed_tokens.weight, "
                           "decoder.embed_tokens.weight, lm_head.weight)");
  PERFMEM_ASSIGN_OR_RETURN(m->shared, m->load_resident(embedding, {c.vocab_size, d}));
  m->experts_.resize(static_cast<size_t>(c.num_moe_layers() * c.num_experts));
  int64_t moe_layer = 0;
  for (int decoder = 0; decoder < 2; ++decoder) {
    int64_t blocks = decoder ? c.num_decoder_layers : c.num_layers;
    auto& out = decoder ? m->decoder : m->encoder;
    out.resize(static_cast<size_t>(blocks));
    for (int64_t i = 0; i < blocks; ++i) {
      BlockWeights& b = out[static_cast<size_t>(i)];
      std::string p = block_prefix(decoder, i);
      auto attention = [&](const std::string& ap, AttentionWeights* a) -> Status {
        PERFMEM_ASSIGN_OR_RETURN(a->q, m->load_packed(ap + "q.weight", {inner, d}));
        PERFMEM_ASSIGN_OR_RETURN(a->k, m->load_packed(ap + "k.weight", {inner, d}));
        PERFMEM_ASSIGN_OR_RETURN(a->v, m->load_packed(ap + "v.weight", {inner, d}));
        PERFMEM_ASSIGN_OR_RETURN(a->o, m->load_packed(ap + "o.weight", {d, inner}));
        return Status::Ok();
      };
      PERFMEM_RETURN_IF_ERROR(attention(p + "0.SelfAttention.", &b.self_attention));
      if (i == 0) {
        PERFMEM_ASSIGN_OR_RETURN(const float* bias,
                                 m->load_resident(p + "0.SelfAttention.relative_attention_bias.weight",
                                                  {c.relative_attention_num_buckets, c.num_heads}));
        (decoder ? m->decoder_relative_bias : m->encoder_relative_bias) = bias;
      }
      PERFMEM_ASSIGN_OR_RETURN(b.self_attention_norm, m->load_resident(p + "0.layer_norm.weight", {d}));
      std::string ff = p + "1.";
      if (decoder) {
        PERFMEM_RETURN_IF_ERROR(attention(p + "1.EncDecAttention.", &b.cross_attention));
        PERFMEM_ASSIGN_OR_RETURN(b.cross_attention_norm, m->load_resident(p + "1.layer_norm.weight", {d}));
        ff = p + "2.";
      }
      PERFMEM_ASSIGN_OR_RETURN(b.ffn_norm, m->load_resident(ff + "layer_norm.weight", {d}));
      bool sparse = decoder ? c.decoder_block_is_sparse(i) : c.encoder_block_is_sparse(i);
      if (!sparse) {
        PERFMEM_ASSIGN_OR_RETURN(b.dense_wi, m->load_packed(ff + "mlp.wi.weight", {c.d_ff, d}));
        PERFMEM_ASSIGN_OR_RETURN(b.dense_wo, m->load_packed(ff + "mlp.wo.weight", {d, c.d_ff}));
        continue;
      }
      PERFMEM_ASSIGN_OR_RETURN(b.router, m->load_packed(ff + "mlp.router.classifier.weight", {c.num_experts, d}));
      b.moe_layer = moe_layer;
      for (int64_t e = 0; e < c.num_experts; ++e) {
        ExpertTensors& et = m->experts_[static_cast<size_t>(moe_layer * c.num_experts + e)];
        for (auto [matrix, shape] : {std::pair<const char*, Shape>{"wi", {c.d_ff, d}}, {"wo", {d, c.d_ff}}}) {
          std::string name = ff + "mlp.experts.expert_" + std::to_string(e) + "." + matrix + ".weight";
          PERFMEM_ASSIGN_OR_RETURN(auto entry, m->locate_expert_matrix(name, shape));
          if (std::string(matrix) == "wi") {
            et.wi_file = entry.file;
            et.wi = entry.info;
          } else {
            et.wo_file = entry.file;
            et.wo = entry.info;
          }
        }
      }
      ++moe_layer;
    }
    PERFMEM_ASSIGN_OR_RETURN(
        const float* final_norm,
        m->load_resident(std::string(decoder ? "decoder" : "encoder") + ".final_layer_norm.weight", {d}));
    (decoder ? m->decoder_final_norm : m->encoder_final_norm) = final_norm;
  }
  return Status::Ok();
}

const ExpertTensors& ModelWeights::expert(int64_t moe_layer, int64_t expert) const {
  PERFMEM_CHECK(moe_layer >= 0 && moe_layer < config_.num_moe_layers() && expert >= 0 && expert < config_.num_experts);
  return experts_[static_cast<size_t>(moe_layer * config_.num_experts + expert)];
}

uint64_t checkpoint_data_bytes(const SwitchConfig& config, const MakeCheckpointOptions& options) {
  uint64_t total = 0;
  for (const TensorSpec& s : model_tensor_specs(config, options.write_lm_head))
    total += uint64_t(shape_numel(s.shape)) * dtype_size(options.dtype);
  return total;
}

Status make_checkpoint(const SwitchConfig& config, const MakeCheckpointOptions& options, const std::string& dir) {
  if (!is_float_storage(options.dtype))
    return Status(StatusCode::kInvalidInput,
                  "make-checkpoint: dtype must be f32, bf16 or f16, not " + std::string(dtype_name(options.dtype)));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return io_error(dir, "create directory", ec.value());
  PERFMEM_RETURN_IF_ERROR(write_text_file(dir + "/config.json", config_to_json(config).dump(2) + "\n"));

  // Plan shards first: their names carry the shard count.
  std::vector<TensorSpec> specs = model_tensor_specs(config, options.write_lm_head);
  const size_t elem = dtype_size(options.dtype);
  std::vector<std::vector<size_t>> shards(1);
  uint64_t shard_size = 0, total = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    uint64_t bytes = uint64_t(shape_numel(specs[i].shape)) * elem;
    if (shard_size > 0 && shard_size + bytes > options.shard_bytes) {
      shards.emplace_back();
      shard_size = 0;
    }
    shards.back().push_back(i);
    shard_size += bytes;
    total += bytes;
  }

  // One buffer for the largest shard and one for the largest tensor, reused for every shard:
  // per-tensor allocations of this size fragment the heap badly over a 27 GB checkpoint.
  uint64_t largest_shard = 0, largest_tensor = 0;
  for (const auto& shard : shards) {
    uint64_t bytes = 0;
    for (size_t i : shard) {
      const uint64_t n = uint64_t(shape_numel(specs[i].shape));
      bytes += n * elem;
      largest_tensor = std::max(largest_tensor, n);
    }
    largest_shard = std::max(largest_shard, bytes);
  }
  AlignedBuffer shard_data(largest_shard);
  std::vector<float> values(largest_tensor);

  ProgressBar bar("writing checkpoint", int64_t(total >> 20), stderr, options.show_progress && ::isatty(2));
  std::map<std::string, std::string> weight_map;
  uint64_t done = 0;
  char shard_name[64];
  for (size_t s = 0; s < shards.size(); ++s) {
    if (shards.size() == 1) {
      std::snprintf(shard_name, sizeof shard_name, "model.safetensors");
    } else {
      std::snprintf(shard_name, sizeof shard_name, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
    }
    SafetensorsWriter writer;
    writer.set_metadata("format", "pt");
    uint8_t* cursor = shard_data.data_as<uint8_t>();
    for (size_t i : shards[s]) {
      const TensorSpec& spec = specs[i];
      const int64_t n = shape_numel(spec.shape);
      // lm_head is tied: the same values as shared.weight.
      const std::string& seed_name =
          spec.name == "lm_head.weight" && config.family == ModelFamily::kSwitch ? specs[0].name : spec.name;
      fill_uniform(values.data(), n, hash_name(seed_name, options.seed), spec.mean, spec.stddev);
      if (options.dtype == DType::kF32) {
        std::memcpy(cursor, values.data(), size_t(n) * elem);
      } else {
        auto* out = reinterpret_cast<uint16_t*>(cursor);
        for (int64_t k = 0; k < n; ++k)
          out[k] = options.dtype == DType::kBF16 ? f32_to_bf16(values[size_t(k)]) : f32_to_f16(values[size_t(k)]);
      }
      writer.add(spec.name, options.dtype, spec.shape, cursor);
      cursor += size_t(n) * elem;
      weight_map[spec.name] = shard_name;
      done += uint64_t(n) * elem;
      bar.set(int64_t(done >> 20));
    }
    PERFMEM_RETURN_IF_ERROR(writer.write(dir + "/" + shard_name));
  }
  if (shards.size() > 1)
    PERFMEM_RETURN_IF_ERROR(write_safetensors_index(dir + "/model.safetensors.index.json", weight_map, total));
  bar.finish();
  return Status::Ok();
}

}  // namespace perfmem::sida
