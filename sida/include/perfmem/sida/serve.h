// Serving a stream of requests through the engine and the expert store, with measurements, and
// the route tables that drive the prefetch policy.
//
//   auto requests = perfmem::sida::synthetic_requests(200, 10, 60, vocab, /*seed=*/7);
//   perfmem::sida::ServeOptions opt;   opt.generate = false;          // encoder forward only
//   auto routes = perfmem::sida::record_routes(model, requests, opt); // oracle: a first pass
//   opt.routes = &*routes;                                            // prefetch plans from it
//   auto report = perfmem::sida::serve(model, *store, requests, opt);
//   perfmem::print_json(perfmem::sida::report_to_json(*report));
//
// Pipeline: a run-ahead thread takes the next window of requests (64 by default), turns the
// route table into the expert accesses they will make, and pushes that plan onto a bounded
// queue (16 plans); the inference thread pops a plan, hands it to the store (whose I/O thread
// loads ahead in that order, evicting what is needed furthest away), then runs the window's
// requests: one by one (Execution::kRequest), or layer by layer together (Execution::kWindow:
// attention and routing stay per request, but an expert is acquired once per layer, and per
// decoding step, for every request of the window that needs it, so a window reads each expert it
// uses at most once per step; all requests of a window complete together). Routes only move data: the true router
// decides (exact mode), so outputs are identical whatever the policy, budget and execution.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "perfmem/core/json.h"
#include "perfmem/core/stats.h"
#include "perfmem/sida/engine.h"
#include "perfmem/sida/expert_store.h"

namespace perfmem::sida {

using Request = std::vector<int32_t>;

// Deterministic SST2-like requests: lengths uniform in [min_len, max_len], ids in [3, vocab),
// each ending with eos (id 1) as a tokenizer would.
std::vector<Request> synthetic_requests(size_t count, int64_t min_len, int64_t max_len, int64_t vocab, uint64_t seed);
// One request per line, token ids separated by spaces or commas; errors name the line.
Result<std::vector<Request>> read_requests(const std::string& path);
// "12 5 7" or "12,5,7".
Result<Request> parse_tokens(const std::string& text, const std::string& what);

enum class Execution { kRequest, kWindow };
Result<Execution> parse_execution(const std::string& name);
const char* execution_name(Execution execution);

struct ServeOptions {
  bool generate = true;  // false: encoder forward only (classification setting)
  Execution execution = Execution::kRequest;
  int64_t max_new_tokens = 8;
  // Greedy by default. Sampled: request r (its index in the run) samples with seed sampling.seed
  // + r, from its own generator (see sampling.h), so its ids do not depend on the policy, budget,
  // execution or window.
  SamplingOptions sampling;
  size_t window = 64;                         // requests per run-ahead plan
  size_t queue_capacity = 16;                 // plans the run-ahead thread may be ahead by
  const struct RouteTable* routes = nullptr;  // the prefetch policy's oracle table (upper bound)
  // The prefetch policy's plans from SiDA's predictor instead (run ahead over each window, in the
  // run-ahead thread, its time inside the measured wall time); excludes `routes`.
  const class Predictor* predictor = nullptr;
  // Experts the predictor's plans load per token and layer: its plan_top_k best (1: the top-1).
  // More loads, fewer on-demand misses where the top-1 is often wrong.
  int64_t plan_top_k = 1;
  // SiDA's own mode (needs `predictor`; request or window execution, the same bits): encoder
  // tokens go to the predicted experts, scaled by the predicted probability; the encoder's
  // routers are not run and expert capacity is not applied. Outputs move away from exact mode
  // (compare_to_exact measures it).
  bool replace_router = false;
  // Experts each encoder token goes to when replacing: 1 (SiDA's SST2 setting) or 3, mixed with
  // degrading factors 0.5, 0.25, 0.25 (MRPC, MultiRC); see replacement_choice. The plans then load
  // at least these. A decoder-only model's prompt tokens go to its num_experts_per_tok predicted
  // experts, weighted by its router's rule (predicted_top_k_choice); only 1 is accepted there.
  int64_t replace_top_k = 1;
  bool keep_outputs = false;  // keep logits (generate) and encoder states
  bool keep_routes = false;   // keep every router decision (RequestResult::routes)
  EngineOptions engine;
};

// Which experts each request acquires, in order (ids moe_layer * E + e), for one mode.
struct RouteTable {
  bool generate = true;
  int64_t max_new_tokens = 0;
  SamplingOptions sampling;  // the decoding the table was recorded with (generated tokens route too)
  int64_t num_moe_layers = 0, num_experts = 0;
  std::vector<Request> requests;
  std::vector<std::vector<int32_t>> accesses;
};

// The store of a recording pass (an LRU store of every expert, capped at 4 GiB of slots).
Result<std::unique_ptr<ExpertStore>> make_recording_store(const ModelWeights& model, bool direct_io);

// The oracle: runs every request once (all experts available) and records its accesses.
Result<RouteTable> record_routes(const ModelWeights& model, const std::vector<Request>& requests,
                                 const ServeOptions& options, bool direct_io = true);
Status write_route_table(const std::string& path, const RouteTable& table);
Result<RouteTable> read_route_table(const std::string& path);

// The router's decisions at one MoE layer for one request (at one decoding step in the decoder).
struct RouterChoices {
  int64_t moe_layer = 0;
  int64_t decode_step = -1;        // -1 in the encoder
  std::vector<int32_t> positions;  // the routed tokens' positions (the step, in the decoder)
  std::vector<int32_t> expert;     // [tokens, experts_per_token]: the experts of each routed token
  int64_t experts_per_token = 1;   // Switch's router: 1 (its argmax); a replacement's k; Mixtral's k
  std::vector<uint8_t> dropped;    // 1 when over capacity (the token skipped its expert)
};

struct RequestResult {
  std::vector<int32_t> generated;          // empty in encoder-only mode
  std::vector<std::vector<float>> logits;  // per step, when keep_outputs
  std::vector<float> encoder_hidden;       // F32 [len, d], when keep_outputs
  std::vector<RouterChoices> routes;       // in execution order, when keep_routes
  double latency_ms = 0;
};

struct ServeReport {
  std::string policy;
  std::string execution;
  std::string plans;  // where prefetch plans came from: "predictor", "oracle" or "none"
  bool replace_router = false;
  std::string router = "exact";  // how tokens were routed, in words (the report's "router")
  double predictor_s = 0;        // run-ahead thread time in the predictor (already inside wall_s)
  uint64_t planned_accesses = 0;
  uint64_t budget_bytes = 0;
  size_t slots = 0;
  size_t requests = 0;
  uint64_t input_tokens = 0, generated_tokens = 0;
  double wall_s = 0;
  Summary latency_ms;
  size_t peak_rss_bytes = 0;
  StoreStats store;
  EngineStats engine;
  std::vector<RequestResult> results;
  double requests_per_s() const { return wall_s > 0 ? double(requests) / wall_s : 0; }
  double input_tokens_per_s() const { return wall_s > 0 ? double(input_tokens) / wall_s : 0; }
  double generated_tokens_per_s() const { return wall_s > 0 ? double(generated_tokens) / wall_s : 0; }
};

// The options request `index` of a run generates with (ServeOptions::sampling's seed + index).
GenerateOptions request_generate_options(const ServeOptions& options, size_t index);

Result<ServeReport> serve(const ModelWeights& model, ExpertStore& store, const std::vector<Request>& requests,
                          const ServeOptions& options);
Json report_to_json(const ServeReport& report);
// Every request's router decisions (keep_routes), as JSON: per request its tokens and a list of
// {moe_layer, block, decoder, step, positions, expert, dropped}.
Json routes_to_json(const ModelWeights& model, const std::vector<Request>& requests, const ServeReport& report);
std::string report_to_text(const ServeReport& report);

}  // namespace perfmem::sida
