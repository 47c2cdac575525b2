// Program phases: `phase EXPR` in main starts a new phase (e.g. encoder, then classifier).
//
//   PERFMEM_RETURN_IF_ERROR(analyze_phases(program));
//   // program.num_phases == 1 + the number of `phase` annotations; each phase expr's ival is
//   // its phase index
//
// Contract. `phase` may appear only in main, on its spine: directly as main's body, as the
// body of a let on the spine, or as the body of another phase. So every instance passes the
// annotations in the same order, exactly once. At a phase change the runtime resets the
// instance's depth counter; ops of different phases are never batched together, and all of
// phase k executes before phase k+1. Anything else is an error naming file:line:col.
#pragma once

#include "perfmem/acrobat/ast.h"

namespace perfmem::acrobat {

Status analyze_phases(Program& program);

// Removes the `phase` annotations of a program analyze_phases accepted (each is replaced by
// its body) and sets num_phases to 1: depths then run on across the former phase changes,
// so every operand still has a smaller depth than its user. For the benchmark's ablation.
void drop_phases(Program& program);

}  // namespace perfmem::acrobat
