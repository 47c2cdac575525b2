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
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "arena.h"
#include "perfmem/acrobat/recording.h"
#include "perfmem/acrobat/runtime.h"
#include "values.h"

namespace perfmem::acrobat {

class BigStackWorker;

class Interpreter {
 public:
  // Fails only when the call frames cannot be reserved.
  static Result<std::unique_ptr<Interpreter>> create(const Program& program, const RuntimeOptions& options);
  ~Interpreter();

  // Runs main for inputs [begin, end), appending to `rec` (which keeps its persistent
  // tensors); results[i - begin] is main's result tensor for instance i. Errors name the
  // file position and instance (or the memory limit).
  Status record(const std::vector<Value>& inputs, size_t begin, size_t end, Recording* rec,
                std::vector<uint32_t>* results);

 private:
  Interpreter(const Program& program, const RuntimeOptions& options);
  Value* push_frame(int n, const std::string& fn);
  void pop_frame(size_t mark);
  [[noreturn]] void fail_at(const Expr& e, const std::string& what);
  Obj* new_obj(int tag, int n);
  Value call(int fn, Value* frame);
  Value eval_call(int fn, const Expr& e, Value* fr);
  void bind(const Pattern& p, Value v, Value* fr);
  Value eval(const Expr& e, Value* fr);
  Value eval_op(const Expr& e, Value* fr);
  Value eval_group(const Expr& let, Value* fr);

  const Program& prog_;
  RuntimeOptions opt_;
  bool dynet_ = false, acrobat_ = false;
  int static_base_ = 0;             // first dynamic depth of a phase (= max static depth + 1)
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
  size_t frame_top_ = 0;
  int depth_ = 0, phase_ = 0, call_depth_ = 0, call_limit_ = 0;
  size_t instance_ = 0;
  Recording* rec_ = nullptr;
};

}  // namespace perfmem::acrobat
