// Generated batched kernels for fused groups (internal to `acrobat compile`, codegen.cpp).
//
//   cc += emit_fused_runs(program, "kFusedRuns");   // functions + the AotFusedRun table
//
// Every fused step of every group (the executor's GroupPlan: a run of consecutive
// elementwise instructions and slices) becomes one C++ function specialised to the group's
// static shapes: per instance, the run's slices are pointer offsets and its elementwise
// instructions are loops over the elements, one loop per stretch of equal-sized
// instructions, intermediates in local variables instead of the executor's per-instance
// buffer (only registers read outside their loop reach memory). The executor calls it in
// place of its own instruction-by-instruction run (RuntimeOptions::aot_fused_runs).
// Invariant: the same float operations in the same order as kernels.cpp's loops, so outputs
// are bit-identical to the interpreted run (tests/aot_test.cpp); the generated file and
// kernels.cpp both build with -ffp-contract=off (a contracted a * b + c would round once).
#pragma once

#include <string>

#include "perfmem/acrobat/ast.h"

namespace perfmem::acrobat {

// The code of every fused run of `program`'s groups and a table named `table` (an array of
// AotFusedRun, or a null pointer when there is none) with `table`_count entries.
std::string emit_fused_runs(const Program& program, const std::string& table);

}  // namespace perfmem::acrobat
