// Grain-size coarsening: straight-line chains of tensor ops become one fused kernel.
//
//   analyze_coarsening(program);   // after static depth and parameter-reuse analysis
//   // let->group >= 0 marks the first let of a fused chain: program.groups[let->group]
//
// Contract. A chain is a maximal run of >= 2 consecutive `let x = OPS in` bindings (simple
// variable or `_` patterns) whose right-hand sides are trees of tensor ops (no lookup, no
// call or control flow) over variables, parameters and fill constants, either all dynamic
// or all with static depths (analysis_static_depth). Static chains leave out products
// (matmul/dense): those stay separate nodes so that the same product at different sites
// (e.g. W x at leaves and at inner nodes) shares one kernel, one static depth, one GEMM.
// The chain is recorded as ONE node (one depth step, or one static depth, and one launch)
// whose inputs are the variables bound before the chain and whose outputs are the chain's
// variables that the rest of the function reads; at most 48 inputs.
// Inside the fused kernel every instruction still runs over the whole batch (in cache-sized
// tiles), so same-op calls stay batched across instances, and two products by the same
// parameter on independent operands (e.g. U_f h_left, U_f h_right) are moved next to each
// other and marked `paired_with_next`: they run as one GEMM over twice the rows.
// Semantics are unchanged: the instructions compute the chain's ops, each after its operands.
#pragma once

#include "perfmem/acrobat/ast.h"

namespace perfmem::acrobat {

void analyze_coarsening(Program& program);

}  // namespace perfmem::acrobat
