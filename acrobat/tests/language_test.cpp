// Parser and type checker: the bundled models compile, and a corpus of wrong programs each
// fails with file:line:column pointing at the offending token and saying what was expected.
#include <gtest/gtest.h>

#include <fstream>
#include <limits>
#include <sstream>

#include "perfmem/acrobat/ast.h"
#include "perfmem/acrobat/models.h"
#include "perfmem/acrobat/runtime.h"
#include "bundled_model.h"

namespace perfmem::acrobat {
namespace {

using test_support::read_model;

// "t.acr:LINE:COL" of the `occurrence`-th appearance of `needle` in `src`.
std::string pos_of(const std::string& src, const std::string& needle, int occurrence = 1) {
  size_t at = std::string::npos, from = 0;
  for (int k = 0; k < occurrence; ++k) {
    at = src.find(needle, from);
    if (at == std::string::npos) return "needle not found";
    from = at + 1;
  }
  int line = 1, col = 1;
  for (size_t i = 0; i < at; ++i) {
    if (src[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "t.acr:" + std::to_string(line) + ":" + std::to_string(col);
}

struct BadProgram {
  const char* name;
  std::string source;
  std::string at;  // token the error must point at
  int occurrence;
  std::string expected;  // substring of the message
};

TEST(AcrobatLanguage, BundledModelsCompileForEveryScheduler) {
  for (const char* m : {"treelstm", "mvrnn", "birnn", "nestedrnn", "drnn", "berxit", "stackrnn"}) {
    for (Scheduler s : kAllSchedulers) {
      auto p = compile_program(std::string(m) + ".acr", read_model(m), compile_options_for(s));
      ASSERT_TRUE(p.ok()) << m << ": " << p.status().to_string();
      // The models with tensor-dependent control flow have no phase annotation.
      EXPECT_EQ((*p)->num_phases, (*p)->reads_tensor_values ? 1 : 2) << m;
      EXPECT_GT((*p)->kernels.size(), 3u) << m;
    }
  }
}

TEST(AcrobatLanguage, ConstantOverridesChangeShapes) {
  auto p = compile_program("birnn.acr", read_model("birnn"), compile_options_for(Scheduler::kAcrobat, {{"H", 8}}));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ((*p)->params[1].type->dims, (std::vector<int64_t>{32, 8}));  // Wxf: [4*H, H]
  auto bad = compile_program("birnn.acr", read_model("birnn"), compile_options_for(Scheduler::kAcrobat, {{"Q", 8}}));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("a constant declared in the program"), std::string::npos)
      << bad.status().message();
}

TEST(AcrobatLanguage, WrongProgramsReportPositionAndExpectation) {
  const std::string head =
      "const H = 4\nparam W : Tensor[H, 3] = hash(1, 0.5)\nparam E : Tensor[10, H] = hash(2, 1.0)\n";
  std::vector<BadProgram> corpus;
  auto add = [&](const char* name, std::string src, std::string at, int occurrence, std::string expected) {
    corpus.push_back({name, std::move(src), std::move(at), occurrence, std::move(expected)});
  };
  add("missing in", head + "def main(xs: List[Int]) -> Tensor[4] =\n  let x = zeros(4)\n  x\n", "x\n", 1,
      "expected 'in'");
  add("unknown variable", head + "def main(xs: List[Int]) -> Tensor[4] = add(zeros(4), y)\n", "y)", 1,
      "a known variable");
  add("shape mismatch", head + "def main(xs: List[Int]) -> Tensor[4] = add(zeros(4), zeros(5))\n", "zeros(5)", 1,
      "same shape Tensor[4], found Tensor[5]");
  add("matmul inner dimension", head + "def main(xs: List[Int]) -> Tensor[4] = matmul(W, zeros(4))\n", "zeros(4)", 1,
      "a vector or matrix with 3 rows");
  add("if branches differ", head + "def main(xs: List[Int]) -> Tensor[4] = if true then zeros(4) else 1\n", "1\n", 1,
      "an else branch of type Tensor[4], found Int");
  add("match not exhaustive", head + "def main(t: Tree) -> Tensor[4] = match t { Leaf(w) => zeros(4) }\n", "match", 1,
      "no arm for 'Node'");
  add("constructor arity",
      head + "def main(t: Tree) -> Tensor[4] = match t { Leaf(a, b) => zeros(4), Node(w, l, r) => zeros(4) }\n",
      "Leaf(a", 1, "1 fields for Leaf");
  add("phase outside main", head + "def f(x: Int) -> Int = phase x\ndef main(t: Tree) -> Tensor[4] = zeros(4)\n",
      "phase", 1, "'phase' only in main");
  add("phase nested", head + "def main(t: Tree) -> Tensor[4] = add(zeros(4), phase zeros(4))\n", "phase", 1,
      "main's spine");
  add("missing main", head + "def f(x: Int) -> Int = x\n", "const", 1, "a function 'main'");
  add("non-ASCII character", head + "def main(t: Tree) -> Tensor[4] = zeros(4) \xc3\xa9\n", "\xc3", 1,
      "found byte 0xc3 (programs are ASCII outside comments)");
  add("control character", head + "def main(t: Tree) -> Tensor[4] = zeros(4) \x01\n", "\x01", 1, "found byte 0x01");
  add("unknown type", head + "def main(x: Foo) -> Tensor[4] = zeros(4)\n", "Foo", 1, "a known type");
  add("slice out of range", head + "def main(t: Tree) -> Tensor[3] = slice(zeros(4), 2, 3)\n", "2, 3", 1,
      "start + length <= 4");
  add("slice start that would overflow start + length",
      head + "def main(t: Tree) -> Tensor[1] = slice(zeros(4), 9223372036854775807, 1)\n", "9223372036854775807", 1,
      "start + length <= 4");
  add("slice start not constant",
      head + "def f(n: Int) -> Tensor[2] = slice(zeros(4), n, 2)\ndef main(t: Tree) -> Tensor[2] = f(1)\n", "n, 2", 1,
      "a constant slice start");
  add("bad character", head + "def main(t: Tree) -> Tensor[4] = zeros(4) $\n", "$", 1, "character '$'");
  add("unknown function", head + "def main(t: Tree) -> Tensor[4] = frob(t)\n", "frob", 1,
      "a known function or operator");
  add("duplicate function",
      head + "def f(x: Int) -> Int = x\ndef f(x: Int) -> Int = x\ndef main(t: Tree) -> Tensor[4] = zeros(4)\n", "def f",
      2, "declared twice");
  add("argument count", head + "def f(x: Int) -> Tensor[4] = zeros(4)\ndef main(t: Tree) -> Tensor[4] = f(1, 2)\n",
      "f(1", 1, "1 arguments for 'f'");
  add("lookup on a computed tensor", head + "def main(t: Tree) -> Tensor[4] = lookup(zeros(4), 1)\n", "zeros(4), 1", 1,
      "a parameter name as the lookup table");
  add("main returns a scalar", head + "def main(t: Tree) -> Int = 1\n", "def main", 1, "main to return a vector");
  add("foldl step type",
      head +
          "def step(a: Int, b: Int) -> Int = a\ndef main(xs: List[Int]) -> Tensor[4] = let s = foldl(step, zeros(4), "
          "xs) in s\n",
      "step, zeros", 1, "a function (Tensor[4], Int) -> Tensor[4]");
  add("unterminated string", head + "param Z : Tensor[2] = load(\"abc\ndef main(t: Tree) -> Tensor[2] = Z\n", "\"abc",
      1, "a closing");
  add("tensor arithmetic with +", head + "def main(t: Tree) -> Tensor[4] = zeros(4) + zeros(4)\n", "zeros", 1,
      "an Int (use add/sub/mul for tensors)");
  add("zero dimension", "param Q : Tensor[0] = hash(1, 1.0)\ndef main(t: Tree) -> Tensor[1] = zeros(1)\n", "0]", 1,
      "a positive dimension");
  // Sizes: element counts are checked without wrapping (2^24 x 2^24 x 2^16 is 2^64, which a
  // plain product wraps to 0), for declared and for computed tensors.
  add("element count wraps to 0",
      "param Q : Tensor[16777216, 16777216, 65536] = hash(1, 1.0)\ndef main(t: Tree) -> Tensor[1] = zeros(1)\n",
      "Tensor[1677", 1, "a tensor of at most 2147483648 elements, found Tensor[16777216, 16777216, 65536]");
  add("declared tensor too large", "def main(t: Tree) -> Tensor[65536, 65536] = zeros(1)\n", "Tensor[65536", 1,
      "a tensor of at most 2147483648 elements");
  add("2^48-element intermediate",
      "param A : Tensor[16777216, 1] = hash(1, 1.0)\nparam B : Tensor[1, 16777216] = hash(2, 1.0)\n"
      "def main(t: Tree) -> Tensor[1] = sum(matmul(A, B))\n",
      "matmul", 1, "found Tensor[16777216, 16777216]");
  add("fill too large", "def main(t: Tree) -> Tensor[1] = sum(fill(4294967296, 1.0))\n", "fill", 1,
      "a tensor of at most 2147483648 elements");
  // Constant folding uses checked arithmetic: no trap, no wrap.
  const std::string min = "const M = -9223372036854775807 - 1\n";
  const std::string tail = "def main(t: Tree) -> Tensor[1] = zeros(1)\n";
  add("constant INT64_MIN / -1", min + "const Q = M / -1\n" + tail, "/ -1", 1, "the quotient overflows 64 bits");
  add("constant overflow +", "const Q = 9223372036854775807 + 1\n" + tail, "+ 1", 1, "the sum overflows 64 bits");
  add("constant overflow -", min + "const Q = M - 1\n" + tail, "- 1\n", 2, "the difference overflows 64 bits");
  add("constant overflow *", "const Q = 4294967296 * 4294967296\n" + tail, "* 4", 1, "the product overflows 64 bits");
  add("constant overflow unary -", min + "const Q = -M\n" + tail, "-M", 1, "the negation overflows 64 bits");
  add("constant division by zero", "const Q = 3 % 0\n" + tail, "0\n", 1, "a non-zero divisor");
  add("overflowing dimension", "param Q : Tensor[9223372036854775807 * 2] = hash(1, 1.0)\n" + tail, "* 2", 1,
      "the product overflows 64 bits");
  // Reading tensor values (tensor-dependent control flow).
  add("compare a vector",
      head +
          "def main(xs: List[Int]) -> Tensor[4] = if zeros(4) > 0.5 then zeros(4) else "
          "zeros(4)\n",
      "zeros(4) >", 1, "a Tensor[1] for a comparison (its value is read), found Tensor[4]");
  add("item of a vector",
      head +
          "def main(xs: List[Int]) -> Tensor[4] = if item(zeros(2)) > 0.5 then zeros(4) else "
          "zeros(4)\n",
      "zeros(2)", 1, "a Tensor[1] for item");
  add("index of a vector", head + "def main(xs: List[Int]) -> Tensor[4] = lookup(E, index(zeros(3)))\n", "zeros(3)", 1,
      "a Tensor[1] for index");
  add("item arity",
      head +
          "def main(xs: List[Int]) -> Tensor[4] = if item(zeros(1), 1) > 0.5 then zeros(4) else "
          "zeros(4)\n",
      "item", 1, "item with 1 argument");
  add("item is a Float, not an Int", head + "def main(xs: List[Int]) -> Tensor[4] = lookup(E, item(sum(zeros(4))))\n",
      "item", 1, "an Int index, found Float");
  add("Float arithmetic", head + "def main(xs: List[Int]) -> Tensor[4] = if 0.5 + 1 > 0 then zeros(4) else zeros(4)\n",
      "0.5 +", 1, "an Int (use add/sub/mul for tensors), found Float");
  add("tensor value as a condition",
      head +
          "def main(xs: List[Int]) -> Tensor[4] = if sum(zeros(4)) then zeros(4) "
          "else zeros(4)\n",
      "sum", 1, "a Bool condition, found Tensor[1]");
  add("compare a tensor with a Bool",
      head +
          "def main(xs: List[Int]) -> Tensor[4] = if max(zeros(4)) == true then "
          "zeros(4) else zeros(4)\n",
      "true", 1, "an Int, a Float or a Tensor[1] to compare with a Float, found Bool");
  add("function named item", head + "def item(x: Int) -> Int = x\ndef main(xs: List[Int]) -> Tensor[4] = zeros(4)\n",
      "def item", 1, "a function name that is not a built-in");
  add("max of nothing", head + "def main(xs: List[Int]) -> Tensor[4] = if max() > 0.5 then zeros(4) else zeros(4)\n",
      "max", 1, "max with 1 arguments");
  for (const auto& bad : corpus) {
    auto p = compile_program("t.acr", bad.source, compile_options_for(Scheduler::kAcrobat));
    ASSERT_FALSE(p.ok()) << bad.name;
    const std::string msg = p.status().message();
    std::string where = pos_of(bad.source, bad.at, bad.occurrence);
    EXPECT_EQ(msg.rfind(where + ":", 0), 0u) << bad.name << ": wanted position " << where << " in: " << msg;
    EXPECT_NE(msg.find(bad.expected), std::string::npos) << bad.name << ": " << msg;
  }
}

TEST(AcrobatLanguage, ConstantRemainderByMinusOneIsZero) {
  // INT64_MIN % -1 traps in hardware; the language defines it as its remainder, 0.
  auto p = compile_program("t.acr",
                           "const M = -9223372036854775807 - 1\nconst Q = M % -1\nconst R = -7 % -1\nconst S = -7 / 2\n"
                           "def main(t: Tree) -> Tensor[1] = zeros(1)\n",
                           compile_options_for(Scheduler::kAcrobat));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ((*p)->consts[0].resolved, std::numeric_limits<int64_t>::min());
  EXPECT_EQ((*p)->consts[1].resolved, 0);
  EXPECT_EQ((*p)->consts[2].resolved, 0);
  EXPECT_EQ((*p)->consts[3].resolved, -3);  // truncation toward zero, as in C++
}

TEST(AcrobatLanguage, UserTypesListsAndScalarsTypeCheck) {
  const std::string src =
      "type Shape = Dot | Pair(Int, Shape)\n"
      "def size(s: Shape) -> Int = match s { Dot => 0, Pair(_, rest) => 1 + size(rest) }\n"
      "def count(xs: List[Int]) -> Int = match xs { Nil => 0, Cons(_, rest) => 1 + count(rest) }\n"
      "def main(xs: List[Int]) -> Tensor[2] =\n"
      "  let n = size(Pair(1, Pair(2, Dot))) + count(Cons(3, xs)) + length(reverse(xs)) in\n"
      "  if n > 2 && !(n == 100) then fill(2, 1.5) else zeros(2)\n";
  auto p = compile_program("t.acr", src, compile_options_for(Scheduler::kAcrobat));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ((*p)->adts.size(), 2u);  // the prelude's Tree and Shape
}

// Conditions on tensor values: comparisons with a Tensor[1] (either side, against an Int, a
// Float or another Tensor[1]), item/index, Float parameters and results, unary minus on Floats.
TEST(AcrobatLanguage, TensorValueConditionsTypeCheck) {
  const std::string src =
      "const H = 4\n"
      "param W : Tensor[3, H] = hash(1, 0.5)\n"
      "param E : Tensor[10, H] = hash(2, 1.0)\n"
      "def above(x: Tensor[H], t: Float) -> Bool = max(x) > t\n"
      "def main(xs: List[Int]) -> Tensor[H] =\n"
      "  let x = lookup(E, 3) in\n"
      "  let k = index(argmax(matmul(W, x))) in\n"
      "  if above(x, -0.25) && argmax(x) == 2 && 1 < sum(x) && slice(x, 0, 1) != slice(x, 1, 1)\n"
      "  then lookup(E, k) else if item(sum(x)) >= -1 then x else zeros(H)\n";
  auto p = compile_program("t.acr", src, compile_options_for(Scheduler::kAcrobat));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_TRUE((*p)->reads_tensor_values);
  auto plain = compile_program("t.acr", "def main(xs: List[Int]) -> Tensor[2] = zeros(2)\n",
                               compile_options_for(Scheduler::kAcrobat));
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE((*plain)->reads_tensor_values);
}

TEST(BundledModels, CompiledInTextEqualsTheModelFiles) {
  for (const auto& m : builtin_models()) {
    std::string file = read_model(m.name);
    ASSERT_FALSE(file.empty()) << m.name;
    EXPECT_EQ(std::string(bundled_source(m.name)), file) << m.name;
  }
  EXPECT_TRUE(bundled_source("no-such-model").empty());
}

}  // namespace
}  // namespace perfmem::acrobat

namespace perfmem::acrobat {
namespace {

TEST(AcrobatLanguage, HostileNestingIsAnErrorNotACrash) {
  std::string deep = "def main(t: Tree) -> Int = ";
  for (int i = 0; i < 5000; ++i) deep += "(";
  deep += "1";
  for (int i = 0; i < 5000; ++i) deep += ")";
  auto p = compile_program("t.acr", deep, compile_options_for(Scheduler::kAcrobat));
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("nested at most"), std::string::npos) << p.status().message();

  std::string chain = "def main(t: Tree) -> Int = 1";
  for (int i = 0; i < 5000; ++i) chain += " + 1";
  auto q = compile_program("t.acr", chain, compile_options_for(Scheduler::kAcrobat));
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("nested at most"), std::string::npos) << q.status().message();
}

}  // namespace
}  // namespace perfmem::acrobat
