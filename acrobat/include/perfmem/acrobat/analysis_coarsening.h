// Grain-size coarsening: straight-line chains of tensor ops become one fused kernel.
//
//   analyze_coarsening(program);   // after static depth and parameter-reuse analysis
//   // let->group >= 0 marks the first let of a fused chain: program.groups[let->group]
//
// Contract. A chain is a maximal run of >= 2 consecutive `let x = OPS in` bindings (simple
// variable or `_` patterns) whose right-hand sides are trees of dynamic tensor ops (no
// static-depth op, no lookup, no call or control flow) over variables, parameters and fill
// constants. The chain is recorded as ONE node (one depth step, one launch) whose inputs are
// the variables bound before the chain and whose outputs are the chain's variables that the
// rest of the function reads. Inside the fused kernel every instruction still runs over the
// whole batch at once, so several same-op calls of a chain (e.g. the i/o/u gate products)
// stay batched horizontally across instances; intermediates live in one contiguous block.
// Semantics are unchanged: the instructions are the chain's ops in program order.
#pragma once

#include "perfmem/acrobat/ast.h"

namespace perfmem::acrobat {

void analyze_coarsening(Program& program);

}  // namespace perfmem::acrobat
