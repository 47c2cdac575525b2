#include "serve_command.h"

#include <unistd.h>

#include <cerrno>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <thread>

#include "count_option.h"
#include "perfmem/core/stats.h"
#include "perfmem/sida/batcher.h"
#include "perfmem/sida/http_server.h"
#include "perfmem/sida/predictor.h"

namespace perfmem::sida {
namespace {

// --budget: a size (2GiB) or a share of all experts' fast-tier bytes (25%; bf16 slots: half of fp32).
Result<uint64_t> budget_bytes(const std::string& text, const SwitchConfig& config, bool bf16_slots) {
  return parse_expert_budget(text, all_expert_slot_bytes(config, bf16_slots), "--budget");
}

// The write end of the pipe the signal handler writes to (-1: none).
volatile sig_atomic_t g_signal_pipe = -1;

void forward_signal(int sig) {
  const int saved = errno;
  const unsigned char byte = static_cast<unsigned char>(sig);
  if (g_signal_pipe >= 0 && ::write(g_signal_pipe, &byte, 1) < 0) {
    // Nothing to do: a full pipe already holds a signal for the stopper.
  }
  errno = saved;
}

}  // namespace

void add_serve_command(CLI::App& app, ServeCommand& c) {
  c.command = app.add_subcommand("serve",
                                 "Serve a checkpoint over HTTP (OpenAI-style /v1/completions, /v1/encode, /health, "
                                 "/metrics) with continuous batching, until SIGTERM");
  CLI::App* cmd = c.command;
  cmd->add_option("checkpoint", c.checkpoint, "Checkpoint folder (config.json + safetensors)")->required();
  auto* predictor_option =
      cmd->add_option("--predictor", c.predictor, "Predictor from `sida train-predictor`: prefetch plans per window");
  cmd->add_option("--budget", c.budget, "Fast-tier bytes for experts: a size (2GiB) or a share (25%)")->required();
  cmd->add_option("--policy", c.policy,
                  "Residency policy: all-resident, lru, fifo or prefetch (default: prefetch with --predictor, "
                  "else lru)");
  cmd->add_option("--host", c.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", c.port, "Port to listen on (0: any free port, printed at start)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--window", c.window, "Most requests per window (see docs/sida.md: latency vs throughput)")
      ->capture_default_str()
      ->check(whole_number_in("a window size", 1, 4096));
  cmd->add_option("--max-queue", c.max_queue, "Most requests waiting for a window; beyond, 503 with Retry-After")
      ->capture_default_str()
      ->check(whole_number_in("a queue length", 1, 1 << 16));
  cmd->add_option("--plan-top-k", c.plan_top_k,
                  "Experts the predictor's prefetch plans load per token and layer (its k best)")
      ->capture_default_str()
      ->check(whole_number_in("a number of experts", 1, 1 << 20));
  auto* replace_option =
      cmd->add_flag("--replace-router", c.replace_router,
                    "SiDA's mode: each request's encoder tokens (a decoder-only model's prompt tokens) go to the "
                    "predicted experts; the router is not run there")
          ->needs(predictor_option);
  cmd->add_option("--replace-top-k", c.replace_top_k,
                  "Experts per encoder token with --replace-router: 1 (the predicted expert, scaled by its "
                  "probability) or 3 (the three best, scaled by their probabilities times 0.5, 0.25, 0.25)")
      ->capture_default_str()
      ->check(CLI::IsMember(std::vector<int64_t>(std::begin(kReplaceTopKs), std::end(kReplaceTopKs))))
      ->needs(replace_option);
  cmd->add_option("--max-body", c.max_body, "Largest request body")->capture_default_str();
  cmd->add_option("--max-prompt-tokens", c.max_prompt_tokens, "Longest prompt, in tokens")
      ->capture_default_str()
      ->check(whole_number_in("a number of tokens", 1, 1 << 20));
  cmd->add_option("--max-tokens-limit", c.max_tokens_limit, "Largest max_tokens a request may ask for")
      ->capture_default_str()
      ->check(whole_number_in("a number of tokens", 1, 1 << 20));
  cmd->add_option("--default-max-tokens", c.default_max_tokens, "max_tokens of a request that gives none")
      ->capture_default_str()
      ->check(whole_number_in("a number of tokens", 1, 1 << 20));
  cmd->add_option("--threads", c.threads, "HTTP handler threads (0: queue + two windows + 16)")
      ->capture_default_str()
      ->check(whole_number_in("a number of threads", 0, 4096));
  cmd->add_flag("--no-capacity", c.no_capacity, "Ignore expert capacity (every token reaches its expert)");
  cmd->add_flag("--no-direct-io", c.no_direct_io, "Read experts through the page cache instead of O_DIRECT");
  cmd->add_flag("--bf16-experts", c.bf16_experts,
                "Keep BF16 experts as BF16 in the fast tier (half the bytes per slot; widened as computed)");
}

int run_serve_command(const CLI::App& app, ServeCommand& c) {
  if (!c.command || !c.command->parsed()) return -1;
  auto model = ModelWeights::load(c.checkpoint);
  if (!model) return report_failure(app, model.status());
  const SwitchConfig& config = (*model)->config();
  std::unique_ptr<Predictor> predictor;
  if (!c.predictor.empty()) {
    auto p = Predictor::load(c.predictor, **model);
    if (!p) return report_failure(app, p.status());
    predictor = std::move(*p);
  }
  auto policy = parse_policy(c.policy.empty() ? (predictor ? "prefetch" : "lru") : c.policy);
  if (!policy) return report_failure(app, policy.status());
  StoreOptions so;
  so.policy = *policy;
  so.direct_io = !c.no_direct_io;
  so.bf16_fast_tier = c.bf16_experts;
  auto budget = budget_bytes(c.budget, config, c.bf16_experts);
  if (!budget) return report_failure(app, budget.status());
  so.budget_bytes = *budget;
  size_t max_body = 0;
  if (!parse_bytes(c.max_body, &max_body) || max_body == 0)
    return report_failure(app, input_error("--max-body", "size", "a positive size like 1MiB", c.max_body));
  std::unique_ptr<Tokenizer> tokenizer;
  if (std::filesystem::exists((*model)->dir() + "/" + tokenizer_file_name(config))) {
    auto t = open_checkpoint_tokenizer((*model)->dir(), config);
    if (!t) return report_failure(app, t.status());
    tokenizer = std::move(*t);
  }

  auto store = ExpertStore::create(**model, so);
  if (!store) return report_failure(app, store.status());
  if (*policy == Policy::kAllResident) {
    if (auto s = (*store)->load_all(); !s.ok()) return report_failure(app, s);
    (*store)->reset_stats();
  }
  BatcherOptions bo;
  bo.window = c.window;
  bo.max_queue = c.max_queue;
  bo.plan_top_k = c.plan_top_k;
  bo.replace_router = c.replace_router;
  bo.replace_top_k = c.replace_top_k;
  bo.engine.apply_capacity = !c.no_capacity;
  auto batcher = Batcher::create(**model, **store, predictor.get(), bo);
  if (!batcher) return report_failure(app, batcher.status());
  HttpServerOptions ho;
  ho.host = c.host;
  ho.port = c.port;
  ho.model_name = std::filesystem::path(c.checkpoint).filename().string();
  if (ho.model_name.empty()) ho.model_name = std::filesystem::path(c.checkpoint).parent_path().filename().string();
  ho.max_body_bytes = max_body;
  ho.max_prompt_tokens = c.max_prompt_tokens;
  ho.max_tokens_limit = c.max_tokens_limit;
  ho.default_max_tokens = std::min(c.default_max_tokens, c.max_tokens_limit);
  ho.threads = c.threads;
  HttpServer server(**model, **batcher, tokenizer.get(), ho);
  auto port = server.bind();
  if (!port) return report_failure(app, port.status());
  std::cout << "sida serve: listening on http://" << c.host << ":" << *port << " (policy " << policy_name(*policy)
            << ", budget " << format_bytes(double((*store)->num_slots() * (*store)->slot_bytes())) << " = "
            << (*store)->num_slots() << " expert slots, window " << c.window
            << (predictor && *policy == Policy::kPrefetch ? ", predictor prefetch" : "")
            << (c.replace_router ? ", router " + replaced_router_description(config, c.replace_top_k) : "")
            << (tokenizer ? ", text via " + tokenizer_file_name(config) : "") << ")" << std::endl;
  // SIGTERM and SIGINT wake a thread that drains the server. Libraries start threads of their
  // own before main() (OpenBLAS), so the signal may arrive on any thread: its handler only writes
  // the signal's number to a pipe, which the stopper reads (0 there: the server stopped anyway).
  int pipe_fds[2] = {-1, -1};
  if (::pipe(pipe_fds) != 0) return report_failure(app, io_error("a pipe for SIGTERM", "create", errno));
  g_signal_pipe = pipe_fds[1];
  struct sigaction action {};
  action.sa_handler = forward_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  std::thread stopper([&] {
    unsigned char sig = 0;
    while (::read(pipe_fds[0], &sig, 1) < 0 && errno == EINTR) {}
    if (sig == 0) return;
    std::cerr << "sida serve: " << (sig == SIGTERM ? "SIGTERM" : "SIGINT")
              << ": finishing the requests in flight, then exiting" << std::endl;
    server.shutdown();
  });
  const Status status = server.run();
  const unsigned char stop = 0;
  if (::write(pipe_fds[1], &stop, 1) != 1) std::perror("sida serve: waking the signal thread");
  stopper.join();
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  g_signal_pipe = -1;
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  if (!status.ok()) return report_failure(app, status);
  const BatcherStats b = (*batcher)->stats();
  std::cerr << "sida serve: stopped after " << b.jobs_done << " requests (" << b.windows << " windows, "
            << b.generated_tokens << " generated tokens)" << std::endl;
  return kExitOk;
}

}  // namespace perfmem::sida
