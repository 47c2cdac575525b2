// The bundled models (acrobat/models/*.acr) and the data each one runs on by default.
//
//   const ModelInfo* m = find_model("treelstm");          // or by file: "models/treelstm.acr"
//   auto data = m->make_data(64);                          // the workload's generator
//   std::map<std::string, int64_t> size = {{m->size_const, m->large}};   // "large" size
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "perfmem/acrobat/ast.h"
#include "perfmem/acrobat/data.h"

namespace perfmem::acrobat {

struct ModelInfo {
  std::string name;        // "treelstm"
  std::string size_const;  // the constant that sets the model size ("H")
  int64_t small = 0, large = 0;
  std::function<std::vector<Instance>(size_t)> make_data;  // the benchmark workload stream
};

const std::vector<ModelInfo>& builtin_models();
// By name or by a path whose file stem is the name; nullptr if not bundled.
const ModelInfo* find_model(const std::string& name_or_path);
// Source text of a bundled model, compiled into the library from acrobat/models/NAME.acr
// (installed as share/perfmem/acrobat/models/NAME.acr for reading); empty for other names.
std::string_view bundled_source(std::string_view name);
// The file name that messages about a bundled model show ("treelstm.acr").
std::string bundled_file_name(const std::string& name);

// Default data for any program, from main's parameter type: trees -> random SST-like trees,
// List[Int] -> sentences of 5..50 words, List[List[Int]] -> nested sentences.
Result<std::vector<Instance>> default_data(const Program& program, size_t count);

}  // namespace perfmem::acrobat
