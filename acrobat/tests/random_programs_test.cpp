// Differential test on random programs: seeded, well-typed tree programs (the shape of a
// TreeLSTM: a leaf and a node function over (h, c) pairs) built from random chains of every
// tensor operator that fuses, slices and products, tensor-dependent conditions and vector sizes
// that are no multiple of a SIMD width. Every scheduler, with whole-batch tiles and tiles of one
// instance, one and two threads, must give the unbatched run's outputs, with the independent
// schedule check on. The bundled models exercise a handful of group shapes; these programs
// produce hundreds (with the executor as it was before a slice read outside its fused run kept
// its operand alive, seed 3 fails here; aot_test's fused_runs.acr covers the other defect
// found then, a slice returned from a group with several tiles).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "perfmem/acrobat/ast.h"
#include "perfmem/acrobat/data.h"
#include "perfmem/acrobat/runtime.h"

namespace perfmem::acrobat {
namespace {

// GCC 12 misfires -Wrestrict on `"x" + std::to_string(v)` at -O3: built by append instead.
template <class T>
std::string num(const char* prefix, T v) {
  return std::string(prefix).append(std::to_string(v));
}

class ProgramGenerator {
 public:
  explicit ProgramGenerator(uint32_t seed) : rng_(seed) {}

  std::string program() {
    const int sizes[] = {3, 5, 7, 8, 9, 13, 16};
    h_ = sizes[pick(7)];
    const std::string table = param("1000, H", "1.0");
    std::vector<std::string> leaf = {"  let x = lookup(" + table + ", w) in"};
    std::vector<Var> pool = {{"x", 1}};
    chain(pool, 1 + pick(6), leaf, chance(0.7));
    const auto [leaf_h, leaf_c] = results(pool, leaf);
    std::vector<std::string> node = {"  let (hl, cl) = l in", "  let (hr, cr) = r in",
                                     "  let x = lookup(" + table + ", w) in"};
    pool = {{"x", 1}, {"hl", 1}, {"cl", 1}, {"hr", 1}, {"cr", 1}};
    chain(pool, 2 + pick(13), node, true);
    const auto [node_h, node_c] = results(pool, node);
    const std::string wc = param("4, H", "glorot"), bc = param("4", "0.1");
    std::string src = num("const H = ", h_) + "\n";
    for (const std::string& p : params_) src += p + "\n";
    src += "def leaf(w: Int) -> (Tensor[H], Tensor[H]) =\n";
    for (const std::string& l : leaf) src += l + "\n";
    src += "  (" + leaf_h + ", " + leaf_c + ")\n\n";
    src += "def node(w: Int, l: (Tensor[H], Tensor[H]), r: (Tensor[H], Tensor[H])) -> (Tensor[H], Tensor[H]) =\n";
    for (const std::string& l : node) src += l + "\n";
    src += "  (" + node_h + ", " + node_c + ")\n\n";
    src +=
        "def tree(t: Tree) -> (Tensor[H], Tensor[H]) =\n"
        "  match t { Leaf(w) => leaf(w), Node(w, l, r) => node(w, tree(l), tree(r)) }\n\n"
        "def main(t: Tree) -> Tensor[4] =\n"
        "  let (h, c) = tree(t) in\n"
        "  phase dense(" +
        wc + ", tanh(add(h, c)), " + bc + ")\n";
    return src;
  }

 private:
  struct Var {
    std::string name;
    int k;  // the vector has k * H elements (k in 1..3)
  };

  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  const Var& any(const std::vector<Var>& pool) { return pool[size_t(pick(int(pool.size())))]; }
  const Var& same_size(const std::vector<Var>& pool, int k) {
    std::vector<const Var*> same;
    for (const Var& v : pool)
      if (v.k == k) same.push_back(&v);
    return *same[size_t(pick(int(same.size())))];
  }
  static std::string times_h(int k) { return k == 1 ? "H" : std::to_string(k) + "*H"; }

  std::string param(const std::string& dims, const std::string& init) {
    const std::string name = num("P", params_.size());
    params_.push_back("param " + name + " : Tensor[" + dims + num("] = hash(", params_.size() + 10) + ", " + init +
                      ")");
    return name;
  }

  // Appends `lets` bindings to `lines`, each a random operator over the pool's variables.
  void chain(std::vector<Var>& pool, int lets, std::vector<std::string>& lines, bool products) {
    for (int i = 0; i < lets; ++i) {
      const Var v = any(pool);
      std::string e;
      int k = v.k;
      switch (pick(products ? 13 : 10)) {
        case 0: e = "add(" + v.name + ", " + same_size(pool, k).name + ")"; break;
        case 1: e = "sub(" + v.name + ", " + same_size(pool, k).name + ")"; break;
        case 2: e = "mul(" + v.name + ", " + same_size(pool, k).name + ")"; break;
        case 3: e = "sigmoid(" + v.name + ")"; break;
        case 4: e = "tanh(" + v.name + ")"; break;
        case 5: e = "relu(" + v.name + ")"; break;
        case 6: {  // H elements (or 2H) from any offset, aligned to nothing
          const int n = v.k * h_;
          const int len = v.k >= 2 && chance(0.3) ? 2 * h_ : h_;
          e = "slice(" + v.name + num(", ", pick(n - len + 1)) + num(", ", len) + ")";
          k = len / h_;
          break;
        }
        case 7: {
          std::vector<const Var*> fit;
          for (const Var& w : pool)
            if (w.k + v.k <= 3) fit.push_back(&w);
          if (fit.empty()) continue;
          const Var& w = *fit[size_t(pick(int(fit.size())))];
          e = "concat(" + v.name + ", " + w.name + ")";
          k = v.k + w.k;
          break;
        }
        case 8: e = "add(" + v.name + ", " + param(times_h(k), "0.1") + ")"; break;  // a shared operand
        case 9: {  // tensor-dependent: the instance waits for the value
          const Var& w = same_size(pool, k);
          const char* thresholds[] = {"0.0", "0.3", "-0.2"};
          e = "if max(" + v.name + ") > " + thresholds[pick(3)] + " then tanh(" + w.name + ") else mul(" + v.name +
              ", " + w.name + ")";
          break;
        }
        case 10:
        case 11: {
          const int out = 1 + pick(3);
          e = "matmul(" + param(times_h(out) + ", " + times_h(k), "glorot") + ", " + v.name + ")";
          k = out;
          break;
        }
        default: {
          const int out = 1 + pick(2);
          e = "dense(" + param(times_h(out) + ", " + times_h(k), "glorot") + ", " + v.name + ", " +
              param(times_h(out), "0.1") + ")";
          k = out;
          break;
        }
      }
      const std::string name = num("v", lines.size());
      lines.push_back("  let " + name + " = " + e + " in");
      pool.push_back({name, k});
    }
  }

  // The function's (h, c): recent H-sized variables, or a slice of any variable, in the
  // returned tuple or as the chain's last binding (then a fused group's output is a view).
  std::pair<std::string, std::string> results(const std::vector<Var>& pool, std::vector<std::string>& lines) {
    auto one = [&] {
      // A slice of a wider vector when there is one (of an H-sized one, it is the vector).
      std::vector<const Var*> wide;
      for (const Var& w : pool)
        if (w.k > 1) wide.push_back(&w);
      const Var& v = wide.empty() ? any(pool) : *wide[size_t(pick(int(wide.size())))];
      if (chance(0.4)) {
        const std::string slice = "slice(" + v.name + ", " + std::to_string(pick((v.k - 1) * h_ + 1)) + ", H)";
        if (chance(0.5)) return slice;
        const std::string name = num("v", lines.size());
        lines.push_back("  let " + name + " = " + slice + " in");
        return name;
      }
      std::vector<const Var*> h_sized;
      for (size_t i = pool.size(); i-- > 0 && h_sized.size() < 4;)
        if (pool[i].k == 1) h_sized.push_back(&pool[i]);
      return h_sized[size_t(pick(int(h_sized.size())))]->name;
    };
    std::string h = one();
    return {h, one()};
  }

  std::mt19937 rng_;
  int h_ = 8;
  std::vector<std::string> params_;
};

struct Setting {
  const char* name;
  Scheduler scheduler;
  bool tiles_of_one = false;
  int threads = 1;
  bool reference = false;
};

std::vector<float> run(const std::string& src, const Setting& s, const std::vector<Instance>& data,
                       std::string* error) {
  auto program = compile_program("random.acr", src, compile_options_for(s.scheduler));
  if (!program.ok()) {
    *error = program.status().to_string();
    return {};
  }
  RuntimeOptions opt;
  opt.scheduler = s.scheduler;
  opt.verify = true;
  opt.reference_kernels = s.reference;
  opt.threads = s.threads;
  opt.parallel_min_work = 1;
  if (s.tiles_of_one) {
    opt.group_tile_bytes = 1;
    opt.group_min_tile_rows = 1;
  }
  auto runtime = Runtime::create(**program, opt);
  if (!runtime.ok()) {
    *error = runtime.status().to_string();
    return {};
  }
  std::vector<float> out;
  RunStats stats;
  Status st = (*runtime)->set_inputs(data);
  if (st.ok()) st = (*runtime)->run_minibatch(0, data.size(), &out, &stats);
  if (!st.ok()) *error = st.to_string();
  return out;
}

TEST(AcrobatRandomPrograms, EverySchedulerAndTilingEqualsTheUnbatchedRun) {
  const std::vector<Instance> data = random_trees(13, 5);
  const Setting settings[] = {
      {"acrobat", Scheduler::kAcrobat},
      {"acrobat, tiles of one instance", Scheduler::kAcrobat, true},
      {"acrobat, two threads", Scheduler::kAcrobat, false, 2},
      {"acrobat, tiles of one, two threads", Scheduler::kAcrobat, true, 2},
      {"acrobat, reference kernels", Scheduler::kAcrobat, false, 1, true},
      {"dynet-agenda", Scheduler::kDynetAgenda},
      {"dynet-depth", Scheduler::kDynetDepth},
      {"none", Scheduler::kNone},
  };
  int groups = 0;
  for (uint32_t seed = 1; seed <= 120; ++seed) {
    const std::string src = ProgramGenerator(seed).program();
    auto analysed = compile_program("random.acr", src, compile_options_for(Scheduler::kAcrobat));
    ASSERT_TRUE(analysed.ok()) << "seed " << seed << ": " << analysed.status().to_string() << "\n" << src;
    groups += int((*analysed)->groups.size());
    std::string error;
    const std::vector<float> ref =
        run(src, {"none, reference kernels", Scheduler::kNone, false, 1, true}, data, &error);
    ASSERT_EQ(ref.size(), data.size() * 4) << "seed " << seed << ": " << error << "\n" << src;
    for (const Setting& s : settings) {
      const std::vector<float> got = run(src, s, data, &error);
      ASSERT_EQ(got.size(), ref.size()) << "seed " << seed << ", " << s.name << ": " << error << "\n" << src;
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(got[i], ref[i], 1e-4 * (1 + std::fabs(ref[i])))
            << "seed " << seed << ", " << s.name << ", output " << i << "\n"
            << src;
    }
  }
  EXPECT_GT(groups, 100);  // the programs do fuse
}

}  // namespace
}  // namespace perfmem::acrobat
