// Ghost-op insertion: pads the shorter branch of an if/match so instances reconverge.
//
//   analyze_ghost_ops(program);   // after coarsening (it counts fused groups as one step)
//   // if: e->ghost_then / e->ghost_else; match: arm.ghost = depth steps added after the branch
//
// Contract. The depth advance of an expression is the number of depth steps the runtime's
// counter moves while evaluating it: a dynamic op or fused group is one step after its
// operands (operands are parallel: the max of their advances), let is sequential (sum), a
// call adds the callee's body, static-depth ops and views add nothing. It is known statically
// unless it depends on data (recursion, map/foldl with a non-zero step, phases). When every
// branch of an if/match has a known advance, each branch is padded with ghost steps (the
// counter moves, no kernel runs) up to the largest, so the op after the conditional gets the
// same depth whichever branch an instance took and still batches across instances.
#pragma once

#include "perfmem/acrobat/ast.h"

namespace perfmem::acrobat {

void analyze_ghost_ops(Program& program);

// Depth advance of a function's body, or -1 when it depends on the data (for tests).
int function_depth_advance(const Program& program, int fn);

}  // namespace perfmem::acrobat
