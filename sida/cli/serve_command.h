// `sida serve`: the HTTP server (http_server.h) on a checkpoint, until SIGTERM or SIGINT, which
// drain the requests in flight before the program exits 0.
//
//   sida serve ckpt --budget 25% --port 8080
//   sida serve ckpt --predictor predictor --budget 512MiB --port 0     # prints the port it chose
//   sida serve ckpt --predictor predictor --replace-router --budget 25% # SiDA's mode: no encoder router
#pragma once

#include <string>

#include "perfmem/core/cli.h"

namespace perfmem::sida {

struct ServeCommand {
  CLI::App* command = nullptr;
  std::string checkpoint, predictor, budget, policy, host = "127.0.0.1", max_body = "1MiB";
  int port = 8080;
  size_t window = 8, max_queue = 64, threads = 0;
  int64_t plan_top_k = 1, replace_top_k = 1;
  int64_t max_prompt_tokens = 512, max_tokens_limit = 256, default_max_tokens = 16;
  bool replace_router = false, no_capacity = false, no_direct_io = false, bf16_experts = false;
};

void add_serve_command(CLI::App& app, ServeCommand& command);
// Runs it when parsed; -1 otherwise.
int run_serve_command(const CLI::App& app, ServeCommand& command);

}  // namespace perfmem::sida
