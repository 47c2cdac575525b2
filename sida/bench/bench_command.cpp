#include "bench_command.h"

#include <sys/statvfs.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/core/process.h"
#include "perfmem/core/stats.h"
#include "count_option.h"
#include "perfmem/sida/predictor.h"
#include "perfmem/sida/serve.h"

namespace perfmem::sida {
namespace {

// Bytes per second two threads read from a buffer far larger than the caches (best of 3).
double measure_read_bandwidth() {
  const size_t n = size_t(256) << 20;  // 1 GiB of floats
  std::vector<float> data(n, 1.0f);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    float sums[2] = {0, 0};
    // 16 independent partial sums per thread, so the compiler can vectorise the reduction.
    auto sum_range = [&](size_t begin, size_t end) {
      float acc[16] = {};
      for (size_t i = begin; i + 16 <= end; i += 16)
        for (int j = 0; j < 16; ++j) acc[j] += data[i + size_t(j)];
      float s = 0;
      for (float a : acc) s += a;
      return s;
    };
    Stopwatch sw;
    std::thread helper([&] { sums[1] = sum_range(n / 2, n); });
    sums[0] = sum_range(0, n / 2);
    helper.join();
    const double t = sw.elapsed_s();
    if (!(sums[0] + sums[1] > 0)) return 0;  // uses the sums, so the reads cannot be dropped
    best = std::max(best, double(n * sizeof(float)) / t);
  }
  return best;
}

Status ensure_checkpoint(const BenchOptions& o, const SwitchConfig& config, DType dtype) {
  if (std::filesystem::exists(o.dir + "/config.json")) return Status::Ok();
  MakeCheckpointOptions mo;
  mo.dtype = dtype;
  const uint64_t need = checkpoint_data_bytes(config, mo);
  std::error_code ec;
  std::filesystem::create_directories(o.dir, ec);
  if (ec) return io_error(o.dir, "create directory", ec.value());
  struct statvfs fs {};
  if (::statvfs(o.dir.c_str(), &fs) != 0) return io_error(o.dir, "statvfs", errno);
  const uint64_t free_bytes = uint64_t(fs.f_bavail) * fs.f_frsize;
  const uint64_t margin = uint64_t(2) << 30;
  if (free_bytes < need + margin)
    return Status(StatusCode::kOutOfMemory, "not enough free disk space in " + o.dir + " for the " + o.preset +
                                                " checkpoint: need " + format_bytes(double(need + margin)) +
                                                " (with a 2 GiB margin), have " + format_bytes(double(free_bytes)));
  std::cerr << "sida bench: writing " << o.preset << " (" << format_bytes(double(need)) << ") to " << o.dir << "\n";
  return make_checkpoint(config, mo, o.dir);
}

struct Row {
  std::string mode, budget_label;
  ServeReport report;
};

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

void add_bench_options(CLI::App* cmd, BenchOptions& o) {
  cmd->add_option("--preset", o.preset, "Model shapes (make-checkpoint presets)")->capture_default_str();
  cmd->add_option("--dtype", o.dtype, "Storage type when the checkpoint is made")->capture_default_str();
  cmd->add_option("--dir", o.dir, "Checkpoint folder; made there when absent")->required();
  cmd->add_option("--requests", o.requests, "Synthetic SST2-like requests per run")
      ->capture_default_str()
      ->check(whole_number_in("a number of requests", 1, kMaxSyntheticRequests));
  cmd->add_option("--max-new-tokens", o.max_new_tokens, "Tokens generated per request (generate mode)")
      ->capture_default_str()
      ->check(whole_number_in("a number of tokens", 1, INT64_MAX));
  cmd->add_option("--modes", o.modes, "Encode and/or generate (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--policies", o.policies, "Policies to compare (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--budgets", o.budgets, "Fast-tier budgets: percentages of expert bytes or sizes (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--executions", o.executions,
                  "Request (one by one) and/or window (a window's requests layer by layer together; comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--window", o.window, "Requests per run-ahead window")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--python", o.python, "Python with transformers for the PyTorch baseline");
  cmd->add_flag("!--no-hf", o.hf, "Skip the Hugging Face / PyTorch baseline");
  cmd->add_option("--json", o.json_out, "Also write every measurement to this JSON file");
  cmd->add_flag("--no-direct-io", o.no_direct_io, "Read experts through the page cache");
  cmd->add_flag("--bf16-experts", o.bf16_experts,
                "Keep BF16 experts as BF16 in the fast tier (budget shares are then of the bf16 bytes)");
  cmd->add_option("--predictor", o.predictor,
                  "Predictor of this checkpoint (sida train-predictor): prefetch rows plan with it; rows with the "
                  "oracle route table follow as an upper bound");
  cmd->add_option("--plan-top-k", o.plan_top_k,
                  "Experts the predictor's prefetch plans load per token and layer (its k best)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
}

int run_bench(const CLI::App& app, const BenchOptions& o) {
  auto config = preset_config(o.preset);
  if (!config) return report_failure(app, config.status());
  auto dtype = parse_dtype(o.dtype);
  if (!dtype) return report_failure(app, Status(StatusCode::kInvalidInput, "--dtype: unknown " + o.dtype));
  if (auto s = ensure_checkpoint(o, *config, *dtype); !s.ok()) return report_failure(app, s);
  auto model = ModelWeights::load(o.dir);
  if (!model) return report_failure(app, model.status());
  const SwitchConfig& c = (*model)->config();
  const uint64_t all_experts = all_expert_slot_bytes(c, o.bf16_experts);
  std::unique_ptr<Predictor> predictor;
  if (!o.predictor.empty()) {
    auto p = Predictor::load(o.predictor, **model);
    if (!p) return report_failure(app, p.status());
    predictor = std::move(*p);
  }
  auto requests = synthetic_requests(o.requests, 10, 60, c.vocab_size, 7);
  uint64_t input_tokens = 0;
  for (const auto& r : requests) input_tokens += r.size();

  Json all = Json::object();
  all["preset"] = o.preset;
  all["requests"] = requests.size();
  all["input_tokens"] = input_tokens;
  all["expert_bytes_fast_tier"] = all_experts;
  all["fast_tier"] = o.bf16_experts ? "bf16" : "fp32";
  std::vector<Row> rows;
  std::cout << "## sida bench: " << o.preset << ", " << requests.size() << " requests (" << input_tokens
            << " tokens, 10-60 each), batch 1, windows of " << o.window << ", experts "
            << format_bytes(double(all_experts)) << " in " << (o.bf16_experts ? "bf16" : "fp32") << " slots\n\n";
  for (const std::string& mode : o.modes) {
    if (mode != "encode" && mode != "generate")
      return report_failure(app, Status(StatusCode::kInvalidInput, "--modes: unknown mode " + mode));
    ServeOptions opt;
    opt.generate = mode == "generate";
    opt.max_new_tokens = o.max_new_tokens;
    Stopwatch rec;
    auto routes = record_routes(**model, requests, opt, !o.no_direct_io);
    if (!routes) return report_failure(app, routes.status());
    std::cerr << "sida bench: recorded " << mode << " routes in " << fmt("%.1f", rec.elapsed_s()) << " s\n";
    opt.routes = &*routes;
    for (const std::string& budget_text : o.budgets) {
      auto budget = parse_expert_budget(budget_text, all_experts, "--budgets");
      if (!budget) return report_failure(app, budget.status());
      for (const std::string& policy_text : o.policies) {
        auto policy = parse_policy(policy_text);
        if (!policy) return report_failure(app, policy.status());
        if (*policy == Policy::kAllResident && *budget < all_experts) continue;  // cannot hold them
        // Prefetch plans: from the predictor (when given), then from the oracle table (upper bound).
        std::vector<const Predictor*> sources = {nullptr};
        if (*policy == Policy::kPrefetch && predictor) sources.insert(sources.begin(), predictor.get());
        for (const Predictor* source : sources)
          for (const std::string& execution_text : o.executions) {
            auto execution = parse_execution(execution_text);
            if (!execution) return report_failure(app, execution.status());
            opt.execution = *execution;
            opt.predictor = source;
            opt.plan_top_k = o.plan_top_k;
            opt.routes = source ? nullptr : &*routes;
            opt.window = o.window;
            StoreOptions so;
            so.policy = *policy;
            so.budget_bytes = *budget;
            so.direct_io = !o.no_direct_io;
            so.bf16_fast_tier = o.bf16_experts;
            auto store = ExpertStore::create(**model, so);
            if (!store) return report_failure(app, store.status());
            if (*policy == Policy::kAllResident) {
              if (auto s = (*store)->load_all(); !s.ok()) return report_failure(app, s);
              (*store)->reset_stats();
            }
            auto report = serve(**model, **store, requests, opt);
            if (!report) return report_failure(app, report.status());
            std::cerr << "sida bench: " << mode << " " << budget_text << " " << policy_text << " (" << execution_text
                      << ", plans: " << report->plans << "): " << fmt("%.2f", report->requests_per_s())
                      << " requests/s\n";
            rows.push_back({mode, budget_text, std::move(*report)});
          }
      }
    }
  }

  // Policy table, with each row's throughput relative to lru (request by request) at the same budget.
  // "predictor s": the run-ahead thread's time in the predictor (part of the wall time the throughput
  // is measured over); "vs oracle": a predictor row's throughput relative to the same run planned
  // from the oracle table; "vs all-resident": relative to the run with every expert in memory (no
  // reads at all) in the same mode and execution, at whatever budget it ran: the ceiling of every
  // policy at every budget, so all-resident / lru bounds what any policy can gain over lru.
  std::cout << "| mode | budget | policy | execution | requests/s | tokens/s | p50 ms | p99 ms | hit rate | read from "
               "disk | I/O wait s | predictor s | vs lru | vs oracle | vs all-resident |\n"
            << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  Json table = Json::array();
  for (const Row& r : rows) {
    double lru = 0, oracle = 0, resident = 0;
    for (const Row& other : rows) {
      if (other.mode == r.mode && other.report.policy == "all-resident" && other.report.execution == r.report.execution)
        resident = other.report.requests_per_s();
      if (other.mode != r.mode || other.budget_label != r.budget_label) continue;
      if (other.report.policy == "lru" && other.report.execution == "request") lru = other.report.requests_per_s();
      if (r.report.plans == "predictor" && other.report.plans == "oracle" &&
          other.report.execution == r.report.execution)
        oracle = other.report.requests_per_s();
    }
    const ServeReport& s = r.report;
    const double tokens = r.mode == "encode" ? s.input_tokens_per_s() : s.generated_tokens_per_s();
    std::cout << "| " << r.mode << " | " << r.budget_label << " (" << format_bytes(double(s.budget_bytes)) << ") | "
              << s.policy
              << (s.plans == "oracle"      ? " (oracle table, upper bound)"
                  : s.plans == "predictor" ? " (predictor)"
                                           : "")
              << " | " << s.execution << " | " << fmt("%.2f", s.requests_per_s()) << " | " << fmt("%.1f", tokens)
              << " | " << fmt("%.1f", s.latency_ms.median) << " | " << fmt("%.1f", s.latency_ms.p99) << " | "
              << fmt("%.1f%%", 100 * s.store.hit_rate()) << " | " << format_bytes(double(s.store.bytes_read)) << " | "
              << fmt("%.2f", s.store.io_wait_s) << " | "
              << (s.plans == "predictor" ? fmt("%.2f", s.predictor_s) : std::string("-")) << " | "
              << (lru > 0 ? fmt("%.2fx", s.requests_per_s() / lru) : std::string("-")) << " | "
              << (oracle > 0 ? fmt("%.2fx", s.requests_per_s() / oracle) : std::string("-")) << " | "
              << (resident > 0 ? fmt("%.2fx", s.requests_per_s() / resident) : std::string("-")) << " |\n";
    Json j = report_to_json(s);
    j["mode"] = r.mode;
    j["budget"] = r.budget_label;
    if (resident > 0) j["vs_all_resident"] = s.requests_per_s() / resident;
    table.push_back(j);
  }
  all["runs"] = table;
  std::cout << "\n(tokens/s: input tokens in encode mode, generated tokens in generate mode; peak RSS of the whole run "
            << format_bytes(double(peak_rss_bytes())) << ")\n\n";

  // The ceiling: no policy, however well it predicts, outruns the same execution with nothing to read.
  Json ceilings = Json::array();
  for (const Row& r : rows) {
    if (r.report.policy != "lru" || r.report.execution != "request") continue;
    std::string line;
    Json c = {{"mode", r.mode}, {"budget", r.budget_label}};
    for (const Row& resident : rows) {
      if (resident.mode != r.mode || resident.report.policy != "all-resident") continue;
      const double ratio = resident.report.requests_per_s() / r.report.requests_per_s();
      line += (line.empty() ? "" : ", ") + fmt("%.2fx", ratio) +
              (resident.report.execution == "window" ? " running windows" : " running requests one by one");
      c["all_resident_" + resident.report.execution + "_vs_lru"] = ratio;
    }
    if (line.empty()) continue;
    std::cout << "Ceiling over lru request by request, " << r.mode << " at " << r.budget_label << ": " << line
              << " (every expert resident, nothing read: no policy at this budget gains more)\n";
    ceilings.push_back(c);
  }
  if (!ceilings.empty()) {
    all["ceilings"] = ceilings;
    std::cout << "\n";
  }

  // Engine speed: our all-resident encoder against Hugging Face on PyTorch, same inputs.
  const Row* ours = nullptr;
  for (const Row& r : rows)
    if (r.mode == "encode" && r.report.policy == "all-resident" && r.report.execution == "request") ours = &r;
  if (ours) {
    const double bandwidth = measure_read_bandwidth();
    all["memory_read_bandwidth_gb_per_s"] = bandwidth / 1e9;
    const EngineStats& e = ours->report.engine;
    const double expert_bw = e.expert_compute_s > 0 ? double(e.expert_bytes) / e.expert_compute_s : 0;
    std::cout << "| engine (encoder, all experts resident) | tokens/s | requests/s | p50 ms |\n|---|---|---|---|\n"
              << "| perfmem sida (2 threads) | " << fmt("%.1f", ours->report.input_tokens_per_s()) << " | "
              << fmt("%.2f", ours->report.requests_per_s()) << " | " << fmt("%.1f", ours->report.latency_ms.median)
              << " |\n";
    all["expert_matrix_bandwidth_gb_per_s"] = expert_bw / 1e9;
    if (o.hf) {
      std::string python = o.python.empty() ? default_python_venv() + "/bin/python" : o.python;
      auto script = installed_data_path("sida/hf_speed.py");
      if (!script.ok()) return report_failure(app, script.status());
      std::string req_file = o.dir + "/bench-requests.txt";
      std::ostringstream text;
      for (const auto& r : requests) {
        for (size_t i = 0; i < r.size(); ++i) text << (i ? " " : "") << r[i];
        text << "\n";
      }
      if (auto s = write_text_file(req_file, text.str()); !s.ok()) return report_failure(app, s);
      std::cerr << "sida bench: timing Hugging Face transformers on PyTorch...\n";
      auto run = run_process({python, *script, o.dir, req_file, "2"}, StderrMode::kDiscard);
      if (!run.ok()) return report_failure(app, run.status());
      const ProcessResult& result = *run;
      std::string last_line = result.output;
      while (!last_line.empty() && last_line.back() == '\n') last_line.pop_back();
      if (auto nl = last_line.rfind('\n'); nl != std::string::npos) last_line = last_line.substr(nl + 1);
      auto hf = parse_json(last_line, "hf_speed.py output");
      if (result.exit_code == 0 && hf.ok()) {
        const double hf_tps = (*hf)["input_tokens_per_s"].get<double>();
        std::cout << "| Hugging Face transformers (PyTorch " << (*hf)["torch"].get<std::string>() << ", 2 threads) | "
                  << fmt("%.1f", hf_tps) << " | " << fmt("%.2f", (*hf)["requests_per_s"].get<double>()) << " | "
                  << fmt("%.1f", (*hf)["latency_p50_ms"].get<double>()) << " |\n"
                  << "\nsida / PyTorch: " << fmt("%.2fx", ours->report.input_tokens_per_s() / hf_tps) << "\n";
        all["hf"] = *hf;
      } else {
        std::cout << "\n(Hugging Face baseline not run: "
                  << (result.exit_code == 3 ? "transformers not installed" : result.output) << ")\n";
      }
    }
    std::cout << "\nexpert matrix work streams " << fmt("%.2f", expert_bw / 1e9)
              << " GB/s of weights; memory read bandwidth " << fmt("%.2f", bandwidth / 1e9) << " GB/s (2 threads) -> "
              << fmt("%.0f%%", 100 * expert_bw / bandwidth) << " of it\n";
  }
  if (!o.json_out.empty())
    if (auto s = write_text_file(o.json_out, all.dump(2) + "\n"); !s.ok()) return report_failure(app, s);
  return kExitOk;
}

}  // namespace perfmem::sida
