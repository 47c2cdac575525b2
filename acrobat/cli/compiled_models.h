// The bundled models compiled ahead of time at build time (acrobat_add_model, one per model
// and size, named NAME_small / NAME_large), for `acrobat run --aot`. The compiler itself is
// built without them (it generates them), and its list is empty.
#pragma once

#include <vector>

#include "perfmem/acrobat/aot.h"

namespace perfmem::acrobat {

const std::vector<const AotModel*>& compiled_bundled_models();

}  // namespace perfmem::acrobat
