// Data generators and readers (definitions in data.h and the benchmark workloads).
#include "perfmem/acrobat/data.h"

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cmath>
#include <functional>
#include <sstream>

#include "perfmem/core/io.h"

namespace perfmem::acrobat {

uint64_t splitmix_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::next() {
  state += 0x9E3779B97F4A7C15ull;
  return splitmix_mix(state);
}

int64_t SplitMix64::uniform_int(int64_t lo, int64_t hi) {
  uint64_t range = static_cast<uint64_t>(hi - lo) + 1;
  return lo + static_cast<int64_t>(next() % range);
}

float hashed_parameter(int64_t tid, int64_t k, double scale) {
  uint64_t z = splitmix_mix((static_cast<uint64_t>(tid) << 32) + static_cast<uint64_t>(k) + 0x9E3779B97F4A7C15ull);
  double u = static_cast<double>(z >> 11) * 0x1.0p-53;
  return static_cast<float>(scale * (2.0 * u - 1.0));
}

namespace {

// Builds a tree over leaves [lo, hi) in post-order; `word` supplies each node's word.
int32_t build_tree(std::vector<TreeNode>& nodes, int64_t lo, int64_t hi,
                   const std::function<int64_t(int64_t, int64_t)>& split, const std::function<int32_t(bool)>& word) {
  if (hi - lo == 1) {
    nodes.push_back({word(true), -1, -1});
    return static_cast<int32_t>(nodes.size() - 1);
  }
  int64_t mid = split(lo, hi);
  int32_t l = build_tree(nodes, lo, mid, split, word);
  int32_t r = build_tree(nodes, mid, hi, split, word);
  nodes.push_back({word(false), l, r});
  return static_cast<int32_t>(nodes.size() - 1);
}

}  // namespace

std::vector<Instance> complete_trees(size_t count, int height, uint64_t seed, int vocab) {
  SplitMix64 rng(seed);
  std::vector<Instance> out(count);
  int64_t leaves = int64_t{1} << (height - 1);
  for (auto& inst : out) {
    inst.kind = Instance::kTree;
    build_tree(
        inst.nodes, 0, leaves, [](int64_t lo, int64_t hi) { return (lo + hi) / 2; },
        [&](bool) { return static_cast<int32_t>(rng.uniform_int(0, vocab - 1)); });
  }
  return out;
}

std::vector<Instance> mvrnn_trees(size_t count, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<Instance> out(count);
  for (auto& inst : out) {
    inst.kind = Instance::kTree;
    build_tree(
        inst.nodes, 0, 32, [](int64_t lo, int64_t hi) { return (lo + hi) / 2; },
        [&](bool leaf) { return leaf ? static_cast<int32_t>(rng.uniform_int(0, 999)) : 0; });
  }
  return out;
}

std::vector<Instance> random_trees(size_t count, uint64_t seed, int vocab) {
  SplitMix64 rng(seed);
  std::vector<Instance> out(count);
  for (auto& inst : out) {
    inst.kind = Instance::kTree;
    int64_t leaves = 1 + rng.uniform_int(0, 12) + rng.uniform_int(0, 12) + rng.uniform_int(0, 12);
    build_tree(
        inst.nodes, 0, leaves, [&](int64_t lo, int64_t hi) { return rng.uniform_int(lo + 1, hi - 1); },
        [&](bool) { return static_cast<int32_t>(rng.uniform_int(0, vocab - 1)); });
  }
  return out;
}

std::vector<Instance> sentences(size_t count, uint64_t seed, int min_len, int max_len, int vocab) {
  SplitMix64 rng(seed);
  std::vector<Instance> out(count);
  for (auto& inst : out) {
    inst.kind = Instance::kSequence;
    int64_t len = rng.uniform_int(min_len, max_len);
    for (int64_t i = 0; i < len; ++i) inst.words.push_back(static_cast<int32_t>(rng.uniform_int(0, vocab - 1)));
  }
  return out;
}

std::vector<Instance> birnn_sentences(size_t count) { return sentences(count, 101, 5, 50); }

std::vector<Instance> nested_sentences(size_t count, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<Instance> out(count);
  for (auto& inst : out) {
    inst.kind = Instance::kNested;
    int64_t s = rng.uniform_int(2, 10);
    for (int64_t i = 0; i < s; ++i) {
      int64_t len = rng.uniform_int(5, 20);
      std::vector<int32_t> words;
      for (int64_t j = 0; j < len; ++j) words.push_back(static_cast<int32_t>(rng.uniform_int(0, 999)));
      inst.sentences.push_back(std::move(words));
    }
  }
  return out;
}

namespace {

struct PtbError {
  int line, col;
  std::string expected, found;
};

class PtbParser {
 public:
  PtbParser(const std::string& text, int line, int vocab) : t_(text), line_(line), vocab_(vocab) {}

  Instance parse() {
    Instance inst;
    inst.kind = Instance::kTree;
    skip();
    parse_node(inst.nodes);
    skip();
    if (i_ < t_.size()) fail("end of line after the tree", std::string("'") + t_[i_] + "'");
    return inst;
  }

 private:
  [[noreturn]] void fail(std::string expected, std::string found) {
    throw PtbError{line_, static_cast<int>(i_) + 1, std::move(expected), std::move(found)};
  }
  void skip() {
    while (i_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[i_]))) ++i_;
  }
  std::string token() {
    size_t j = i_;
    while (j < t_.size() && !std::isspace(static_cast<unsigned char>(t_[j])) && t_[j] != '(' && t_[j] != ')') ++j;
    if (j == i_) fail("a label or word", i_ < t_.size() ? std::string("'") + t_[i_] + "'" : "end of line");
    std::string s = t_.substr(i_, j - i_);
    i_ = j;
    return s;
  }
  int32_t word_id(const std::string& w) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char c : w) h = (h ^ c) * 1099511628211ull;
    return static_cast<int32_t>(1 + h % static_cast<uint64_t>(vocab_ - 1));
  }

  // Returns the index of the node built for "(LABEL child...)" or "(LABEL word)".
  int32_t parse_node(std::vector<TreeNode>& nodes) {
    if (i_ >= t_.size() || t_[i_] != '(') fail("'('", i_ < t_.size() ? std::string("'") + t_[i_] + "'" : "end of line");
    if (++depth_ > 1000) fail("a tree at most 1000 levels deep", "a deeper one");
    ++i_;
    skip();
    token();  // the label
    skip();
    std::vector<int32_t> kids;
    if (i_ < t_.size() && t_[i_] != '(') {
      std::string w = token();
      nodes.push_back({word_id(w), -1, -1});
      kids.push_back(static_cast<int32_t>(nodes.size() - 1));
    } else {
      while (i_ < t_.size() && t_[i_] == '(') {
        kids.push_back(parse_node(nodes));
        skip();
      }
    }
    skip();
    if (i_ >= t_.size() || t_[i_] != ')') fail("')'", i_ < t_.size() ? std::string("'") + t_[i_] + "'" : "end of line");
    ++i_;
    --depth_;
    if (kids.empty()) fail("a word or child trees", "an empty node");
    // Right-binarise: (a b c) -> (a (b c)). Post-order holds: children precede parents.
    int32_t right = kids.back();
    for (size_t k = kids.size() - 1; k-- > 0;) {
      nodes.push_back({0, kids[k], right});
      right = static_cast<int32_t>(nodes.size() - 1);
    }
    return right;
  }

  const std::string& t_;
  size_t i_ = 0;
  int line_;
  int vocab_;
  int depth_ = 0;
};

}  // namespace

Result<std::vector<Instance>> parse_ptb_trees(const std::string& file_name, const std::string& text, int vocab) {
  std::vector<Instance> out;
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    bool blank = true;
    for (char c : line) blank = blank && std::isspace(static_cast<unsigned char>(c));
    if (blank) continue;
    try {
      Instance inst = PtbParser(line, line_no, vocab).parse();
      // The root must be the last node (post-order); a bare leaf is a one-node tree.
      out.push_back(std::move(inst));
    } catch (const PtbError& e) {
      return input_error(file_name + ":" + std::to_string(e.line) + ":" + std::to_string(e.col), "tree", e.expected,
                         e.found);
    }
  }
  return out;
}

Result<std::string> read_data_file(const std::string& path, int64_t max_bytes) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return io_error(path, "cannot open for reading", errno);
  std::string text;
  char chunk[1 << 16];
  size_t n = 0;
  bool too_large = false;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) {
    if (static_cast<int64_t>(text.size() + n) > max_bytes) {
      too_large = true;
      break;
    }
    text.append(chunk, n);
  }
  bool failed = std::ferror(f) != 0;
  int err = errno;
  std::fclose(f);
  if (too_large)
    return input_error(path, "size", "a data file of at most " + std::to_string(max_bytes) + " bytes",
                       "more (read stopped there)");
  if (failed) return io_error(path, "read failed", err);
  return text;
}

Result<std::vector<Instance>> read_ptb_trees(const std::string& path, int vocab) {
  PERFMEM_ASSIGN_OR_RETURN(std::string text, read_data_file(path));
  return parse_ptb_trees(path, text, vocab);
}

Result<std::vector<Instance>> read_sequences(const std::string& path) {
  PERFMEM_ASSIGN_OR_RETURN(std::string text, read_data_file(path));
  std::vector<Instance> out;
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    Instance inst;
    std::vector<int32_t> cur;
    bool nested = line.find('|') != std::string::npos;
    std::istringstream ls(line);
    std::string tok;
    while (ls >> tok) {
      if (tok == "|") {
        inst.sentences.push_back(std::move(cur));
        cur.clear();
        continue;
      }
      char* end = nullptr;
      long v = std::strtol(tok.c_str(), &end, 10);
      if (*end != '\0' || v < 0 || v > (1 << 30))
        return input_error(path + ":" + std::to_string(line_no), "sequence", "non-negative word ids", "'" + tok + "'");
      cur.push_back(static_cast<int32_t>(v));
    }
    if (nested) {
      inst.kind = Instance::kNested;
      inst.sentences.push_back(std::move(cur));
    } else {
      if (cur.empty()) continue;
      inst.kind = Instance::kSequence;
      inst.words = std::move(cur);
    }
    out.push_back(std::move(inst));
  }
  return out;
}

}  // namespace perfmem::acrobat
