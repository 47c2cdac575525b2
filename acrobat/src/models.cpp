// Registry of the bundled models and their default data.
#include "perfmem/acrobat/models.h"

namespace perfmem::acrobat {

const std::vector<ModelInfo>& builtin_models() {
  static const std::vector<ModelInfo> models = {
      {"treelstm", "H", 256, 512, [](size_t n) { return complete_trees(n, 6, 404); }},
      {"mvrnn", "H", 64, 128, [](size_t n) { return mvrnn_trees(n); }},
      {"birnn", "H", 256, 512, [](size_t n) { return birnn_sentences(n); }},
      {"nestedrnn", "H", 256, 512, [](size_t n) { return nested_sentences(n); }},
      // Tensor-dependent control flow: sentences of 4-24 words (DRNN), 3-30 (StackRNN), and
      // Berxit's fixed sequence length of 16 tokens (an encoder's padded input).
      {"drnn", "H", 256, 512, [](size_t n) { return sentences(n, 606, 4, 24); }},
      {"berxit", "D", 512, 768, [](size_t n) { return sentences(n, 707, 16, 16); }},
      {"stackrnn", "H", 256, 512, [](size_t n) { return sentences(n, 808, 3, 30); }},
  };
  return models;
}

const ModelInfo* find_model(const std::string& name_or_path) {
  std::string stem = name_or_path;
  if (auto slash = stem.find_last_of('/'); slash != std::string::npos) stem = stem.substr(slash + 1);
  if (stem.size() > 4 && stem.compare(stem.size() - 4, 4, ".acr") == 0) stem.resize(stem.size() - 4);
  for (const auto& m : builtin_models())
    if (m.name == stem) return &m;
  return nullptr;
}

std::string bundled_file_name(const std::string& name) { return name + ".acr"; }

Result<std::vector<Instance>> default_data(const Program& program, size_t count) {
  const Type& t = *program.fns[program.main_fn].params[0].type;
  if (t.kind == TypeKind::kAdt && t.adt == program.tree_adt) return random_trees(count, 505);
  if (t.kind == TypeKind::kList && t.elems[0]->kind == TypeKind::kInt) return sentences(count, 101, 5, 50);
  if (t.kind == TypeKind::kList && t.elems[0]->kind == TypeKind::kList) return nested_sentences(count);
  return input_error(program.file, "function main", "a parameter of type Tree, List[Int] or List[List[Int]]",
                     type_name(t, {}));
}

}  // namespace perfmem::acrobat
