// The batching runtime: runs a compiled .acr program for every instance of a minibatch,
// records its tensor ops, and executes them as batched kernels under one of four schedulers.
//
//   auto program = compile_program("treelstm.acr", text, compile_options_for(Scheduler::kAcrobat));
//   auto rt = Runtime::create(**program, {Scheduler::kAcrobat});
//   PERFMEM_RETURN_IF_ERROR((*rt)->set_inputs(complete_trees(64, 6, 404)));
//   std::vector<float> logits;  RunStats stats;
//   PERFMEM_RETURN_IF_ERROR((*rt)->run_minibatch(0, 64, &logits, &stats));
//
// The parts, each in its own file and testable alone:
//  * parameters (src/parameters.cpp): hash-initialised or loaded from safetensors;
//  * inputs (src/inputs.cpp): instances converted to values of main's parameter type;
//  * the interpreter (src/interpreter.cpp): runs main for every instance of the minibatch
//    and produces a plain Recording (recording.h): nodes, operands, tensors, depths, phases;
//    or, with RuntimeOptions::aot_main, the program's generated C++ does (aot.h), recording
//    the same nodes;
//  * a scheduler (schedulers.h): a pure function Recording -> batches (none, acrobat,
//    dynet-agenda, dynet-depth; same interpreter, same kernels, only the batching differs);
//  * the executor (src/executor.cpp): runs the batches through the kernels (kernels.h).
// A program whose decisions read tensor values (item, index, comparisons with a Tensor[1])
// runs in rounds: the interpreter runs every instance as a fiber until each waits for a value
// or finishes, the scheduler batches what was recorded since the last round
// (Recording::executed_nodes), the executor runs it, and the waiting instances resume
// (RunStats::value_rounds counts the rounds). Other programs record everything first.
// An independent check (`verify`) confirms at every launch that each operand was computed
// before its use and that shared parameters really are the same tensor across a launch.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "perfmem/acrobat/ast.h"
#include "perfmem/acrobat/data.h"
#include "perfmem/acrobat/schedulers.h"
#include "perfmem/core/stats.h"

namespace perfmem::acrobat {

// The analyses a scheduler uses: acrobat all of them; the others need no depths or fusion.
CompileOptions compile_options_for(Scheduler s, std::map<std::string, int64_t> overrides = {});

// A program compiled ahead of time (aot.h): main of the generated code.
struct AotState;
struct Value;
using AotMainFn = Value (*)(AotState&, Value);

// A fused run of a group's elementwise instructions compiled ahead of time (aot.h): computes
// the instructions [begin, end) of group `group` (one step of the executor's GroupPlan) for
// the instances [b0, b1) of a tile. regs[r] is register r's pointer array for the tile (null
// for registers local to the run), `local` the calling thread's buffer of local registers
// (laid out as GroupPlan::local_off says). Bit-identical to the executor's own fused run.
using AotFusedRunFn = void (*)(int64_t b0, int64_t b1, float** const* regs, float* local);
struct AotFusedRun {
  int group;
  int begin, end;
  AotFusedRunFn fn;
};

struct RuntimeOptions {
  Scheduler scheduler = Scheduler::kAcrobat;
  bool verify = false;             // run the independent schedule check
  bool reference_kernels = false;  // plain loops instead of BLAS/vectorised kernels
  std::string params_file;         // safetensors file for load("name") parameters
  int max_call_depth = 100000;     // deeper recursion is an error, not a crash
  bool profile = false;            // time each operator kind (RunStats::kernel_ms_by_op)
  // Fused groups run over tiles of instances whose stored intermediates fit this many bytes,
  // but products keep at least group_min_tile_rows rows per call (fewer rows lose more in the
  // GEMM than the cache saves). Tests shrink both to exercise many tiles.
  int64_t group_tile_bytes = int64_t{1} << 20;
  int group_min_tile_rows = 128;
  // Memory one minibatch may use for tensors (and, separately, for the interpreter's
  // objects); more is an error before anything is allocated, not a failed allocation.
  int64_t max_minibatch_bytes = int64_t{8} << 30;
  // Threads for the batched kernels (the caller plus threads - 1 workers): products and
  // elementwise work split across them (kernels.h, Scratch: results bit-identical except for
  // OpenBLAS products over packed_max_rows rows or more, which agree to rounding).
  // Launches below parallel_min_work stay on one thread. Recording and scheduling are serial.
  int threads = 1;
  int64_t parallel_min_work = int64_t{1} << 18;
  // Runs the program's generated code (aot.h) instead of interpreting it. Set by
  // load_aot_model, which checks the program is the one the code was generated from.
  AotMainFn aot_main = nullptr;
  // Its fused runs, used in place of the executor's run of the same instructions.
  const AotFusedRun* aot_fused_runs = nullptr;
  size_t num_aot_fused_runs = 0;
  // Ablations of the acrobat scheduler's run-time optimisations (the benchmark turns each off
  // in turn; results stay equal to the unbatched run):
  //  * inline_depth false: the recorded depths are ignored and each node's dataflow depth is
  //    computed from the operand edges before bucketing (schedule_acrobat_dataflow_depth);
  //  * gather_fusion false: scattered operands of every launch, fused groups' inputs
  //    included, are first copied into one contiguous block, as DyNet does.
  bool inline_depth = true;
  bool gather_fusion = true;
};

// The benchmark's ablations (acrobat_bench --ablation): each turns one optimisation of the
// acrobat configuration off, a compile-time analysis (CompileOptions) or a run-time switch
// (RuntimeOptions): coarsening, static depth, inline depth, gather fusion, ghost ops, phases,
// stacked products.
// None changes the results beyond rounding (tests/runtime_test.cpp runs each against the
// unbatched run).
struct Ablation {
  const char* name;  // what is off, e.g. "coarsening"
  void (*turn_off)(CompileOptions& compile, RuntimeOptions& runtime);
};
const std::vector<Ablation>& acrobat_ablations();

struct RunStats {
  double total_ms = 0;       // wall clock
  double cpu_ms = 0;         // CPU time of the process over the same span (robust to a busy machine)
  double record_ms = 0;      // program execution + recording
  double schedule_ms = 0;    // bucketing / graph building and batching decisions
  double kernel_ms = 0;      // batched kernels, including gathers
  int64_t ops_recorded = 0;  // recorded nodes (a fused group is one node)
  int64_t tensor_ops = 0;    // the program's tensor operations inside them (views excluded)
  int64_t kernels_launched = 0;
  // Floating-point operations of the matrix products run (2 * rows * inner * columns per
  // product; batching changes how they are grouped, never how many): the work a product
  // floor is computed from.
  int64_t product_flops = 0;
  int64_t max_depth = 0;  // largest depth used (acrobat)
  // Rounds in which instances waited for tensor values (item, index, comparisons with a
  // Tensor[1]): each round schedules and executes everything recorded so far, batched.
  int64_t value_rounds = 0;
  std::map<std::string, double> kernel_ms_by_op;  // with RuntimeOptions::profile
};

// The medians of several timed minibatches' RunStats (latency also as a full Summary).
struct RunStatsMedians {
  size_t minibatches = 0;
  Summary latency;  // of total_ms
  double cpu_ms = 0, record_ms = 0, schedule_ms = 0, kernel_ms = 0;
  double ops_recorded = 0, tensor_ops = 0, kernels_launched = 0, product_flops = 0, value_rounds = 0;
};

// Collects RunStats of timed minibatches; the CLI and the benchmark report the same figures.
class RunStatsSeries {
 public:
  void add(const RunStats& stats);
  RunStatsMedians medians() const;

 private:
  std::vector<double> total_, cpu_, record_, schedule_, kernel_, ops_, tensor_ops_, launches_, flops_, rounds_;
};

class Runtime {
 public:
  static Result<std::unique_ptr<Runtime>> create(const Program& program, RuntimeOptions options);
  ~Runtime();

  // Converts instances into values of main's parameter type (checked; errors name the
  // instance). Kept for the runtime's lifetime.
  Status set_inputs(const std::vector<Instance>& data);
  size_t num_inputs() const;

  // Runs instances [begin, end) as one minibatch and appends main's outputs, instance-major.
  Status run_minibatch(size_t begin, size_t end, std::vector<float>* outputs, RunStats* stats);

  const Program& program() const;

 private:
  Runtime() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace perfmem::acrobat
