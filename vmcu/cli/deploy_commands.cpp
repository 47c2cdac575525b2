#include "deploy_commands.h"

#include <cstdio>
#include <filesystem>
#include <iostream>

#include "perfmem/core/json.h"
#include "perfmem/core/process.h"
#include "perfmem/vmcu/codegen.h"
#include "perfmem/vmcu/deploy.h"

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
    j["stage_bytes"] = lib->stage_bytes;
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

int deploy(const CLI::App& app, const DeployArgs& a) {
  vm::DeployOptions o;
  auto board = vm::parse_board(a.board);
  if (!board) return perfmem::report_failure(app, board.status());
  auto planner = vm::parse_compile_planner(a.planner);
  if (!planner) return perfmem::report_failure(app, planner.status());
  auto kernels = vm::parse_kernel_choice(a.kernels);
  if (!kernels) return perfmem::report_failure(app, kernels.status());
  auto ram = vm::parse_byte_size(a.ram, "--ram");
  if (!ram) return perfmem::report_failure(app, ram.status());
  auto flash = vm::parse_byte_size(a.flash, "--flash");
  if (!flash) return perfmem::report_failure(app, flash.status());
  auto stack = vm::parse_byte_size(a.stack, "--stack");
  if (!stack) return perfmem::report_failure(app, stack.status());
  if (a.timeout_s < 1 || a.timeout_s > 3600)
    return perfmem::report_failure(
        app, perfmem::input_error("--timeout", "value", "1 to 3600 seconds", std::to_string(a.timeout_s)));
  o.board = *board;
  o.planner = *planner;
  o.kernels = *kernels;
  o.ram_bytes = *ram;
  o.flash_bytes = *flash;
  o.stack_bytes = *stack;
  o.input = a.input;
  o.output = a.output;
  o.timeout_s = a.timeout_s;
  o.work_dir = a.work_dir;
  // The counting plugin is built beside the program; without it the report has no count.
  if (auto dir = perfmem::executable_dir(); dir.ok() && std::filesystem::exists(*dir + "/libvmcu_icount.so"))
    o.icount_plugin = *dir + "/libvmcu_icount.so";
  auto r = vm::deploy_model(a.model, o);
  if (!r) return perfmem::report_failure(app, r.status());
  const bool ok = r->fits && r->ran && r->exit_code == 0 && r->bit_exact;
  if (a.as_json) {
    Json j;
    j["model"] = a.model;
    j["board"] = std::string(vm::board_name(r->board));
    j["planner"] = a.planner;
    j["kernels"] = a.kernels;
    j["fits"] = r->fits;
    j["ram_budget"] = r->ram_budget;
    j["flash_budget"] = r->flash_budget;
    j["ram_shortfall"] = r->ram_shortfall;
    j["flash_shortfall"] = r->flash_shortfall;
    j["arena_bytes"] = r->arena_bytes;
    j["scratch_bytes"] = r->scratch_bytes;
    if (r->fits) {
      j["static_ram_bytes"] = r->static_ram_bytes;
      j["stack_reserved_bytes"] = r->stack_reserved_bytes;
      j["stack_high_water_bytes"] = r->stack_high_water_bytes;
      j["flash_bytes"] = r->flash_bytes;
      j["ran"] = r->ran;
      j["exit_code"] = r->exit_code;
      j["bit_exact"] = r->bit_exact;
      if (r->counted) j["instructions"] = r->instructions;
    } else {
      j["planners"] = Json::array();
      for (const auto& f : r->planners)
        j["planners"].push_back({{"planner", std::string(vm::compile_planner_name(f.planner))},
                                 {"fits", f.fits},
                                 {"arena_bytes", f.arena_bytes},
                                 {"ram_shortfall", f.ram_shortfall},
                                 {"flash_shortfall", f.flash_shortfall}});
    }
    perfmem::print_json(j);
    return ok ? perfmem::kExitOk : perfmem::kExitFailure;
  }
  const std::string board_line = a.model + " on " + std::string(vm::board_name(r->board)) + " (" +
                                 std::string(vm::compile_target_name(vm::board_target(r->board))) + "), planner " +
                                 a.planner;
  if (!r->fits) {
    std::cout << board_line << ": does not fit RAM " << r->ram_budget << " B / flash " << r->flash_budget << " B";
    if (r->ram_shortfall) std::cout << ": RAM short by " << r->ram_shortfall << " bytes";
    if (r->flash_shortfall)
      std::cout << (r->ram_shortfall ? ", " : ": ") << "flash short by " << r->flash_shortfall << " bytes";
    std::cout << "\n  planner      arena B   RAM short B   flash short B\n";
    std::string fitting;
    for (const auto& f : r->planners) {
      std::printf("  %-11s %8zu   %11s   %13zu\n", std::string(vm::compile_planner_name(f.planner)).c_str(),
                  f.arena_bytes, f.fits ? "fits" : std::to_string(f.ram_shortfall).c_str(), f.flash_shortfall);
      if (f.fits) fitting += (fitting.empty() ? "" : ", ") + std::string(vm::compile_planner_name(f.planner));
    }
    std::fflush(stdout);
    std::cout << (fitting.empty() ? "  no planner fits this budget" : "  fits with --planner " + fitting) << "\n";
    return perfmem::kExitFailure;
  }
  std::cout << board_line << "\n"
            << "  arena        " << r->arena_bytes << " B (the plan's peak)";
  if (r->scratch_bytes) std::cout << " + " << r->scratch_bytes << " B MEAN accumulators";
  std::cout << "\n  stack        " << r->stack_high_water_bytes << " B used of " << r->stack_reserved_bytes
            << " B reserved\n"
            << "  static RAM   " << r->static_ram_bytes << " B of " << r->ram_budget
            << " B (stack + data + bss: arena, output buffer)\n"
            << "  flash        " << r->flash_bytes << " B of " << r->flash_budget << " B\n";
  if (!r->ran || r->exit_code != 0) {
    std::cout << "  run          failed (exit code " << r->exit_code << "): " << r->console << "\n";
    return perfmem::kExitFailure;
  }
  if (r->counted) std::cout << "  instructions " << r->instructions << " (one inference)\n";
  std::cout << "  output       " << (r->bit_exact ? "bit-exact with the host" : "DIFFERS from the host") << " ("
            << a.output << ")\n";
  return ok ? perfmem::kExitOk : perfmem::kExitFailure;
}

}  // namespace vmcu_cli
