// The acrobat program follows the CLI conventions: --help exits 0, usage errors exit 2, bad
// input exits 1 with a message naming the place; check and run report in text and JSON.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "nlohmann/json.hpp"
#include "perfmem/testing/cli_conventions.h"
#include "perfmem/testing/required.h"
#include "perfmem/testing/scratch_dir.h"
#include "perfmem/testing/subprocess.h"

namespace {

using perfmem::testing::run_command;
const std::string kCli = CLI_PATH;

// This process's folder for the files the tests write, ending in '/' (removed when the process
// exits; perfmem/testing/scratch_dir.h).
const std::string& scratch_dir() {
  static const perfmem::testing::ScratchDir scratch("acrobat-cli");
  static const std::string with_slash = scratch.path().string() + "/";
  return with_slash;
}

std::string json_part(const std::string& out) { return out.substr(out.find('{')); }

TEST(acrobatCli, FollowsTheProjectsCommandLineConventions) {
  perfmem::testing::expect_cli_conventions(kCli, "acrobat", {"check", "run", "compile"});
}

TEST(acrobatCli, HelpExitsZeroAndDescribesTheProgram) {
  auto r = run_command(kCli + " --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("acrobat"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Usage"), std::string::npos) << r.output;
  auto sub = run_command(kCli + " run --help");
  EXPECT_EQ(sub.exit_code, 0);
  EXPECT_NE(sub.output.find("--scheduler"), std::string::npos) << sub.output;
}

TEST(acrobatCli, UnknownOptionIsAUsageError) {
  auto r = run_command(kCli + " --no-such-option");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("no-such-option"), std::string::npos) << r.output;
  auto s = run_command(kCli + " run treelstm --scheduler fastest");
  EXPECT_EQ(s.exit_code, 2) << s.output;
  auto b = run_command(kCli + " run treelstm --batch 0");
  EXPECT_EQ(b.exit_code, 2) << b.output;
}

TEST(acrobatCli, CheckReportsTheAnalyses) {
  auto r = run_command(kCli + " check " + std::string(MODELS_DIR) + "/birnn.acr --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(json_part(r.output));
  EXPECT_EQ(j["phases"], 2);
  EXPECT_GE(j["fused_groups"].get<int>(), 2);
  EXPECT_GE(j["static_depth_ops"].get<int>(), 2);
}

TEST(acrobatCli, RunPrintsLatencyBreakdownAndChecksum) {
  auto r = run_command(kCli + " run mvrnn --set H=8 --batch 8 --minibatches 2 --scheduler acrobat --verify --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(json_part(r.output));
  EXPECT_GT(j["latency_ms"].get<double>(), 0);
  EXPECT_TRUE(j["breakdown_ms"].contains("record"));
  EXPECT_TRUE(j["breakdown_ms"].contains("schedule"));
  EXPECT_TRUE(j["breakdown_ms"].contains("kernels"));
  EXPECT_GT(j["ops_recorded"].get<double>(), 0);
  EXPECT_GT(j["kernels_launched"].get<double>(), 0);
  EXPECT_NEAR(j["checksum"]["sum"].get<double>(), 6.7218367, 1e-4);  // the workload's MV-RNN h=8 value
  auto text = run_command(kCli + " run birnn --set H=8 --batch 8 --minibatches 1 --scheduler dynet-depth");
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("latency"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("kernels launched"), std::string::npos) << text.output;
  // A model with tensor-dependent control flow reports its rounds of waiting for values.
  auto rounds = run_command(kCli + " run stackrnn --set H=8 --batch 8 --minibatches 1 --verify --json");
  ASSERT_EQ(rounds.exit_code, 0) << rounds.output;
  EXPECT_GT(nlohmann::json::parse(json_part(rounds.output))["value_rounds"].get<double>(), 1) << rounds.output;
}

TEST(acrobatCli, BadProgramAndDataFilesExitOneWithPlace) {
  std::string prog = scratch_dir() + "acrobat_bad.acr";
  std::ofstream(prog) << "def main(t: Tree) -> Tensor[4] =\n  add(zeros(4), zeros(3))\n";
  auto r = run_command(kCli + " check " + prog);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("acrobat_bad.acr:2:17"), std::string::npos) << r.output;

  std::string data = scratch_dir() + "acrobat_bad_trees.txt";
  std::ofstream(data) << "(3 (2 a) (2 b))\n(3 (2 a)\n";
  auto d = run_command(kCli + " run treelstm --set H=4 --batch 2 --data " + data);
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_NE(d.output.find("acrobat_bad_trees.txt:2:"), std::string::npos) << d.output;

  std::string good = scratch_dir() + "acrobat_good_trees.txt";
  std::ofstream(good) << "(3 (2 a) (2 b))\n(1 (2 (2 c) (2 d)) (2 e))\n";
  auto g = run_command(kCli + " run treelstm --set H=4 --batch 2 --minibatches 1 --warmup 0 --data " + good);
  EXPECT_EQ(g.exit_code, 0) << g.output;

  // Well-formed files the program cannot take: errors found while running name the data file
  // as well as the program's place and the instance.
  std::string ids = scratch_dir() + "acrobat_ids_past_vocab.txt";
  std::ofstream(ids) << "1 2 3\n17 4 1734\n";
  auto v = run_command(kCli + " run drnn --set H=4 --batch 2 --minibatches 1 --warmup 0 --data " + ids);
  EXPECT_EQ(v.exit_code, 1) << v.output;
  EXPECT_NE(v.output.find("acrobat_ids_past_vocab.txt"), std::string::npos) << v.output;
  EXPECT_NE(v.output.find("instance 1: lookup index 1734 outside [0, 1000)"), std::string::npos) << v.output;
  auto f = run_command(kCli + " run nestedrnn --set H=4 --batch 2 --minibatches 1 --warmup 0 --data " + ids);
  EXPECT_EQ(f.exit_code, 1) << f.output;
  EXPECT_NE(f.output.find("acrobat_ids_past_vocab.txt"), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("found a flat sentence"), std::string::npos) << f.output;
  std::remove(prog.c_str());
  std::remove(data.c_str());
  std::remove(good.c_str());
  std::remove(ids.c_str());
}

// Absurd option values and endless data files are usage or input errors, never an uncaught
// exception or a run out of memory.
TEST(acrobatCli, AbsurdOptionsAndEndlessDataAreErrors) {
  for (const char* opts : {"--batch 2147483647", "--batch 65537", "--minibatches 2147483647 --warmup 2147483647",
                           "--warmup -1", "--minibatches 100001"}) {
    auto r = run_command(kCli + " run treelstm --set H=4 " + opts);
    EXPECT_EQ(r.exit_code, 2) << opts << ": " << r.output;
  }
  auto many = run_command(kCli + " run treelstm --set H=4 --batch 65536 --minibatches 100000");
  EXPECT_EQ(many.exit_code, 1) << many.output;
  EXPECT_NE(many.output.find("at most 1048576 generated instances"), std::string::npos) << many.output;
  auto zero = run_command(kCli + " run treelstm --set H=4 --data /dev/zero");
  EXPECT_EQ(zero.exit_code, 1) << zero.output;
  EXPECT_NE(zero.output.find("/dev/zero"), std::string::npos) << zero.output;
  EXPECT_NE(zero.output.find("a data file of at most 268435456 bytes"), std::string::npos) << zero.output;

  std::string prog = scratch_dir() + "acrobat_wrap.acr";
  std::ofstream(prog) << "param Q : Tensor[16777216, 16777216, 65536] = hash(1, 1.0)\n"
                         "def main(t: Tree) -> Tensor[1] = sum(slice(lookup(Q, 0), 0, 1))\n";
  auto wrap = run_command(kCli + " run " + prog + " --batch 2 --minibatches 1");
  EXPECT_EQ(wrap.exit_code, 1) << wrap.output;
  EXPECT_NE(wrap.output.find("acrobat_wrap.acr:1:11"), std::string::npos) << wrap.output;
  std::remove(prog.c_str());
}

}  // namespace

namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = scratch_dir() + name;
  std::ofstream(path) << text;
  return path;
}

}  // namespace

namespace {

// `acrobat compile` writes C++ that a C++20 compiler accepts with -Wall -Wextra -Werror at
// -O2 (some warnings appear only when optimising), for a program using every construct.
TEST(acrobatCli, CompiledCodeBuildsWithoutWarnings) {
  const std::string acr = std::string(TESTS_DIR) + "/every_construct.acr";
  std::string cc = scratch_dir() + "every_construct.cc", h = scratch_dir() + "every_construct.h";
  auto r = run_command(kCli + " compile " + acr + " -o " + cc + " --header " + h + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(json_part(r.output));
  EXPECT_EQ(j["name"], "every_construct");
  std::ifstream header(h);
  std::string text((std::istreambuf_iterator<char>(header)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("acrobat_model_every_construct()"), std::string::npos) << text;
  const std::string cxx = CXX_COMPILER;
  if (cxx.empty() || run_command(cxx + " --version").exit_code != 0)
    PERFMEM_SKIP_UNLESS_REQUIRED("no C++ compiler at '" << cxx << "' to build the generated code");
  auto build = run_command(cxx + " -std=c++20 -O2 -Wall -Wextra -Werror " + AOT_INCLUDE_FLAGS + " -c " + cc + " -o " +
                           scratch_dir() + "every_construct.o");
  EXPECT_EQ(build.exit_code, 0) << build.output;
  EXPECT_EQ(build.output, "");
}

TEST(acrobatCli, CompileErrorsNameThePlace) {
  std::string bad = write_temp("malformed.acr", "const H = 4\ndef main(x: Int) -> Tensor[H] = zeros(H\n");
  std::string out = scratch_dir() + "malformed.cc";
  auto r = run_command(kCli + " compile " + bad + " -o " + out);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("malformed.acr:3:"), std::string::npos) << r.output;

  std::string wrong = write_temp("mistyped.acr", "def main(x: Int) -> Tensor[4] =\n  add(x, x)\n");
  auto t = run_command(kCli + " compile " + wrong + " -o " + out);
  EXPECT_EQ(t.exit_code, 1) << t.output;
  EXPECT_NE(t.output.find("mistyped.acr:2:"), std::string::npos) << t.output;

  auto unwritable = run_command(kCli + " compile treelstm -o /nonexistent-dir/treelstm.cc");
  EXPECT_EQ(unwritable.exit_code, 1) << unwritable.output;
  EXPECT_NE(unwritable.output.find("/nonexistent-dir/treelstm.cc"), std::string::npos) << unwritable.output;

  auto header = run_command(kCli + " compile treelstm -o " + out + " --header /nonexistent-dir/treelstm.h");
  EXPECT_EQ(header.exit_code, 1) << header.output;
  EXPECT_NE(header.output.find("/nonexistent-dir/treelstm.h"), std::string::npos) << header.output;
  // Nothing is written when either file cannot be: no source left including a missing header.
  EXPECT_FALSE(std::filesystem::exists(out)) << out;
  std::ofstream(out) << "the user's file";
  EXPECT_EQ(run_command(kCli + " compile treelstm -o " + out + " --header /nonexistent-dir/treelstm.h").exit_code, 1);
  std::ifstream kept(out);
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(kept)), std::istreambuf_iterator<char>()), "the user's file");

  auto name = run_command(kCli + " compile treelstm -o " + out + " --name 3d-model");
  EXPECT_EQ(name.exit_code, 1) << name.output;
  EXPECT_NE(name.output.find("C identifier"), std::string::npos) << name.output;

  auto missing = run_command(kCli + " compile no-such-model.acr -o " + out);
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("no-such-model.acr"), std::string::npos) << missing.output;
}

// `run --aot` runs the model compiled at build time: same recording, same checksum.
TEST(acrobatCli, RunAotMatchesTheInterpreter) {
  for (const char* model : {"treelstm --size small", "berxit --size large"}) {
    const std::string base = kCli + " run " + model + " --batch 8 --minibatches 1 --warmup 0 --verify --json";
    auto interp = run_command(base);
    auto aot = run_command(base + " --aot");
    ASSERT_EQ(interp.exit_code, 0) << interp.output;
    ASSERT_EQ(aot.exit_code, 0) << aot.output;
    auto a = nlohmann::json::parse(json_part(aot.output)), i = nlohmann::json::parse(json_part(interp.output));
    EXPECT_EQ(a["aot"], true);
    EXPECT_EQ(a["checksum"], i["checksum"]) << model;
    EXPECT_EQ(a["ops_recorded"], i["ops_recorded"]) << model;
    EXPECT_EQ(a["kernels_launched"], i["kernels_launched"]) << model;
  }
  auto other = run_command(kCli + " run treelstm --set H=8 --aot --batch 2 --minibatches 1");
  EXPECT_EQ(other.exit_code, 1) << other.output;
  EXPECT_NE(other.output.find("--aot"), std::string::npos) << other.output;
  auto file = run_command(kCli + " run " + std::string(MODELS_DIR) + "/treelstm.acr --aot --batch 2 --minibatches 1");
  EXPECT_EQ(file.exit_code, 1) << file.output;
}

}  // namespace
