// Instances for the models: trees and sequences, generated or read from files.
//
//   auto trees = perfmem::acrobat::complete_trees(64, /*height=*/6, /*seed=*/404);
//   auto sst = perfmem::acrobat::read_ptb_trees("train.txt");   // "(3 (2 It) (4 (2 's) ...))"
//   auto seqs = perfmem::acrobat::birnn_sentences(64);          // workload BiRNN, seed 101
//
// Generators use SplitMix64 exactly as the benchmark workloads define it, so the streams and
// hence the conformance checksums are reproducible. Trees are stored flat in post-order (the
// root last); leaves have left == right == -1. A program receives an instance as its main
// parameter: a Tree (prelude type Leaf(word) | Node(word, left, right)), a List[Int], or a
// List[List[Int]].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "perfmem/core/status.h"

namespace perfmem::acrobat {

// SplitMix64 as in the workload definitions.
struct SplitMix64 {
  uint64_t state;
  explicit SplitMix64(uint64_t seed) : state(seed) {}
  uint64_t next();
  // lo + next() mod (hi - lo + 1), inclusive (the modulo bias is part of the definition).
  int64_t uniform_int(int64_t lo, int64_t hi);
};
uint64_t splitmix_mix(uint64_t z);

// The workloads' hash-based parameter value: element k of tensor `tid`, ~U(-scale, scale).
float hashed_parameter(int64_t tid, int64_t k, double scale);

struct TreeNode {
  int32_t word = 0;
  int32_t left = -1, right = -1;
};

struct Instance {
  enum Kind { kTree, kSequence, kNested } kind = kSequence;
  std::vector<TreeNode> nodes;                  // kTree: post-order, root last
  std::vector<int32_t> words;                   // kSequence
  std::vector<std::vector<int32_t>> sentences;  // kNested
};

// Complete binary trees of `height` levels (2^height - 1 nodes). Every node gets a word,
// drawn uniform_int(0, vocab-1) in post-order. (TreeLSTM workload: height 6, seed 404.)
std::vector<Instance> complete_trees(size_t count, int height, uint64_t seed, int vocab = 1000);
// MV-RNN workload: height-6 complete trees, 32 leaf words drawn left to right (seed 202);
// internal nodes carry word 0 (unused).
std::vector<Instance> mvrnn_trees(size_t count, uint64_t seed = 202);
// Random binary trees with SST-like sizes: 1 + three uniform_int(0, 12) draws leaves (mean 19),
// split points uniform; every node has a word.
std::vector<Instance> random_trees(size_t count, uint64_t seed, int vocab = 1000);
// Sentences: length uniform_int(min_len, max_len), then that many words (BiRNN: 5..50, seed 101).
std::vector<Instance> sentences(size_t count, uint64_t seed, int min_len, int max_len, int vocab = 1000);
std::vector<Instance> birnn_sentences(size_t count);
// NestedRNN workload: S = uniform_int(2, 10) sentences of uniform_int(5, 20) words (seed 303).
std::vector<Instance> nested_sentences(size_t count, uint64_t seed = 303);

// Data files are read whole into memory, up to this many bytes (the full Stanford Sentiment
// Treebank is about 10 MB); a larger file, or an endless one such as /dev/zero, is an error
// naming the file and the limit, found after reading at most limit + 1 bytes.
inline constexpr int64_t kMaxDataFileBytes = int64_t{256} << 20;
Result<std::string> read_data_file(const std::string& path, int64_t max_bytes = kMaxDataFileBytes);

// Reads Penn-Treebank-style s-expression trees, one per line (Stanford Sentiment Treebank
// format). Words map to ids by a hash modulo `vocab` (ids 1..vocab-1; internal nodes get 0);
// unary chains collapse, nodes with more than two children are binarised to the right.
// Errors name the file, line and column.
Result<std::vector<Instance>> read_ptb_trees(const std::string& path, int vocab = 1000);
Result<std::vector<Instance>> parse_ptb_trees(const std::string& file_name, const std::string& text, int vocab = 1000);

// Reads sequences, one per line: word ids separated by spaces; `|` separates the sentences
// of a nested instance.
Result<std::vector<Instance>> read_sequences(const std::string& path);

}  // namespace perfmem::acrobat
