// Training SiDA's predictor (predictor.h) by truncated knowledge distillation, with LibTorch's
// C++ frontend (built only when LibTorch is found: SIDA_HAVE_TORCH). Serving never uses this.
//
//   auto data = perfmem::sida::read_routes_dataset("routes.safetensors");
//   perfmem::sida::TrainOptions opt;    opt.epochs = 20;
//   auto result = perfmem::sida::train_predictor(model, *data, opt, "predictor/");
//
// Loss per token and MoE layer, with T the teacher's top experts as stored in the dataset:
//   L1(softmax(student logits at those T experts), softmax(teacher's T logits))
//   + λ · CE(student logits over all E experts, teacher's top expert)
// averaged over the batch's tokens and layers; AdamW. Requests are shuffled per epoch by a
// generator seeded with `seed`, and the weights start from torch::manual_seed(seed), so a run is
// deterministic for a given seed and thread count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/sida/checkpoint.h"
#include "perfmem/sida/routes_dataset.h"

namespace perfmem::sida {

struct TrainOptions {
  int64_t hidden = 256;        // SiDA's width
  bool bidirectional = false;  // LSTM both ways, hidden / 2 per direction (SiDA's reads left to right)
  int64_t epochs = 10;
  int64_t max_steps = -1;  // stop after this many optimizer steps (< 0: no limit)
  int64_t batch = 64;      // requests per step
  double lr = 1e-3;
  double weight_decay = 0.01;
  double lambda = 0.005;  // weight of the cross-entropy term
  uint64_t seed = 1;
  int threads = 2;  // LibTorch intra-op threads
  bool show_progress = true;
};

struct TrainResult {
  int64_t steps = 0;
  double final_loss = 0;           // mean loss of the last epoch's steps
  double train_hit_top1 = 0;       // over the last epoch's training tokens (as trained)
  double validation_hit_top1 = 0;  // after training, on the validation split (NaN when it is empty)
  double validation_hit_top3 = 0;
  double seconds = 0;
};

// Trains on the dataset's training split and writes dir/config.json + dir/predictor.safetensors
// (creating dir). The dataset must come from this model (sizes are checked).
Result<TrainResult> train_predictor(const ModelWeights& model, const RoutesDataset& data, const TrainOptions& options,
                                    const std::string& dir);

// The LibTorch forward of a saved predictor on requests run as one padded batch, as training runs
// them: per request F32 [L, M, E], the reference the serving implementation is tested against.
Result<std::vector<std::vector<float>>> torch_predictor_forward(const std::string& dir, const ModelWeights& model,
                                                                const std::vector<std::vector<int32_t>>& requests);

}  // namespace perfmem::sida
