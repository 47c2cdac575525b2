// perfmem/vmcu/codegen.h: a memory plan emitted as a self-contained C99 library for the board.
//
//   PERFMEM_ASSIGN_OR_RETURN(auto graph, perfmem::vmcu::load_tflite("model.tflite"));
//   perfmem::vmcu::CompileOptions options;            // planner vmcu, target host
//   options.target = perfmem::vmcu::CompileTarget::kCortexM4;
//   PERFMEM_ASSIGN_OR_RETURN(auto lib, perfmem::vmcu::compile_model(std::move(graph), options));
//   PERFMEM_RETURN_IF_ERROR(perfmem::vmcu::write_library(lib, "out/"));
//
// The library (files relative to the output folder):
//   model.h          the API: vmcu_model_run(input, output), the arena size, input/output shapes,
//                    types and quantization, the planner and target it was made for;
//   model.c          weights, biases and requantization constants as const data (flash), the
//                    plan as straight-line kernel calls with every offset a literal, one static
//                    arena of exactly the planned bytes (workspace first, then the ring);
//   vmcu_kernels/    the freestanding kernel sources the calls need (vmcu/mcu: include/, src/);
//   CMakeLists.txt   add_subdirectory() target `vmcu_model`; vmcu_model.mk a Makefile fragment.
// C99, no heap, no perfmem at run time, warning-free with -Wall -Wextra.
//
// Plans. vmcu: the ring plan (ring_plan.h), whose segment, fused, staged and tensor-level layers
// each become one kernel call (staged ones copy their input to the workspace, run the reference
// kernel there and copy the output back, as the host does). greedy / tinyengine: the planner's
// tensor-level arena (planner.h), one reference-kernel call per operator on arena pointers;
// TinyEngine's in-place hand-overs run in place (depthwise one channel at a time through the
// planned workspace, elementwise operators on aliased buffers).
//
// Memory beyond the plan: MEAN's int32 accumulators, which the tensor-level planners do not
// count (TFLite Micro takes them from its scratch area), go to a separate static buffer whose
// size the library states (VMCU_MODEL_SCRATCH_BYTES, 0 for most models).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/vmcu/model.h"
#include "perfmem/vmcu/ring_plan.h"

namespace perfmem::vmcu {

enum class CompilePlanner { kVmcu, kGreedy, kTinyEngine };
enum class CompileTarget { kHost, kCortexM4, kCortexM7 };

std::string_view compile_planner_name(CompilePlanner planner);
std::string_view compile_target_name(CompileTarget target);
Result<CompilePlanner> parse_compile_planner(std::string_view name);  // vmcu | greedy | tinyengine
Result<CompileTarget> parse_compile_target(std::string_view name);    // host | cortex-m4 | cortex-m7

// What tensor-level layers call (every layer of a greedy / tinyengine plan, the tensor-level
// regions of a vmcu plan). kOptimized: convolutions, depthwise and fully-connected layers call
// the ring kernels over the arena (segment_kernels.h; their DSP forms on cores that have the
// extension), bit-exact with the reference; a convolution stages one output pixel in a static
// buffer outside the plan (CompiledModel::stage_bytes). kReference: the plain reference kernels
// (kernels.h) everywhere a tensor-level plan runs.
enum class KernelChoice { kOptimized, kReference };
std::string_view kernel_choice_name(KernelChoice kernels);  // optimized | reference
Result<KernelChoice> parse_kernel_choice(std::string_view name);

struct CompileOptions {
  CompilePlanner planner = CompilePlanner::kVmcu;
  CompileTarget target = CompileTarget::kHost;
  KernelChoice kernels = KernelChoice::kOptimized;
  RingPlanOptions ring;  // the vmcu planner's choices (e.g. whole-network segment level)
};

struct GeneratedFile {
  std::string path;  // relative to the library folder
  std::string text;
};

struct CompiledModel {
  std::vector<GeneratedFile> files;
  size_t plan_bytes = 0;     // the planner's peak = the static arena
  size_t scratch_bytes = 0;  // int32 accumulators outside the plan (see the header comment)
  size_t stage_bytes = 0;    // vmcu_stage, outside the plan (KernelChoice::kOptimized)
  size_t weight_bytes = 0;   // constant data emitted (weights, biases, requantization tables)
  size_t input_bytes = 0, output_bytes = 0;
  size_t layers = 0;  // kernel calls
};

// Emits the library for graph input 0 -> graph output 0 (the bytes `vmcu run` reads and writes).
// Errors: models with more than one input, operators or constant types without a C kernel,
// each naming the file and the operator.
Result<CompiledModel> compile_model(Graph graph, const CompileOptions& options);

// Writes the files under `dir` (created if needed); errors name the file that failed.
Status write_library(const CompiledModel& model, const std::string& dir);

}  // namespace perfmem::vmcu
