// Latency per minibatch of every bundled model x size x batch size under the four schedulers,
// with ratios to our DyNet-method baseline (the same kernels). Real DyNet runs side by side
// with acrobat in bench/dynet/acrobat_vs_dynet, not here: DyNet figures measured on another
// machine give meaningless ratios.
//
//   acrobat_bench                         # the full table (markdown) + --json FILE
//   acrobat_bench --models treelstm --batches 64 --sizes small
//   acrobat_bench --ablation              # each optimisation off in turn (B = 64, small)
//
// Protocol (the workload definitions): the data stream is generated before timing;
// minibatch j holds instances [jB, (j+1)B); 2 warm-up minibatches, then 30 (B = 8) or 10
// (B = 64) timed ones; the median is reported. OpenBLAS runs single-threaded; acrobat runs
// once with one thread (like DyNet's CPU execution) and once with two (RuntimeOptions::threads),
// the baselines with one. The product floor (product_floor.h) puts acrobat's one-thread CPU time
// beside the time its products alone would take at the single-core peak measured around that
// configuration's runs (before and after them, the best).
// acrobat also runs compiled ahead of time (the bundled models compiled at build time,
// `acrobat run --aot`): same recording, so the same kernels; record + schedule shrink.
#include <cmath>
#include <cstdio>
#include <limits>
#include <fstream>
#include <map>

#include "compiled_models.h"
#include "perfmem/acrobat/aot.h"
#include "perfmem/acrobat/kernels.h"
#include "perfmem/acrobat/models.h"
#include "perfmem/acrobat/runtime.h"
#include "perfmem/core/cli.h"
#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/core/progress.h"
#include "perfmem/core/stats.h"
#include "perfmem/core/svg.h"
#include "product_floor.h"

namespace {

using namespace perfmem;
using namespace perfmem::acrobat;

struct Cell {
  double latency = 0, cpu = 0, record = 0, schedule = 0, kernels = 0, ops = 0, tensor_ops = 0, launches = 0,
         product_flops = 0, value_rounds = 0;
};

// Runs the program compiled with `copt` (or the compiled model `aot`, nullptr to interpret)
// under `opt`; `first_out` (optional) receives the first timed minibatch's outputs.
Result<Cell> measure_with(const ModelInfo& m, int batch, const std::vector<Instance>& data, int warmup, int timed,
                          const CompileOptions& copt, const RuntimeOptions& opt, const AotModel* aot,
                          std::vector<float>* first_out = nullptr) {
  std::unique_ptr<Program> program;
  std::unique_ptr<Runtime> rt;
  if (aot) {
    PERFMEM_ASSIGN_OR_RETURN(auto loaded, load_aot_model(*aot, opt));
    program = std::move(loaded.program);
    rt = std::move(loaded.runtime);
  } else {
    PERFMEM_ASSIGN_OR_RETURN(program,
                             compile_program(bundled_file_name(m.name), std::string(bundled_source(m.name)), copt));
    PERFMEM_ASSIGN_OR_RETURN(rt, Runtime::create(*program, opt));
  }
  PERFMEM_RETURN_IF_ERROR(rt->set_inputs(data));
  RunStatsSeries series;
  for (int j = 0; j < warmup + timed; ++j) {
    std::vector<float> out;
    RunStats st;
    PERFMEM_RETURN_IF_ERROR(
        rt->run_minibatch(static_cast<size_t>(j) * batch, static_cast<size_t>(j + 1) * batch, &out, &st));
    if (j >= warmup) series.add(st);
    if (j == warmup && first_out) *first_out = std::move(out);
  }
  const RunStatsMedians med = series.medians();
  Cell c;
  c.latency = med.latency.median;
  c.cpu = med.cpu_ms;
  c.record = med.record_ms;
  c.schedule = med.schedule_ms;
  c.kernels = med.kernel_ms;
  c.ops = med.ops_recorded;
  c.tensor_ops = med.tensor_ops;
  c.launches = med.kernels_launched;
  c.product_flops = med.product_flops;
  c.value_rounds = med.value_rounds;
  return c;
}

// `aot`: the model compiled ahead of time, or nullptr to interpret it.
Result<Cell> measure(const ModelInfo& m, int64_t h, int batch, Scheduler s, const std::vector<Instance>& data,
                     int warmup, int timed, int threads = 1, const AotModel* aot = nullptr) {
  RuntimeOptions opt;
  opt.scheduler = s;
  opt.threads = threads;
  return measure_with(m, batch, data, warmup, timed, compile_options_for(s, {{m.size_const, h}}), opt, aot);
}

const AotModel* compiled_model(const std::string& name, const std::string& size) {
  for (const AotModel* c : compiled_bundled_models())
    if (c->name == name + "_" + size) return c;
  return nullptr;
}

// The ablation table: acrobat (one thread) with every optimisation on, compiled ahead of time,
// then with one optimisation off at a time. The analyses can be turned off only in the
// interpreter (generated code exists for the full analysis configuration), so "AOT off" is
// the reference of the rows below it. Each row also reports the largest difference of its
// first timed minibatch's outputs from the all-on run's, relative to 1 + |value|. The
// ablations themselves are the library's (acrobat_ablations, runtime.h).
double max_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::fabs(double(a[i]) - double(b[i])) / (1 + std::fabs(double(b[i]))));
  return worst;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// Prints the ablation table for every model x size x batch; rows are appended to `json`.
Status run_ablation(const std::vector<std::string>& models, const std::vector<std::string>& sizes,
                    const std::vector<std::string>& batches, int warmup, int timed8, int timed64, Json* json) {
  std::printf(
      "| model | h | B | configuration | CPU ms | CPU / reference | reference | record + schedule ms | kernel ms | "
      "launches | recorded nodes | max output difference |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& name : models) {
    const ModelInfo* m = find_model(name);
    if (!m) return input_error("--models", name, "treelstm, birnn, mvrnn, nestedrnn, drnn, berxit or stackrnn");
    for (const auto& size : sizes) {
      const int64_t h = size == "large" ? m->large : m->small;
      const AotModel* aot = compiled_model(name, size);
      if (!aot) return input_error("--sizes", size, "small or large (compiled models)");
      for (const auto& bs : batches) {
        const int batch = std::atoi(bs.c_str());
        if (batch < 1) return input_error("--batches", bs, "positive integers");
        const int timed = batch <= 8 ? timed8 : timed64;
        auto data = m->make_data(static_cast<size_t>(batch) * (warmup + timed));
        const CompileOptions all_on = compile_options_for(Scheduler::kAcrobat, {{m->size_const, h}});
        RuntimeOptions opt;  // acrobat, one thread, every run-time optimisation on
        std::vector<float> out_aot, out_interpreted;
        PERFMEM_ASSIGN_OR_RETURN(Cell on, measure_with(*m, batch, data, warmup, timed, all_on, opt, aot, &out_aot));
        PERFMEM_ASSIGN_OR_RETURN(Cell interpreted,
                                 measure_with(*m, batch, data, warmup, timed, all_on, opt, nullptr, &out_interpreted));
        auto row = [&](const char* label, const Cell& c, const Cell& ref, const char* ref_label,
                       const std::vector<float>& out) {
          const double diff = max_relative_difference(out, out_aot);
          std::printf("| %s | %lld | %d | %s | %.2f | %.2fx | %s | %.2f | %.2f | %.0f | %.0f | %.1e |\n", name.c_str(),
                      static_cast<long long>(h), batch, label, c.cpu, c.cpu / ref.cpu, ref_label, c.record + c.schedule,
                      c.kernels, c.launches, c.ops, diff);
          std::fflush(stdout);
          Json entry = {{"model", name},
                        {"h", h},
                        {"batch", batch},
                        {"configuration", label},
                        {"reference", ref_label},
                        {"cpu_ms", c.cpu},
                        {"cpu_ratio_to_reference", c.cpu / ref.cpu},
                        {"latency_ms", c.latency},
                        {"record_ms", c.record},
                        {"schedule_ms", c.schedule},
                        {"kernel_ms", c.kernels},
                        {"kernels_launched", c.launches},
                        {"ops_recorded", c.ops},
                        {"max_output_difference", diff}};
          json->push_back(entry);
        };
        row("all on (AOT)", on, on, "itself", out_aot);
        row("AOT off (interpreted, all else on)", interpreted, on, "all on (AOT)", out_interpreted);
        for (const Ablation& a : acrobat_ablations()) {
          CompileOptions copt = all_on;
          RuntimeOptions ropt = opt;
          a.turn_off(copt, ropt);
          std::vector<float> out;
          PERFMEM_ASSIGN_OR_RETURN(Cell c, measure_with(*m, batch, data, warmup, timed, copt, ropt, nullptr, &out));
          row((std::string(a.name) + " off").c_str(), c, interpreted, "interpreted", out);
        }
      }
    }
  }
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"acrobat_bench: latency of the bundled models under the four schedulers"};
  std::string models = "treelstm,birnn,mvrnn,nestedrnn,drnn,berxit,stackrnn", batches = "8,64", sizes = "small,large",
              json_path, svg_path;
  int timed8 = 30, timed64 = 10, warmup = 2;
  app.add_option("--models", models, "comma-separated bundled models");
  app.add_option("--batches", batches, "comma-separated batch sizes");
  app.add_option("--sizes", sizes, "small,large");
  app.add_option("--timed-small-batch", timed8, "timed minibatches at B <= 8 (default 30)");
  app.add_option("--timed-large-batch", timed64, "timed minibatches at B > 8 (default 10)");
  app.add_option("--json", json_path, "also write the results as JSON to this file");
  app.add_option("--svg", svg_path, "also plot each scheduler's speedup over unbatched execution");
  bool ablation = false;
  app.add_flag("--ablation", ablation,
               "the ablation table instead: acrobat with each optimisation off in turn (default models "
               "treelstm,mvrnn,birnn,drnn,stackrnn, size small, B 64)");
  return run_cli(app, argc, argv, [&]() -> int {
    kernels::set_blas_threads(1);
    if (ablation) {
      // Defaults of the ablation unless given: a representative set at B = 64.
      if (app.count("--models") == 0) models = "treelstm,mvrnn,birnn,drnn,stackrnn";
      if (app.count("--sizes") == 0) sizes = "small";
      if (app.count("--batches") == 0) batches = "64";
      Json rows = Json::array();
      Status s = run_ablation(split(models), split(sizes), split(batches), warmup, timed8, timed64, &rows);
      if (s.ok() && !json_path.empty()) s = write_text_file(json_path, rows.dump(2));
      if (!s.ok()) return report_failure(app, s);
      return kExitOk;
    }
    Json all = Json::array();
    BarChart chart;
    chart.title = "ACRoBat: speedup over unbatched execution (same kernels)";
    chart.y_label = "unbatched CPU time / CPU time";
    for (Scheduler s : {Scheduler::kAcrobat, Scheduler::kDynetAgenda, Scheduler::kDynetDepth})
      chart.series.push_back({scheduler_name(s), {}});
    int64_t configs = static_cast<int64_t>(split(models).size() * split(sizes).size() * split(batches).size());
    const CorePeak peak = measure_single_core_peak();
    std::printf(
        "Single-core peak at the start: %.1f GFLOP/s (%s, 1024^3, best of 5); each row's floor uses the best peak "
        "measured around its own runs (last column)\n\n",
        peak.gflops, peak.kernel.c_str());
    ProgressBar bar("acrobat_bench", configs * 6);
    std::printf(
        "| model | h | B | acrobat CPU ms | acrobat wall ms (record / sched / kernels) | acrobat 2 threads wall ms | "
        "rec+sched ns per tensor op | AOT CPU ms | AOT rec+sched ns per tensor op | dynet-agenda CPU | dynet-depth CPU "
        "| none CPU | acrobat vs our agenda | "
        "product GFLOP | product floor ms | acrobat CPU / floor | AOT CPU / floor | launches acrobat / agenda / depth "
        "/ none | "
        "value rounds | peak GFLOP/s |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const auto& name : split(models)) {
      const ModelInfo* m = find_model(name);
      if (!m)
        return report_failure(
            app, input_error("--models", name, "treelstm, birnn, mvrnn, nestedrnn, drnn, berxit or stackrnn"));
      for (const auto& size : split(sizes)) {
        int64_t h = size == "large" ? m->large : m->small;
        for (const auto& bs : split(batches)) {
          int batch = std::atoi(bs.c_str());
          if (batch < 1) return report_failure(app, input_error("--batches", bs, "positive integers"));
          int timed = batch <= 8 ? timed8 : timed64;
          auto data = m->make_data(static_cast<size_t>(batch) * (warmup + timed));
          std::map<Scheduler, Cell> cells;
          PeakAround peak_here;
          peak_here.measure();
          for (Scheduler s : kAllSchedulers) {
            // The unbatched run is slow and only a reference: fewer repetitions (never more than
            // `timed`: the data holds warmup + timed minibatches).
            int t = s == Scheduler::kNone ? std::min(timed, std::max(3, timed / 5)) : timed;
            auto c = measure(*m, h, batch, s, data, warmup, t);
            if (!c) return report_failure(app, c.status());
            cells[s] = *c;
            bar.advance();
          }
          // Two threads: wall clock is what parallelism buys (CPU time adds both threads).
          auto two = measure(*m, h, batch, Scheduler::kAcrobat, data, warmup, timed, 2);
          if (!two) return report_failure(app, two.status());
          bar.advance();
          // Compiled ahead of time: the bundled models exist at their small and large sizes.
          const AotModel* aot_model = compiled_model(name, size);
          if (!aot_model) return report_failure(app, input_error("--sizes", size, "small or large (compiled models)"));
          auto aot = measure(*m, h, batch, Scheduler::kAcrobat, data, warmup, timed, 1, aot_model);
          if (!aot) return report_failure(app, aot.status());
          bar.advance();
          peak_here.measure();
          double aot_overhead = aot->tensor_ops > 0 ? (aot->record + aot->schedule) * 1e6 / aot->tensor_ops : 0;
          const Cell& a = cells[Scheduler::kAcrobat];
          // Per tensor op of the program (a fused group counts its instructions).
          double overhead = a.tensor_ops > 0 ? (a.record + a.schedule) * 1e6 / a.tensor_ops : 0;
          // The ratio uses CPU time: on a shared machine wall-clock time mostly measures the
          // other processes.
          const Cell& ag = cells[Scheduler::kDynetAgenda];
          const double floor_ms = product_floor_ms(a.product_flops, peak_here.best());
          std::printf(
              "| %s | %lld | %d | %.2f | %.2f (%.2f / %.2f / %.2f) | %.2f | %.0f | %.2f | %.1f | %.2f | %.2f | %.2f | "
              "%.2fx | %.3f | %.2f | %.2fx | %.2fx | %.0f / %.0f / %.0f / %.0f | %.0f | %.1f |\n",
              name.c_str(), static_cast<long long>(h), batch, a.cpu, a.latency, a.record, a.schedule, a.kernels,
              two->latency, overhead, aot->cpu, aot_overhead, ag.cpu, cells[Scheduler::kDynetDepth].cpu,
              cells[Scheduler::kNone].cpu, ag.cpu / a.cpu, a.product_flops * 1e-9, floor_ms,
              floor_ms > 0 ? a.cpu / floor_ms : 0.0, floor_ms > 0 ? aot->cpu / floor_ms : 0.0, a.launches, ag.launches,
              cells[Scheduler::kDynetDepth].launches, cells[Scheduler::kNone].launches, a.value_rounds,
              peak_here.best().gflops);
          std::fflush(stdout);
          chart.categories.push_back(name + " " + std::to_string(h) + " B" + std::to_string(batch));
          double none_ms = cells[Scheduler::kNone].cpu;
          size_t cat = chart.categories.size() - 1;
          chart.series[0].points.push_back({double(cat), none_ms / a.cpu});
          chart.series[1].points.push_back({double(cat), none_ms / cells[Scheduler::kDynetAgenda].cpu});
          chart.series[2].points.push_back({double(cat), none_ms / cells[Scheduler::kDynetDepth].cpu});
          Json row = {{"model", name}, {"h", h}, {"batch", batch}, {"record_and_schedule_ns_per_tensor_op", overhead}};
          for (const auto& [s, c] : cells)
            row[scheduler_name(s)] = {{"latency_ms", c.latency},       {"cpu_ms", c.cpu},
                                      {"record_ms", c.record},         {"schedule_ms", c.schedule},
                                      {"kernel_ms", c.kernels},        {"ops_recorded", c.ops},
                                      {"tensor_ops", c.tensor_ops},    {"kernels_launched", c.launches},
                                      {"value_rounds", c.value_rounds}};
          row["acrobat_aot"] = {{"latency_ms", aot->latency}, {"cpu_ms", aot->cpu},
                                {"record_ms", aot->record},   {"schedule_ms", aot->schedule},
                                {"kernel_ms", aot->kernels},  {"record_and_schedule_ns_per_tensor_op", aot_overhead}};
          row["acrobat_2_threads"] = {{"latency_ms", two->latency}, {"cpu_ms", two->cpu}, {"kernel_ms", two->kernels}};
          row["product_flops"] = a.product_flops;
          row["product_floor_ms"] = floor_ms;
          row["single_core_peak_gflops"] = peak_here.best().gflops;
          row["single_core_peak_gflops_at_start"] = peak.gflops;
          all.push_back(row);
        }
      }
    }
    bar.finish();
    if (!svg_path.empty()) {
      Status s = write_text_file(svg_path, render_svg(chart));
      if (!s.ok()) return report_failure(app, s);
    }
    if (!json_path.empty()) {
      Status s = write_text_file(json_path, all.dump(2));
      if (!s.ok()) return report_failure(app, s);
    }
    return kExitOk;
  });
}
