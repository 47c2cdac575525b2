#include "ring_commands.h"

#include <algorithm>
#include <cstring>
#include <iostream>
#include <random>

#include "perfmem/core/io.h"
#include "perfmem/core/json.h"
#include "perfmem/core/svg.h"
#include "perfmem/vmcu/ring_plan.h"

namespace vm = perfmem::vmcu;
using perfmem::Json;

namespace vmcu_cli {
namespace {

perfmem::Result<vm::RingModel> load(const std::string& path) {
  PERFMEM_ASSIGN_OR_RETURN(auto graph, vm::load_tflite(path));
  return vm::RingModel::create(std::move(graph));
}

std::string layer_ops(const vm::Graph& g, const vm::RingLayer& l) {
  if (l.ops.empty()) return "(" + g.tensors[l.output].name + ")";  // a relocation between regions
  std::string s;
  for (int op : l.ops) s += (s.empty() ? "" : "+") + std::string(vm::op_kind_name(g.ops[op].kind));
  return s;
}

// Ring occupancy per layer: x = layer, y = ring offset; each live tensor drawn where it sits
// (a tensor that wraps is drawn as two pieces; one moved by a relocation, at both places).
std::string ring_svg(const vm::RingModel& m, const std::string& title) {
  const vm::RingPlan& plan = m.plan();
  const vm::Graph& g = m.graph();
  const double cap = static_cast<double>(plan.ring_bytes);
  const int layers = static_cast<int>(plan.layers.size());
  perfmem::SvgCanvas canvas(title, "layer", "ring offset (bytes)", 0, std::max(layers, 1), 0, cap);
  for (size_t t = 0; t < g.tensors.size(); ++t) {
    if (!plan.placed[t] || g.tensors[t].bytes() == 0) continue;
    const double size = static_cast<double>(g.tensors[t].bytes());
    const std::string color = perfmem::palette_color(t);
    auto draw = [&](double off, double x0, double x1) {
      const std::string label = g.tensors[t].name + " (" + std::to_string(g.tensors[t].bytes()) + " B at " +
                                std::to_string(static_cast<long long>(off)) + ")";
      canvas.rect(x0, off, x1, std::min(cap, off + size), color, label);
      if (off + size > cap) canvas.rect(x0, 0, x1, off + size - cap, color, label + " (wrapped)");
    };
    double off = plan.ring_offset(static_cast<int>(t));
    double x0 = plan.first_layer[t];
    for (int l = plan.first_layer[t] + 1; l <= plan.last_layer[t] && l < layers; ++l) {
      const vm::RingLayer& layer = plan.layers[static_cast<size_t>(l)];
      if (layer.kernel != vm::RingKernel::kRelocate || layer.output != static_cast<int>(t)) continue;
      draw(off, x0, l + 1);
      off = layer.ring_offset[0];
      x0 = l;
    }
    draw(off, x0, std::min(plan.last_layer[t] + 1, std::max(layers, 1)));
  }
  canvas.legend_entry(
      "ring " + std::to_string(plan.ring_bytes) + " B + workspace " + std::to_string(plan.workspace_bytes) + " B",
      "#cc0000");
  return canvas.render();
}

}  // namespace

int ring_plan(const CLI::App& app, const std::string& path, bool as_json, const std::string& svg_path) {
  auto m = load(path);
  if (!m) return perfmem::report_failure(app, m.status());
  const vm::RingPlan& plan = m->plan();
  const vm::Graph& g = m->graph();
  if (!svg_path.empty()) {
    perfmem::Status s = perfmem::write_text_file(svg_path, ring_svg(*m, path + " — vmcu ring plan"));
    if (!s.ok()) return perfmem::report_failure(app, s);
  }
  if (as_json) {
    Json j;
    j["model"] = path;
    j["planner"] = "vmcu";
    j["placement"] = std::string(vm::ring_placement_name(plan.placement));
    j["peak_bytes"] = plan.peak_bytes;
    j["ring_bytes"] = plan.ring_bytes;
    j["workspace_bytes"] = plan.workspace_bytes;
    j["layers"] = Json::array();
    for (size_t l = 0; l < plan.layers.size(); ++l) {
      const auto& layer = plan.layers[l];
      Json inputs = Json::array();
      for (size_t k = 0; k < layer.inputs.size() && k < 2; ++k)
        inputs.push_back({{"tensor", g.tensors[layer.inputs[k]].name}, {"ring_offset", layer.ring_offset[k + 1]}});
      j["layers"].push_back({{"index", l},
                             {"ops", layer_ops(g, layer)},
                             {"kernel", std::string(vm::ring_kernel_name(layer.kernel))},
                             {"inputs", inputs},
                             {"output", g.tensors[layer.output].name},
                             {"output_ring_offset", layer.ring_offset[0]},
                             {"distance", {layer.distance[0], layer.distance[1]}},
                             {"workspace_bytes", layer.workspace_bytes},
                             {"ring_in_use_bytes", plan.span_per_layer[l]}});
    }
    perfmem::print_json(j);
    return perfmem::kExitOk;
  }
  std::cout << path << ": planner vmcu, " << vm::ring_placement_name(plan.placement) << "-level placement, "
            << plan.layers.size() << " layers\n";
  for (size_t l = 0; l < plan.layers.size(); ++l) {
    const auto& layer = plan.layers[l];
    std::cout << "  " << l << " " << layer_ops(g, layer) << " [" << vm::ring_kernel_name(layer.kernel) << "] distance "
              << layer.distance[0] << " in use " << plan.span_per_layer[l] << " B, workspace " << layer.workspace_bytes
              << " B\n";
  }
  std::cout << "peak " << plan.peak_bytes << " B (ring " << plan.ring_bytes << " B + workspace " << plan.workspace_bytes
            << " B)\n";
  return perfmem::kExitOk;
}

int ring_run(const CLI::App& app, const std::string& path, const std::string& in_path, const std::string& out_path) {
  auto m = load(path);
  if (!m) return perfmem::report_failure(app, m.status());
  auto input = perfmem::read_binary_file(in_path);
  if (!input) return perfmem::report_failure(app, input.status());
  auto out = m->run(*input);
  if (!out) return perfmem::report_failure(app, out.status().with_context(in_path));
  perfmem::Status s = perfmem::write_binary_file(out_path, out->data(), out->size());
  if (!s.ok()) return perfmem::report_failure(app, s);
  return perfmem::kExitOk;
}

int ring_verify(const CLI::App& app, const std::string& path, const std::string& in_path, unsigned seed, bool as_json) {
  auto m = load(path);
  if (!m) return perfmem::report_failure(app, m.status());
  const vm::Graph& g = m->graph();
  const vm::Tensor& in_t = g.tensors[g.inputs[0]];
  std::vector<uint8_t> input;
  if (!in_path.empty()) {
    auto bytes = perfmem::read_binary_file(in_path);
    if (!bytes) return perfmem::report_failure(app, bytes.status());
    input = std::move(*bytes);
  } else {
    std::mt19937 rng(seed);
    input.resize(in_t.bytes());
    if (in_t.type == vm::ElementType::kFloat32) {
      std::uniform_real_distribution<float> u(-1.0f, 1.0f);
      for (size_t i = 0; i + 4 <= input.size(); i += 4) {
        const float v = u(rng);
        std::memcpy(input.data() + i, &v, 4);
      }
    } else {
      for (auto& b : input) b = static_cast<uint8_t>(rng());
    }
  }
  auto report = m->verify(input);
  if (!report) return perfmem::report_failure(app, report.status());
  if (as_json) {
    perfmem::print_json({{"model", path},
                         {"planner", "vmcu"},
                         {"verified", true},
                         {"ring_bytes", report->ring_bytes},
                         {"peak_bytes", m->plan().peak_bytes},
                         {"checked_read_bytes", report->checked_reads},
                         {"checked_write_bytes", report->checked_writes},
                         {"bit_exact", report->bit_exact}});
    return perfmem::kExitOk;
  }
  std::cout << path << ": vmcu plan verified in a ring of " << report->ring_bytes << " B: " << report->checked_reads
            << " byte reads each found their tensor intact, output bit-exact with the reference executor\n";
  return perfmem::kExitOk;
}

}  // namespace vmcu_cli
