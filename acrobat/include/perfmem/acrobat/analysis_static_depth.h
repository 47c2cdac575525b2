// Static depth analysis: gives a constant depth to tensor ops that do not depend on recursion.
//
//   analyze_static_depth(program);   // after typecheck
//   // op->static_depth >= 0: the op is recorded at that depth in every instance and call
//   // program.max_static_depth: the largest such depth (-1 if none)
//
// Contract. An abstract interpretation over the lattice
//   unknown < parameter (available before any op) < static(0) < static(1) < ... < dynamic,
// where a value is static(d) when it is computed only from parameters, constants, embedding
// lookups and other static values, d = 1 + the largest static depth among its tensor operands.
// Function parameters join the abstract values of all call sites (context-insensitive),
// values read from data structures (match fields, list elements, fold accumulators) are
// dynamic, and depths above kMaxStaticDepth become dynamic so recursion terminates.
// Run again after coarsening, a fused group whose ops are all static is one node: its let
// gets static_depth = 1 + the largest static depth of its inputs (ops inside it are then not
// recorded on their own).
// Guarantee: for every op (or group) with static_depth d, each tensor operand is a parameter, a view, or
// the result of an op with static_depth < d. The runtime places dynamic ops after all static
// depths of their phase, so a dynamic op never runs before a static value it reads.
#pragma once

#include "perfmem/acrobat/ast.h"

namespace perfmem::acrobat {

inline constexpr int kMaxStaticDepth = 64;

void analyze_static_depth(Program& program);

}  // namespace perfmem::acrobat
