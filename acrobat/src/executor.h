// The executor (internal to the runtime): runs a schedule's batches through the kernels and
// fills in the recording's tensor data.
//
//   Executor ex(program, options);
//   ex.reset();                                   // per minibatch: the tensor arena
//   ex.run(recording, schedule, &stats);          // every batch, in order
//
// A batch of one operator: operands are read through per-instance pointer arrays (gathered
// by copy first when the schedule asks, as DyNet does), outputs are one contiguous arena block.
// A batch of a fused group runs step by step over tiles of instances (GroupPlan). Slices are
// views: their output points into the operand. With RuntimeOptions::threads > 1 the kernels
// split their work over a thread pool, and a fused elementwise run splits its instances
// (each thread with its own per-instance buffer); everything else runs on the caller. A
// program compiled ahead of time brings its fused runs as generated kernels (one loop over
// the elements per instance, intermediates in registers), which replace the executor's
// instruction-by-instruction run of the same step.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "arena.h"
#include "perfmem/acrobat/kernels.h"
#include "perfmem/acrobat/recording.h"
#include "perfmem/acrobat/runtime.h"
#include "perfmem/acrobat/schedulers.h"

namespace perfmem::acrobat {

// How each register of a fused group is stored while the group runs.
enum class RegKind : uint8_t {
  kInternal,  // an intermediate: tile storage, a per-instance buffer, or a view
  kInput,     // a group input: the operands' pointer array
  kOutput,    // kept after the group: one contiguous arena block for the whole batch
};

// How a fused group executes: its instructions split into steps. A step is either one
// instruction over a whole tile (products: one GEMM per tile) or a run of consecutive
// elementwise instructions and slices, executed instance by instance so that the
// instance's intermediates stay in L1 (one pass over the tile instead of one per
// instruction). Registers defined and used only inside one run ("local") live in a
// per-instance buffer reused by every instance and never reach memory.
struct GroupStep {
  size_t begin, end;  // instructions [begin, end)
  bool fused;
};
struct GroupPlan {
  bool built = false;
  std::vector<GroupStep> steps;
  std::vector<char> local;         // per register
  std::vector<int64_t> local_off;  // per local register (not slices): offset in the buffer
  int64_t local_size = 0;
  // Per step: the fused run compiled ahead of time for it (RuntimeOptions::aot_fused_runs),
  // or null (the executor runs the instructions itself).
  std::vector<AotFusedRunFn> compiled;
};
// Builds the plan of group `g`; with `fuse` false every instruction is its own step.
GroupPlan plan_group(const FusedGroup& g, bool fuse);

class Executor {
 public:
  Executor(const Program& program, const RuntimeOptions& options);

  void set_memory_limit(int64_t bytes) { arena_.set_limit(bytes); }
  // Frees the previous minibatch's tensors (the arena's blocks are kept).
  void reset() { arena_.reset(); }

  // Runs every batch of `schedule` in order; adds kernel time and launches to `stats`.
  // Throws MemoryLimitError when the minibatch needs more than the memory limit.
  void run(Recording& rec, const Schedule& schedule, RunStats* stats);

 private:
  // Runs one batch: the nodes batch[0, n), all of `kernel`.
  void run_batch(Recording& rec, int kernel, const uint32_t* batch, int n, bool gather_copy);
  const float* const* arg_ptrs(Recording& rec, const uint32_t* batch, int n, int i, bool shared, bool gather_copy,
                               int64_t size);
  void run_kernel(const KernelSig& sig, int n, const float* const* const* a, float* const* out);
  void run_group(Recording& rec, int group, const uint32_t* batch, int n, bool gather_copy);
  template <class RegsAt>
  void run_compiled(const FusedGroup& g, const GroupPlan& plan, const GroupStep& step, AotFusedRunFn fn, int count,
                    const RegsAt& regs_at);
  template <class RegsAt>
  void run_fused(const FusedGroup& g, const GroupPlan& plan, const GroupStep& step, int count, const RegsAt& regs_at);

  const Program& prog_;
  RuntimeOptions opt_;
  std::unique_ptr<ThreadPool> pool_;  // threads - 1 workers; null when single-threaded
  std::vector<int64_t> kernel_out_size_;
  BlockArena arena_{16 << 20};
  kernels::Scratch scratch_;
  RunStats* stats_ = nullptr;
  std::vector<float*> ptr_buf_;  // operand pointer arrays (never written through for inputs)
  std::vector<float*> out_buf_;
  std::vector<GroupPlan> group_plans_;
  std::vector<char> group_stored_;
  std::vector<size_t> group_reg_off_;
  std::vector<RegKind> group_kind_;
  std::vector<float*> pair_in_, pair_out_;
  std::vector<float**> fused_regs_;  // a compiled fused run's register table
};

}  // namespace perfmem::acrobat
