// `sida train-predictor` and `sida eval-predictor`: the expert predictor's training (LibTorch)
// and its hit rates beside two baselines.
//
//   sida train-predictor ckpt --routes routes.safetensors -o predictor --epochs 20 --seed 1
//   sida eval-predictor ckpt --predictor predictor --routes routes.safetensors --json
//
// Training runs in its own program, `sida-train-predictor` (installed next to `sida`, built when
// LibTorch is found), which `sida train-predictor` executes with its arguments: LibTorch loads
// the full protobuf library, whose symbols clash with the protobuf copy inside SentencePiece when
// both are in one process, and serving has no use for LibTorch anyway.
#pragma once

#include <string>

#include "perfmem/core/cli.h"
#include "perfmem/sida/expert_store.h"
#include "perfmem/sida/predictor_train.h"
#include "perfmem/sida/serve.h"

namespace perfmem::sida {

struct PredictorCommands {
  CLI::App* train = nullptr;
  CLI::App* eval = nullptr;
  std::string checkpoint, routes, output, predictor;
  TrainOptions train_options;
  int64_t top_k = 3;
  bool json = false;
  bool baselines_only = false;
};

// Adds both subcommands to `app` (train-predictor forwards its arguments to the trainer).
void add_predictor_commands(CLI::App& app, PredictorCommands& commands);
// Runs the parsed one; -1 when neither was parsed.
int run_predictor_command(const CLI::App& app, PredictorCommands& commands);

// `sida run --replace-router`: the same requests in exact mode first (a fresh store of the same
// policy and budget; with prefetch, the same predictor plans the loads and the true router
// decides), outputs kept for the comparison.
Result<ServeReport> run_exact_reference(const ModelWeights& model, StoreOptions store_options,
                                        const std::vector<Request>& requests, ServeOptions options);
// compare_to_exact plus both runs' throughput, as JSON and as text lines.
Json replacement_summary(const ServeReport& exact, const ServeReport& replaced);
std::string replacement_summary_text(const Json& summary);

// The trainer's own options and run (sida-train-predictor).
void add_train_predictor_options(CLI::App* cmd, PredictorCommands& commands);
int run_train_predictor(const CLI::App& app, PredictorCommands& commands);

}  // namespace perfmem::sida
