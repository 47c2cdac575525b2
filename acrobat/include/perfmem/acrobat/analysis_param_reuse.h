// Parameter-reuse analysis: which kernel arguments are model parameters, and kernel signatures.
//
//   analyze_param_reuse(program);   // after typecheck (and after coarsening, for groups)
//   // op->shared[i] = tensor id of the parameter/constant argument i always is, else -1
//   // op->kernel    = index into program.kernels; equal ids batch together
//
// Contract. A taint analysis over the lattice unknown < param(id) < not-a-parameter: a value
// is param(id) when it is the global parameter (or fill constant) with tensor id `id`, a let
// alias of one, or a function parameter bound to param(id) at every call site. Arguments that
// are param(id) are passed once to the batched kernel (no batch dimension), so a matmul by a
// parameter becomes one GEMM over the whole batch. The kernel signature interns the operator,
// the argument shapes, the shared parameters' ids and static integer operands; two op sites
// with the same signature batch together. Tensor ids: parameters 0..P-1, constants P..P+C-1.
// With `enabled == false` every argument is treated as per-instance (the "before" state).
#pragma once

#include "perfmem/acrobat/ast.h"

namespace perfmem::acrobat {

void analyze_param_reuse(Program& program, bool enabled = true);

}  // namespace perfmem::acrobat
