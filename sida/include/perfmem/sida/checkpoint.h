// Checkpoints of every model family (ModelFamily): loading the resident (non-expert) weights,
// locating expert tensors on disk, and writing random checkpoints in Hugging Face's exact layout.
//
//   auto model = perfmem::sida::ModelWeights::load("ckpt/");   // config.json + safetensors
//   if (!model) { std::cerr << model.status().to_string(); return 1; }
//   const auto& block = (*model)->encoder[1];                   // sparse: block.router != nullptr
//   perfmem::sida::ExpertTensors e = (*model)->expert(0, 3);    // moe layer 0, expert 3: on disk
//
//   perfmem::sida::MakeCheckpointOptions opt;  opt.dtype = perfmem::DType::kBF16;
//   PERFMEM_RETURN_IF_ERROR(perfmem::sida::make_checkpoint(*perfmem::sida::preset_config("tiny"),
//                                                          opt, "out/tiny"));
//
// Tensor names (Hugging Face): shared.weight [V, d], lm_head.weight [V, d] (tied, optional),
// {encoder,decoder}.block.{i}.layer.0.SelfAttention.{q,k,v}.weight [H*dkv, d], .o.weight
// [d, H*dkv], block 0 ...relative_attention_bias.weight [buckets, H], layer.{j}.layer_norm.weight
// [d], decoder layer.1.EncDecAttention.*, feed-forward in layer.1 (encoder) / layer.2 (decoder):
// dense mlp.{wi [dff, d], wo [d, dff]}, sparse mlp.router.classifier.weight [E, d] and
// mlp.experts.expert_{e}.{wi,wo}.weight; {encoder,decoder}.final_layer_norm.weight [d].
// Mixtral (decoder-only): model.embed_tokens.weight [V, d], model.layers.{i}.input_layernorm.weight
// [d], ...self_attn.{q,k,v,o}_proj.weight ([H*hd, d], [KV*hd, d], [KV*hd, d], [d, H*hd]),
// ...post_attention_layernorm.weight [d], ...block_sparse_moe.gate.weight [E, d],
// ...block_sparse_moe.experts.{e}.{w1,w3} [dff, d] and .w2 [d, dff], model.norm.weight [d],
// lm_head.weight [V, d] (absent with tie_word_embeddings).
// Storage may be F32, BF16 or F16; everything is computed in fp32.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "perfmem/core/safetensors.h"
#include "perfmem/core/tensor.h"
#include "perfmem/sida/config.h"
#include "perfmem/sida/kernels.h"

namespace perfmem::sida {

// The matrices of linear layers are kept packed for linear_packed() (kernels.h), once, at load.
struct AttentionWeights {
  const PackedWeights* q = nullptr;  // [inner, d_model]
  const PackedWeights* k = nullptr;  // [inner, d_model]
  const PackedWeights* v = nullptr;  // [inner, d_model]
  const PackedWeights* o = nullptr;  // [d_model, inner]
};

struct BlockWeights {
  AttentionWeights self_attention;
  const float* self_attention_norm = nullptr;   // F32 [d_model]
  AttentionWeights cross_attention;             // decoder only
  const float* cross_attention_norm = nullptr;  // decoder only
  const float* ffn_norm = nullptr;              // F32 [d_model]
  const PackedWeights* dense_wi = nullptr;      // [d_ff, d_model], dense blocks
  const PackedWeights* dense_wo = nullptr;      // [d_model, d_ff], dense blocks
  const PackedWeights* router = nullptr;        // [E, d_model], sparse blocks
  int64_t moe_layer = -1;                       // index among MoE layers, sparse blocks
};

// A SwiGLU MLP, down(silu(gate x) * up x): Qwen2-MoE's dense layers and shared expert.
struct GatedMlpWeights {
  const PackedWeights* gate = nullptr;  // [ff, d_model]
  const PackedWeights* up = nullptr;    // [ff, d_model]
  const PackedWeights* down = nullptr;  // [d_model, ff]
};

// A decoder-only family's layer (Mixtral, Qwen2-MoE): attention with rotary positions and grouped
// K/V heads, then the MoE feed-forward (or a dense MLP). Norm weights are F32 [d_model].
// A matrix as the checkpoint stores it when that is BF16 or F16 (data null otherwise), kept
// beside its fp32 form: a decoding step reads each resident weight once per token, and the
// 16-bit kernels (kernels.h) give the fp32 kernels' bits on the widened values in half the bytes.
struct HalfMatrix {
  const uint16_t* data = nullptr;
  DType dtype = DType::kF32;  // kBF16 or kF16 when data is set
};

struct DecoderLayerWeights {
  const float* input_norm = nullptr;
  AttentionWeights attention;                 // q [H*hd, d], k and v [KV*hd, d], o [d, H*hd]
  HalfMatrix q_half, k_half, v_half, o_half;  // the same four as stored, when 16-bit
  const float* q_bias = nullptr;              // Qwen2-MoE: F32 [H*hd]
  const float* k_bias = nullptr;              // F32 [KV*hd]
  const float* v_bias = nullptr;              // F32 [KV*hd]
  const float* post_attention_norm = nullptr;
  const PackedWeights* router = nullptr;  // [E, d_model]; null in a dense layer
  int64_t moe_layer = -1;
  GatedMlpWeights dense;                              // Qwen2-MoE's dense layers
  GatedMlpWeights shared_expert;                      // Qwen2-MoE's MoE layers (when configured)
  const PackedWeights* shared_expert_gate = nullptr;  // [1, d_model]
};

// Where one expert's matrices live in the checkpoint (possibly in different shards).
struct ExpertTensors {
  const SafetensorsFile* wi_file = nullptr;
  const TensorInfo* wi = nullptr;  // [d_ff, d_model]; Mixtral: w1, the gate
  const SafetensorsFile* wo_file = nullptr;
  const TensorInfo* wo = nullptr;  // [d_model, d_ff]; Mixtral: w2
  // Gated experts only (Mixtral's w3, the up projection [d_ff, d_model]): stacked under wi in
  // fast memory, so the expert's input matrix is [2 * d_ff, d_model].
  const SafetensorsFile* up_file = nullptr;
  const TensorInfo* up = nullptr;
};

// Name of a tensor of the Hugging Face layout, e.g. expert_tensor_name(cfg, 0, 3, "wi"). For
// Mixtral, "wi", "wo" and "up" name w1, w2 and w3.
std::string expert_tensor_name(const SwitchConfig& config, int64_t moe_layer, int64_t expert,
                               const std::string& matrix);

class ModelWeights {
 public:
  // Reads DIR/config.json and the checkpoint in DIR; validates every tensor the model needs
  // (presence, shape, dtype F32/BF16/F16), loads non-expert weights into fp32 and keeps expert
  // tensors on disk. Errors name the file and the tensor. The config's block and expert counts
  // are checked against the tensors present before anything is sized from them. The tied
  // embedding may be stored under any of Hugging Face's tied names (shared.weight,
  // encoder.embed_tokens.weight, decoder.embed_tokens.weight, lm_head.weight).
  static Result<std::unique_ptr<ModelWeights>> load(const std::string& dir);

  const SwitchConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  const SafetensorsCheckpoint& checkpoint() const { return checkpoint_; }

  const float* shared = nullptr;                 // F32 [V, d_model], also the LM head
  const float* encoder_relative_bias = nullptr;  // F32 [buckets, H]
  const float* decoder_relative_bias = nullptr;  // F32 [buckets, H]
  const float* encoder_final_norm = nullptr;     // F32 [d_model]
  const float* decoder_final_norm = nullptr;     // F32 [d_model]
  std::vector<BlockWeights> encoder, decoder;

  // Decoder-only families (config().is_decoder_only()).
  const float* embed_tokens = nullptr;  // F32 [V, d_model]
  const float* final_norm = nullptr;    // F32 [d_model]
  const float* lm_head = nullptr;       // F32 [V, d_model] (embed_tokens when tied)
  // The untied LM head as stored when that is BF16 or F16: the decoding step streams it.
  HalfMatrix lm_head_half;
  std::vector<DecoderLayerWeights> layers;

  const ExpertTensors& expert(int64_t moe_layer, int64_t expert) const;
  // Bytes resident for non-expert weights (fp32, and the 16-bit copies kept for decoding).
  uint64_t resident_bytes() const { return resident_bytes_; }
  // Bytes of every expert as stored on disk.
  uint64_t expert_disk_bytes() const { return expert_disk_bytes_; }

 private:
  ModelWeights() = default;
  // The family's tensors (the config and checkpoint are read already).
  Status load_switch();
  Status load_decoder_only();  // Mixtral and Qwen2-MoE
  // Validates an expert matrix (shape, float dtype) and counts its bytes on disk.
  Result<SafetensorsCheckpoint::Entry> locate_expert_matrix(const std::string& name, const Shape& shape);
  Result<const float*> load_resident(const std::string& name, const Shape& shape);
  // Loads a [out, in] matrix and keeps only its packed form.
  Result<const PackedWeights*> load_packed(const std::string& name, const Shape& shape);
  // The tensor's stored bytes when it is BF16 or F16 (an empty HalfMatrix otherwise); call after
  // load_resident/load_packed of the same name has checked its shape.
  Result<HalfMatrix> load_half(const std::string& name);

  SwitchConfig config_;
  std::string dir_;
  SafetensorsCheckpoint checkpoint_;
  std::vector<AlignedBuffer> storage_;
  std::deque<PackedWeights> packed_;    // a deque: pointers to its elements stay valid
  std::vector<ExpertTensors> experts_;  // [moe_layer * E + expert]
  uint64_t resident_bytes_ = 0;
  uint64_t expert_disk_bytes_ = 0;
};

// The one-line command that rewrites a pytorch_model.bin checkpoint in DIR as safetensors (the
// loader names it when a folder has only PyTorch's pickle format).
std::string pickle_conversion_command(const std::string& dir);

// Converts `count` elements stored as `dtype` (F32, BF16 or F16) to fp32; src may be at any byte
// offset (safetensors data need not be aligned).
void convert_to_f32(DType dtype, const void* src, float* dst, size_t count);

struct MakeCheckpointOptions {
  DType dtype = DType::kF32;          // F32, BF16 or F16
  uint64_t shard_bytes = 2ull << 30;  // above this, model-0000i-of-0000N.safetensors + index
  uint64_t seed = 1;
  bool write_lm_head = true;  // tied copy of shared.weight, as some exports carry it
  bool show_progress = true;
};

// Writes DIR/config.json and the safetensors file(s) with random weights (deterministic in
// the seed), scaled like Hugging Face's initialisation so activations stay in range.
Status make_checkpoint(const SwitchConfig& config, const MakeCheckpointOptions& options, const std::string& dir);
// Bytes the checkpoint will take on disk (tensor data only).
uint64_t checkpoint_data_bytes(const SwitchConfig& config, const MakeCheckpointOptions& options);

}  // namespace perfmem::sida
