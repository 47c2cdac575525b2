#include "deploy_commands.h"

#include <iostream>

#include "perfmem/core/json.h"
#include "perfmem/vmcu/codegen.h"

namespace vm = perfmem::vmcu;
using perfmem::Json;

namespace vmcu_cli {

int compile(const CLI::App& app, const std::string& model, const std::string& planner, const std::string& target,
            const std::string& out_dir, bool as_json) {
  vm::CompileOptions options;
  auto p = vm::parse_compile_planner(planner);
  if (!p) return perfmem::report_failure(app, p.status());
  auto t = vm::parse_compile_target(target);
  if (!t) return perfmem::report_failure(app, t.status());
  options.planner = *p;
  options.target = *t;
  auto graph = vm::load_tflite(model);
  if (!graph) return perfmem::report_failure(app, graph.status());
  auto lib = vm::compile_model(std::move(*graph), options);
  if (!lib) return perfmem::report_failure(app, lib.status());
  perfmem::Status s = vm::write_library(*lib, out_dir);
  if (!s.ok()) return perfmem::report_failure(app, s);
  if (as_json) {
    Json j;
    j["model"] = model;
    j["planner"] = planner;
    j["target"] = target;
    j["dir"] = out_dir;
    j["arena_bytes"] = lib->plan_bytes;
    j["scratch_bytes"] = lib->scratch_bytes;
    j["constant_bytes"] = lib->weight_bytes;
    j["input_bytes"] = lib->input_bytes;
    j["output_bytes"] = lib->output_bytes;
    j["layers"] = lib->layers;
    perfmem::print_json(j);
  } else {
    std::cout << out_dir << ": " << lib->layers << " kernel calls, arena " << lib->plan_bytes << " B (" << planner
              << " plan)";
    if (lib->scratch_bytes) std::cout << " + " << lib->scratch_bytes << " B MEAN accumulators";
    std::cout << ", constants " << lib->weight_bytes << " B, target " << target << "\n";
  }
  return perfmem::kExitOk;
}

}  // namespace vmcu_cli
