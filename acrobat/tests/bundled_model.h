// Test support: the source text of a bundled model (acrobat/models/NAME.acr), the varied
// inputs the equivalence tests run on, and a degenerate deep tree.
#pragma once

#include <string>

#include "perfmem/acrobat/data.h"
#include "perfmem/acrobat/models.h"
#include "perfmem/core/io.h"

namespace perfmem::acrobat::test_support {

// Empty when the file cannot be read, so a test fails on the program, not here.
inline std::string read_model(const std::string& name) {
  auto text = read_text_file(std::string(MODELS_DIR) + "/" + name + ".acr");
  return text.ok() ? *text : std::string();
}

// Varied shapes: SST-like random trees, sentences of 1..40 words, nested documents; the
// tensor-dependent models' own generators.
inline std::vector<Instance> varied_data(const std::string& model, size_t n) {
  if (model == "treelstm" || model == "mvrnn") return random_trees(n, 77);
  if (model == "birnn") return sentences(n, 78, 1, 40);
  if (model == "nestedrnn") return nested_sentences(n, 79);
  return find_model(model)->make_data(n);  // the models with tensor-dependent control flow
}

// A degenerate tree: every internal node's left child is a leaf.
inline Instance chain_tree(int depth) {
  Instance t;
  t.kind = Instance::kTree;
  t.nodes.push_back({1, -1, -1});
  for (int i = 0; i < depth; ++i) {
    t.nodes.push_back({static_cast<int32_t>(i % 1000), -1, -1});
    int32_t leaf = static_cast<int32_t>(t.nodes.size() - 1);
    t.nodes.push_back({static_cast<int32_t>((7 * i) % 1000), leaf, leaf - 1});
  }
  return t;
}

}  // namespace perfmem::acrobat::test_support
