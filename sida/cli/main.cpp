// sida: command-line entry point.
//
//   sida make-checkpoint --preset tiny -o ckpt/
//   sida record-routes ckpt/ --synthetic 50 -o routes.json
//   sida run ckpt/ --synthetic 50 --policy prefetch --routes routes.json --budget 64KiB
//   sida run ckpt/ --tokens "37 5 12 1" --dump-logits logits.f32
//   sida train-predictor ckpt/ --routes routes.safetensors -o predictor/
//   sida serve ckpt/ --budget 25% --port 8080
//   sida bench --help
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <iostream>
#include <sstream>
#include <vector>

#include <unistd.h>

#include "perfmem/core/cli.h"
#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/core/stats.h"
#include "bench_command.h"
#include "count_option.h"
#include "predictor_commands.h"
#include "serve_bench.h"
#include "serve_command.h"
#include "perfmem/sida/checkpoint.h"
#include "perfmem/sida/predictor.h"
#include "perfmem/sida/routes_dataset.h"
#include "perfmem/sida/serve.h"
#include "perfmem/sida/tokenizer.h"

namespace {

using namespace perfmem;
using namespace perfmem::sida;

struct RequestArgs {
  std::string tokens, text, requests_file;
  CLI::Option* tokens_option = nullptr;  // given-ness: an empty --tokens "" is still given
  CLI::Option* text_option = nullptr;
  size_t synthetic = 0;
  uint64_t seed = 7;
  int64_t max_new_tokens = 8;
  bool encoder_only = false;
  bool no_capacity = false;
  bool no_direct_io = false;
  bool bf16_experts = false;
  SamplingOptions sampling;  // greedy unless --temperature > 0
};

// A CLI check for counts of at least 1 whose message states the range in words (CLI11's
// PositiveNumber prints a range up to the largest double, and its conversion saturates).
CLI::Validator at_least_one(const std::string& what) { return whole_number_in(what, 1, INT64_MAX); }

void add_request_options(CLI::App* cmd, RequestArgs& a) {
  a.tokens_option = cmd->add_option("--tokens", a.tokens, "One request: token ids separated by spaces or commas");
  a.text_option = cmd->add_option("--text", a.text,
                                  "One request as text (needs the checkpoint's SentencePiece model: spiece.model, or "
                                  "tokenizer.model for Mixtral)");
  cmd->add_option("--requests", a.requests_file, "File with one request per line (token ids)");
  cmd->add_option("--synthetic", a.synthetic, "N SST2-like requests (10-60 tokens) made up from --seed")
      ->check(whole_number_in("a number of requests", 1, kMaxSyntheticRequests));
  cmd->add_option("--seed", a.seed, "Seed of --synthetic")->capture_default_str();
  cmd->add_option("--max-new-tokens", a.max_new_tokens, "Tokens to generate per request (at most)")
      ->capture_default_str()
      ->check(at_least_one("a number of tokens"));
  cmd->add_flag("--encoder-only", a.encoder_only, "Run the encoder only (classification setting)");
  cmd->add_flag("--no-capacity", a.no_capacity, "Ignore expert capacity (every token reaches its expert)");
  cmd->add_flag("--no-direct-io", a.no_direct_io, "Read experts through the page cache instead of O_DIRECT");
  cmd->add_flag("--bf16-experts", a.bf16_experts,
                "Keep BF16 experts as BF16 in the fast tier (half the bytes per slot; widened as computed)");
  add_sampling_options(cmd, a.sampling);
}

Result<std::vector<Request>> gather_requests(const RequestArgs& a, const ModelWeights& model) {
  const bool has_tokens = a.tokens_option->count() > 0, has_text = a.text_option->count() > 0;
  int given = has_tokens + has_text + !a.requests_file.empty() + (a.synthetic > 0);
  if (given != 1)
    return Status(StatusCode::kInvalidInput, "give exactly one of --tokens, --text, --requests, --synthetic");
  if (has_text) {
    if (a.text.find_first_not_of(" \t\r\n") == std::string::npos)
      return input_error("--text", "text", "some text to tokenize", "an empty string");
    PERFMEM_ASSIGN_OR_RETURN(auto tok, open_checkpoint_tokenizer(model.dir(), model.config()));
    PERFMEM_ASSIGN_OR_RETURN(Request r, tok->encode(a.text));
    return std::vector<Request>{r};
  }
  if (has_tokens) {
    PERFMEM_ASSIGN_OR_RETURN(Request r, parse_tokens(a.tokens, "--tokens"));
    return std::vector<Request>{r};
  }
  if (!a.requests_file.empty()) return read_requests(a.requests_file);
  return synthetic_requests(a.synthetic, 10, 60, model.config().vocab_size, a.seed);
}

// One request per non-blank line of text, tokenized with the checkpoint's spiece.model.
Result<std::vector<Request>> read_text_requests(const std::string& path, const ModelWeights& model) {
  PERFMEM_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  PERFMEM_ASSIGN_OR_RETURN(auto tok, open_checkpoint_tokenizer(model.dir(), model.config()));
  std::vector<Request> out;
  std::istringstream in(text);
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto r = tok->encode(line);
    if (!r.ok()) return r.status().with_context(path + ":" + std::to_string(number));
    out.push_back(std::move(*r));
  }
  if (out.empty()) return input_error(path, "contents", "one request per line", "no requests");
  return out;
}

ServeOptions serve_options(const RequestArgs& a) {
  ServeOptions o;
  o.generate = !a.encoder_only;
  o.max_new_tokens = a.max_new_tokens;
  o.engine.apply_capacity = !a.no_capacity;
  o.sampling = a.sampling;
  return o;
}

Status write_floats(const std::string& path, const std::vector<float>& values) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size() * sizeof(float)));
  f.close();
  if (!f) return io_error(path, "write", errno);
  return Status::Ok();
}

Status parse_dtype_arg(const std::string& text, DType* out) {
  auto d = parse_dtype(text);
  if (!d || (*d != DType::kF32 && *d != DType::kBF16 && *d != DType::kF16))
    return Status(StatusCode::kInvalidInput, "--dtype must be f32, bf16 or f16, not \"" + text + "\"");
  *out = *d;
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sida: serve Mixture-of-Experts models larger than fast memory, with predicted expert prefetching"};
  app.require_subcommand(0, 1);

  // make-checkpoint
  auto* make = app.add_subcommand("make-checkpoint",
                                  "Write a checkpoint with random weights in Hugging Face's layout (Switch "
                                  "Transformers, Mixtral or Qwen2-MoE shapes)");
  std::string preset = "tiny", dtype_text = "f32", out_dir, shard_text = "2GiB";
  uint64_t seed = 1;
  int64_t capacity = -1;
  make->add_option("--preset", preset,
                   "Model shapes: tiny, switch-base-8|16|32|64|128|256, mixtral-tiny, mixtral-bench, qwen2-moe-tiny")
      ->capture_default_str();
  make->add_option("--dtype", dtype_text, "Storage type: f32, bf16 or f16")->capture_default_str();
  make->add_option("--shard-bytes", shard_text, "Largest shard before splitting (e.g. 2GiB)")->capture_default_str();
  make->add_option("--seed", seed, "Random seed")->capture_default_str();
  make->add_option("--expert-capacity", capacity, "Override the preset's expert capacity")
      ->check(at_least_one("a capacity"));  // 0 or less used to be ignored silently
  int64_t layers = -1;
  make->add_option("--layers", layers, "Override a decoder-only preset's number of layers")
      ->check(whole_number_in("a number of layers", 1, 4096));
  make->add_option("-o,--output", out_dir, "Output folder")->required();

  // run
  auto* run = app.add_subcommand("run", "Run requests through the engine and print generated ids and measurements");
  std::string ckpt, policy_text = "lru", budget_text, routes_file, dump_logits, dump_encoder, dump_routes,
                    execution_text = "request";
  size_t window = 64;
  RequestArgs req;
  bool json = false;
  run->add_option("checkpoint", ckpt, "Checkpoint folder (config.json + safetensors)")->required();
  add_request_options(run, req);
  run->add_option("--policy", policy_text, "Residency policy: all-resident, lru, fifo or prefetch")
      ->capture_default_str();
  run->add_option("--budget", budget_text,
                  "Fast-tier bytes for experts: a size (2GiB) or a share (25%); default: all experts");
  std::string predictor_dir;
  auto* predictor_option = run->add_option(
      "--predictor", predictor_dir, "Predictor from `sida train-predictor`: prefetch plans made ahead, per window");
  run->add_option("--routes", routes_file,
                  "Oracle route table from `sida record-routes` (prefetch policy; an upper bound)")
      ->excludes(predictor_option);
  int64_t plan_top_k = 1;
  run->add_option("--plan-top-k", plan_top_k,
                  "Experts the predictor's prefetch plans load per token and layer (its k best)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->needs(predictor_option);
  bool replace_router = false;
  auto* replace_option =
      run->add_flag("--replace-router", replace_router,
                    "SiDA's mode: encoder tokens go to the predicted experts (no router); also runs exact mode and "
                    "reports how far outputs moved")
          ->needs(predictor_option);
  int64_t replace_top_k = 1;
  run->add_option("--replace-top-k", replace_top_k,
                  "Experts per encoder token with --replace-router: 1 (the predicted expert, scaled by its "
                  "probability) or 3 (the three best, scaled by their probabilities times 0.5, 0.25, 0.25)")
      ->capture_default_str()
      ->check(CLI::IsMember(std::vector<int64_t>(std::begin(kReplaceTopKs), std::end(kReplaceTopKs))))
      ->needs(replace_option);
  run->add_option("--execution", execution_text,
                  "Request: one request after another; window: a window's requests advance layer by layer "
                  "together, each expert acquired once per layer (and decoding step) for all of them")
      ->capture_default_str();
  run->add_option("--window", window, "Requests per run-ahead window")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));  // as `sida bench --window`
  run->add_option("--dump-logits", dump_logits,
                  "Write every generation step's logits, little-endian float32 [steps, vocab] per request");
  run->add_option("--dump-encoder", dump_encoder,
                  "Write every request's encoder output, little-endian float32 [tokens, d_model] per request");
  run->add_option("--dump-routes", dump_routes,
                  "Write every router decision (expert per token, per MoE layer and decoding step) as JSON");
  run->add_flag("--json", json, "Print the report as JSON");

  // record-routes
  auto* record = app.add_subcommand("record-routes", "Run requests once and record which experts each one uses");
  std::string record_ckpt, record_out;
  RequestArgs record_req;
  record->add_option("checkpoint", record_ckpt, "Checkpoint folder")->required();
  add_request_options(record, record_req);
  record->add_option("-o,--output", record_out, "Route table file (JSON)")->required();

  // collect-routes
  auto* collect = app.add_subcommand("collect-routes",
                                     "Run the encoder over a corpus and store each token's top router logits "
                                     "per MoE layer (the predictor's teacher), split into training and validation");
  std::string collect_ckpt, corpus_file, text_corpus_file, collect_out;
  CollectOptions collect_opts;
  bool collect_no_capacity = false, collect_no_direct_io = false;
  collect->add_option("checkpoint", collect_ckpt, "Checkpoint folder")->required();
  auto* corpus_option = collect->add_option("--corpus", corpus_file, "Corpus: one request per line, token ids");
  collect
      ->add_option("--text-corpus", text_corpus_file,
                   "Corpus: one request per line, text (tokenized with the checkpoint's SentencePiece model)")
      ->excludes(corpus_option);
  collect->add_option("-o,--output", collect_out, "Routes file (safetensors)")->required();
  collect->add_option("--top", collect_opts.top, "Router logits kept per token and layer (the top T)")
      ->capture_default_str()
      ->check(at_least_one("a number of logits"));
  collect
      ->add_option("--validation-every", collect_opts.validation_every,
                   "Every N-th request goes to the validation split")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            int64_t n = 0;
            return CLI::detail::lexical_cast(v, n) && n >= 2
                       ? ""
                       : "expected a whole number of at least 2, found \"" + v + "\"";
          },
          "INT >= 2"));
  collect
      ->add_option("--window", collect_opts.window,
                   "Requests encoded together layer by layer (each expert read once per window; same logits)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  collect->add_flag("--no-capacity", collect_no_capacity, "Ignore expert capacity");
  collect->add_flag("--no-direct-io", collect_no_direct_io, "Read experts through the page cache");

  // bench
  auto* bench = app.add_subcommand("bench", "Compare residency policies and budgets; engine speed vs PyTorch");
  BenchOptions bench_opts;
  add_bench_options(bench, bench_opts);

  // train-predictor, eval-predictor
  PredictorCommands predictor_commands;
  add_predictor_commands(app, predictor_commands);

  // serve
  ServeCommand serve_command;
  add_serve_command(app, serve_command);
  ServeBenchOptions serve_bench;
  add_serve_bench_command(app, serve_bench);

  auto dispatch = [&]() -> int {
    if (make->parsed()) {
      auto cfg = preset_config(preset);
      if (!cfg) return report_failure(app, cfg.status());
      if (capacity > 0 && cfg->is_decoder_only())
        return report_failure(app, input_error("--expert-capacity", "preset " + preset,
                                               "a Switch preset (Mixtral applies no expert capacity)", preset));
      if (capacity > 0) cfg->expert_capacity = capacity;
      if (layers > 0 && !cfg->is_decoder_only())
        return report_failure(
            app, input_error("--layers", "preset " + preset, "a decoder-only preset (mixtral-*, qwen2-moe-*)", preset));
      if (layers > 0) cfg->num_decoder_layers = cfg->num_sparse_decoder_layers = layers;
      MakeCheckpointOptions opt;
      opt.seed = seed;
      if (auto s = parse_dtype_arg(dtype_text, &opt.dtype); !s.ok()) return report_failure(app, s);
      size_t shard = 0;
      if (!parse_bytes(shard_text, &shard) || shard == 0)
        return report_failure(app, Status(StatusCode::kInvalidInput, "--shard-bytes: not a size: " + shard_text));
      opt.shard_bytes = shard;
      if (auto s = make_checkpoint(*cfg, opt, out_dir); !s.ok()) return report_failure(app, s);
      std::cout << "wrote " << preset << " (" << dtype_text << ", "
                << format_bytes(double(checkpoint_data_bytes(*cfg, opt))) << ") to " << out_dir << "\n";
      return kExitOk;
    }
    if (record->parsed()) {
      auto model = ModelWeights::load(record_ckpt);
      if (!model) return report_failure(app, model.status());
      auto requests = gather_requests(record_req, **model);
      if (!requests) return report_failure(app, requests.status());
      auto table = record_routes(**model, *requests, serve_options(record_req), !record_req.no_direct_io);
      if (!table) return report_failure(app, table.status());
      if (auto s = write_route_table(record_out, *table); !s.ok()) return report_failure(app, s);
      size_t accesses = 0;
      for (const auto& a : table->accesses) accesses += a.size();
      std::cout << "recorded " << accesses << " expert accesses of " << requests->size() << " requests to "
                << record_out << "\n";
      return kExitOk;
    }
    if (run->parsed()) {
      if (req.encoder_only && !dump_logits.empty())
        return report_failure(app, Status(StatusCode::kInvalidInput,
                                          "--dump-logits: --encoder-only generates nothing, so there are no "
                                          "logits; use --dump-encoder for the encoder's output"));
      auto model = ModelWeights::load(ckpt);
      if (!model) return report_failure(app, model.status());
      auto requests = gather_requests(req, **model);
      if (!requests) return report_failure(app, requests.status());
      auto policy = parse_policy(policy_text);
      if (!policy) return report_failure(app, policy.status());
      StoreOptions so;
      so.policy = *policy;
      so.direct_io = !req.no_direct_io;
      so.bf16_fast_tier = req.bf16_experts;
      if (!budget_text.empty()) {
        auto b =
            parse_expert_budget(budget_text, all_expert_slot_bytes((*model)->config(), req.bf16_experts), "--budget");
        if (!b) return report_failure(app, b.status());
        so.budget_bytes = *b;
      }
      std::optional<RouteTable> routes;
      if (!routes_file.empty()) {
        auto t = read_route_table(routes_file);
        if (!t) return report_failure(app, t.status());
        routes = std::move(*t);
      }
      std::unique_ptr<Predictor> predictor;
      if (!predictor_dir.empty()) {
        auto p = Predictor::load(predictor_dir, **model);
        if (!p) return report_failure(app, p.status());
        predictor = std::move(*p);
      }
      auto store = ExpertStore::create(**model, so);
      if (!store) return report_failure(app, store.status());
      if (*policy == Policy::kAllResident) {
        if (auto s = (*store)->load_all(); !s.ok()) return report_failure(app, s);
        (*store)->reset_stats();
      }
      ServeOptions opt = serve_options(req);
      opt.predictor = predictor.get();
      opt.plan_top_k = plan_top_k;
      auto execution = parse_execution(execution_text);
      if (!execution) return report_failure(app, execution.status());
      opt.execution = *execution;
      opt.window = window;
      opt.routes = routes ? &*routes : nullptr;
      opt.keep_outputs = !dump_logits.empty() || !dump_encoder.empty();
      opt.keep_routes = !dump_routes.empty();
      opt.replace_router = replace_router;
      opt.replace_top_k = replace_top_k;
      std::optional<ServeReport> exact;
      if (replace_router) {
        auto e = run_exact_reference(**model, so, *requests, opt);
        if (!e) return report_failure(app, e.status());
        exact = std::move(*e);
        opt.keep_outputs = true;
      }
      auto report = serve(**model, **store, *requests, opt);
      if (!report) return report_failure(app, report.status());
      const Json replacement = exact ? replacement_summary(*exact, *report) : Json();
      if (!dump_logits.empty()) {
        std::vector<float> all;
        for (const auto& r : report->results)
          for (const auto& step : r.logits) all.insert(all.end(), step.begin(), step.end());
        if (auto s = write_floats(dump_logits, all); !s.ok()) return report_failure(app, s);
      }
      if (!dump_encoder.empty()) {
        std::vector<float> all;
        for (const auto& r : report->results) all.insert(all.end(), r.encoder_hidden.begin(), r.encoder_hidden.end());
        if (auto s = write_floats(dump_encoder, all); !s.ok()) return report_failure(app, s);
      }
      if (!dump_routes.empty())
        if (auto s = write_text_file(dump_routes, routes_to_json(**model, *requests, *report).dump() + "\n"); !s.ok())
          return report_failure(app, s);
      if (json) {
        Json j = report_to_json(*report);
        Json outs = Json::array();
        for (const auto& r : report->results) outs.push_back(r.generated);
        j["generated"] = outs;
        if (exact) j["replace_router_vs_exact"] = replacement;
        print_json(j);
      } else {
        std::unique_ptr<Tokenizer> tok;
        if (req.text_option->count() > 0) {
          auto opened = open_checkpoint_tokenizer((*model)->dir(), (*model)->config());
          if (!opened) return report_failure(app, opened.status());
          tok = std::move(*opened);
        }
        if (opt.generate)
          for (const auto& r : report->results) {
            for (size_t i = 0; i < r.generated.size(); ++i) std::cout << (i ? " " : "") << r.generated[i];
            std::cout << "\n";
            if (tok) std::cout << "text: " << tok->decode(r.generated) << "\n";
          }
        std::cerr << report_to_text(*report);
        if (exact) std::cerr << replacement_summary_text(replacement);
      }
      return kExitOk;
    }
    if (collect->parsed()) {
      if (corpus_file.empty() == text_corpus_file.empty())
        return report_failure(app, Status(StatusCode::kInvalidInput, "give exactly one of --corpus, --text-corpus"));
      auto model = ModelWeights::load(collect_ckpt);
      if (!model) return report_failure(app, model.status());
      Result<std::vector<Request>> corpus =
          corpus_file.empty() ? read_text_requests(text_corpus_file, **model) : read_requests(corpus_file);
      if (!corpus) return report_failure(app, corpus.status());
      collect_opts.apply_capacity = !collect_no_capacity;
      collect_opts.direct_io = !collect_no_direct_io;
      collect_opts.show_progress = ::isatty(2);
      auto data = collect_routes(**model, *corpus, collect_opts);
      if (!data) return report_failure(app, data.status());
      if (auto s = write_routes_dataset(collect_out, *data); !s.ok()) return report_failure(app, s);
      int64_t validation = 0;
      for (uint8_t v : data->validation) validation += v;
      std::cout << "collected " << data->num_tokens() << " tokens of " << data->num_requests() << " requests ("
                << data->num_requests() - validation << " training, " << validation << " validation): top " << data->top
                << " of " << data->num_experts << " router logits in " << data->num_moe_layers
                << ((*model)->config().is_decoder_only() ? " MoE layers (the prompts), to "
                                                         : " encoder MoE layers, to ")
                << collect_out << "\n";
      return kExitOk;
    }
    if (bench->parsed()) return run_bench(app, bench_opts);
    if (int rc = run_predictor_command(app, predictor_commands); rc >= 0) return rc;
    if (int rc = run_serve_command(app, serve_command); rc >= 0) return rc;
    if (int rc = run_serve_bench_command(app, serve_bench); rc >= 0) return rc;
    // run_cli calls this only with a parsed subcommand (it answers usage errors itself).
    PERFMEM_CHECK(false, "no subcommand to dispatch");
    return kExitFailure;
  };
  // Sizes are validated before anything is allocated; should memory still run out, or a library
  // throw, the program reports it instead of aborting.
  return run_cli(app, argc, argv, [&]() -> int {
    try {
      return dispatch();
    } catch (const std::bad_alloc&) {
      return report_failure(app, Status(StatusCode::kOutOfMemory, "out of memory"));
    } catch (const std::exception& e) { return report_failure(app, Status(StatusCode::kInternal, e.what())); }
  });
}
