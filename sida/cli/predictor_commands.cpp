#include "predictor_commands.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

#include "perfmem/core/json.h"
#include "perfmem/sida/predictor.h"

namespace perfmem::sida {

void add_train_predictor_options(CLI::App* cmd, PredictorCommands& c) {
  c.train = cmd;
  TrainOptions& o = c.train_options;
  c.train->add_option("checkpoint", c.checkpoint, "Checkpoint folder (its embedding is the predictor's input)")
      ->required();
  c.train->add_option("--routes", c.routes, "Routes dataset from `sida collect-routes`")->required();
  c.train->add_option("-o,--output", c.output, "Predictor folder (config.json + predictor.safetensors)")->required();
  c.train->add_option("--hidden", o.hidden, "Width of the network")->capture_default_str()->check(CLI::Range(1, 65536));
  c.train->add_flag("--bidirectional", o.bidirectional,
                    "LSTM layers read both ways, half the width each (SiDA's reads left to right)");
  c.train->add_option("--epochs", o.epochs, "Passes over the training split")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  c.train->add_option("--steps", o.max_steps, "Stop after this many optimizer steps (default: all epochs)");
  c.train->add_option("--batch", o.batch, "Requests per step")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  c.train->add_option("--lr", o.lr, "AdamW learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  c.train->add_option("--weight-decay", o.weight_decay, "AdamW weight decay")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  c.train->add_option("--lambda", o.lambda, "Weight of the cross-entropy term")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  c.train->add_option("--seed", o.seed, "Seed of the initial weights and the shuffling")->capture_default_str();
  c.train->add_option("--threads", o.threads, "LibTorch threads")->capture_default_str()->check(CLI::Range(1, 256));
}

void add_predictor_commands(CLI::App& app, PredictorCommands& c) {
  c.train = app.add_subcommand("train-predictor",
                               "Train the expert predictor on `sida collect-routes` output by truncated knowledge "
                               "distillation (LibTorch; `sida train-predictor --help` lists its options)");
  c.train->prefix_command();  // every argument goes to the trainer, --help included
  c.train->set_help_flag();

  c.eval = app.add_subcommand("eval-predictor",
                              "Top-1 and top-k hit rates of the predictor per MoE layer on the validation split, "
                              "beside the most frequent expert and a token-id table");
  c.eval->add_option("checkpoint", c.checkpoint, "Checkpoint folder")->required();
  auto* pred = c.eval->add_option("--predictor", c.predictor, "Predictor folder from `sida train-predictor`");
  c.eval->add_flag("--baselines-only", c.baselines_only, "Only the two baselines (no predictor)")->excludes(pred);
  c.eval->add_option("--routes", c.routes, "Routes dataset from `sida collect-routes`")->required();
  c.eval->add_option("-k,--top-k", c.top_k, "k of the top-k hit rate")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 16));
  c.eval->add_flag("--json", c.json, "Print the results as JSON");
}

int run_train_predictor(const CLI::App& app, PredictorCommands& c) {
  {
#ifdef SIDA_HAVE_TORCH
    auto model = ModelWeights::load(c.checkpoint);
    if (!model) return report_failure(app, model.status());
    auto data = read_routes_dataset(c.routes);
    if (!data) return report_failure(app, data.status());
    c.train_options.show_progress = ::isatty(2);
    auto result = train_predictor(**model, *data, c.train_options, c.output);
    if (!result) return report_failure(app, result.status());
    std::printf("trained %lld steps in %.1f s: loss %.4f, training hit %.1f%%", static_cast<long long>(result->steps),
                result->seconds, result->final_loss, 100 * result->train_hit_top1);
    if (!std::isnan(result->validation_hit_top1))
      std::printf(", validation hit top-1 %.1f%% top-3 %.1f%%", 100 * result->validation_hit_top1,
                  100 * result->validation_hit_top3);
    std::printf("; wrote %s\n", c.output.c_str());
    return kExitOk;
#else
    (void)c;
    return report_failure(app, Status(StatusCode::kUnsupported, "train-predictor: built without LibTorch"));
#endif
  }
}

Result<ServeReport> run_exact_reference(const ModelWeights& model, StoreOptions store_options,
                                        const std::vector<Request>& requests, ServeOptions options) {
  PERFMEM_ASSIGN_OR_RETURN(auto store, ExpertStore::create(model, store_options));
  if (store_options.policy == Policy::kAllResident) {
    PERFMEM_RETURN_IF_ERROR(store->load_all());
    store->reset_stats();
  }
  // SiDA's exact mode: the same predictor plans the prefetches, the true router decides.
  options.replace_router = false;
  if (store_options.policy != Policy::kPrefetch) options.predictor = nullptr;
  options.routes = nullptr;
  options.keep_outputs = true;
  return serve(model, *store, requests, options);
}

Json replacement_summary(const ServeReport& exact, const ServeReport& replaced) {
  Json j = compare_to_exact(exact, replaced);
  j["exact_requests_per_s"] = exact.requests_per_s();
  j["replaced_requests_per_s"] = replaced.requests_per_s();
  return j;
}

std::string replacement_summary_text(const Json& j) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "router replaced by the predictor, against exact mode on the same requests:\n"
                "  encoder states relative error %.3g; logits relative error %.3g (%llu steps with equal earlier ids)\n"
                "  generated ids agreeing %.1f%% of %llu; sequences identical %llu of %llu\n"
                "  throughput %.2f requests/s (exact mode, same policy, budget and predictor: %.2f)\n",
                j["encoder_relative_error"].get<double>(), j["logits_relative_error"].get<double>(),
                static_cast<unsigned long long>(j["logit_steps_compared"].get<uint64_t>()),
                100 * j["generated_id_agreement"].get<double>(),
                static_cast<unsigned long long>(j["generated_ids"].get<uint64_t>()),
                static_cast<unsigned long long>(j["sequences_identical"].get<uint64_t>()),
                static_cast<unsigned long long>(j["requests"].get<uint64_t>()),
                j["replaced_requests_per_s"].get<double>(), j["exact_requests_per_s"].get<double>());
  return buf;
}

namespace {
// Replaces this process with sida-train-predictor from the folder of the running program.
int exec_trainer(const CLI::App& app, const std::vector<std::string>& args) {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  const std::filesystem::path trainer = self.parent_path() / "sida-train-predictor";
  if (ec || !std::filesystem::exists(trainer))
    return report_failure(
        app, Status(StatusCode::kUnsupported, "train-predictor: " + trainer.string() +
                                                  " is missing: this build has no LibTorch (install libtorch-dev, "
                                                  "listed in scripts/deps/sida.apt, and configure again)"));
  std::vector<std::string> owned = {trainer.string()};
  owned.insert(owned.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : owned) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  ::execv(argv[0], argv.data());
  return report_failure(app, Status(StatusCode::kIoError,
                                    "train-predictor: cannot run " + trainer.string() + ": " + std::strerror(errno)));
}
}  // namespace

int run_predictor_command(const CLI::App& app, PredictorCommands& c) {
  if (c.train->parsed()) return exec_trainer(app, c.train->remaining());
  if (c.eval->parsed()) {
    if (c.predictor.empty() && !c.baselines_only)
      return report_failure(
          app, Status(StatusCode::kInvalidInput, "eval-predictor: give --predictor DIR, or --baselines-only"));
    auto model = ModelWeights::load(c.checkpoint);
    if (!model) return report_failure(app, model.status());
    auto data = read_routes_dataset(c.routes);
    if (!data) return report_failure(app, data.status());
    std::unique_ptr<Predictor> predictor;
    if (!c.predictor.empty()) {
      auto p = Predictor::load(c.predictor, **model);
      if (!p) return report_failure(app, p.status());
      predictor = std::move(*p);
    }
    auto eval = evaluate_predictor(predictor.get(), *data, c.top_k);
    if (!eval) return report_failure(app, eval.status());
    if (c.json)
      print_json(predictor_eval_to_json(*eval));
    else
      std::cout << predictor_eval_to_text(*eval);
    return kExitOk;
  }
  return -1;
}

}  // namespace perfmem::sida
