// `sida serve-bench`: throughput and latency of running `sida serve` instances against offered
// load. For each server (label=URL) and each rate, requests arrive open-loop (Poisson arrivals
// at that rate, each on its own connection, whatever the earlier ones are doing), and the table
// gives the achieved throughput and the p50/p99 latency of whole responses; an SVG plots p99 (and
// p50) latency against offered load, one line per server.
//
//   sida serve ckpt --budget 25% --port 8081 &
//   sida serve ckpt --budget 25% --predictor pred --port 8082 &
//   sida serve-bench --server lru=http://127.0.0.1:8081 --server prefetch=http://127.0.0.1:8082
//     --rates 0.5,1,2,4 --requests 40 --max-tokens 8 --svg latency.svg   (one line)
#pragma once

#include <string>
#include <vector>

#include "perfmem/core/cli.h"

namespace perfmem::sida {

struct ServeBenchOptions {
  CLI::App* command = nullptr;
  std::vector<std::string> servers;  // label=http://host:port
  std::string rates = "1,2,4";       // requests per second, comma-separated
  size_t requests = 40;              // per rate and server
  int64_t max_tokens = 8;
  int64_t vocab = 32128;  // synthetic prompts' ids are below it
  uint64_t seed = 7;
  bool encoder_only = false;
  std::string svg, json;
};

void add_serve_bench_command(CLI::App& app, ServeBenchOptions& options);
// Runs it when parsed; -1 otherwise.
int run_serve_bench_command(const CLI::App& app, ServeBenchOptions& options);

}  // namespace perfmem::sida
