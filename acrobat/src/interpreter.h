// The interpreter (internal to the runtime): runs `main` for every instance of a minibatch and
// records its tensor ops into a Recording, with their depths and phases. It executes nothing.
//
//   Interpreter interp(program, options);
//   Status s = interp.record(inputs, 0, 64, &recording);   // main for inputs [0, 64)
//   recording.results: main's result tensor per instance
//
// Depths (used by the acrobat scheduler): an op gets its static depth (analysis_static_depth)
// when it has one, else the instance's depth counter, which advances by one per op, resets at
// `phase`, starts parallel constructs (call arguments, tuple elements, map) at one depth and
// continues at their max, and moves by ghost steps after short branches. Lookups are views
// into their parameter, except for the DyNet schedulers, where a lookup is a node copying its
// row (as DyNet does). Shallow programs (at most 200 nested calls) run on the caller's stack;
// a minibatch that nests deeper is recorded again from the start on a worker thread with a
// 1 GiB stack (recording is a pure function of the inputs), up to max_call_depth.
//
// Programs that read tensor values (Program::reads_tensor_values: item, index, a comparison
// with a Tensor[1]) run every instance of the minibatch as a fiber with its own stack and
// call frames. An instance that needs a value not computed yet waits; when every instance
// waits or has finished, `flush` schedules and executes all recorded, unexecuted nodes
// (Recording::executed_nodes moves past them) and the waiting instances resume. A resumed
// instance restarts its depth counter at the first dynamic depth: everything recorded before
// has executed, so only the ops of the new round order one another (parallel constructs
// forget the depths of earlier rounds). Such programs may nest at most
// kFiberCallDepth calls (or max_call_depth, when smaller).
//
// A program compiled ahead of time (RuntimeOptions::aot_main, aot.h) runs through the same
// instance driver: each instance calls the generated main instead of evaluating the syntax
// tree, on the same stacks and fibers, with the same AotState (depths, phase, calls); the
// generated code reaches the driver only through the aot_* functions (new objects, waiting for
// a value, errors).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "arena.h"
#include "perfmem/acrobat/aot.h"
#include "perfmem/acrobat/recording.h"
#include "perfmem/acrobat/runtime.h"
#include "perfmem/acrobat/values.h"

namespace perfmem::acrobat {

class BigStackWorker;
struct Fiber;

// Nested calls allowed to a program that reads tensor values (each instance's own stack).
inline constexpr int kFiberCallDepth = 1000;

class Interpreter {
 public:
  // Fails only when the call frames cannot be reserved.
  static Result<std::unique_ptr<Interpreter>> create(const Program& program, const RuntimeOptions& options);
  ~Interpreter();

  // Runs main for inputs [begin, end), appending to `rec` (which keeps its persistent
  // tensors); results[i - begin] is main's result tensor for instance i. Errors name the
  // file position and instance (or the memory limit).
  // Programs that read tensor values need `flush` (see above): it must execute the nodes
  // [rec->executed_nodes, rec->nodes.size()) and set executed_nodes to nodes.size().
  // `rounds` (optional) receives the number of flushes.
  // For generated code (aot.h: aot_fail, aot_too_deep, aot_new_obj, aot_tensor_value).
  [[noreturn]] void fail(const char* where, const std::string& what) const;
  [[noreturn]] void too_deep(const char* fn) const;
  Obj* new_obj(int tag, int n);
  int64_t tensor_value(uint32_t tensor, bool as_index, const char* where);

  Status record(const std::vector<Value>& inputs, size_t begin, size_t end, Recording* rec,
                std::vector<uint32_t>* results, const std::function<Status()>& flush = nullptr,
                int64_t* rounds = nullptr);

 private:
  Interpreter(const Program& program, const RuntimeOptions& options);
  Value* push_frame(int n, const std::string& fn);
  void pop_frame(size_t mark);
  [[noreturn]] void fail_at(const Expr& e, const std::string& what);
  Value call(int fn, Value* frame);
  Value eval_call(int fn, const Expr& e, Value* fr);
  void bind(const Pattern& p, Value v, Value* fr);
  Value eval(const Expr& e, Value* fr);
  Value eval_op(const Expr& e, Value* fr);
  Value eval_group(const Expr& let, Value* fr);
  Value eval_tensor_value(const Expr& e, Value* fr);

  // Fibers (programs that read tensor values).
  Status record_fibers(const std::vector<Value>& inputs, size_t begin, size_t end, std::vector<uint32_t>* results,
                       const std::function<Status()>& flush, int64_t* rounds);
  Status prepare_fibers(size_t count);
  void run_instance(size_t instance, const Value& input, uint32_t* result);  // main for one instance
  void resume(Fiber& f);  // from the minibatch loop: runs f until it waits or finishes
  void wait_for_value();  // inside a fiber: back to the loop until the next round
  static void fiber_entry(void* self);
  void fiber_body();
  void save_state(Fiber& f) const;
  void load_state(const Fiber& f);

  const Program& prog_;
  RuntimeOptions opt_;
  bool acrobat_ = false;
  AotMainFn aot_main_ = nullptr;    // generated code instead of eval (aot.h)
  std::vector<int64_t> param_row_;  // elements per lookup row, per parameter
  std::unique_ptr<BigStackWorker> worker_;
  BlockArena obj_arena_{1 << 20};
  // Call frames: one zero-filled reservation (calloc: pages are touched only as deep as the
  // recursion goes), never reallocated, since frames are addressed by pointer.
  struct FreeValues {
    void operator()(Value* p) const;
  };
  std::unique_ptr<Value, FreeValues> frames_;
  size_t frames_cap_ = 0;
  // The running instance's state (swapped with a Fiber's when fibers run).
  Value* frame_base_ = nullptr;  // frames_, or the running fiber's frames
  size_t frame_cap_ = 0;         // slots at frame_base_
  size_t frame_top_ = 0;
  // Recording, depths, phase, calls (shared with generated code, which gets st_ itself).
  AotState st_;
  // Fibers: one per instance of the largest minibatch so far (stacks kept, reused).
  bool fibers_mode_ = false;
  std::vector<std::unique_ptr<Fiber>> fibers_;
  Fiber* current_ = nullptr;
  void* loop_context_ = nullptr;  // the minibatch loop's saved context (a FiberContext)
  const void* loop_stack_bottom_ = nullptr;
  size_t loop_stack_size_ = 0;
  std::string fiber_error_;
  bool fiber_out_of_memory_ = false;
};

}  // namespace perfmem::acrobat
