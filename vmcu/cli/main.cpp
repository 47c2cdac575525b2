// vmcu: inspect, run, plan and build int8 TFLite models.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "perfmem/core/cli.h"
#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/core/svg.h"
#include "perfmem/vmcu/builder.h"
#include "perfmem/vmcu/executor.h"
#include "perfmem/vmcu/model.h"
#include "perfmem/vmcu/planner.h"
#include "deploy_commands.h"
#include "ring_commands.h"

namespace vm = perfmem::vmcu;
using perfmem::Json;

namespace {

std::string shape_str(const std::vector<int32_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

Json tensor_json(const vm::Tensor& t) {
  Json j;
  j["name"] = t.name;
  j["shape"] = t.shape;
  j["type"] = std::string(vm::element_type_name(t.type));
  j["bytes"] = t.bytes();
  if (t.quantization.present()) {
    if (t.quantization.per_channel()) {
      j["scale"] = t.quantization.scales;
      j["zero_point"] = t.quantization.zero_points;
      j["quantized_dimension"] = t.quantization.quantized_dimension;
    } else {
      j["scale"] = t.quantization.scale();
      j["zero_point"] = t.quantization.zero_point();
    }
  } else {
    j["scale"] = 0.0;
    j["zero_point"] = 0;
  }
  return j;
}

std::string quant_str(const vm::Tensor& t) {
  if (!t.quantization.present()) return "-";
  std::ostringstream o;
  if (t.quantization.per_channel())
    o << "per-channel(" << t.quantization.scales.size() << ")";
  else
    o << "s=" << t.quantization.scale() << " zp=" << t.quantization.zero_point();
  return o.str();
}

int cmd_inspect(const CLI::App& app, const std::string& path, bool as_json) {
  auto g = vm::load_tflite(path);
  if (!g) return perfmem::report_failure(app, g.status());
  Json report;
  report["model"] = path;
  report["inputs"] = Json::array();
  report["outputs"] = Json::array();
  for (int t : g->inputs) report["inputs"].push_back(tensor_json(g->tensors[t]));
  for (int t : g->outputs) report["outputs"].push_back(tensor_json(g->tensors[t]));
  report["operators"] = Json::array();
  size_t weight_bytes = 0;
  for (const auto& t : g->tensors)
    if (t.is_constant) weight_bytes += t.bytes();
  for (size_t i = 0; i < g->ops.size(); ++i) {
    const auto& op = g->ops[i];
    Json j;
    j["index"] = i;
    j["op"] = std::string(vm::op_kind_name(op.kind));
    j["inputs"] = Json::array();
    for (int t : op.inputs)
      if (t >= 0) j["inputs"].push_back(tensor_json(g->tensors[t]));
    j["outputs"] = Json::array();
    for (int t : op.outputs) j["outputs"].push_back(tensor_json(g->tensors[t]));
    report["operators"].push_back(j);
  }
  report["weight_bytes"] = weight_bytes;
  if (as_json) {
    perfmem::print_json(report);
    return perfmem::kExitOk;
  }
  std::cout << path << ": " << g->ops.size() << " operators, " << g->tensors.size() << " tensors, " << weight_bytes
            << " constant bytes\n";
  for (int t : g->inputs)
    std::cout << "input  " << g->tensors[t].name << " " << shape_str(g->tensors[t].shape) << " "
              << vm::element_type_name(g->tensors[t].type) << " " << quant_str(g->tensors[t]) << " "
              << g->tensors[t].bytes() << " B\n";
  for (int t : g->outputs)
    std::cout << "output " << g->tensors[t].name << " " << shape_str(g->tensors[t].shape) << " "
              << vm::element_type_name(g->tensors[t].type) << " " << quant_str(g->tensors[t]) << " "
              << g->tensors[t].bytes() << " B\n";
  for (size_t i = 0; i < g->ops.size(); ++i) {
    const auto& op = g->ops[i];
    std::cout << "  " << i << " " << vm::op_kind_name(op.kind) << ":";
    for (int t : op.inputs) {
      if (t < 0) continue;
      const auto& x = g->tensors[t];
      std::cout << " " << shape_str(x.shape) << (x.is_constant ? "c" : "") << " " << vm::element_type_name(x.type)
                << " (" << quant_str(x) << ", " << x.bytes() << " B)";
    }
    const auto& y = g->tensors[op.outputs[0]];
    std::cout << " -> " << shape_str(y.shape) << " " << vm::element_type_name(y.type) << " (" << quant_str(y) << ", "
              << y.bytes() << " B)\n";
  }
  return perfmem::kExitOk;
}

int cmd_run(const CLI::App& app, const std::string& path, const std::string& in_path, const std::string& out_path) {
  auto g = vm::load_tflite(path);
  if (!g) return perfmem::report_failure(app, g.status());
  auto exec = vm::Executor::create(std::move(*g));
  if (!exec) return perfmem::report_failure(app, exec.status());
  auto input = perfmem::read_binary_file(in_path);
  if (!input) return perfmem::report_failure(app, input.status());
  if (input->size() != exec->input_bytes()) {
    const auto& t = exec->graph().tensors[exec->graph().inputs[0]];
    return perfmem::report_failure(
        app, perfmem::input_error(in_path, "size",
                                  std::to_string(exec->input_bytes()) + " bytes (" +
                                      std::string(vm::element_type_name(t.type)) + " " + shape_str(t.shape) + ")",
                                  std::to_string(input->size()) + " bytes"));
  }
  auto out = exec->run(*input);
  if (!out) return perfmem::report_failure(app, out.status());
  perfmem::Status s = perfmem::write_binary_file(out_path, out->data(), out->size());
  if (!s.ok()) return perfmem::report_failure(app, s);
  return perfmem::kExitOk;
}

std::string svg_timeline(const vm::MemoryPlan& plan, int steps, const std::string& title) {
  perfmem::SvgCanvas canvas(title, "operator index", "offset (bytes)", 0, std::max(steps, 1), 0,
                            static_cast<double>(std::max<size_t>(plan.peak_bytes, 1)));
  for (size_t i = 0; i < plan.placements.size(); ++i) {
    const auto& p = plan.placements[i];
    if (p.bytes == 0) continue;
    canvas.rect(p.first_use, static_cast<double>(p.offset), p.last_use + 1, static_cast<double>(p.offset + p.bytes),
                p.is_workspace ? "#999999" : perfmem::palette_color(i),
                p.name + " (" + std::to_string(p.bytes) + " B, steps " + std::to_string(p.first_use) + ".." +
                    std::to_string(p.last_use) + ")");
  }
  canvas.polyline(
      {{0, static_cast<double>(plan.peak_bytes)}, {static_cast<double>(steps), static_cast<double>(plan.peak_bytes)}},
      "#cc0000");
  canvas.legend_entry("peak " + std::to_string(plan.peak_bytes) + " B", "#cc0000");
  return canvas.render();
}

int cmd_plan(const CLI::App& app, const std::string& path, const std::string& planner, bool as_json,
             const std::string& svg_path) {
  auto kind = vm::parse_planner(planner);
  if (!kind) return perfmem::report_failure(app, kind.status());
  auto g = vm::load_tflite(path);
  if (!g) return perfmem::report_failure(app, g.status());
  const auto reqs = vm::planner_requirements(*g, *kind);
  const auto plan = vm::plan_memory(reqs, *kind);
  perfmem::Status verified = vm::verify_plan(reqs, plan);
  if (!verified.ok()) return perfmem::report_failure(app, verified);
  const int steps = static_cast<int>(g->ops.size());
  const auto live = vm::live_bytes_per_step(plan, steps);
  if (!svg_path.empty()) {
    perfmem::Status s = perfmem::write_text_file(
        svg_path, svg_timeline(plan, steps, path + " — " + std::string(vm::planner_name(*kind)) + " plan"));
    if (!s.ok()) return perfmem::report_failure(app, s);
  }
  if (as_json) {
    Json j;
    j["model"] = path;
    j["planner"] = std::string(vm::planner_name(*kind));
    j["peak_bytes"] = plan.peak_bytes;
    j["verified"] = true;
    j["ops"] = Json::array();
    for (int i = 0; i < steps; ++i)
      j["ops"].push_back(
          {{"index", i}, {"op", std::string(vm::op_kind_name(g->ops[i].kind))}, {"live_bytes", live[i]}});
    j["buffers"] = Json::array();
    for (const auto& p : plan.placements)
      j["buffers"].push_back({{"name", p.name},
                              {"bytes", p.bytes},
                              {"offset", p.offset},
                              {"first_use", p.first_use},
                              {"last_use", p.last_use},
                              {"inplace", p.inplace_of >= 0},
                              {"workspace", p.is_workspace}});
    perfmem::print_json(j);
    return perfmem::kExitOk;
  }
  std::cout << path << ": planner " << vm::planner_name(*kind) << ", " << reqs.size() << " activation buffers\n";
  for (int i = 0; i < steps; ++i)
    std::cout << "  " << i << " " << vm::op_kind_name(g->ops[i].kind) << " live " << live[i] << " B\n";
  std::cout << "peak " << plan.peak_bytes << " B (plan verified: no live buffers overlap)\n";
  return perfmem::kExitOk;
}

int cmd_build(const CLI::App& app, const std::string& spec_path, const std::string& out_path) {
  auto text = perfmem::read_text_file(spec_path);
  if (!text) return perfmem::report_failure(app, text.status());
  auto bytes = vm::build_model_from_json(*text, spec_path);
  if (!bytes) return perfmem::report_failure(app, bytes.status());
  // Everything written must load back: re-import and prepare before writing.
  auto g = vm::parse_tflite(*bytes, out_path);
  if (!g) return perfmem::report_failure(app, g.status());
  auto exec = vm::Executor::create(std::move(*g));
  if (!exec) return perfmem::report_failure(app, exec.status());
  perfmem::Status s = perfmem::write_binary_file(out_path, bytes->data(), bytes->size());
  if (!s.ok()) return perfmem::report_failure(app, s);
  std::cout << out_path << ": " << exec->graph().ops.size() << " operators, " << bytes->size() << " bytes\n";
  return perfmem::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vmcu: run int8 TFLite CNNs on Cortex-M microcontrollers in a ring of memory segments"};
  app.require_subcommand(0, 1);

  std::string model, input, output, planner = "greedy", svg, spec;
  bool as_json = false;

  auto* inspect = app.add_subcommand("inspect", "List operators with shapes, quantization and bytes");
  inspect->add_option("model", model, "Model (.tflite)")->required();
  inspect->add_flag("--json", as_json, "Machine-readable report (inputs, outputs, operators)");

  auto* run = app.add_subcommand("run", "Run a model on raw input bytes with the reference kernels");
  run->add_option("model", model, "Model (.tflite)")->required();
  run->add_option("--input", input, "Raw bytes of the input tensor (its own type and layout)")->required();
  run->add_option("--output", output, "Where to write the raw bytes of the output tensor")->required();
  run->add_option("--planner", planner, "Planner: reference (one buffer per tensor) | vmcu (the ring plan)");

  auto* plan = app.add_subcommand("plan", "Tensor-level memory plan: live bytes per operator and peak");
  plan->add_option("model", model, "Model (.tflite)")->required();
  plan->add_option("--planner", planner, "Planner: naive | greedy | tinyengine | vmcu")->capture_default_str();
  plan->add_flag("--json", as_json, "Machine-readable plan (peak_bytes, ops, buffers)");
  plan->add_option("--svg", svg, "Write the memory timeline (offset x operator index) as SVG");

  auto* build = app.add_subcommand("build-model", "Write an int8 TFLite model from a JSON spec (see docs/vmcu.md)");
  build->add_option("spec", spec, "Spec (.json)")->required();
  build->add_option("-o,--output", output, "Model to write (.tflite)")->required();

  unsigned seed = 1;
  auto* verify = app.add_subcommand("verify",
                                    "Run the vmcu ring plan with a shadow state per byte; fail on any read of "
                                    "an overwritten byte or any output bit that differs from the reference");
  verify->add_option("model", model, "Model (.tflite)")->required();
  verify->add_option("--input", input, "Raw input bytes (default: random bytes from --seed)");
  verify->add_option("--seed", seed, "Seed of the random input")->capture_default_str();
  verify->add_option("--planner", planner, "Planner: vmcu (the only plan with segment-level overlap to verify)");
  verify->add_flag("--json", as_json, "Machine-readable report");

  std::string target = "host", out_dir;
  auto* compile = app.add_subcommand("compile", "Emit the model and its memory plan as a self-contained C99 library");
  compile->add_option("model", model, "Model (.tflite)")->required();
  compile->add_option("--planner", planner, "Planner: vmcu | greedy | tinyengine (default vmcu)");
  compile->add_option("--target", target, "Target: cortex-m4 | cortex-m7 | host")->capture_default_str();
  compile->add_option("-o,--output", out_dir, "Folder to write model.h, model.c, kernels and build files to")
      ->required();
  compile->add_flag("--json", as_json, "Machine-readable summary");

  vmcu_cli::DeployArgs dep;
  auto* deploy = app.add_subcommand(
      "deploy", "Compile for a QEMU Cortex-M board, link against a RAM/flash budget, run it, compare with the host");
  deploy->add_option("model", dep.model, "Model (.tflite)")->required();
  deploy->add_option("--board", dep.board, "Board: mps2-an386 (Cortex-M4) | mps2-an500 (Cortex-M7)")->required();
  deploy->add_option("--ram", dep.ram, "RAM budget (bytes, or with K / M)")->capture_default_str();
  deploy->add_option("--flash", dep.flash, "Flash budget")->capture_default_str();
  deploy->add_option("--stack", dep.stack, "Stack reserved inside the RAM budget")->capture_default_str();
  deploy->add_option("--planner", dep.planner, "Planner: vmcu | greedy | tinyengine")->capture_default_str();
  deploy
      ->add_option("--kernels", dep.kernels,
                   "Kernels of tensor-level layers: optimized (ring kernels, DSP on Cortex-M) | reference")
      ->capture_default_str();
  deploy->add_option("--input", dep.input, "Raw bytes of the input tensor")->required();
  deploy->add_option("--output", dep.output, "Where the board writes the output tensor's bytes")->required();
  deploy->add_option("--timeout", dep.timeout_s, "Seconds the emulated run may take")->capture_default_str();
  deploy->add_option("--work-dir", dep.work_dir, "Keep the generated library and firmware here");
  deploy->add_flag("--json", dep.as_json, "Machine-readable report");

  auto dispatch = [&] {
    if (deploy->parsed()) return vmcu_cli::deploy(app, dep);
    if (compile->parsed())
      return vmcu_cli::compile(app, model, compile->count("--planner") ? planner : "vmcu", target, out_dir, as_json);
    if (verify->parsed()) {
      if (verify->count("--planner") && planner != "vmcu")
        return perfmem::report_failure(app, perfmem::input_error("--planner", "value", "vmcu", planner));
      return vmcu_cli::ring_verify(app, model, input, seed, as_json);
    }
    if (run->parsed() && run->count("--planner") && planner == "vmcu")
      return vmcu_cli::ring_run(app, model, input, output);
    if (run->parsed() && run->count("--planner") && planner != "reference")
      return perfmem::report_failure(app, perfmem::input_error("--planner", "value", "reference or vmcu", planner));
    if (plan->parsed() && planner == "vmcu") return vmcu_cli::ring_plan(app, model, as_json, svg);
    if (inspect->parsed()) return cmd_inspect(app, model, as_json);
    if (run->parsed()) return cmd_run(app, model, input, output);
    if (plan->parsed()) return cmd_plan(app, model, planner, as_json, svg);
    if (build->parsed()) return cmd_build(app, spec, output);
    // run_cli calls this only with a parsed subcommand (it answers usage errors itself).
    PERFMEM_CHECK(false, "no subcommand to dispatch");
    return perfmem::kExitFailure;
  };
  return perfmem::run_cli(app, argc, argv, [&] {
    const int rc = dispatch();
    // A report that did not reach stdout (full disk, closed pipe) is a failure, not success.
    std::cout.flush();
    if (!std::cout.good()) {
      std::cerr << app.get_name() << ": error: writing to standard output failed\n";
      return perfmem::kExitFailure;
    }
    return rc;
  });
}
