// Parameters and constant tensors (parameters.h).
#include "parameters.h"

#include <cmath>
#include <memory>
#include <new>

#include "perfmem/acrobat/data.h"
#include "perfmem/acrobat/int_arith.h"
#include "perfmem/core/safetensors.h"

namespace perfmem::acrobat {

Status load_parameters(const Program& program, const std::string& params_file,
                       std::vector<std::vector<float>>* storage) {
  storage->clear();
  // Refuse absurd sizes (e.g. --set H=10000000) with an error rather than a failed allocation.
  // The checker bounds every tensor by kMaxTensorElements, so the sum cannot overflow.
  int64_t total_elements = 0;
  for (const auto& p : program.params) total_elements += checked_numel(p.type->dims);
  for (const auto& c : program.constant_tensors) total_elements += c.size;
  if (total_elements > kMaxParameterElements)
    return Status(StatusCode::kOutOfMemory, program.file + ": parameters need " + std::to_string(total_elements) +
                                                " floats, more than the limit of " +
                                                std::to_string(kMaxParameterElements));
  std::unique_ptr<SafetensorsFile> weights;
  for (const auto& p : program.params) {
    int64_t size = checked_numel(p.type->dims);
    std::vector<float> data;
    try {
      data.resize(static_cast<size_t>(size));
    } catch (const std::bad_alloc&) {
      return Status(StatusCode::kOutOfMemory, format_pos(program.file, p.pos) + ": param " + p.name +
                                                  ": cannot allocate " + std::to_string(size) + " floats");
    }
    if (p.init.kind == ParamInit::kHash) {
      double scale = p.init.scale;
      if (p.init.glorot) {
        size_t r = p.type->dims.size();
        scale = std::sqrt(6.0 / double(p.type->dims[r - 2] + p.type->dims[r - 1]));
      }
      for (int64_t k = 0; k < size; ++k) data[k] = hashed_parameter(p.init.tid, k, scale);
    } else {
      if (params_file.empty())
        return input_error(format_pos(program.file, p.pos), "param " + p.name,
                           "a parameters file (--params FILE.safetensors) for load(\"" + p.init.tensor_name + "\")");
      if (!weights) {
        PERFMEM_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(params_file));
        weights = std::make_unique<SafetensorsFile>(std::move(f));
      }
      const TensorInfo* info = weights->find(p.init.tensor_name);
      if (!info)
        return input_error(params_file, "tensor \"" + p.init.tensor_name + "\"",
                           "the tensor to be present (param " + p.name + ")", "it missing");
      if (info->dtype != DType::kF32 || info->shape != p.type->dims)
        return input_error(params_file, "tensor \"" + p.init.tensor_name + "\"", "F32 " + type_name(*p.type, {}),
                           "another dtype or shape");
      PERFMEM_RETURN_IF_ERROR(weights->read(*info, data.data(), info->nbytes()));
    }
    storage->push_back(std::move(data));
  }
  for (const auto& c : program.constant_tensors)
    storage->emplace_back(static_cast<size_t>(c.size), static_cast<float>(c.value));
  return Status::Ok();
}

}  // namespace perfmem::acrobat
