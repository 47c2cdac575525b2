// acrobat: check and run .acr models, batched by one of four schedulers.
//
//   acrobat check treelstm                      # a bundled model, or a path to a .acr file
//   acrobat run treelstm --batch 64 --scheduler acrobat --size large --json
//   acrobat run my.acr --data trees.txt --scheduler dynet-agenda --set H=128
//   acrobat compile my.acr -o my.cc --header my.h --set H=128   # C++ for the program (aot.h)
//   acrobat run treelstm --aot --size large                     # the bundled models compiled
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <sstream>

#include "compiled_models.h"
#include "perfmem/acrobat/aot.h"
#include "perfmem/acrobat/kernels.h"
#include "perfmem/acrobat/models.h"
#include "perfmem/acrobat/runtime.h"
#include "perfmem/core/cli.h"
#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/core/stats.h"

namespace {

using namespace perfmem;
using namespace perfmem::acrobat;

struct Common {
  std::string model;
  std::vector<std::string> sets;
  std::string size;
  bool json = false;
};

// A bundled model by name ("treelstm"), else a .acr file.
Result<std::pair<std::string, std::string>> load_source(const std::string& model) {
  if (model.find('/') == std::string::npos && model.find(".acr") == std::string::npos && find_model(model))
    return std::make_pair(bundled_file_name(model), std::string(bundled_source(model)));
  PERFMEM_ASSIGN_OR_RETURN(std::string text, read_text_file(model));
  return std::make_pair(model, text);
}

Result<std::map<std::string, int64_t>> overrides(const Common& c) {
  std::map<std::string, int64_t> out;
  if (!c.size.empty()) {
    const ModelInfo* m = find_model(c.model);
    if (!m)
      return input_error(
          "--size", c.size,
          "a bundled model (treelstm, mvrnn, birnn, nestedrnn, drnn, berxit, stackrnn); use --set for others");
    if (c.size != "small" && c.size != "large") return input_error("--size", "value", "small or large", c.size);
    out[m->size_const] = c.size == "small" ? m->small : m->large;
  }
  for (const auto& s : c.sets) {
    auto eq = s.find('=');
    char* end = nullptr;
    long long v = eq == std::string::npos ? 0 : std::strtoll(s.c_str() + eq + 1, &end, 10);
    if (eq == std::string::npos || eq == 0 || end == s.c_str() + eq + 1 || *end != '\0')
      return input_error("--set", "'" + s + "'", "NAME=INTEGER");
    out[s.substr(0, eq)] = v;
  }
  return out;
}

int cmd_check(const CLI::App& app, const Common& c) {
  auto src = load_source(c.model);
  if (!src) return report_failure(app, src.status());
  auto ov = overrides(c);
  if (!ov) return report_failure(app, ov.status());
  auto prog = compile_program(src->first, src->second, compile_options_for(Scheduler::kAcrobat, *ov));
  if (!prog) return report_failure(app, prog.status());
  const Program& p = **prog;
  int ops = 0, static_ops = 0, shared_args = 0;
  for (const auto& f : p.fns) {
    std::vector<const Expr*> stack{f.body.get()};
    while (!stack.empty()) {
      const Expr* e = stack.back();
      stack.pop_back();
      if (e->kind == ExprKind::kOp) {
        ++ops;
        if (e->static_depth >= 0) ++static_ops;
        for (int s : e->shared) shared_args += s >= 0;
      }
      for (const auto& a : e->args) stack.push_back(a.get());
      for (const auto& arm : e->arms) stack.push_back(arm.body.get());
    }
  }
  int64_t param_elems = 0;
  for (const auto& prm : p.params) {
    int64_t n = 1;
    for (int64_t d : prm.type->dims) n *= d;
    param_elems += n;
  }
  Json j = {{"file", src->first},
            {"functions", p.fns.size()},
            {"parameters", p.params.size()},
            {"parameter_elements", param_elems},
            {"op_sites", ops},
            {"static_depth_ops", static_ops},
            {"max_static_depth", p.max_static_depth},
            {"shared_parameter_arguments", shared_args},
            {"fused_groups", p.groups.size()},
            {"kernels", p.kernels.size()},
            {"phases", p.num_phases}};
  if (c.json) {
    print_json(j);
  } else {
    std::cout << src->first << ": ok\n";
    for (auto it = j.begin(); it != j.end(); ++it)
      if (it.key() != "file") std::cout << "  " << it.key() << ": " << it.value() << "\n";
  }
  return kExitOk;
}

// Limits of the run options: each within int, and their product (the instances generated up
// front when no --data is given) bounded separately.
constexpr int kMaxBatch = 1 << 16;
constexpr int kMaxMinibatches = 100000;
constexpr int64_t kMaxGeneratedInstances = int64_t{1} << 20;

struct RunArgs {
  std::string data;
  int batch = 64;
  std::string scheduler = "acrobat";
  int minibatches = 0;
  int warmup = 2;
  bool verify = false;
  bool reference = false;
  bool profile = false;
  std::string params;
  int threads = 1;
  bool aot = false;
};

struct CompileArgs {
  std::string output, header, name;
};

// `acrobat compile`: the program as C++ (aot.h), written to -o and --header.
int cmd_compile(const CLI::App& app, const Common& c, const CompileArgs& a) {
  auto src = load_source(c.model);
  if (!src) return report_failure(app, src.status());
  auto ov = overrides(c);
  if (!ov) return report_failure(app, ov.status());
  std::string name = a.name;
  if (name.empty()) {  // the file's stem
    name = src->first.substr(src->first.find_last_of('/') + 1);
    name = name.substr(0, name.find('.'));
  }
  std::string include;
  if (!a.header.empty()) include = a.header.substr(a.header.find_last_of('/') + 1);
  auto gen = generate_aot_cpp(src->first, src->second, name, *ov, include);
  if (!gen) return report_failure(app, gen.status());
  // Both files are written in full before either replaces anything: a header that cannot be
  // written must not leave behind a source that includes it (or a user's file overwritten).
  auto source_file = AtomicFileWriter::create(a.output);
  if (!source_file) return report_failure(app, source_file.status());
  std::optional<AtomicFileWriter> header_file;
  if (!a.header.empty()) {
    auto created = AtomicFileWriter::create(a.header);
    if (!created) return report_failure(app, created.status());
    header_file.emplace(std::move(*created));
    if (auto s = header_file->write(gen->header.data(), gen->header.size()); !s.ok()) return report_failure(app, s);
  }
  if (auto s = source_file->write(gen->cc.data(), gen->cc.size()); !s.ok()) return report_failure(app, s);
  if (header_file)
    if (auto s = header_file->commit(); !s.ok()) return report_failure(app, s);
  if (auto s = source_file->commit(); !s.ok()) return report_failure(app, s);
  if (c.json) print_json(Json{{"model", src->first}, {"name", name}, {"output", a.output}, {"header", a.header}});
  return kExitOk;
}

int cmd_run(const CLI::App& app, const Common& c, const RunArgs& r) {
  auto sched = parse_scheduler(r.scheduler);
  if (!sched) return report_failure(app, sched.status());
  if (r.batch < 1)
    return report_failure(app, input_error("--batch", "value", "a positive batch size", std::to_string(r.batch)));
  auto src = load_source(c.model);
  if (!src) return report_failure(app, src.status());
  auto ov = overrides(c);
  if (!ov) return report_failure(app, ov.status());
  // --aot: the bundled model compiled at build time (same runtime, generated control flow).
  const AotModel* compiled = nullptr;
  if (r.aot) {
    const ModelInfo* info = find_model(c.model);
    std::string size = c.size.empty() ? "small" : c.size;
    if (info && c.model.find('/') == std::string::npos && c.model.find(".acr") == std::string::npos) {
      // The model's constants at that size (no --size means the file's own, the small size).
      std::map<std::string, int64_t> want = *ov;
      want.emplace(info->size_const, size == "small" ? info->small : info->large);
      for (const AotModel* m : compiled_bundled_models())
        if (m->name == info->name + "_" + size && aot_overrides(*m) == want) compiled = m;
    }
    if (!compiled)
      return report_failure(app, input_error("--aot", c.model,
                                             "a bundled model at --size small or large without --set (the models "
                                             "compiled at build time); compile others with `acrobat compile`"));
  }
  std::unique_ptr<Runtime> loaded_runtime;
  Result<std::unique_ptr<Program>> prog =
      compiled ? Result<std::unique_ptr<Program>>(nullptr)
               : compile_program(src->first, src->second, compile_options_for(*sched, *ov));
  if (!prog) return report_failure(app, prog.status());
  RuntimeOptions opt;
  opt.scheduler = *sched;
  opt.verify = r.verify;
  opt.reference_kernels = r.reference;
  opt.profile = r.profile;
  opt.params_file = r.params;
  opt.threads = r.threads;
  if (compiled) {
    auto m = load_aot_model(*compiled, opt);
    if (!m) return report_failure(app, m.status());
    *prog = std::move(m->program);
    loaded_runtime = std::move(m->runtime);
  } else {
    auto rt = Runtime::create(**prog, opt);
    if (!rt) return report_failure(app, rt.status());
    loaded_runtime = std::move(*rt);
  }
  Runtime* rt = loaded_runtime.get();
  int64_t timed = r.minibatches > 0 ? r.minibatches : (r.batch <= 8 ? 30 : 10);
  // Generated instances are made up front: bound their number (the options' ranges keep the
  // product far from overflowing).
  int64_t want = int64_t{r.batch} * (timed + r.warmup);
  if (r.data.empty() && want > kMaxGeneratedInstances)
    return report_failure(app, input_error("--batch x (--minibatches + --warmup)", "value",
                                           "at most " + std::to_string(kMaxGeneratedInstances) + " generated instances",
                                           std::to_string(r.batch) + " x " + std::to_string(timed + r.warmup) + " = " +
                                               std::to_string(want)));
  std::vector<Instance> data;
  if (!r.data.empty()) {
    const Type& t = *(*prog)->fns[(*prog)->main_fn].params[0].type;
    auto d = t.kind == TypeKind::kAdt ? read_ptb_trees(r.data) : read_sequences(r.data);
    if (!d) return report_failure(app, d.status());
    data = std::move(*d);
    if (data.empty()) return report_failure(app, input_error(r.data, "contents", "at least one instance", "none"));
  } else if (const ModelInfo* m = find_model(c.model)) {
    data = m->make_data(static_cast<size_t>(want));
  } else {
    auto d = default_data(**prog, static_cast<size_t>(want));
    if (!d) return report_failure(app, d.status());
    data = std::move(*d);
  }
  // A runtime error names the program's place and the instance; with --data, also the file the
  // instance came from (a word id past a lookup table, a flat file for a nested program).
  auto with_data = [&](const Status& s) {
    return r.data.empty() ? s : s.with_context("--data " + r.data + " (instances counted from 0 in file order)");
  };
  if (auto s = rt->set_inputs(data); !s.ok()) return report_failure(app, with_data(s));
  size_t batch = std::min<size_t>(static_cast<size_t>(r.batch), data.size());
  size_t available = data.size() / batch;
  int total = static_cast<int>(std::min<int64_t>(static_cast<int64_t>(available), timed + r.warmup));
  int warm = std::min(r.warmup, total - 1);
  RunStatsSeries series;
  std::vector<float> first;
  std::map<std::string, double> by_op;
  for (int j = 0; j < total; ++j) {
    std::vector<float> out;
    RunStats st;
    if (auto s = rt->run_minibatch(j * batch, (j + 1) * batch, &out, &st); !s.ok())
      return report_failure(app, with_data(s));
    if (j == 0) first = out;
    if (j < warm) continue;
    for (const auto& [k, v] : st.kernel_ms_by_op) by_op[k] += v / std::max(1, total - warm);
    series.add(st);
  }
  // Workload checksums over the first 8 instances of minibatch 0.
  size_t out_size = static_cast<size_t>((*prog)->fns[(*prog)->main_fn].ret->dims[0]);
  size_t n_check = std::min(first.size(), out_size * 8);
  double sum = 0, abs = 0, w = 0;
  for (size_t i = 0; i < n_check; ++i) {
    sum += first[i];
    abs += std::fabs(first[i]);
    w += first[i] * double((i % 13) + 1);
  }
  const RunStatsMedians m = series.medians();
  double med = m.latency.median, med_rec = m.record_ms, med_sch = m.schedule_ms;
  double med_ops = m.ops_recorded;
  double overhead_ns = med_ops > 0 ? (med_rec + med_sch) * 1e6 / med_ops : 0;
  double med_tops = m.tensor_ops;
  double overhead_tensor_ns = med_tops > 0 ? (med_rec + med_sch) * 1e6 / med_tops : 0;
  Json j = {
      {"model", src->first},
      {"scheduler", r.scheduler},
      {"aot", r.aot},
      {"batch", batch},
      {"minibatches", m.minibatches},
      {"latency_ms", med},
      {"latency", to_json(m.latency)},
      {"cpu_ms", m.cpu_ms},
      {"breakdown_ms", {{"record", med_rec}, {"schedule", med_sch}, {"kernels", m.kernel_ms}}},
      {"ops_recorded", med_ops},
      {"kernels_launched", m.kernels_launched},
      {"value_rounds", m.value_rounds},
      {"tensor_ops", med_tops},
      {"record_and_schedule_ns_per_op", overhead_ns},
      {"record_and_schedule_ns_per_tensor_op", overhead_tensor_ns},
      {"checksum", {{"instances", n_check / std::max<size_t>(out_size, 1)}, {"sum", sum}, {"abs", abs}, {"w", w}}}};
  for (const auto& [k, v] : *ov) j["constants"][k] = v;
  if (r.profile) j["kernel_ms_by_op_mean"] = by_op;
  if (c.json) {
    print_json(j);
  } else {
    std::printf("%s  scheduler=%s%s  batch=%zu  (%zu timed minibatches)\n", src->first.c_str(), r.scheduler.c_str(),
                r.aot ? " (compiled ahead of time)" : "", batch, m.minibatches);
    std::printf("  latency     %9.3f ms per minibatch (median; CPU time %.3f ms)\n", med, m.cpu_ms);
    std::printf("    record    %9.3f ms  (program execution + recording)\n", med_rec);
    std::printf("    schedule  %9.3f ms\n", med_sch);
    std::printf("    kernels   %9.3f ms\n", m.kernel_ms);
    std::printf("  ops recorded %.0f (tensor ops %.0f), kernels launched %.0f\n", med_ops, med_tops,
                m.kernels_launched);
    if (m.value_rounds > 0)
      std::printf("  rounds waiting for tensor values %.0f (each: every pending op executed, batched)\n",
                  m.value_rounds);
    std::printf("  record+schedule %.1f ns per recorded op, %.1f ns per tensor op\n", overhead_ns, overhead_tensor_ns);
    std::printf("  checksum (first %zu instances of minibatch 0): sum %.8g  abs %.8g  w %.8g\n",
                n_check / std::max<size_t>(out_size, 1), sum, abs, w);
    for (const auto& [k, v] : by_op) std::printf("    %-24s %9.3f ms (mean)\n", k.c_str(), v);
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  // OpenBLAS single-threaded, through its API before any BLAS call: its idle workers stop
  // spinning after their short timeout and are never woken. --threads parallelises the
  // runtime's own kernels instead (RuntimeOptions::threads).
  kernels::set_blas_threads(1);
  CLI::App app{"acrobat: batch dynamic models (trees, loops) with compile-time depth analysis"};
  app.name("acrobat");
  app.require_subcommand(0, 1);
  Common common;
  RunArgs run;
  auto add_common = [&](CLI::App* sub) {
    sub->add_option("model", common.model,
                    "A .acr file, or a bundled model: treelstm, mvrnn, birnn, nestedrnn, drnn, berxit, stackrnn")
        ->required();
    sub->add_option("--set", common.sets, "Override a constant, NAME=INTEGER (repeatable)");
    sub->add_option("--size", common.size, "Small or large (bundled models)");
    sub->add_flag("--json", common.json, "Print a JSON report");
  };
  CLI::App* check = app.add_subcommand("check", "Parse, type-check and analyse a model");
  add_common(check);
  CLI::App* runc = app.add_subcommand("run", "Run a model over minibatches and report latency");
  add_common(runc);
  runc->add_option("--data", run.data,
                   "Input file: s-expression trees (PTB/SST) or word-id sequences; default: built-in generator");
  runc->add_option("--batch", run.batch, "Instances per minibatch (default 64)")->check(CLI::Range(1, kMaxBatch));
  runc->add_option("--scheduler", run.scheduler, "Scheduler: acrobat | dynet-agenda | dynet-depth | none")
      ->check(CLI::IsMember({"acrobat", "dynet-agenda", "dynet-depth", "none"}));
  runc->add_option("--minibatches", run.minibatches, "Timed minibatches (default 30 for batch <= 8, else 10)")
      ->check(CLI::Range(1, kMaxMinibatches));
  runc->add_option("--warmup", run.warmup, "Untimed minibatches first (default 2)")
      ->check(CLI::Range(0, kMaxMinibatches));
  runc->add_flag("--verify", run.verify, "Check every launch's operands were computed before (independent check)");
  runc->add_flag("--reference-kernels", run.reference, "Plain-loop kernels instead of BLAS");
  runc->add_flag("--profile", run.profile, "Time each operator kind");
  runc->add_option("--params", run.params, "Safetensors file for load(\"name\") parameters");
  runc->add_flag("--aot", run.aot,
                 "Run the bundled model compiled ahead of time (acrobat compile) instead of interpreting it");
  runc->add_option("--threads", run.threads, "Threads for the batched kernels (default 1, as DyNet's CPU execution)")
      ->check(CLI::Range(1, 256));
  CompileArgs compile_args;
  CLI::App* comp = app.add_subcommand("compile", "Compile a model ahead of time to C++ (see perfmem/acrobat/aot.h)");
  add_common(comp);
  comp->add_option("-o,--output", compile_args.output, "The C++ source to write")->required();
  comp->add_option("--header", compile_args.header,
                   "Also write a header declaring acrobat_model_NAME() (the source includes it by file name)");
  comp->add_option("--name", compile_args.name, "NAME in acrobat_model_NAME() (default: the file's stem)");
  return perfmem::run_cli(app, argc, argv, [&] {
    if (check->parsed()) return cmd_check(app, common);
    if (comp->parsed()) return cmd_compile(app, common, compile_args);
    if (runc->parsed()) return cmd_run(app, common, run);
    // run_cli calls this only with a parsed subcommand (it answers usage errors itself).
    PERFMEM_CHECK(false, "no subcommand to dispatch");
    return perfmem::kExitFailure;
  });
}
