// Parameter loading (internal to the runtime): every `param` of a program, initialised from
// the workload hash or read from a safetensors file, then the constant tensors (zeros/fill).
#pragma once

#include <string>
#include <vector>

#include "perfmem/acrobat/ast.h"

namespace perfmem::acrobat {

// storage[i] for i < params.size() is parameter i (row-major, its declared shape), then one
// entry per Program::constant_tensors. Errors name the declaration or the file and tensor;
// more than kMaxParameterElements floats in all is refused before anything is allocated.
Status load_parameters(const Program& program, const std::string& params_file,
                       std::vector<std::vector<float>>* storage);

inline constexpr int64_t kMaxParameterElements = int64_t{1} << 31;  // 8 GiB of float32

}  // namespace perfmem::acrobat
