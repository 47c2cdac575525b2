// The runtime end to end: every model under every scheduler equals the unbatched run, the
// workload conformance checksums, deep recursion, empty inputs and bad data.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "perfmem/acrobat/models.h"
#include "perfmem/acrobat/runtime.h"
#include "bundled_model.h"
#include "perfmem/core/safetensors.h"

namespace perfmem::acrobat {
namespace {

using test_support::chain_tree;
using test_support::read_model;
using test_support::varied_data;

struct Loaded {
  std::unique_ptr<Program> program;
  std::unique_ptr<Runtime> runtime;
};

Loaded make(const std::string& model, int64_t h, Scheduler s, RuntimeOptions opt = {}) {
  Loaded r;
  const ModelInfo* info = find_model(model);
  auto p = compile_program(model + ".acr", read_model(model),
                           compile_options_for(s, {{info ? info->size_const : std::string("H"), h}}));
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  r.program = std::move(*p);
  opt.scheduler = s;
  opt.verify = true;
  auto rt = Runtime::create(*r.program, opt);
  EXPECT_TRUE(rt.ok()) << rt.status().to_string();
  r.runtime = std::move(*rt);
  return r;
}

std::vector<float> outputs(const std::string& model, int64_t h, Scheduler s, const std::vector<Instance>& data,
                           size_t batch, RunStats* last = nullptr) {
  Loaded r = make(model, h, s);
  EXPECT_TRUE(r.runtime->set_inputs(data).ok());
  std::vector<float> out;
  for (size_t b = 0; b < data.size(); b += batch) {
    RunStats st;
    Status status = r.runtime->run_minibatch(b, std::min(data.size(), b + batch), &out, &st);
    EXPECT_TRUE(status.ok()) << status.to_string();
    if (last) *last = st;
  }
  return out;
}

TEST(AcrobatRuntime, EverySchedulerEqualsTheUnbatchedRun) {
  for (const char* model : {"treelstm", "mvrnn", "birnn", "nestedrnn"}) {
    for (int64_t h : {8, 16}) {
      auto data = varied_data(model, 19);
      RunStats ref_stats;
      auto ref = outputs(model, h, Scheduler::kNone, data, 19, &ref_stats);
      ASSERT_EQ(ref.size(), data.size() * 16);
      // Tolerance from the operation count: float32 rounding errors of the ops an output
      // depends on grow like a random walk, so |error| <= 16 * eps * sqrt(ops per instance)
      // times the value's magnitude (+1 for values near zero). Batched and unbatched runs
      // differ only in summation order inside the products.
      double ops_per_instance = double(ref_stats.ops_recorded) / double(data.size());
      double tol = 16 * std::numeric_limits<float>::epsilon() * std::sqrt(ops_per_instance);
      for (Scheduler s : {Scheduler::kAcrobat, Scheduler::kDynetAgenda, Scheduler::kDynetDepth}) {
        for (size_t batch : {size_t{1}, size_t{7}, size_t{19}}) {
          auto got = outputs(model, h, s, data, batch);
          ASSERT_EQ(got.size(), ref.size());
          for (size_t i = 0; i < ref.size(); ++i)
            ASSERT_NEAR(got[i], ref[i], tol * (1 + std::fabs(ref[i])))
                << model << " h=" << h << " " << scheduler_name(s) << " batch " << batch << " output " << i;
        }
      }
    }
  }
}

// Fused groups split into many small tiles (4 instances, the last one 3): the tile offsets of
// the pointer arrays, the per-instance elementwise runs and the products per tile must give
// the unbatched result, with the fast kernels and with the reference kernels (which run every
// instruction over the whole tile instead).
TEST(AcrobatRuntime, SmallGroupTilesEqualTheUnbatchedRun) {
  for (const char* model : {"treelstm", "mvrnn", "birnn", "nestedrnn"}) {
    const int64_t h = 16;
    auto data = varied_data(model, 19);
    RunStats ref_stats;
    auto ref = outputs(model, h, Scheduler::kNone, data, 19, &ref_stats);
    double ops_per_instance = double(ref_stats.ops_recorded) / double(data.size());
    double tol = 16 * std::numeric_limits<float>::epsilon() * std::sqrt(ops_per_instance);
    for (bool reference_kernels : {false, true}) {
      RuntimeOptions opt;
      opt.group_tile_bytes = 1;
      opt.group_min_tile_rows = 4;
      opt.reference_kernels = reference_kernels;
      Loaded r = make(model, h, Scheduler::kAcrobat, opt);
      ASSERT_TRUE(r.runtime->set_inputs(data).ok());
      std::vector<float> got;
      RunStats st;
      Status status = r.runtime->run_minibatch(0, data.size(), &got, &st);
      ASSERT_TRUE(status.ok()) << status.to_string();
      ASSERT_EQ(got.size(), ref.size());
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(got[i], ref[i], tol * (1 + std::fabs(ref[i])))
            << model << " reference_kernels=" << reference_kernels << " output " << i;
    }
  }
}

struct Checksum {
  const char* model;
  int64_t h;
  double sum, abs, w;
};

// Two threads (every launch split, tiles of a few instances so fused runs split too) give
// exactly the single-threaded outputs, for every model and scheduler.
TEST(AcrobatRuntime, TwoThreadsEqualOneThread) {
  for (const char* model : {"treelstm", "mvrnn", "birnn", "nestedrnn", "drnn", "berxit", "stackrnn"}) {
    auto data = varied_data(model, 24);
    for (Scheduler s : kAllSchedulers) {
      std::vector<float> results[2];
      for (int threads : {1, 2}) {
        RuntimeOptions opt;
        opt.threads = threads;
        opt.parallel_min_work = 0;
        opt.group_tile_bytes = 4 * 4 * 64;
        opt.group_min_tile_rows = 4;
        Loaded r = make(model, 20, s, opt);
        ASSERT_TRUE(r.runtime->set_inputs(data).ok());
        for (size_t b = 0; b < data.size(); b += 12)
          ASSERT_TRUE(r.runtime->run_minibatch(b, b + 12, &results[threads - 1], nullptr).ok());
      }
      ASSERT_EQ(results[0].size(), 24u * 16u);
      EXPECT_EQ(results[0], results[1]) << model << " " << scheduler_name(s);
    }
  }
}

TEST(AcrobatRuntime, WorkloadConformanceChecksums) {
  // From the benchmark workload definitions: minibatch 0, B = 8 (sum / abs / w).
  const Checksum expected[] = {
      {"birnn", 8, -2.68121494, 12.8227418, -14.0870722},     {"mvrnn", 8, 6.7218367, 45.0225474, 65.6806538},
      {"nestedrnn", 8, -2.00376862, 6.55159932, -14.2167163}, {"birnn", 32, -1.33709084, 20.6304678, -14.402337},
      {"mvrnn", 32, -6.18997035, 90.3760598, -35.5287907},    {"nestedrnn", 32, -4.66128114, 7.30927376, -35.6832983},
  };
  for (const auto& c : expected) {
    auto data = find_model(c.model)->make_data(8);
    for (Scheduler s : kAllSchedulers) {
      auto y = outputs(c.model, c.h, s, data, 8);
      ASSERT_EQ(y.size(), 8u * 16u);
      double sum = 0, abs = 0, w = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        sum += y[i];
        abs += std::fabs(y[i]);
        w += y[i] * double((i % 13) + 1);
      }
      // "about 1e-5 relative in float32", relative to the output's magnitude.
      double tol = 2e-5 * c.abs;
      EXPECT_NEAR(sum, c.sum, tol) << c.model << " h=" << c.h << " " << scheduler_name(s);
      EXPECT_NEAR(abs, c.abs, tol) << c.model << " h=" << c.h << " " << scheduler_name(s);
      EXPECT_NEAR(w, c.w, 13 * tol) << c.model << " h=" << c.h << " " << scheduler_name(s);
    }
  }
}

TEST(AcrobatRuntime, AcrobatLaunchesFewerKernelsThanTheBaselines) {
  auto data = complete_trees(8, 6, 404);
  RunStats a, d, n;
  outputs("treelstm", 8, Scheduler::kAcrobat, data, 8, &a);
  outputs("treelstm", 8, Scheduler::kDynetAgenda, data, 8, &d);
  outputs("treelstm", 8, Scheduler::kNone, data, 8, &n);
  EXPECT_LT(a.kernels_launched, d.kernels_launched);
  EXPECT_LT(d.kernels_launched, n.kernels_launched);
  EXPECT_EQ(n.kernels_launched, n.ops_recorded);  // eager: one launch per op
}

// Batching groups the products differently but never changes their work: every scheduler
// counts the same FLOPs, and for BiRNN exactly 4 products of [4H x H] per word (input and
// recurrent, both directions) plus the classifier's [16 x 2H], 2 FLOPs per multiply-add.
TEST(AcrobatRuntime, ProductFlopsAreTheProgramsWorkUnderEveryScheduler) {
  const int64_t h = 8;
  auto data = sentences(6, 78, 1, 9);
  int64_t expected = 0;
  for (const Instance& s : data)
    expected += static_cast<int64_t>(s.words.size()) * 4 * (2 * 4 * h * h) + 2 * 16 * 2 * h;
  for (Scheduler s : kAllSchedulers) {
    RunStats st;
    outputs("birnn", h, s, data, data.size(), &st);
    EXPECT_EQ(st.product_flops, expected) << scheduler_name(s);
  }
}

TEST(AcrobatRuntime, DeepRecursionRunsOrFailsCleanly) {
  std::vector<Instance> data = {chain_tree(3000), chain_tree(10)};
  auto batched = outputs("treelstm", 4, Scheduler::kAcrobat, data, 2);
  auto eager = outputs("treelstm", 4, Scheduler::kNone, data, 2);
  ASSERT_EQ(batched.size(), 32u);
  for (size_t i = 0; i < batched.size(); ++i) EXPECT_NEAR(batched[i], eager[i], 1e-4) << i;

  RuntimeOptions opt;
  opt.max_call_depth = 500;
  Loaded r = make("treelstm", 4, Scheduler::kAcrobat, opt);
  ASSERT_TRUE(r.runtime->set_inputs(data).ok());
  std::vector<float> out;
  Status st = r.runtime->run_minibatch(0, 2, &out, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("recursion deeper than 500"), std::string::npos) << st.message();
  // The runtime stays usable after the error.
  out.clear();
  ASSERT_TRUE(r.runtime->run_minibatch(1, 2, &out, nullptr).ok());
  EXPECT_EQ(out.size(), 16u);
}

TEST(AcrobatRuntime, EmptyInputs) {
  // An empty sentence and an empty document: the encoders return zeros, logits = bias.
  Instance empty_sentence;
  empty_sentence.kind = Instance::kSequence;
  Instance empty_doc;
  empty_doc.kind = Instance::kNested;
  for (Scheduler s : kAllSchedulers) {
    auto y = outputs("birnn", 8, s, {empty_sentence}, 1);
    ASSERT_EQ(y.size(), 16u);
    for (int i = 0; i < 16; ++i) EXPECT_FLOAT_EQ(y[i], hashed_parameter(9, i, 0.1)) << scheduler_name(s);
    auto z = outputs("nestedrnn", 8, s, {empty_doc}, 1);
    ASSERT_EQ(z.size(), 16u);
    for (int i = 0; i < 16; ++i) EXPECT_FLOAT_EQ(z[i], hashed_parameter(9, i, 0.1)) << scheduler_name(s);
  }
  // An empty minibatch records nothing and returns nothing.
  Loaded r = make("birnn", 8, Scheduler::kAcrobat);
  ASSERT_TRUE(r.runtime->set_inputs({empty_sentence}).ok());
  std::vector<float> out;
  RunStats st;
  ASSERT_TRUE(r.runtime->run_minibatch(0, 0, &out, &st).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(st.ops_recorded, 0);
  EXPECT_FALSE(r.runtime->run_minibatch(0, 2, &out, &st).ok());  // beyond the inputs
}

TEST(AcrobatRuntime, BadDataIsAnError) {
  Loaded r = make("treelstm", 4, Scheduler::kAcrobat);
  Status wrong_kind = r.runtime->set_inputs(sentences(2, 1, 3, 4));
  ASSERT_FALSE(wrong_kind.ok());
  EXPECT_NE(wrong_kind.message().find("instance 0"), std::string::npos) << wrong_kind.message();

  Loaded b = make("birnn", 4, Scheduler::kAcrobat);
  Instance bad;
  bad.kind = Instance::kSequence;
  bad.words = {3, 5000};
  ASSERT_TRUE(b.runtime->set_inputs({bad}).ok());
  std::vector<float> out;
  Status st = b.runtime->run_minibatch(0, 1, &out, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("lookup index 5000 outside [0, 1000)"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("birnn.acr:"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace perfmem::acrobat

namespace perfmem::acrobat {
namespace {

// Run-time failures of a program: each stops the minibatch with an error naming the place,
// under every scheduler; none traps (SIGFPE), wraps silently, or allocates without bound.
TEST(AcrobatRuntime, BadProgramsAtRunTimeAreErrors) {
  struct Case {
    const char* name;
    std::string body;  // main's body; xs has one word, so length(xs) is 1 (not foldable)
    std::string at;    // where the error points
    std::string expected;
  };
  const std::string n = "length(xs)";
  const std::vector<Case> cases = {
      {"INT64_MIN / -1", "if (-9223372036854775807 - " + n + ") / -1 > 0 then zeros(2) else zeros(2)", "/ -1",
       "the quotient overflows 64 bits"},
      {"overflow +", "if 9223372036854775807 + " + n + " > 0 then zeros(2) else zeros(2)", "+ length",
       "the sum overflows 64 bits"},
      {"overflow -", "if 0 - 9223372036854775807 - " + n + " - 1 > 0 then zeros(2) else zeros(2)", "- 1 >",
       "the difference overflows 64 bits"},
      {"overflow *", "if 4294967296 * (4294967295 + " + n + ") > 0 then zeros(2) else zeros(2)", "* (",
       "the product overflows 64 bits"},
      {"overflow unary -", "if -(-9223372036854775807 - " + n + ") > 0 then zeros(2) else zeros(2)", "-(-",
       "the negation overflows 64 bits"},
      {"division by zero", "if 5 % (" + n + " - 1) > 0 then zeros(2) else zeros(2)", "% (", "division by zero"},
  };
  for (const Case& c : cases) {
    std::string src = "def main(xs: List[Int]) -> Tensor[2] =\n  " + c.body + "\n";
    for (Scheduler s : kAllSchedulers) {
      auto p = compile_program("ints.acr", src, compile_options_for(s));
      ASSERT_TRUE(p.ok()) << c.name << ": " << p.status().to_string();
      RuntimeOptions opt;
      opt.scheduler = s;
      auto rt = Runtime::create(**p, opt);
      ASSERT_TRUE(rt.ok());
      Instance one;
      one.kind = Instance::kSequence;
      one.words = {1};
      ASSERT_TRUE((*rt)->set_inputs({one}).ok());
      std::vector<float> out;
      Status st = (*rt)->run_minibatch(0, 1, &out, nullptr);
      ASSERT_FALSE(st.ok()) << c.name;
      std::string where = "ints.acr:2:" + std::to_string(3 + c.body.find(c.at)) + ": instance 0: ";
      EXPECT_EQ(st.message().rfind(where, 0), 0u) << c.name << ": wanted " << where << " in " << st.message();
      EXPECT_NE(st.message().find(c.expected), std::string::npos) << c.name << ": " << st.message();
    }
  }
  // INT64_MIN % -1 is 0 at run time too (no trap).
  auto p = compile_program("ints.acr",
                           "def main(xs: List[Int]) -> Tensor[2] =\n"
                           "  if (-9223372036854775807 - length(xs)) % -1 == 0 then fill(2, 1.0) else zeros(2)\n",
                           compile_options_for(Scheduler::kAcrobat));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  auto rt = Runtime::create(**p, RuntimeOptions());
  ASSERT_TRUE(rt.ok());
  Instance one;
  one.kind = Instance::kSequence;
  one.words = {1};
  ASSERT_TRUE((*rt)->set_inputs({one}).ok());
  std::vector<float> out;
  ASSERT_TRUE((*rt)->run_minibatch(0, 1, &out, nullptr).ok());
  EXPECT_EQ(out, std::vector<float>({1.0f, 1.0f}));
}

// A minibatch that needs more tensor memory than allowed fails before allocating, with the
// file named, and the runtime stays usable; an intermediate of 2^31 floats per instance
// (the largest the checker accepts) fails under the default limit instead of aborting.
TEST(AcrobatRuntime, MemoryLimitIsCheckedBeforeAllocation) {
  const std::string src =
      "param W : Tensor[4096, 4] = hash(1, 0.5)\n"
      "def main(xs: List[Int]) -> Tensor[1] = sum(matmul(W, fill(4, 1.0)))\n";
  for (Scheduler s : kAllSchedulers) {
    auto p = compile_program("big.acr", src, compile_options_for(s));
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    RuntimeOptions opt;
    opt.scheduler = s;
    opt.max_minibatch_bytes = 64 * 4096 * 4 - 1;  // 64 instances need at least 64 x 16 KiB
    auto rt = Runtime::create(**p, opt);
    ASSERT_TRUE(rt.ok());
    ASSERT_TRUE((*rt)->set_inputs(sentences(64, 1, 1, 2)).ok());
    std::vector<float> out;
    Status st = (*rt)->run_minibatch(0, 64, &out, nullptr);
    ASSERT_FALSE(st.ok()) << scheduler_name(s);
    EXPECT_EQ(st.code(), StatusCode::kOutOfMemory);
    EXPECT_NE(st.message().find("big.acr: instances [0, 64): the minibatch needs more than the memory limit"),
              std::string::npos)
        << st.message();
    ASSERT_TRUE((*rt)->run_minibatch(0, 2, &out, nullptr).ok()) << scheduler_name(s);
    EXPECT_EQ(out.size(), 2u);
  }
  const std::string huge =
      "param A : Tensor[65536, 1] = hash(1, 1.0)\nparam B : Tensor[2, 1, 32768] = hash(2, 1.0)\n"
      "def main(xs: List[Int]) -> Tensor[1] = sum(matmul(A, lookup(B, 0)))\n";
  auto p = compile_program("huge.acr", huge, compile_options_for(Scheduler::kAcrobat));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  auto rt = Runtime::create(**p, RuntimeOptions());
  ASSERT_TRUE(rt.ok());
  ASSERT_TRUE((*rt)->set_inputs(sentences(64, 1, 1, 2)).ok());
  std::vector<float> out;
  Status st = (*rt)->run_minibatch(0, 64, &out, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("memory limit"), std::string::npos) << st.message();
}

TEST(AcrobatRuntime, ParametersLoadFromSafetensors) {
  const std::string src =
      "param W : Tensor[2, 3] = load(\"layer.weight\")\n"
      "param b : Tensor[2] = hash(1, 0.5)\n"
      "def main(xs: List[Int]) -> Tensor[2] = dense(W, fill(3, 1.0), b)\n";
  auto p = compile_program("t.acr", src, compile_options_for(Scheduler::kAcrobat));
  ASSERT_TRUE(p.ok()) << p.status().to_string();

  RuntimeOptions none;
  auto missing = Runtime::create(**p, none);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("--params"), std::string::npos) << missing.status().message();

  std::string path = ::testing::TempDir() + "acrobat_params.safetensors";
  float w[6] = {1, 2, 3, 4, 5, 6};
  SafetensorsWriter writer;
  writer.add("layer.weight", DType::kF32, {2, 3}, w);
  ASSERT_TRUE(writer.write(path).ok());
  RuntimeOptions opt;
  opt.params_file = path;
  auto rt = Runtime::create(**p, opt);
  ASSERT_TRUE(rt.ok()) << rt.status().to_string();
  Instance one;
  one.kind = Instance::kSequence;
  one.words = {1};
  ASSERT_TRUE((*rt)->set_inputs({one}).ok());
  std::vector<float> out;
  ASSERT_TRUE((*rt)->run_minibatch(0, 1, &out, nullptr).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_FLOAT_EQ(out[0], 6 + hashed_parameter(1, 0, 0.5));
  EXPECT_FLOAT_EQ(out[1], 15 + hashed_parameter(1, 1, 0.5));

  SafetensorsWriter wrong;
  wrong.add("layer.weight", DType::kF32, {3, 2}, w);
  ASSERT_TRUE(wrong.write(path).ok());
  auto bad = Runtime::create(**p, opt);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("layer.weight"), std::string::npos) << bad.status().message();
  std::remove(path.c_str());
}

// Tensor-dependent control flow: DRNN (stops generating from its logits), Berxit (exits when
// confident), StackRNN (shift or reduce by argmax). Instances wait for values in rounds; every
// scheduler, at batch 8 and 64, equals the unbatched run (the same tolerance rule as above:
// an output depends on the ops of its instance, whose decisions are the same).
TEST(AcrobatRuntime, TensorDependentModelsEqualTheUnbatchedRun) {
  for (const char* model : {"drnn", "berxit", "stackrnn"}) {
    const int64_t h = 16;
    auto data = find_model(model)->make_data(128);
    RunStats ref_stats;
    auto ref = outputs(model, h, Scheduler::kNone, data, 64, &ref_stats);
    ASSERT_EQ(ref.size(), data.size() * 16);
    EXPECT_GT(ref_stats.value_rounds, 1) << model;
    double ops_per_instance = double(ref_stats.ops_recorded) / 64.0;
    double tol = 16 * std::numeric_limits<float>::epsilon() * std::sqrt(ops_per_instance);
    for (Scheduler s : {Scheduler::kAcrobat, Scheduler::kDynetAgenda, Scheduler::kDynetDepth, Scheduler::kNone}) {
      for (size_t batch : {size_t{8}, size_t{64}}) {
        RunStats st;
        auto got = outputs(model, h, s, data, batch, &st);
        ASSERT_EQ(got.size(), ref.size());
        for (size_t i = 0; i < ref.size(); ++i)
          ASSERT_NEAR(got[i], ref[i], tol * (1 + std::fabs(ref[i])))
              << model << " " << scheduler_name(s) << " batch " << batch << " output " << i;
        if (s != Scheduler::kNone && batch == 64) { EXPECT_LT(st.kernels_launched, st.ops_recorded) << model; }
      }
    }
  }
}

// The benchmark's ablations: each optimisation of the acrobat configuration off in turn
// (compile-time analyses and run-time switches) still gives the unbatched run's outputs, on
// models with phases (treelstm, birnn), ghost ops and waits for values (drnn, stackrnn).
TEST(AcrobatRuntime, EveryAblationEqualsTheUnbatchedRun) {
  for (const char* model : {"treelstm", "mvrnn", "birnn", "drnn", "stackrnn"}) {
    const ModelInfo* info = find_model(model);
    const bool waits = std::string(model) == "drnn" || std::string(model) == "stackrnn";
    auto data = waits ? info->make_data(16) : varied_data(model, 13);
    RunStats ref_stats;
    auto ref = outputs(model, 8, Scheduler::kNone, data, data.size(), &ref_stats);
    double tol =
        16 * std::numeric_limits<float>::epsilon() * std::sqrt(double(ref_stats.ops_recorded) / double(data.size()));
    RunStats all_on;
    outputs(model, 8, Scheduler::kAcrobat, data, data.size(), &all_on);
    for (const Ablation& off : acrobat_ablations()) {
      CompileOptions copt = compile_options_for(Scheduler::kAcrobat, {{info->size_const, 8}});
      RuntimeOptions opt;
      off.turn_off(copt, opt);
      opt.verify = true;
      auto program = compile_program(std::string(model) + ".acr", read_model(model), copt);
      ASSERT_TRUE(program.ok()) << program.status().to_string();
      if (!copt.phases) { EXPECT_EQ((*program)->num_phases, 1) << model; }
      auto rt = Runtime::create(**program, opt);
      ASSERT_TRUE(rt.ok()) << rt.status().to_string();
      ASSERT_TRUE((*rt)->set_inputs(data).ok());
      std::vector<float> got;
      RunStats st;
      Status status = (*rt)->run_minibatch(0, data.size(), &got, &st);
      ASSERT_TRUE(status.ok()) << model << " " << off.name << " off: " << status.to_string();
      ASSERT_EQ(got.size(), ref.size());
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_NEAR(got[i], ref[i], tol * (1 + std::fabs(ref[i]))) << model << " " << off.name << " off, output " << i;
      // Without coarsening every tensor op is its own node. Without phases BiRNN's classifier
      // runs at each sentence's own depth: sentences of different lengths no longer share it.
      if (!copt.coarsening) { EXPECT_GT(st.ops_recorded, all_on.ops_recorded) << model; }
      if (!copt.phases && std::string(model) == "birnn") { EXPECT_GT(st.kernels_launched, all_on.kernels_launched); }
    }
  }
}

// The decisions come from the data: instances run alone record different numbers of ops,
// and batched, the instances' ops share launches (far fewer launches than ops).
TEST(AcrobatRuntime, TensorDecisionsDependOnTheInstance) {
  for (const char* model : {"drnn", "berxit", "stackrnn"}) {
    auto data = find_model(model)->make_data(16);
    std::set<int64_t> ops_alone;
    Loaded r = make(model, 16, Scheduler::kNone);
    ASSERT_TRUE(r.runtime->set_inputs(data).ok());
    for (size_t i = 0; i < data.size(); ++i) {
      std::vector<float> out;
      RunStats st;
      ASSERT_TRUE(r.runtime->run_minibatch(i, i + 1, &out, &st).ok());
      ops_alone.insert(st.ops_recorded);
    }
    EXPECT_GE(ops_alone.size(), 3u) << model;  // at least three different paths
    RunStats batched;
    outputs(model, 16, Scheduler::kAcrobat, data, 16, &batched);
    EXPECT_LT(batched.kernels_launched * 3, batched.ops_recorded) << model;
  }
}

Loaded make_program(const std::string& src, Scheduler s, RuntimeOptions opt = {}) {
  Loaded r;
  auto p = compile_program("t.acr", src, compile_options_for(s));
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  if (!p.ok()) return r;
  r.program = std::move(*p);
  opt.scheduler = s;
  opt.verify = true;
  auto rt = Runtime::create(*r.program, opt);
  EXPECT_TRUE(rt.ok()) << rt.status().to_string();
  if (rt.ok()) r.runtime = std::move(*rt);
  return r;
}

// Depths across a wait: instances run chains of 1..4 tanh (recursion: no ghost ops), read a
// value, then all run relu and sigmoid. Before the wait the chains batch level by level (4
// tanh launches) and the sums at 4 different depths (4 launches); after the wait every
// instance's depth restarts, so the 4 relus are one launch and the 4 sigmoids another.
// The results equal the unbatched run's.
TEST(AcrobatRuntime, DepthsRestartAfterAWaitForAValue) {
  const std::string src =
      "param E : Tensor[10, 4] = hash(1, 1.0)\n"
      "def chain(x: Tensor[4], n: Int) -> Tensor[4] = if n == 0 then x else chain(tanh(x), n - 1)\n"
      "def main(xs: List[Int]) -> Tensor[4] =\n"
      "  let x = chain(lookup(E, 1), length(xs)) in\n"
      "  if sum(x) > 100.0 then x else sigmoid(relu(x))\n";
  std::vector<Instance> data = sentences(4, 5, 1, 1);
  for (size_t i = 0; i < data.size(); ++i) data[i].words.assign(i + 1, 3);
  std::vector<float> ref;
  for (Scheduler s : {Scheduler::kNone, Scheduler::kAcrobat, Scheduler::kDynetDepth, Scheduler::kDynetAgenda}) {
    Loaded r = make_program(src, s);
    ASSERT_TRUE(r.runtime);
    ASSERT_TRUE(r.runtime->set_inputs(data).ok());
    std::vector<float> out;
    RunStats st;
    Status status = r.runtime->run_minibatch(0, 4, &out, &st);
    ASSERT_TRUE(status.ok()) << status.to_string();
    EXPECT_EQ(st.value_rounds, 1) << scheduler_name(s);
    // (the DyNet schedulers also record each lookup, as DyNet copies the row)
    const bool dynet = s == Scheduler::kDynetDepth || s == Scheduler::kDynetAgenda;
    EXPECT_EQ(st.ops_recorded, 1 + 2 + 3 + 4 + 4 + 8 + (dynet ? 4 : 0)) << scheduler_name(s);
    if (s == Scheduler::kAcrobat) { EXPECT_EQ(st.kernels_launched, 4 + 4 + 2); }
    if (s == Scheduler::kNone) ref = out;
    ASSERT_EQ(out.size(), ref.size());
    for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], ref[i], 1e-6) << scheduler_name(s) << " " << i;
  }
}

// Errors while instances wait name the place and the instance, and the runtime stays usable:
// a value outside the Int range for index, a lookup by a computed index out of range,
// recursion past the limit of programs that read values. Recursion below it runs.
TEST(AcrobatRuntime, TensorValueErrorsAreErrors) {
  struct Case {
    std::string body;
    std::string at;  // the expression the error names, inside body
    std::string expected;
  };
  const std::string head =
      "param E : Tensor[10, 2] = hash(1, 1.0)\n"
      "def deep(x: Tensor[2], n: Int) -> Tensor[2] = if n == 0 || sum(x) > 1000.0 then x else deep(tanh(x), n - 1)\n"
      "def main(xs: List[Int]) -> Tensor[2] =\n  if length(xs) == 1 then zeros(2) else ";
  const std::vector<Case> cases = {
      {"lookup(E, index(sum(fill(2, 5000000000000000000.0))))", "index",
       "instance 1: expected a finite tensor value within the Int range for index"},
      {"lookup(E, index(sum(fill(2, 10.0))))", "lookup", "instance 1: lookup index 20 outside [0, 10)"},
      {"deep(lookup(E, 1), 5000)", "", "instance 1: recursion deeper than 1000 calls"},
  };
  std::vector<Instance> data = sentences(3, 5, 1, 1);
  data[1].words = {1, 2};
  for (const auto& c : cases) {
    for (Scheduler s : {Scheduler::kAcrobat, Scheduler::kDynetAgenda}) {
      Loaded r = make_program(head + c.body + "\n", s);
      ASSERT_TRUE(r.runtime);
      ASSERT_TRUE(r.runtime->set_inputs(data).ok());
      std::vector<float> out;
      Status st = r.runtime->run_minibatch(0, 3, &out, nullptr);
      ASSERT_FALSE(st.ok()) << c.body;
      EXPECT_NE(st.message().find(c.expected), std::string::npos) << st.message();
      if (!c.at.empty()) {
        const size_t line_start = head.rfind('\n') + 1;
        const size_t col = head.size() - line_start + c.body.find(c.at) + 1;
        EXPECT_EQ(st.message().rfind("t.acr:4:" + std::to_string(col) + ": ", 0), 0u) << st.message();
      }
      out.clear();
      ASSERT_TRUE(r.runtime->run_minibatch(2, 3, &out, nullptr).ok()) << c.body;
      EXPECT_EQ(out.size(), 2u);
    }
  }
  Loaded r = make_program(head + "deep(lookup(E, 1), 900)\n", Scheduler::kAcrobat);
  ASSERT_TRUE(r.runtime);
  ASSERT_TRUE(r.runtime->set_inputs(data).ok());
  std::vector<float> out;
  RunStats st;
  Status status = r.runtime->run_minibatch(0, 3, &out, &st);
  ASSERT_TRUE(status.ok()) << status.to_string();
  EXPECT_EQ(st.value_rounds, 900);
}

}  // namespace
}  // namespace perfmem::acrobat
