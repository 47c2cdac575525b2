// vMCU ring planner benchmark: peak memory per planner on the paper's pointwise layers, the
// MCUNet-VWW inverted bottlenecks S1-S8, the first block of MCUNet-320KB-ImageNet and the five
// real models, with the paper's targets as ratios, plus the host run time of a ring plan against
// the reference executor.
//
//   vmcu_ring_bench [MODELS_DIR]      (default: the shared models folder; rows skipped if absent)
//
// Prints Markdown tables. Every vmcu plan is verified (shadow state + bit-exact output) before
// its number is printed; a failed verification aborts the benchmark.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "perfmem/core/stats.h"
#include "perfmem/vmcu/builder.h"
#include "perfmem/vmcu/executor.h"
#include "perfmem/vmcu/planner.h"
#include "perfmem/vmcu/ring_plan.h"

namespace vm = perfmem::vmcu;

namespace {

[[noreturn]] void die(const perfmem::Status& s) {
  std::cerr << "vmcu_ring_bench: " << s.to_string() << "\n";
  std::exit(1);
}

template <typename T>
T take(perfmem::Result<T> r) {
  if (!r.ok()) die(r.status());
  return std::move(*r);
}

vm::Graph build(const std::string& spec) {
  auto bytes = take(vm::build_model_from_json(spec, "bench spec"));
  return take(vm::parse_tflite(bytes, "bench model"));
}

struct Peaks {
  size_t naive = 0, greedy = 0, tinyengine = 0, vmcu = 0;
};

std::vector<uint8_t> input_for(const vm::Graph& g) {
  const vm::Tensor& t = g.tensors[g.inputs[0]];
  std::vector<uint8_t> bytes(t.bytes());
  uint32_t x = 12345;
  for (auto& b : bytes) b = static_cast<uint8_t>((x = x * 1103515245u + 12345u) >> 16);
  if (t.type == vm::ElementType::kFloat32)
    for (size_t i = 0; i + 4 <= bytes.size(); i += 4) {
      const float v = static_cast<float>(static_cast<int>(bytes[i]) - 128) / 128.0f;
      std::memcpy(bytes.data() + i, &v, 4);
    }
  return bytes;
}

Peaks peaks(const vm::Graph& g, vm::RingModel* ring_out = nullptr) {
  Peaks p;
  auto peak = [&](vm::PlannerKind kind) { return vm::plan_memory(vm::planner_requirements(g, kind), kind).peak_bytes; };
  p.naive = peak(vm::PlannerKind::kNaive);
  p.greedy = peak(vm::PlannerKind::kGreedy);
  p.tinyengine = peak(vm::PlannerKind::kTinyEngine);
  auto ring = take(vm::RingModel::create(g));
  take(ring.verify(input_for(g)));  // only verified plans are reported
  p.vmcu = ring.plan().peak_bytes;
  if (ring_out) *ring_out = std::move(ring);
  return p;
}

std::string kb(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(bytes) / 1000.0);
  return buf;
}

std::string ratio(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", r);
  return buf;
}

void pointwise_table() {
  struct Shape {
    int hw, cin, cout;
    double paper_reduction;
  };
  const Shape shapes[] = {{80, 16, 16, 49.45}, {56, 32, 32, 49.10}, {28, 64, 64, 46.99},
                          {80, 16, 8, 33.08},  {40, 32, 16, 31.93}, {20, 48, 24, 29.26},
                          {24, 16, 32, 29.46}, {12, 32, 64, 23.86}, {6, 64, 128, 12.01}};
  std::cout
      << "### Pointwise layers (bytes; segment = min(C_in, C_out))\n\n"
      << "| H/W, C_in, C_out | naive | greedy | tinyengine | vmcu | max(In,Out) | vmcu - min | within one segment | "
         "vmcu vs tinyengine | paper vs TinyEngine |\n|---|---|---|---|---|---|---|---|---|---|\n";
  for (const Shape& s : shapes) {
    const vm::Graph g =
        build(R"({"input":[1,)" + std::to_string(s.hw) + "," + std::to_string(s.hw) + "," + std::to_string(s.cin) +
              R"(],"layers":[{"type":"pointwise","out_channels":)" + std::to_string(s.cout) + "}]}");
    const Peaks p = peaks(g);
    const size_t in = static_cast<size_t>(s.hw) * s.hw * s.cin, out = static_cast<size_t>(s.hw) * s.hw * s.cout;
    const size_t minimum = std::max(in, out);
    const size_t segment = static_cast<size_t>(std::min(s.cin, s.cout));
    std::cout << "| " << s.hw << ", " << s.cin << ", " << s.cout << " | " << p.naive << " | " << p.greedy << " | "
              << p.tinyengine << " | " << p.vmcu << " | " << minimum << " | " << (p.vmcu - minimum) << " | "
              << (p.vmcu - minimum <= segment ? "yes" : "NO") << " | "
              << ratio(100.0 * (static_cast<double>(p.vmcu) / static_cast<double>(p.tinyengine) - 1.0)) << "% | -"
              << s.paper_reduction << "% |\n";
  }
  std::cout << "\n";
}

void bottleneck_table() {
  struct Block {
    const char* name;
    int hw, cin, cmid, cout, k;
    double paper_kb;
  };
  const Block blocks[] = {{"S1", 20, 16, 48, 16, 3, 13.9},  {"S2", 20, 16, 48, 16, 3, 13.9},
                          {"S3", 10, 24, 144, 24, 3, 12.0}, {"S4", 10, 24, 120, 24, 5, 11.0},
                          {"S5", 5, 40, 240, 40, 7, 10.7},  {"S6", 5, 48, 192, 48, 3, 9.7},
                          {"S7", 3, 96, 480, 96, 3, 11.5},  {"S8", 3, 96, 384, 96, 3, 10.2}};
  std::cout << "### MCUNet-5fps-VWW inverted bottlenecks (KB = 1000 B; stride 1, residual)\n\n"
            << "| block | H/W, C_in, C_mid, C_out, k | naive | greedy | tinyengine | vmcu | vmcu kernel | paper vMCU | "
               "at or below paper |\n"
            << "|---|---|---|---|---|---|---|---|---|\n";
  size_t worst = 0;
  for (const Block& b : blocks) {
    const vm::Graph g =
        build(R"({"input":[1,)" + std::to_string(b.hw) + "," + std::to_string(b.hw) + "," + std::to_string(b.cin) +
              R"(],"layers":[{"type":"bottleneck","mid_channels":)" + std::to_string(b.cmid) + R"(,"out_channels":)" +
              std::to_string(b.cout) + R"(,"kernel":)" + std::to_string(b.k) + R"(,"residual":true}]})");
    vm::RingModel ring = take(vm::RingModel::create(g));
    const Peaks p = peaks(g, &ring);
    worst = std::max(worst, p.vmcu);
    const bool fused = ring.plan().layers.size() == 1 && ring.plan().layers[0].kernel == vm::RingKernel::kBottleneck;
    std::cout << "| " << b.name << " | " << b.hw << ", " << b.cin << ", " << b.cmid << ", " << b.cout << ", " << b.k
              << " | " << kb(p.naive) << " | " << kb(p.greedy) << " | " << kb(p.tinyengine) << " | " << kb(p.vmcu)
              << " | " << (fused ? "fused" : "unfused") << " | " << b.paper_kb << " | "
              << (static_cast<double>(p.vmcu) <= b.paper_kb * 1000.0 ? "yes" : "NO") << " |\n";
  }
  std::cout << "\nPeak over S1-S8: vmcu " << kb(worst) << " KB (paper: vMCU 13.9, TinyEngine 36.0, HMCOS 48.8).\n\n";
}

// The first block of MCUNet-320KB-ImageNet (the network's memory bottleneck): 3x3 stride-2 stem
// conv 3->16 on 176x176, depthwise 3x3, 1x1 projection 16->8; vmcu with and without fusion.
void stem_table() {
  const vm::Graph g = build(R"({"seed":1,"input":[1,176,176,3],"layers":[
      {"type":"conv","kernel":3,"out_channels":16,"stride":2},
      {"type":"bottleneck","mid_channels":16,"out_channels":8,"kernel":3}]})");
  vm::RingModel ring = take(vm::RingModel::create(g));
  const Peaks p = peaks(g, &ring);
  vm::RingPlanOptions no_fusion;
  no_fusion.fuse = false;
  vm::RingModel plain = take(vm::RingModel::create(g, no_fusion));
  take(plain.verify(input_for(g)));
  constexpr size_t kPaperVmcu = 102700, kPaperTinyEngine = 247800;
  std::cout << "### MCUNet-320KB-ImageNet first block (bytes): stem conv 3x3/2 3->16 at 176x176, depthwise 3x3, "
               "pointwise 16->8\n\n"
            << "| naive | greedy | tinyengine | vmcu unfused | vmcu | vmcu kernel | paper TinyEngine | paper vMCU | "
               "vmcu / paper vMCU | at or below paper |\n|---|---|---|---|---|---|---|---|---|---|\n"
            << "| " << p.naive << " | " << p.greedy << " | " << p.tinyengine << " | " << plain.plan().peak_bytes
            << " | " << p.vmcu << " | " << vm::ring_kernel_name(ring.plan().layers.front().kernel) << " | "
            << kPaperTinyEngine << " | " << kPaperVmcu << " | "
            << ratio(static_cast<double>(p.vmcu) / static_cast<double>(kPaperVmcu)) << " | "
            << (p.vmcu <= kPaperVmcu ? "yes" : "NO") << " |\n\n";
}

void model_table(const std::string& dir) {
  struct Model {
    const char* file;
    const char* label;
    double target;
    bool int8_input;
  };
  const Model models[] = {{"mcunet-vww1_int8.tflite", "mcunet-vww1 (float input, as shipped)", 1.0, false},
                          {"mcunet-vww1_int8.tflite", "mcunet-vww1 (int8 input)", 0.18, true},
                          {"mlperf-tiny-resnet8_int8.tflite", "ResNet-8", 0.37, false},
                          {"mlperf-tiny-dscnn-kws_int8.tflite", "DS-CNN KWS", 0.55, false},
                          {"mlperf-tiny-vww_96_int8.tflite", "VWW-96 (MobileNetV1-0.25)", 0.40, false},
                          {"mlperf-tiny-ad01_int8.tflite", "anomaly autoencoder (FC)", 1.0, false}};
  std::cout << "### Real models, whole network (bytes)\n\n"
            << "| model | naive | greedy | tinyengine | vmcu (ring + workspace) | vmcu / greedy | target | met | "
               "reference run (ms) | vmcu run (ms) | run time ratio | unfused ring run (ms) | unfused ratio |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const Model& m : models) {
    const std::string path = dir + "/" + m.file;
    if (!std::filesystem::exists(path)) {
      std::cout << "| " << m.label << " | (" << m.file << " absent) |||||||||\n";
      continue;
    }
    vm::Graph g = take(vm::load_tflite(path));
    if (m.int8_input) g = take(vm::with_int8_input(std::move(g)));
    vm::RingModel ring = take(vm::RingModel::create(g));
    const Peaks p = peaks(g, &ring);
    const double r = static_cast<double>(p.vmcu) / static_cast<double>(p.greedy);
    // Host run time: median of repeated runs, ring plan vs one buffer per tensor.
    auto reference = take(vm::Executor::create(g));
    const auto input = input_for(g);
    vm::RingPlanOptions no_fusion;
    no_fusion.fuse = false;
    vm::RingModel plain = take(vm::RingModel::create(g, no_fusion));
    take(plain.verify(input));
    std::vector<double> ref_ms, ring_ms, plain_ms;
    for (int i = 0; i < 15; ++i) {
      perfmem::Stopwatch c;
      take(plain.run(input));
      plain_ms.push_back(c.elapsed_ms());
      perfmem::Stopwatch a;
      take(reference.run(input));
      ref_ms.push_back(a.elapsed_ms());
      perfmem::Stopwatch b;
      take(ring.run(input));
      ring_ms.push_back(b.elapsed_ms());
    }
    const double ref_median = perfmem::summarize(ref_ms).median, ring_median = perfmem::summarize(ring_ms).median;
    const double plain_median = perfmem::summarize(plain_ms).median;
    std::cout << "| " << m.label << " | " << p.naive << " | " << p.greedy << " | " << p.tinyengine << " | " << p.vmcu
              << " (" << ring.plan().ring_bytes << " + " << ring.plan().workspace_bytes << ", "
              << vm::ring_placement_name(ring.plan().placement) << " level) | " << ratio(r) << " | <= " << m.target
              << " | " << (r <= m.target ? "yes" : "NO") << " | " << ratio(ref_median) << " | " << ratio(ring_median)
              << " | " << ratio(ring_median / ref_median) << " | " << ratio(plain_median) << " | "
              << ratio(plain_median / ref_median) << " |\n";
  }
  std::cout << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : std::string(PERFMEM_SHARED_DIR) + "/models/mcu";
  pointwise_table();
  bottleneck_table();
  stem_table();
  model_table(dir);
  return 0;
}
