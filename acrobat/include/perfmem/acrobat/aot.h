// Ahead-of-time compiled .acr programs: what `acrobat compile` generates and how to run it.
//
// `acrobat compile model.acr -o model.cc --header model.h [--name NAME] [--set H=512]` (or the
// CMake function `acrobat_add_model`, acrobat/cmake/acrobat_add_model.cmake) turns a program into
// plain C++ functions, one per .acr function, specialised to its constants: control flow is
// C++ control flow, every tensor op one `Recording::add_node` call whose kernel id and (static)
// depth are literals, dynamic depths a counter in AotState, updated inline. The generated
// file defines
//
//   const perfmem::acrobat::AotModel& acrobat_model_NAME();
//
// and a program runs it with the same runtime as an interpreted one (schedulers, executor,
// kernels, rounds of waiting for tensor values):
//
//   RuntimeOptions opt;  opt.scheduler = Scheduler::kAcrobat;  opt.params_file = "w.safetensors";
//   auto model = load_aot_model(acrobat_model_treelstm(), opt);   // parameters loaded here
//   PERFMEM_RETURN_IF_ERROR(model->runtime->set_inputs(trees));
//   PERFMEM_RETURN_IF_ERROR(model->runtime->run_minibatch(0, 64, &logits, &stats));
//
// Each fused run of elementwise instructions in the program's coarsened groups (the executor's
// GroupPlan steps) is also generated, as a batched kernel specialised to its static shapes:
// per instance, slices are pointer offsets and the instructions one loop over the elements
// per stretch of equal size, intermediates in local variables (codegen_fused.h); the executor
// calls it in place of its own run (AotVariant::fused_runs), with bit-identical results.
//
// The generated code records exactly the nodes, operands, depths and phases the interpreter
// records for the same program (so every scheduler batches it the same way); it is compiled
// twice, for the two analysis configurations `compile_options_for` gives: `analysed`
// (Scheduler::kAcrobat: static depths, coarsened groups, ghost ops) and `plain` (the others).
// The executor still needs the program's kernel table, so the model carries its source and
// constants; load_aot_model compiles them once (no interpretation) and refuses to run when
// the analyses no longer give what the code was generated from (`program_fingerprint`).
//
// Programs that read tensor values run each instance as a fiber, as interpreted: the generated
// code calls aot_tensor_value, which suspends the instance until the next round.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "perfmem/acrobat/ast.h"
#include "perfmem/acrobat/int_arith.h"
#include "perfmem/acrobat/recording.h"
#include "perfmem/acrobat/runtime.h"
#include "perfmem/acrobat/values.h"

namespace perfmem::acrobat {

// The running instance's recording state, shared by the interpreter and generated code.
// Depth rules (interpreter.h): an op takes its static depth when it has one, else `depth`,
// which then advances by one; `phase` resets `depth` to `static_base`.
struct AotState {
  Recording* rec = nullptr;
  int depth = 0;
  int phase = 0;
  int static_base = 0;  // first dynamic depth of a phase (max static depth + 1)
  int call_depth = 0;   // nested calls of the instance, limited by call_limit
  int call_limit = 0;
  int64_t round = 0;     // rounds of waiting for values so far in this minibatch
  size_t instance = 0;   // for messages
  bool dynet = false;    // lookups are nodes copying their row (DyNet's schedulers)
  void* host = nullptr;  // the runtime's instance driver (the aot_* functions use it)
};

// A parallel construct (call arguments, tuple fields, map, binary operands): every element
// starts at one depth and the construct continues at the deepest. A wait for a value (a new
// round) forgets the depths before it: those ops have executed.
struct ParallelDepth {
  int start, end;
  int64_t round;
};
inline ParallelDepth parallel_fork(const AotState& s) { return {s.depth, s.depth, s.round}; }
inline void parallel_enter(AotState& s, ParallelDepth& p) {
  if (p.round != s.round) p = {s.static_base, s.static_base, s.round};
  s.depth = p.start;
}
inline void parallel_leave(AotState& s, ParallelDepth& p) {
  if (p.round != s.round)
    p = {s.static_base, s.depth, s.round};
  else if (s.depth > p.end)
    p.end = s.depth;
}

// Run-time failure at `where` ("file:line:col"): ends the minibatch with that error.
[[noreturn]] void aot_fail(const AotState& s, const char* where, const std::string& what);
// Recursion deeper than the instance may go (may rerun the minibatch on a larger stack).
[[noreturn]] void aot_too_deep(const AotState& s, const char* fn);
// A tuple / constructor / list cell with n fields, in the minibatch's arena.
Obj* aot_new_obj(AotState& s, int tag, int n);
// item(t) (a Float's bits) or index(t) (an Int) of a one-element tensor; waits for the value.
int64_t aot_tensor_value(AotState& s, uint32_t tensor, bool as_index, const char* where);

// One nested call, counted against the instance's call limit while it runs.
class AotCall {
 public:
  AotCall(AotState& s, const char* fn) : s_(s) {
    if (++s.call_depth > s.call_limit) aot_too_deep(s, fn);
  }
  ~AotCall() { --s_.call_depth; }
  AotCall(const AotCall&) = delete;
  AotCall& operator=(const AotCall&) = delete;

 private:
  AotState& s_;
};

// One analysis configuration of a compiled model: its main and the fingerprint of the
// program it was generated from.
struct AotVariant {
  AotMainFn main = nullptr;
  uint64_t fingerprint = 0;
  // Every fused run of elementwise instructions in the program's groups, as generated
  // batched kernels (RuntimeOptions::aot_fused_runs).
  const AotFusedRun* fused_runs = nullptr;
  size_t num_fused_runs = 0;
};

struct AotOverride {
  const char* name;
  int64_t value;
};

struct AotModel {
  const char* name;    // as given to the compiler ("treelstm")
  const char* file;    // the program's file name, as in messages
  const char* source;  // the program text
  const AotOverride* overrides;
  size_t num_overrides;
  AotVariant analysed;  // Scheduler::kAcrobat
  AotVariant plain;     // Scheduler::kNone, kDynetAgenda, kDynetDepth
};

// The model's constants as given to the compiler.
std::map<std::string, int64_t> aot_overrides(const AotModel& model);

// A compiled model ready to run: the program's tables (kernels, groups, parameters) and a
// runtime whose instances run the generated code.
struct LoadedAotModel {
  std::unique_ptr<Program> program;
  std::unique_ptr<Runtime> runtime;
};

// Compiles the model's source for options.scheduler, checks it matches the generated code,
// and creates the runtime (parameters from options.params_file, or hash-initialised).
Result<LoadedAotModel> load_aot_model(const AotModel& model, RuntimeOptions options);

// A hash of everything generated code relies on: kernel signatures, fused groups, parameter
// and constant shapes, phases, and per expression its slot, callee, kernel, depth and ghosts.
uint64_t program_fingerprint(const Program& program);

// The generated C++ for a program (codegen.cpp): `cc` defines acrobat_model_NAME(), `header`
// declares it. `name` must be a C identifier; `file` is the name positions show.
struct AotSources {
  std::string cc;
  std::string header;
};
Result<AotSources> generate_aot_cpp(const std::string& file, const std::string& source, const std::string& name,
                                    const std::map<std::string, int64_t>& overrides, const std::string& header_include);

}  // namespace perfmem::acrobat
