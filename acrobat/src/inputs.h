// Input conversion (internal to the runtime): an Instance (tree, sentence, document) becomes
// a value of main's parameter type, allocated in an arena that lives as long as the inputs.
#pragma once

#include <cstddef>

#include "arena.h"
#include "perfmem/acrobat/ast.h"
#include "perfmem/acrobat/data.h"
#include "perfmem/acrobat/values.h"

namespace perfmem::acrobat {

// Checked against `type` (main's parameter type: Tree, List[Int] or List[List[Int]]); errors
// name instance `index` and what was expected.
Result<Value> convert_instance(const Program& program, const Instance& inst, const Type& type, size_t index,
                               BlockArena& arena);

}  // namespace perfmem::acrobat
