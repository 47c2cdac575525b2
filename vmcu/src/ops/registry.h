// Internal to vmcu_lib: the one table of operators, indexed by OpKind. The model reader accepts
// exactly the builtin codes listed here, the reference executor prepares and evaluates through
// it, and the ring planner lowers each operator through it. Adding an operator: its OpKind (model.h), its
// options in the reader if it has any (model.cpp), its module under ops/ (prepare + eval), one
// row below, its kernels and its tests.
#pragma once

#include <span>

#include "op_module.h"

namespace perfmem::vmcu::ops {

struct OpRegistration {
  OpKind kind;
  int builtin_code;   // TFLite's BuiltinOperator
  const char* name;   // TFLite's name, used in every message about the operator
  PrepareFn prepare;  // validation + precomputed parameters (executor and ring lowering)
  EvalFn eval;        // reference evaluation
  // Ring lowering to a streaming segment kernel; without one (nullptr, or when its conditions
  // fail) the operator runs staged: its input copied out and evaluated by `eval`.
  LowerFn lower;
};

// Every registered operator, in OpKind order (entry k has kind k).
std::span<const OpRegistration> registrations();
// The registration of `kind`; every OpKind has one (checked at compile time).
const OpRegistration& registration(OpKind kind);
// The registration with TFLite builtin code `code`, or nullptr when vmcu does not run it.
const OpRegistration* find_builtin(int code);

}  // namespace perfmem::vmcu::ops
