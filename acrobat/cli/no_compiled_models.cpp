// The model compiler's list of compiled models: empty (it is what compiles them).
#include "compiled_models.h"

namespace perfmem::acrobat {

const std::vector<const AotModel*>& compiled_bundled_models() {
  static const std::vector<const AotModel*> none;
  return none;
}

}  // namespace perfmem::acrobat
