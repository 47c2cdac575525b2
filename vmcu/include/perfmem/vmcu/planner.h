// perfmem/vmcu/planner.h: tensor-level memory planners (the baselines vMCU is compared with)
// and an independent verifier of their plans.
//
//   auto reqs = perfmem::vmcu::planner_requirements(graph, perfmem::vmcu::PlannerKind::kGreedy);
//   auto plan = perfmem::vmcu::plan_memory(reqs, perfmem::vmcu::PlannerKind::kGreedy);
//   PERFMEM_RETURN_IF_ERROR(perfmem::vmcu::verify_plan(reqs, plan));
//   std::cout << plan.peak_bytes << "\n";
//
// A requirement is a buffer of `bytes` alive over the operator steps [first_use, last_use]
// (inclusive). `inplace_partner` names a buffer whose last use is this buffer's first use and
// whose storage the producing operator may legally overwrite while writing this one (TinyEngine's
// in-place depthwise conv and elementwise ops); `inplace_workspace_bytes` is the scratch that
// in-place execution needs during that step (one channel of the input for depthwise).
//
// Planners are pure functions of the requirements:
//   naive      every buffer at its own offset (sum of sizes);
//   greedy     TFLite Micro's GreedyMemoryPlanner, byte for byte when fed planner_requirements:
//              buffers sorted largest first by a stable sort of the list taken last-added first
//              (TFLite Micro fills its sort array from the tail), each placed in the lowest gap
//              between already-placed buffers whose lifetimes intersect, else above them;
//   tinyengine in-place hand-overs merged first (TinyEngine's in-place depthwise / elementwise:
//              the output takes its dying input's storage, plus a one-channel workspace),
//              then the merged blocks placed first-fit, largest first.
// The verifier shares no code with the planners: it checks, for every pair of placements whose
// lifetimes intersect, that their address ranges are disjoint — except an in-place pair laid at
// the same offset whose lifetimes touch only at the hand-over step — and recomputes the peak.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/vmcu/model.h"

namespace perfmem::vmcu {

struct BufferRequirement {
  std::string name;
  size_t bytes = 0;
  int first_use = 0;
  int last_use = 0;
  int inplace_partner = -1;            // index into the requirement list, or -1
  size_t inplace_workspace_bytes = 0;  // scratch needed when computed in place
  int tensor = -1;                     // graph tensor index (buffer_requirements), -1 for hand-made lists
};

enum class PlannerKind { kNaive, kGreedy, kTinyEngine };
std::string_view planner_name(PlannerKind kind);
Result<PlannerKind> parse_planner(std::string_view name);  // "naive" | "greedy" | "tinyengine"

struct Placement {
  std::string name;
  size_t bytes = 0;
  int first_use = 0, last_use = 0;
  size_t offset = 0;
  int inplace_of = -1;        // index of the requirement whose storage this one reuses
  bool is_workspace = false;  // scratch added by the planner (single step)
};

struct MemoryPlan {
  PlannerKind planner = PlannerKind::kNaive;
  // placements[i] for i < requirements.size() is requirement i; workspaces follow.
  std::vector<Placement> placements;
  size_t peak_bytes = 0;  // arena size: max over placements of offset + bytes
};

MemoryPlan plan_memory(const std::vector<BufferRequirement>& requirements, PlannerKind kind);

// Independent check of a plan against its requirements (see the header comment).
Status verify_plan(const std::vector<BufferRequirement>& requirements, const MemoryPlan& plan);

// Activation buffers of a graph in tensor order, as TFLite Micro's allocation info lists them:
// constants (flash) and zero-sized tensors are left out; sizes are rounded up to `alignment`;
// graph inputs live from step 0, every other tensor from the operator that writes it to the
// last operator that reads it (inclusive), graph outputs to the last operator. In-place
// partners for depthwise convs with one output channel per input channel and for ADD /
// RESHAPE / QUANTIZE-requantize whose output is no larger than an input dying at that step.
std::vector<BufferRequirement> buffer_requirements(const Graph& graph, size_t alignment = 1);

// TFLite Micro aligns every arena buffer to 16 bytes (MicroArenaBufferAlignment).
inline constexpr size_t kTflmArenaAlignment = 16;

// The requirements each planner is fed: `greedy` sees TFLite Micro's 16-byte aligned sizes (so
// its peak is the arena TFLite Micro plans), `naive` and `tinyengine` the exact sizes.
std::vector<BufferRequirement> planner_requirements(const Graph& graph, PlannerKind kind);

// Bytes live at each step (sum of the live placements, shared in-place storage counted once).
std::vector<size_t> live_bytes_per_step(const MemoryPlan& plan, int steps);

}  // namespace perfmem::vmcu
