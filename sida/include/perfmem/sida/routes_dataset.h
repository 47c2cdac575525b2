// Router-logit datasets, the teacher signal for SiDA's predictor: the model runs over a corpus and,
// per token, the dataset keeps what the predictor reads (the token id: its input is that row of
// the input embedding) and the top-T router logits of every predicted MoE layer: Switch's encoder
// MoE layers (SiDA predicts the encoder's layers; the decoder's tokens are not known before
// generation), or every MoE layer of a decoder-only model over the prompt's tokens (its pass
// before the first generated token). Requests are split into training and validation sets
// deterministically.
//
//   auto corpus = perfmem::sida::read_requests("corpus.txt");    // token-id lines
//   perfmem::sida::CollectOptions opt;                            // top 30, every 10th to validation
//   auto data = perfmem::sida::collect_routes(model, *corpus, opt);
//   PERFMEM_RETURN_IF_ERROR(perfmem::sida::write_routes_dataset("routes.safetensors", *data));
//   auto back = perfmem::sida::read_routes_dataset("routes.safetensors");   // validated
//
// File (safetensors): tokens I32 [N], offsets I64 [R + 1] (request r is tokens[offsets[r],
// offsets[r + 1])), validation U8 [R] (1: validation split), top_logits F32 [N, M, T] (descending
// per token and layer), top_experts I32 [N, M, T]; metadata format "sida-routes-1", num_experts,
// num_moe_layers (M), top (T), vocab_size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/sida/checkpoint.h"

namespace perfmem::sida {

struct RoutesDataset {
  int64_t num_moe_layers = 0;  // M: the predicted MoE layers (predicted_moe_layers)
  int64_t num_experts = 0;
  int64_t top = 0;  // T = min(requested top, num_experts)
  int64_t vocab_size = 0;
  std::vector<int32_t> tokens;       // [N]
  std::vector<int64_t> offsets;      // [R + 1], offsets[0] = 0, non-decreasing, offsets[R] = N
  std::vector<uint8_t> validation;   // [R]
  std::vector<float> top_logits;     // F32 [N, M, T]
  std::vector<int32_t> top_experts;  // I32 [N, M, T]

  int64_t num_requests() const { return int64_t(validation.size()); }
  int64_t num_tokens() const { return int64_t(tokens.size()); }
};

struct CollectOptions {
  int64_t top = 30;               // T, as in SiDA's truncated distillation
  int64_t validation_every = 10;  // request r is validation when r % validation_every == validation_every - 1
  bool apply_capacity = true;     // route as served (Hugging Face's expert capacity)
  bool direct_io = true;
  bool show_progress = true;
  // Requests encoded together layer by layer (Engine::encode_window): each expert is read once
  // per window instead of once per request, and every request still computes as at batch 1, so
  // the logits are the same bits for any window.
  int64_t window = 64;
};

// Runs the encoder (decoder-only: the prompt pass) over every request (batch 1 arithmetic, as
// served) and keeps the top-T router logits.
Result<RoutesDataset> collect_routes(const ModelWeights& model, const std::vector<std::vector<int32_t>>& corpus,
                                     const CollectOptions& options);
Status write_routes_dataset(const std::string& path, const RoutesDataset& data);
// Validates dtypes, shapes, offsets, ids and the metadata; errors name the file and tensor.
Result<RoutesDataset> read_routes_dataset(const std::string& path);

}  // namespace perfmem::sida
