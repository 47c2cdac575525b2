// Each compile-time analysis, before and after: what it annotates on a small program, and
// what that changes at run time (launches, recorded ops) while the results stay the same.
#include <gtest/gtest.h>

#include <cmath>

#include "perfmem/acrobat/analysis_coarsening.h"
#include "perfmem/acrobat/analysis_ghost_ops.h"
#include "perfmem/acrobat/analysis_param_reuse.h"
#include "perfmem/acrobat/analysis_phases.h"
#include "perfmem/acrobat/analysis_static_depth.h"
#include "perfmem/acrobat/runtime.h"

namespace perfmem::acrobat {
namespace {

const std::string kHead =
    "param W : Tensor[4, 4] = hash(1, 0.5)\n"
    "param U : Tensor[4, 4] = hash(3, 0.5)\n"
    "param E : Tensor[10, 4] = hash(2, 1.0)\n";

std::unique_ptr<Program> compile(const std::string& src, CompileOptions opt) {
  auto p = compile_program("t.acr", src, opt);
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  return p.ok() ? std::move(*p) : nullptr;
}

CompileOptions options(bool static_depth, bool ghost, bool coarsen) {
  CompileOptions o;
  o.static_depth = static_depth;
  o.ghost_ops = ghost;
  o.coarsening = coarsen;
  return o;
}

std::vector<const Expr*> ops_of(const Program& p, const std::string& fn, OpKind op) {
  std::vector<const Expr*> out;
  for (const auto& f : p.fns) {
    if (f.name != fn) continue;
    std::vector<const Expr*> stack{f.body.get()};
    while (!stack.empty()) {
      const Expr* e = stack.back();
      stack.pop_back();
      if (e->kind == ExprKind::kOp && e->op == op) out.push_back(e);
      for (const auto& a : e->args) stack.push_back(a.get());
      for (const auto& arm : e->arms) stack.push_back(arm.body.get());
    }
  }
  return out;
}

struct Outcome {
  std::vector<float> out;
  RunStats stats;
};

Outcome run(const Program& p, const std::vector<Instance>& data, Scheduler s = Scheduler::kAcrobat) {
  RuntimeOptions o;
  o.scheduler = s;
  o.verify = true;
  auto rt = Runtime::create(p, o);
  EXPECT_TRUE(rt.ok()) << rt.status().to_string();
  Outcome r;
  EXPECT_TRUE((*rt)->set_inputs(data).ok());
  Status st = (*rt)->run_minibatch(0, data.size(), &r.out, &r.stats);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return r;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * (1 + std::fabs(b[i]))) << i;
}

const std::string kTreeProgram = kHead +
                                 "def f(t: Tree) -> Tensor[4] = match t {\n"
                                 "  Leaf(w) => tanh(matmul(W, lookup(E, w))),\n"
                                 "  Node(w, l, r) => tanh(add(f(l), f(r)))\n"
                                 "}\n"
                                 "def main(t: Tree) -> Tensor[4] = f(t)\n";

TEST(AcrobatAnalysis, StaticDepthGivesLeafOpsConstantDepths) {
  auto after = compile(kTreeProgram, options(true, false, false));
  auto before = compile(kTreeProgram, options(false, false, false));
  ASSERT_TRUE(after && before);
  auto mm = ops_of(*after, "f", OpKind::kMatMul);
  ASSERT_EQ(mm.size(), 1u);
  EXPECT_EQ(mm[0]->static_depth, 0);
  auto tanhs = ops_of(*after, "f", OpKind::kTanh);
  ASSERT_EQ(tanhs.size(), 2u);
  int static_tanh = 0, dynamic_tanh = 0;
  for (const Expr* t : tanhs) {
    if (t->static_depth == 1) ++static_tanh;
    if (t->static_depth == -1) ++dynamic_tanh;
  }
  EXPECT_EQ(static_tanh, 1);   // the leaf's tanh: depends only on W, E and the word
  EXPECT_EQ(dynamic_tanh, 1);  // the node's tanh: depends on the recursion
  EXPECT_EQ(ops_of(*after, "f", OpKind::kAdd)[0]->static_depth, -1);
  EXPECT_EQ(after->max_static_depth, 1);
  EXPECT_EQ(ops_of(*before, "f", OpKind::kMatMul)[0]->static_depth, -1);

  // Children start at their parent's depth, so in a tree the leaves already meet; a loop
  // is where the analysis pays: the input projection of every step of every sentence
  // becomes one launch instead of one per time step.
  const std::string loop =
      kHead +
      "def step(h: Tensor[4], w: Int) -> Tensor[4] = tanh(add(matmul(W, lookup(E, w)), matmul(U, h)))\n"
      "def main(xs: List[Int]) -> Tensor[4] = foldl(step, zeros(4), xs)\n";
  auto loop_after = compile(loop, options(true, false, false));
  auto loop_before = compile(loop, options(false, false, false));
  ASSERT_TRUE(loop_after && loop_before);
  EXPECT_EQ(ops_of(*loop_after, "step", OpKind::kMatMul).size(), 2u);
  auto data = sentences(12, 7, 3, 9, 10);
  Outcome a = run(*loop_after, data), b = run(*loop_before, data);
  expect_close(a.out, b.out);
  // Without: 4 launches per time step (2 matmuls, add, tanh). With: the W projection is one
  // launch for all steps, so 3 per step + 1.
  EXPECT_EQ(b.stats.kernels_launched, 4 * 9);
  EXPECT_EQ(a.stats.kernels_launched, 3 * 9 + 1);
}

TEST(AcrobatAnalysis, StaticDepthThroughFunctionParametersAndRecursionLimit) {
  const std::string src = kHead +
                          "def proj(x: Tensor[4]) -> Tensor[4] = matmul(W, x)\n"
                          "def deep(n: Int, x: Tensor[4]) -> Tensor[4] = if n == 0 then x else deep(n - 1, tanh(x))\n"
                          "def main(xs: List[Int]) -> Tensor[4] = match xs { Nil => zeros(4), Cons(w, _) => "
                          "add(proj(lookup(E, w)), deep(3, lookup(E, w))) }\n";
  auto p = compile(src, options(true, false, false));
  ASSERT_TRUE(p);
  EXPECT_EQ(ops_of(*p, "proj", OpKind::kMatMul)[0]->static_depth, 0);  // static at its only call site
  // deep() feeds its own result back: the depth keeps growing, so it ends up dynamic.
  EXPECT_EQ(ops_of(*p, "deep", OpKind::kTanh)[0]->static_depth, -1);
}

TEST(AcrobatAnalysis, ParamReuseMarksParameterOperandsAndBatchesOneGemm) {
  const std::string src =
      kHead +
      "def same(m: Tensor[4, 4], x: Tensor[4]) -> Tensor[4] = matmul(m, x)\n"
      "def mixed(m: Tensor[4, 4], x: Tensor[4]) -> Tensor[4] = matmul(m, x)\n"
      "def main(xs: List[Int]) -> Tensor[4] = match xs { Nil => zeros(4), Cons(w, _) =>\n"
      "  let x = lookup(E, w) in add(add(same(W, x), same(W, x)), add(mixed(W, x), mixed(U, x))) }\n";
  auto after = compile_program("t.acr", src, options(false, false, false));
  ASSERT_TRUE(after.ok()) << after.status().to_string();
  EXPECT_EQ(ops_of(**after, "same", OpKind::kMatMul)[0]->shared[0], 0);    // always W (tensor 0)
  EXPECT_EQ(ops_of(**after, "same", OpKind::kMatMul)[0]->shared[1], -1);   // x is per instance
  EXPECT_EQ(ops_of(**after, "mixed", OpKind::kMatMul)[0]->shared[0], -1);  // W or U: not one parameter

  // Before: re-run the analysis disabled on a fresh parse.
  auto parsed = parse_program("t.acr", src);
  ASSERT_TRUE(parsed.ok());
  Program before = std::move(*parsed);
  ASSERT_TRUE(typecheck(before).ok());
  ASSERT_TRUE(analyze_phases(before).ok());
  analyze_param_reuse(before, false);
  EXPECT_EQ(ops_of(before, "same", OpKind::kMatMul)[0]->shared[0], -1);

  auto data = sentences(6, 3, 1, 3, 10);
  Outcome a = run(**after, data), b = run(before, data);
  expect_close(a.out, b.out);
}

// matmul(W, concat(A, B)) of a parameter and matrices reads A and B in place (no concat op
// left, the product has three operands); vectors, and a weight that is not a parameter, keep
// their concat. Results agree with the program compiled without the fold.
TEST(AcrobatAnalysis, ConcatOfMatricesFoldsIntoTheProductByAParameter) {
  const std::string src =
      "param W : Tensor[4, 8] = hash(1, 0.5)\n"
      "param E : Tensor[10, 4, 4] = hash(2, 1.0)\n"
      "param V : Tensor[10, 4] = hash(3, 1.0)\n"
      "def m(t: Tree) -> Tensor[4, 4] = match t {\n"
      "  Leaf(w) => lookup(E, w),\n"
      "  Node(_, l, r) => tanh(matmul(W, concat(m(l), m(r))))\n"
      "}\n"
      "def v(t: Tree) -> Tensor[4] = match t {\n"
      "  Leaf(w) => lookup(V, w),\n"
      "  Node(_, l, r) => tanh(matmul(W, concat(v(l), v(r))))\n"
      "}\n"
      "def main(t: Tree) -> Tensor[4] = match t {\n"
      "  Leaf(w) => lookup(V, w),\n"
      "  Node(_, l, r) => add(matmul(m(t), v(t)), matmul(matmul(m(l), m(r)), concat(slice(v(l), 0, 2), slice(v(r), 0, "
      "2))))\n"
      "}\n";
  auto folded = compile(src, CompileOptions{});
  CompileOptions off;
  off.stacked_products = false;
  auto kept = compile(src, off);
  ASSERT_TRUE(folded && kept);
  ASSERT_EQ(ops_of(*folded, "m", OpKind::kMatMul).size(), 1u);
  EXPECT_EQ(ops_of(*folded, "m", OpKind::kMatMul)[0]->args.size(), 3u);
  EXPECT_TRUE(ops_of(*folded, "m", OpKind::kConcat).empty());
  EXPECT_EQ(ops_of(*kept, "m", OpKind::kConcat).size(), 1u);
  EXPECT_EQ(ops_of(*folded, "v", OpKind::kConcat).size(), 1u);     // vectors: concat kept
  EXPECT_EQ(ops_of(*folded, "main", OpKind::kConcat).size(), 1u);  // weight computed, not a parameter
  auto data = random_trees(9, 11, 10);
  Outcome a = run(*folded, data), b = run(*kept, data);
  expect_close(a.out, b.out);
  Outcome c = run(*folded, data, Scheduler::kDynetAgenda);
  expect_close(c.out, b.out);
}

TEST(AcrobatAnalysis, GhostOpsPadTheShorterBranchSoInstancesReconverge) {
  const std::string src =
      kHead +
      "def pick(w: Int) -> Tensor[4] = let x = tanh(lookup(E, w)) in if w < 5 then tanh(tanh(x)) else x\n"
      "def main(xs: List[Int]) -> Tensor[4] = match xs { Nil => zeros(4), Cons(w, _) => sigmoid(matmul(W, pick(w))) "
      "}\n";
  auto after = compile(src, options(false, true, false));
  auto before = compile(src, options(false, false, false));
  ASSERT_TRUE(after && before);
  const FnDecl* pick = nullptr;
  for (const auto& f : after->fns)
    if (f.name == "pick") pick = &f;
  ASSERT_NE(pick, nullptr);
  const Expr& if_expr = *pick->body->args[1];
  ASSERT_EQ(if_expr.kind, ExprKind::kIf);
  EXPECT_EQ(if_expr.ghost_then, 0);
  EXPECT_EQ(if_expr.ghost_else, 2);  // the else branch is two ops shorter
  EXPECT_EQ(function_depth_advance(*after, static_cast<int>(pick - after->fns.data())), 3);

  // Words 0..9: both branches occur. With ghosts the matmul and sigmoid after the branch run
  // as one launch each; without, once per branch length.
  std::vector<Instance> data;
  for (int w = 0; w < 10; ++w) {
    Instance i;
    i.kind = Instance::kSequence;
    i.words = {w};
    data.push_back(i);
  }
  Outcome a = run(*after, data), b = run(*before, data);
  expect_close(a.out, b.out);
  EXPECT_EQ(b.stats.kernels_launched - a.stats.kernels_launched, 2);
}

TEST(AcrobatAnalysis, PhasesSeparateTheClassifierAndRejectNestedAnnotations) {
  const std::string body =
      "def f(t: Tree) -> Tensor[4] = match t { Leaf(w) => tanh(lookup(E, w)), Node(w, l, r) => tanh(add(f(l), f(r))) "
      "}\n";
  const std::string with_phase =
      kHead + body + "def main(t: Tree) -> Tensor[4] = let h = f(t) in phase sigmoid(matmul(W, h))\n";
  const std::string without = kHead + body + "def main(t: Tree) -> Tensor[4] = let h = f(t) in sigmoid(matmul(W, h))\n";
  auto after = compile(with_phase, options(true, true, false));
  auto before = compile(without, options(true, true, false));
  ASSERT_TRUE(after && before);
  EXPECT_EQ(after->num_phases, 2);
  EXPECT_EQ(before->num_phases, 1);
  auto data = random_trees(16, 11, 10);  // trees of different heights
  Outcome a = run(*after, data), b = run(*before, data);
  expect_close(a.out, b.out);
  // With the phase the classifier's matmul + sigmoid are 2 launches; without, 2 per root depth.
  EXPECT_LT(a.stats.kernels_launched, b.stats.kernels_launched);
}

TEST(AcrobatAnalysis, CoarseningFusesStraightLineChains) {
  const std::string src = kHead +
                          "def step(h: Tensor[4], w: Int) -> Tensor[4] =\n"
                          "  let a = add(matmul(W, h), lookup(E, w)) in\n"
                          "  let b = sigmoid(a) in\n"
                          "  let unused = tanh(b) in\n"
                          "  let c = mul(b, tanh(a)) in\n"
                          "  add(c, a)\n"
                          "def main(xs: List[Int]) -> Tensor[4] = foldl(step, zeros(4), xs)\n";
  auto after = compile(src, options(false, false, true));
  auto before = compile(src, options(false, false, false));
  ASSERT_TRUE(after && before);
  // The first let reads lookup (a view) so it is not fusable; b, unused, c form the chain.
  ASSERT_EQ(after->groups.size(), 1u);
  const FusedGroup& g = after->groups[0];
  EXPECT_EQ(g.instrs.size(), 4u);        // sigmoid, tanh (unused), tanh, mul
  EXPECT_EQ(g.output_slots.size(), 1u);  // only c is read after the chain (a is an input)
  EXPECT_TRUE(before->groups.empty());
  auto data = sentences(8, 5, 1, 6, 10);
  Outcome a = run(*after, data), b = run(*before, data);
  expect_close(a.out, b.out);
  EXPECT_LT(a.stats.ops_recorded, b.stats.ops_recorded);
}

TEST(AcrobatAnalysis, CoarseningPairsProductsBySameParameter) {
  const std::string src = kHead +
                          "def step(h: Tensor[4], w: Int) -> Tensor[4] =\n"
                          "  let x = lookup(E, w) in\n"
                          "  let a = tanh(matmul(U, h)) in\n"
                          "  let b = sigmoid(matmul(W, x)) in\n"
                          "  let c = tanh(matmul(U, x)) in\n"
                          "  add(a, add(b, c))\n"
                          "def main(xs: List[Int]) -> Tensor[4] = foldl(step, zeros(4), xs)\n";
  auto after = compile(src, options(false, false, true));
  auto before = compile(src, options(false, false, false));
  ASSERT_TRUE(after && before);
  ASSERT_EQ(after->groups.size(), 1u);
  const auto& instrs = after->groups[0].instrs;
  ASSERT_EQ(instrs.size(), 6u);
  // U h and U x are moved next to each other and run as one GEMM; W x stays alone.
  EXPECT_TRUE(instrs[0].paired_with_next);
  EXPECT_EQ(instrs[0].sig.op, OpKind::kMatMul);
  EXPECT_EQ(instrs[1].sig.op, OpKind::kMatMul);
  EXPECT_EQ(instrs[0].sig.shared_param[0], instrs[1].sig.shared_param[0]);
  int paired = 0;
  for (const auto& in : instrs) paired += in.paired_with_next;
  EXPECT_EQ(paired, 1);
  auto data = sentences(9, 12, 1, 5, 10);
  Outcome a = run(*after, data), b = run(*before, data);
  expect_close(a.out, b.out);
}

}  // namespace
}  // namespace perfmem::acrobat
