// `vmcu compile` on the host: every generated library, built with the host C compiler (C99,
// -Wall -Wextra -Werror), gives the bytes of the reference executor (`vmcu run`) for the
// shared models and for built models covering every layer kind of every planner.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "perfmem/testing/required.h"
#include "perfmem/vmcu/builder.h"
#include "perfmem/vmcu/codegen.h"
#include "perfmem/vmcu/executor.h"
#include "perfmem/vmcu/ring_plan.h"
#include "test_support.h"

namespace vm = perfmem::vmcu;
namespace fs = std::filesystem;
using perfmem::testing::run_command;
using vmcu_test::read_file;
using vmcu_test::temp_dir;
using vmcu_test::write_file;

namespace {

// Reads the input file, runs the library once, writes the output file.
constexpr const char* kDriver = R"(#include <stdio.h>
#include <string.h>
#include "model.h"
static unsigned char in[VMCU_MODEL_INPUT_BYTES], out[VMCU_MODEL_OUTPUT_BYTES];
int main(int argc, char** argv) {
  FILE* f;
  int rc;
  if (argc != 3 || !(f = fopen(argv[1], "rb")) || fread(in, 1, sizeof in, f) != sizeof in) return 2;
  fclose(f);
#ifdef IN_PLACE /* the input written where the arena keeps it, as a camera would */
  memcpy(vmcu_model_input_buffer(), in, sizeof in);
  rc = vmcu_model_run(0, out);
#else
  rc = vmcu_model_run(in, out);
#endif
  if (rc != 0 || !(f = fopen(argv[2], "wb")) || fwrite(out, 1, sizeof out, f) != sizeof out) return 3;
  fclose(f);
  return 0;
}
)";

constexpr const char* kCFlags = "-std=c99 -pedantic -Wall -Wextra -Werror -O1";

// The kernel objects of a library, compiled once per set of kernel files (libraries without
// fused layers carry no segment_fused.c; otherwise every library carries the same copy).
fs::path kernel_objects(const fs::path& lib) {
  static std::map<std::string, fs::path> built;
  std::vector<fs::path> sources;
  for (const auto& entry : fs::directory_iterator(lib / "vmcu_kernels" / "src"))
    if (entry.path().extension() == ".c") sources.push_back(entry.path());
  std::sort(sources.begin(), sources.end());
  std::string key;
  for (const auto& s : sources) key += s.filename().string() + ";";
  if (auto it = built.find(key); it != built.end()) return it->second;
  const fs::path dir = temp_dir() / ("kernel-objects-" + std::to_string(built.size()));
  fs::create_directories(dir);
  for (const auto& s : sources) {
    const auto r = run_command(std::string("cc ") + kCFlags + " -I" + (lib / "vmcu_kernels/include").string() + " -c " +
                               s.string() + " -o " + (dir / s.filename()).replace_extension(".o").string());
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }
  built[key] = dir;
  return dir;
}

// Compiles `graph` with `planner`, builds it with the host compiler, runs it on `input`.
std::vector<uint8_t> run_generated(const vm::Graph& graph, vm::CompilePlanner planner, const std::string& name,
                                   const std::vector<uint8_t>& input, const vm::RingPlanOptions& ring = {},
                                   vm::KernelChoice kernels = vm::KernelChoice::kOptimized) {
  vm::CompileOptions options;
  options.planner = planner;
  options.ring = ring;
  options.kernels = kernels;
  auto lib = vm::compile_model(graph, options);
  EXPECT_TRUE(lib.ok()) << lib.status().to_string();
  if (!lib.ok()) return {};
  const fs::path dir = temp_dir() / (name + "-" + std::string(vm::compile_planner_name(planner)) + "-" +
                                     std::string(vm::kernel_choice_name(kernels)));
  EXPECT_TRUE(vm::write_library(*lib, dir.string()).ok());
  std::ofstream(dir / "driver.c") << kDriver;
  const fs::path objects = kernel_objects(dir);
  const std::string inc = " -I" + dir.string() + " -I" + (dir / "vmcu_kernels/include").string();
  // The greedy builds take their input through vmcu_model_input_buffer().
  const std::string in_place = planner == vm::CompilePlanner::kGreedy ? " -DIN_PLACE" : "";
  const auto build =
      run_command(std::string("cc ") + kCFlags + in_place + inc + " " + (dir / "model.c").string() + " " +
                  (dir / "driver.c").string() + " " + (objects / "*.o").string() + " -o " + (dir / "model").string());
  EXPECT_EQ(build.exit_code, 0) << build.output;
  write_file(dir / "in.bin", input);
  const auto ran =
      run_command((dir / "model").string() + " " + (dir / "in.bin").string() + " " + (dir / "out.bin").string());
  EXPECT_EQ(ran.exit_code, 0) << ran.output;
  return read_file(dir / "out.bin");
}

void expect_all_planners_match(const vm::Graph& graph, const std::string& name, uint32_t seed,
                               std::initializer_list<vm::CompilePlanner> planners,
                               const vm::RingPlanOptions& ring = {}) {
  auto exec = vm::Executor::create(graph);
  ASSERT_TRUE(exec.ok()) << exec.status().to_string();
  const auto input = vmcu_test::random_input(graph.tensors[graph.inputs[0]], seed);
  auto expected = exec->run(input);
  ASSERT_TRUE(expected.ok()) << expected.status().to_string();
  for (vm::CompilePlanner p : planners)
    EXPECT_EQ(run_generated(graph, p, name, input, ring), *expected)
        << name << " planner " << vm::compile_planner_name(p);
}

vm::Graph built(const std::string& spec) {
  auto bytes = vm::build_model_from_json(spec, "spec");
  EXPECT_TRUE(bytes.ok()) << bytes.status().to_string();
  auto g = vm::parse_tflite(*bytes, "built.tflite");
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  return *g;
}

// The same network behind a float32 QUANTIZE and in front of a DEQUANTIZE (a camera's floats
// in, real-valued scores out): the float kernels and the ring's QUANTIZE layer.
vm::Graph with_float_io(vm::Graph g) {
  const int in = g.inputs[0], out = g.outputs[0];
  vm::Tensor fin = g.tensors[in], fout = g.tensors[out];
  fin.name = "float_input";
  fin.type = vm::ElementType::kFloat32;
  fin.quantization = {};
  fout.name = "float_output";
  fout.type = vm::ElementType::kFloat32;
  fout.quantization = {};
  g.tensors.push_back(fin);
  g.tensors.push_back(fout);
  const int fi = static_cast<int>(g.tensors.size()) - 2, fo = fi + 1;
  vm::Operator q, dq;
  q.kind = vm::OpKind::kQuantize;
  q.inputs = {fi};
  q.outputs = {in};
  dq.kind = vm::OpKind::kDequantize;
  dq.inputs = {out};
  dq.outputs = {fo};
  g.ops.insert(g.ops.begin(), q);
  g.ops.push_back(dq);
  g.inputs = {fi};
  g.outputs = {fo};
  return g;
}

constexpr auto kAll = {vm::CompilePlanner::kVmcu, vm::CompilePlanner::kGreedy, vm::CompilePlanner::kTinyEngine};

TEST(Codegen, BuiltModelsMatchTheReferenceUnderEveryPlanner) {
  const std::vector<std::pair<std::string, std::string>> specs = {
      // fused bottlenecks (residual and strided), stem block, pools, global pool, FC, softmax
      {"mbv2", R"({"mobilenetv2": {"width": 0.35, "resolution": 48, "classes": 7}, "seed": 2})"},
      // a 9x9 conv runs staged; MEAN (staged with its accumulators); depth multiplier 2
      {"staged",
       R"({"input":[1,12,12,3],"layers":[{"type":"conv","kernel":9,"out_channels":6},
          {"type":"depthwise","kernel":3,"depth_multiplier":2},{"type":"maxpool","kernel":3,"stride":2},
          {"type":"avgpool","kernel":2,"stride":2},{"type":"mean","keep_dims":false},
          {"type":"fully_connected","units":5},{"type":"softmax"}]})"},
      // residual bottleneck whose depthwise TinyEngine runs in place
      {"residual",
       R"({"seed":4,"input":[1,10,10,8],"layers":[{"type":"pointwise","out_channels":16},
          {"type":"depthwise","kernel":3,"stride":2},{"type":"bottleneck","mid_channels":24,"out_channels":16,
          "kernel":3,"residual":true},{"type":"conv","kernel":3,"out_channels":8,"padding":"valid"}]})"},
  };
  for (const auto& [name, spec] : specs) expect_all_planners_match(built(spec), name, 7, kAll);
  // Staged layers inside a segment-level plan (MEAN with its accumulators in the workspace,
  // SOFTMAX), the ring's float QUANTIZE and a DEQUANTIZE.
  const vm::Graph staged = with_float_io(built(
      R"({"input":[1,16,16,3],"layers":[{"type":"conv","kernel":3,"out_channels":8,"stride":2},
          {"type":"depthwise","kernel":3,"depth_multiplier":2},{"type":"maxpool","kernel":3,"stride":2},
          {"type":"mean","keep_dims":false},{"type":"fully_connected","units":5},{"type":"softmax"}]})"));
  // The whole network at segment level (no per-region choice, no tensor-level fallback), so
  // that MEAN and SOFTMAX run as staged layers.
  vm::RingPlanOptions segment_only;
  segment_only.per_region_choice = false;
  segment_only.tensor_level_fallback = false;
  auto plan = vm::plan_ring(staged, segment_only);
  ASSERT_TRUE(plan.ok()) << plan.status().to_string();
  int staged_layers = 0, quantize_layers = 0;
  for (const auto& l : plan->layers) {
    staged_layers += l.kernel == vm::RingKernel::kStaged;
    quantize_layers += l.kernel == vm::RingKernel::kQuantize;
  }
  EXPECT_GE(staged_layers, 2);
  EXPECT_EQ(quantize_layers, 1);
  expect_all_planners_match(staged, "float_io", 5, kAll, segment_only);
  expect_all_planners_match(staged, "float_io_regions", 5, {vm::CompilePlanner::kVmcu});
}

// Tensor-level plans call the ring kernels over the arena (optimized, the default) or the
// reference kernels; both libraries give the reference executor's bytes.
TEST(Codegen, TensorLevelLayersRunEitherKernelSetBitExact) {
  const vm::Graph g = built(
      R"({"seed":6,"input":[1,9,9,5],"layers":[{"type":"conv","kernel":3,"out_channels":12,"stride":2},
          {"type":"pointwise","out_channels":20},{"type":"depthwise","kernel":3},{"type":"pointwise","out_channels":6},
          {"type":"mean","keep_dims":false},{"type":"fully_connected","units":7}]})");
  auto exec = vm::Executor::create(g);
  ASSERT_TRUE(exec.ok()) << exec.status().to_string();
  const auto input = vmcu_test::random_input(g.tensors[g.inputs[0]], 11);
  auto expected = exec->run(input);
  ASSERT_TRUE(expected.ok());
  for (vm::KernelChoice k : {vm::KernelChoice::kOptimized, vm::KernelChoice::kReference}) {
    for (vm::CompilePlanner p : {vm::CompilePlanner::kGreedy, vm::CompilePlanner::kTinyEngine})
      EXPECT_EQ(run_generated(g, p, "kernels", input, {}, k), *expected)
          << vm::compile_planner_name(p) << " " << vm::kernel_choice_name(k);
    vm::CompileOptions o;
    o.planner = vm::CompilePlanner::kGreedy;
    o.kernels = k;
    auto lib = vm::compile_model(g, o);
    ASSERT_TRUE(lib.ok());
    const auto model_c =
        std::find_if(lib->files.begin(), lib->files.end(), [](auto& f) { return f.path == "model.c"; });
    ASSERT_NE(model_c, lib->files.end());
    const bool ring_calls = model_c->text.find("vmcu_seg_conv2d_s8(") != std::string::npos &&
                            model_c->text.find("vmcu_seg_pointwise_conv_s8(") != std::string::npos &&
                            model_c->text.find("vmcu_seg_depthwise_conv2d_s8(") != std::string::npos &&
                            model_c->text.find("vmcu_seg_fully_connected_s8(") != std::string::npos;
    EXPECT_EQ(ring_calls, k == vm::KernelChoice::kOptimized) << vm::kernel_choice_name(k);
    EXPECT_EQ(lib->stage_bytes > 0, k == vm::KernelChoice::kOptimized);
  }
  EXPECT_FALSE(vm::parse_kernel_choice("dsp").ok());
}

TEST(Codegen, SharedModelsMatchTheReference) {
  int checked = 0;
  for (const std::string& m : vmcu_test::shared_model_names()) {
    const std::string path = vmcu_test::shared_model(m);
    if (!fs::exists(path)) continue;
    auto g = vm::load_tflite(path);
    ASSERT_TRUE(g.ok()) << g.status().to_string();
    // Every model under vmcu; the tensor-level planners on the smaller two (the built models
    // above cover their code paths, and compile time is what this test costs).
    const bool small =
        std::string(m).find("kws") != std::string::npos || std::string(m).find("resnet8") != std::string::npos;
    if (small)
      expect_all_planners_match(*g, m, 11, kAll);
    else
      expect_all_planners_match(*g, m, 11, {vm::CompilePlanner::kVmcu});
    ++checked;
  }
  if (checked == 0) PERFMEM_SKIP_UNLESS_REQUIRED("shared models not present under " << PERFMEM_SHARED_DIR);
}

TEST(Codegen, ArenaIsThePlannedPeakAndTheHeaderSaysSo) {
  const vm::Graph g = built(R"({"input":[1,16,16,8],"layers":[{"type":"pointwise","out_channels":24},
      {"type":"depthwise","kernel":3},{"type":"pointwise","out_channels":8}]})");
  auto plan = vm::plan_ring(g);
  ASSERT_TRUE(plan.ok());
  auto lib = vm::compile_model(g, {});
  ASSERT_TRUE(lib.ok()) << lib.status().to_string();
  EXPECT_EQ(lib->plan_bytes, plan->peak_bytes);
  EXPECT_EQ(lib->scratch_bytes, 0u);
  std::string header, source;
  for (const auto& f : lib->files) {
    if (f.path == "model.h") header = f.text;
    if (f.path == "model.c") source = f.text;
  }
  EXPECT_NE(header.find("#define VMCU_MODEL_ARENA_BYTES " + std::to_string(plan->peak_bytes) + "u"), std::string::npos);
  EXPECT_NE(header.find("#define VMCU_MODEL_INPUT_SHAPE {1, 16, 16, 8}"), std::string::npos);
  EXPECT_NE(header.find("int vmcu_model_run(const void* input, void* output);"), std::string::npos);
  EXPECT_NE(source.find("static int8_t vmcu_arena[VMCU_MODEL_ARENA_BYTES]"), std::string::npos);
  EXPECT_EQ(source.find("malloc"), std::string::npos);
}

TEST(Codegen, CMakeAndMakefileFragmentBuildTheLibrary) {
  const vm::Graph g = built(R"({"input":[1,8,8,4],"layers":[{"type":"conv","kernel":3,"out_channels":4}]})");
  auto lib = vm::compile_model(g, {});
  ASSERT_TRUE(lib.ok());
  const fs::path dir = temp_dir() / "fragment";
  ASSERT_TRUE(vm::write_library(*lib, (dir / "lib").string()).ok());
  std::ofstream(dir / "Makefile") << "VMCU_MODEL_DIR = lib\ninclude lib/vmcu_model.mk\n"
                                  << "libmodel.a: $(VMCU_MODEL_SRCS)\n"
                                  << "\t$(CC) $(VMCU_MODEL_CFLAGS) -Wall -Wextra -Werror -c $(VMCU_MODEL_SRCS)\n"
                                  << "\tar rcs $@ *.o\n";
  const auto made = run_command("make -s -C " + dir.string() + " libmodel.a");
  EXPECT_EQ(made.exit_code, 0) << made.output;
  EXPECT_TRUE(fs::exists(dir / "libmodel.a"));
  // The CMake way: a firmware project that adds the folder and links the target.
  std::ofstream(dir / "CMakeLists.txt") << "cmake_minimum_required(VERSION 3.13)\nproject(fw C)\n"
                                        << "add_subdirectory(lib)\nadd_executable(fw driver.c)\n"
                                        << "target_link_libraries(fw PRIVATE vmcu_model)\n";
  std::ofstream(dir / "driver.c") << kDriver;
  const auto configured =
      run_command("cmake -S " + dir.string() + " -B " + (dir / "build").string() +
                  " -DCMAKE_C_FLAGS='-Wall -Wextra -Werror' && cmake --build " + (dir / "build").string());
  EXPECT_EQ(configured.exit_code, 0) << configured.output;
}

TEST(Codegen, BadOptionsAreNamed) {
  EXPECT_FALSE(vm::parse_compile_planner("naive").ok());
  EXPECT_NE(vm::parse_compile_target("cortex-m0").status().to_string().find("cortex-m4"), std::string::npos);
}

}  // namespace
