// acrobat and real DyNet 2.1.2, side by side in one process: per configuration (model x size x
// batch) the systems run one after another on the same data and parameters, and the table
// gives latency per minibatch and acrobat's speedups over DyNet.
//
//   acrobat_vs_dynet --check                       # DyNet's outputs against the conformance checksums
//   acrobat_vs_dynet                               # the full table (markdown); --json FILE as well
//   acrobat_vs_dynet --models treelstm --sizes large --batches 64
//
// Protocol (the workload definitions): data generated before timing; minibatch j holds
// instances [jB, (j+1)B); 2 warm-up minibatches, then 30 (B = 8) or 10 (B = 64) timed ones;
// the median is reported. DyNet's unbatched mode, the slowest, runs max(3, timed / 5) timed
// minibatches (at most `timed`). Latency = wall clock of one minibatch: for DyNet, building
// the computation graph, forward() and copying the concatenated logits out; for acrobat,
// run_minibatch (recording, scheduling, kernels, outputs). Order within a configuration:
// acrobat 1 thread, DyNet none, acrobat 2 threads, DyNet agenda, DyNet depth, acrobat compiled
// ahead of time (1 thread; the bundled model built by acrobat_add_model), so drift in the
// machine's load touches both systems; --rounds N repeats that sequence and pools the timed
// minibatches. Every run's first minibatch is compared with acrobat's (one thread): a
// disagreement beyond float rounding fails the benchmark, so the table only ever compares
// equal computations.
//
// DyNet runs single-threaded (its CPU execution is); OpenBLAS is set to one thread; acrobat
// runs with RuntimeOptions::threads = 1 and 2. The product floor (../product_floor.h): the time
// acrobat's products alone take at the single-core peak measured around the configuration's
// runs (before every round and after the last, the best), and acrobat's
// one-thread latency over it, and half of DyNet's best autobatching time over it (where the
// target of 2x DyNet lies: below 1.00x it would take running faster than the floor).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <exception>
#include <map>

#include "dynet_workloads.h"
#include "compiled_models.h"
#include "perfmem/acrobat/aot.h"
#include "perfmem/acrobat/kernels.h"
#include "perfmem/acrobat/models.h"
#include "perfmem/acrobat/runtime.h"
#include "perfmem/core/cli.h"
#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/core/stats.h"
#include "../product_floor.h"

namespace {

using namespace perfmem;
using namespace perfmem::acrobat;
using namespace perfmem::acrobat::dynet_bench;

double process_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
}

struct Checksums {
  double sum = 0, abs = 0, w = 0;
};

// The workloads' checksums over one minibatch's output vector.
Checksums checksums(const std::vector<float>& y) {
  Checksums c;
  for (size_t i = 0; i < y.size(); ++i) {
    c.sum += y[i];
    c.abs += std::fabs(y[i]);
    c.w += double(y[i]) * double((i % 13) + 1);
  }
  return c;
}

// Agreement to float rounding, relative to the output's overall magnitude (the sum of |y|):
// the batched and unbatched summation orders differ.
bool checksums_agree(const Checksums& a, const Checksums& b) {
  double tol = 1e-5 * std::max(1.0, b.abs);
  return std::fabs(a.sum - b.sum) <= tol && std::fabs(a.abs - b.abs) <= tol && std::fabs(a.w - b.w) <= 13 * tol;
}

// The largest |a_i - b_i|, or infinity when the lengths differ.
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
  return d;
}

// Pooled samples of one system in one configuration.
struct Samples {
  std::vector<double> wall, cpu;
  std::vector<float> first;  // output of minibatch 0
  std::vector<double> product_flops;
  double median_wall() const { return percentile(wall, 50); }
  double median_cpu() const { return percentile(cpu, 50); }
};

class AcrobatSystem {
 public:
  // `aot`: the model compiled ahead of time (the bundled models at their small and large
  // sizes), or nullptr to interpret it.
  static Result<AcrobatSystem> create(const ModelInfo& m, int64_t h, int threads, const std::vector<Instance>& data,
                                      const AotModel* aot = nullptr) {
    AcrobatSystem s;
    RuntimeOptions opt;
    opt.scheduler = Scheduler::kAcrobat;
    opt.threads = threads;
    if (aot) {
      PERFMEM_ASSIGN_OR_RETURN(auto loaded, load_aot_model(*aot, opt));
      s.program_ = std::move(loaded.program);
      s.rt_ = std::move(loaded.runtime);
    } else {
      PERFMEM_ASSIGN_OR_RETURN(s.program_,
                               compile_program(bundled_file_name(m.name), std::string(bundled_source(m.name)),
                                               compile_options_for(Scheduler::kAcrobat, {{m.size_const, h}})));
      PERFMEM_ASSIGN_OR_RETURN(s.rt_, Runtime::create(*s.program_, opt));
    }
    PERFMEM_RETURN_IF_ERROR(s.rt_->set_inputs(data));
    return s;
  }
  Status run(size_t begin, size_t end, std::vector<float>* out, double* wall_ms, double* cpu_ms,
             double* product_flops = nullptr) {
    RunStats st;
    PERFMEM_RETURN_IF_ERROR(rt_->run_minibatch(begin, end, out, &st));
    *wall_ms = st.total_ms;
    *cpu_ms = st.cpu_ms;
    if (product_flops) *product_flops = static_cast<double>(st.product_flops);
    return Status::Ok();
  }

 private:
  std::unique_ptr<Program> program_;
  std::unique_ptr<Runtime> rt_;
};

// Runs the protocol for one system: warm-up minibatches, then `timed` ones, appended to *s.
// `minibatch(j, out, wall, cpu)` runs minibatch j.
template <typename F>
Status collect(int warmup, int timed, Samples* s, F&& minibatch) {
  for (int j = 0; j < warmup + timed; ++j) {
    std::vector<float> out;
    double wall = 0, cpu = 0;
    PERFMEM_RETURN_IF_ERROR(minibatch(j, &out, &wall, &cpu));
    if (j == 0 && s->first.empty()) s->first = std::move(out);
    if (j >= warmup) {
      s->wall.push_back(wall);
      s->cpu.push_back(cpu);
    }
  }
  return Status::Ok();
}

Status run_dynet(DynetWorkload& w, const std::vector<Instance>& data, size_t begin, size_t end, DynetMode mode,
                 std::vector<float>* out, double* wall_ms, double* cpu_ms) {
  double cpu0 = process_cpu_ms();
  Stopwatch timer;
  try {
    w.run(data, begin, end, mode, out);
  } catch (const std::exception& e) {
    return Status(StatusCode::kInternal, std::string("DyNet (") + dynet_mode_name(mode) + "): " + e.what());
  }
  *wall_ms = timer.elapsed_ms();
  *cpu_ms = process_cpu_ms() - cpu0;
  return Status::Ok();
}

constexpr DynetMode kModes[] = {DynetMode::kNone, DynetMode::kAgenda, DynetMode::kDepth};

// The conformance checksums of the workload definitions (minibatch 0, B = 8). TreeLSTM has
// none there: its DyNet outputs are checked against acrobat's on the same parameters.
struct Reference {
  const char* model;
  int64_t h;
  Checksums c;
};
const Reference kReference[] = {
    {"birnn", 8, {-2.68121494, 12.8227418, -14.0870722}},     {"mvrnn", 8, {6.7218367, 45.0225474, 65.6806538}},
    {"nestedrnn", 8, {-2.00376862, 6.55159932, -14.2167163}}, {"birnn", 32, {-1.33709084, 20.6304678, -14.402337}},
    {"mvrnn", 32, {-6.18997035, 90.3760598, -35.5287907}},    {"nestedrnn", 32, {-4.66128114, 7.30927376, -35.6832983}},
};

// --check: DyNet's three modes and acrobat at h = 8 and 32, B = 8, minibatch 0.
int check(const CLI::App& app) {
  int failures = 0;
  std::printf("| model | h | system | sum | abs | w | expected | agrees |\n|---|---|---|---|---|---|---|---|\n");
  for (const char* name : {"treelstm", "birnn", "mvrnn", "nestedrnn"}) {
    const ModelInfo* m = find_model(name);
    for (int64_t h : {8, 32}) {
      auto data = m->make_data(8);
      auto acr = AcrobatSystem::create(*m, h, 1, data);
      if (!acr) return report_failure(app, acr.status());
      std::vector<float> ref_out;
      double wall = 0, cpu = 0;
      if (Status s = acr->run(0, 8, &ref_out, &wall, &cpu); !s.ok()) return report_failure(app, s);
      Checksums expected = checksums(ref_out);
      const char* source = "acrobat";
      for (const auto& r : kReference)
        if (r.model == std::string(name) && r.h == h) {
          expected = r.c;
          source = "workloads";
        }
      auto report = [&](const std::string& system, const Checksums& c) {
        bool ok = checksums_agree(c, expected);
        failures += ok ? 0 : 1;
        std::printf("| %s | %lld | %s | %.8g | %.8g | %.8g | %s | %s |\n", name, static_cast<long long>(h),
                    system.c_str(), c.sum, c.abs, c.w, source, ok ? "yes" : "NO");
      };
      report("acrobat", checksums(ref_out));
      auto w = DynetWorkload::create(name, h);
      for (DynetMode mode : kModes) {
        std::vector<float> out;
        if (Status s = run_dynet(*w, data, 0, 8, mode, &out, &wall, &cpu); !s.ok()) return report_failure(app, s);
        report(std::string("dynet ") + dynet_mode_name(mode), checksums(out));
      }
    }
  }
  if (failures > 0)
    return report_failure(app, Status(StatusCode::kInternal, std::to_string(failures) + " checksum(s) disagree"));
  std::printf("all checksums agree\n");
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"acrobat_vs_dynet: acrobat and real DyNet 2.1.2 on the shared workloads, side by side"};
  std::vector<std::string> models = {"treelstm", "mvrnn", "nestedrnn", "birnn"}, sizes = {"small", "large"};
  std::vector<int> batches = {8, 64};
  std::string json_path;
  int timed8 = 30, timed64 = 10, warmup = 2, rounds = 1;
  bool check_only = false;
  app.add_option("--models", models, "Comma-separated models (treelstm, mvrnn, nestedrnn, birnn)")
      ->delimiter(',')
      ->check(CLI::IsMember({"treelstm", "mvrnn", "nestedrnn", "birnn"}));
  app.add_option("--batches", batches, "Comma-separated batch sizes, each 1 to 4096")
      ->delimiter(',')
      ->check(CLI::Range(1, 4096));
  app.add_option("--sizes", sizes, "Comma-separated model sizes (small, large)")
      ->delimiter(',')
      ->check(CLI::IsMember({"small", "large"}));
  app.add_option("--timed-small-batch", timed8, "Timed minibatches at B <= 8, 1 to 1000")->check(CLI::Range(1, 1000));
  app.add_option("--timed-large-batch", timed64, "Timed minibatches at B > 8, 1 to 1000")->check(CLI::Range(1, 1000));
  app.add_option("--rounds", rounds, "Times the sequence of systems repeats per configuration, 1 to 20")
      ->check(CLI::Range(1, 20));
  app.add_option("--json", json_path, "Also write the results as JSON to this file");
  app.add_flag("--check", check_only, "Only compare DyNet's outputs with the conformance checksums (h = 8, 32)");
  return run_cli(app, argc, argv, [&]() -> int {
    kernels::set_blas_threads(1);
    initialize_dynet();
    if (check_only) return check(app);
    Json all = Json::array();
    const CorePeak peak = measure_single_core_peak();
    std::printf(
        "Single-core peak at the start: %.1f GFLOP/s (%s, 1024^3, best of 5); each row's floor uses the best peak "
        "measured around its own runs (last column)\n\n",
        peak.gflops, peak.kernel.c_str());
    std::printf(
        "| model | h | B | acrobat 1 thread ms | acrobat 2 threads ms | acrobat AOT ms | DyNet none ms | DyNet agenda "
        "ms "
        "| DyNet depth ms | 1 thread vs best autobatch | 1 thread vs none | 2 threads vs best autobatch | AOT vs best "
        "autobatch | 1 thread vs best autobatch, CPU time | AOT vs best autobatch, CPU time | product floor ms | 1 "
        "thread / floor | half the best autobatch / floor | peak GFLOP/s |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const auto& name : models) {
      const ModelInfo* m = find_model(name);  // --models accepts bundled names only
      for (const auto& size : sizes) {
        int64_t h = size == "large" ? m->large : m->small;
        auto dynet = DynetWorkload::create(name, h);
        for (int batch : batches) {
          int timed = batch <= 8 ? timed8 : timed64;
          int timed_none = std::min(timed, std::max(3, timed / 5));  // within the generated data
          auto data = m->make_data(static_cast<size_t>(batch) * (warmup + timed));
          size_t b = static_cast<size_t>(batch);
          Samples a1, a2, aot;
          std::map<DynetMode, Samples> dy;
          const AotModel* compiled = nullptr;
          for (const AotModel* c : compiled_bundled_models())
            if (c->name == name + "_" + size) compiled = c;
          if (!compiled) return report_failure(app, input_error("--sizes", size, "small or large (compiled models)"));
          auto acrobat_pass = [&](int threads, Samples* s, const AotModel* aot_model = nullptr) -> Status {
            PERFMEM_ASSIGN_OR_RETURN(auto sys, AcrobatSystem::create(*m, h, threads, data, aot_model));
            return collect(warmup, timed, s, [&](int j, std::vector<float>* out, double* wall, double* cpu) {
              double flops = 0;
              PERFMEM_RETURN_IF_ERROR(sys.run(j * b, (j + 1) * b, out, wall, cpu, &flops));
              if (j >= warmup) s->product_flops.push_back(flops);
              return Status::Ok();
            });
          };
          auto dynet_pass = [&](DynetMode mode) -> Status {
            return collect(warmup, mode == DynetMode::kNone ? timed_none : timed, &dy[mode],
                           [&](int j, std::vector<float>* out, double* wall, double* cpu) {
                             return run_dynet(*dynet, data, j * b, (j + 1) * b, mode, out, wall, cpu);
                           });
          };
          PeakAround peak_here;
          for (int round = 0; round < rounds; ++round) {
            peak_here.measure();
            Status s = acrobat_pass(1, &a1);
            if (s.ok()) s = dynet_pass(DynetMode::kNone);
            if (s.ok()) s = acrobat_pass(2, &a2);
            if (s.ok()) s = dynet_pass(DynetMode::kAgenda);
            if (s.ok()) s = dynet_pass(DynetMode::kDepth);
            if (s.ok()) s = acrobat_pass(1, &aot, compiled);
            if (!s.ok()) return report_failure(app, s);
          }
          peak_here.measure();
          // Equal computations only: every system's minibatch 0 against acrobat's (1 thread).
          double scale = 0;
          for (float v : a1.first) scale = std::max(scale, double(std::fabs(v)));
          double tol = 1e-3 * std::max(1.0, scale);
          std::map<std::string, double> diffs = {{"acrobat_2_threads", max_abs_diff(a2.first, a1.first)},
                                                 {"acrobat_aot", max_abs_diff(aot.first, a1.first)}};
          for (DynetMode mode : kModes)
            diffs[std::string("dynet_") + dynet_mode_name(mode)] = max_abs_diff(dy[mode].first, a1.first);
          for (const auto& [system, d] : diffs)
            if (!(d <= tol))
              return report_failure(app, Status(StatusCode::kInternal,
                                                name + " h=" + std::to_string(h) + " B=" + std::to_string(batch) +
                                                    ": " + system + " differs from acrobat by " + std::to_string(d) +
                                                    " (tolerance " + std::to_string(tol) + ")"));
          double t1 = a1.median_wall(), t2 = a2.median_wall(), t_aot = aot.median_wall();
          double none = dy[DynetMode::kNone].median_wall(), agenda = dy[DynetMode::kAgenda].median_wall(),
                 depth = dy[DynetMode::kDepth].median_wall();
          double best = std::min(agenda, depth);
          // The same single-thread ratio on CPU time, which a busy machine disturbs less.
          const double dynet_best_cpu =
              std::min(dy[DynetMode::kAgenda].median_cpu(), dy[DynetMode::kDepth].median_cpu());
          double best_cpu = dynet_best_cpu / a1.median_cpu(), best_cpu_aot = dynet_best_cpu / aot.median_cpu();
          const double floor_ms = product_floor_ms(percentile(a1.product_flops, 50), peak_here.best());
          std::printf(
              "| %s | %lld | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2fx | %.2fx | %.2fx | %.2fx | %.2fx | "
              "%.2fx | "
              "%.2f | %.2fx | %.2fx | %.1f |\n",
              name.c_str(), static_cast<long long>(h), batch, t1, t2, t_aot, none, agenda, depth, best / t1, none / t1,
              best / t2, best / t_aot, best_cpu, best_cpu_aot, floor_ms, floor_ms > 0 ? t1 / floor_ms : 0.0,
              floor_ms > 0 ? best / 2 / floor_ms : 0.0, peak_here.best().gflops);
          std::fflush(stdout);
          Json row = {{"model", name}, {"h", h}, {"batch", batch}, {"max_abs_diff_vs_acrobat", diffs}};
          auto cell = [](const Samples& s) {
            return Json{{"latency_ms", s.median_wall()}, {"cpu_ms", s.median_cpu()}, {"minibatches", s.wall.size()}};
          };
          row["acrobat_1_thread"] = cell(a1);
          row["acrobat_2_threads"] = cell(a2);
          row["acrobat_aot"] = cell(aot);
          for (DynetMode mode : kModes) row[std::string("dynet_") + dynet_mode_name(mode)] = cell(dy[mode]);
          row["speedup_1_thread_vs_best_autobatch"] = best / t1;
          row["speedup_1_thread_vs_none"] = none / t1;
          row["speedup_2_threads_vs_best_autobatch"] = best / t2;
          row["speedup_1_thread_vs_best_autobatch_cpu_time"] = best_cpu;
          row["speedup_aot_vs_best_autobatch"] = best / t_aot;
          row["speedup_aot_vs_best_autobatch_cpu_time"] = best_cpu_aot;
          row["product_floor_ms"] = floor_ms;
          // Where 2x DyNet's best autobatching lies against the floor: below 1.00x, under it.
          row["half_best_autobatch_over_floor"] = floor_ms > 0 ? best / 2 / floor_ms : 0.0;
          row["single_core_peak_gflops"] = peak_here.best().gflops;
          row["single_core_peak_gflops_at_start"] = peak.gflops;
          all.push_back(row);
        }
      }
    }
    if (!json_path.empty()) {
      Status s = write_text_file(json_path, all.dump(2));
      if (!s.ok()) return report_failure(app, s);
    }
    return kExitOk;
  });
}
