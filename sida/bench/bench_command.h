// `sida bench`: residency policies and budgets side by side on one checkpoint, and the engine's
// speed against Hugging Face transformers on PyTorch.
//
//   sida bench --preset switch-base-8 --dir /data/sida-base8 --requests 64
//   sida bench --preset switch-base-128 --dir /data/sida-base128 --budgets 2GiB,4GiB,8GiB
//              --policies lru,prefetch --requests 16          (one line)
//
// The checkpoint is made in --dir when absent (after checking free disk space). Requests are
// synthetic SST2-like (10-60 tokens), batch 1; the encoder-only and the generation settings are
// measured separately. Each table row prints the ratio to lru at the same budget, run request
// by request (the on-demand offloading baseline). Prefetch rows plan with the predictor given by
// --predictor (its time inside the throughput); the same rows with the oracle route table (a
// recorded pass, not counted) follow as a labelled upper bound. `--executions request,window` adds rows where
// a window's requests advance layer by layer together.
#pragma once

#include <string>
#include <vector>

#include "perfmem/core/cli.h"

namespace perfmem::sida {

struct BenchOptions {
  std::string preset = "switch-base-8";
  std::string dtype = "f32";
  std::string dir;  // checkpoint folder (made when absent)
  size_t requests = 64;
  int64_t max_new_tokens = 4;
  // Comma-separated on the command line (CLI11 splits them).
  std::vector<std::string> modes = {"encode", "generate"};
  std::vector<std::string> policies = {"all-resident", "lru", "prefetch"};
  std::vector<std::string> budgets = {"100%", "50%", "25%"};  // percentages of expert bytes, or sizes (2GiB)
  std::vector<std::string> executions = {"request"};          // request and/or window
  size_t window = 64;                                         // requests per run-ahead window
  bool hf = true;                                             // also time Hugging Face on PyTorch
  std::string python;                                         // the venv's python (default: PERFMEM_VENV)
  std::string json_out;                                       // write all results as JSON
  std::string predictor;   // SiDA's predictor for this checkpoint: prefetch rows plan with it
  int64_t plan_top_k = 1;  // experts a predicted plan loads per token and layer
  bool no_direct_io = false;
  // BF16 experts kept as BF16 in the fast tier (StoreOptions::bf16_fast_tier): budget shares are
  // then of the bf16 bytes, and the checkpoint must store its experts as BF16 (--dtype bf16).
  bool bf16_experts = false;
};

void add_bench_options(CLI::App* cmd, BenchOptions& options);
int run_bench(const CLI::App& app, const BenchOptions& options);

}  // namespace perfmem::sida
