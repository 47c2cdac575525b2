// Programs compiled ahead of time (aot.h): every bundled model, compiled at build time at the
// test size (H or D = 16), records what the interpreter records and gives its results under
// every scheduler; errors name the same places; the runtime refuses code generated from a
// different program.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "acrobat_model_every_construct.h"
#include "acrobat_model_fused_runs.h"
#include "bundled_model.h"
#include "compiled_models.h"
#include "executor.h"
#include "perfmem/acrobat/aot.h"
#include "perfmem/acrobat/models.h"
#include "perfmem/acrobat/runtime.h"

namespace perfmem::acrobat {
namespace {

using test_support::chain_tree;
using test_support::read_model;
using test_support::varied_data;

constexpr int64_t kTestSize = 16;  // the size the `_test` models were compiled at

const AotModel* compiled(const std::string& name) {
  for (const AotModel* m : compiled_bundled_models())
    if (name == m->name) return m;
  return nullptr;
}

struct Outcome {
  std::vector<float> out;
  RunStats last;
  int64_t ops = 0, launches = 0, rounds = 0;  // summed over the minibatches
  Status status = Status::Ok();
};

// Runs `data` in minibatches of `batch`, interpreted (aot == nullptr) or compiled.
Outcome run(const std::string& model, const AotModel* aot, Scheduler s, const std::vector<Instance>& data, size_t batch,
            RuntimeOptions opt = {}) {
  Outcome r;
  opt.scheduler = s;
  opt.verify = true;
  std::unique_ptr<Program> program;
  std::unique_ptr<Runtime> runtime;
  if (aot) {
    auto m = load_aot_model(*aot, opt);
    if (!m.ok()) {
      r.status = m.status();
      return r;
    }
    program = std::move(m->program);
    runtime = std::move(m->runtime);
  } else {
    const ModelInfo* info = find_model(model);
    auto p =
        compile_program(model + ".acr", read_model(model), compile_options_for(s, {{info->size_const, kTestSize}}));
    EXPECT_TRUE(p.ok()) << p.status().to_string();
    program = std::move(*p);
    auto rt = Runtime::create(*program, opt);
    EXPECT_TRUE(rt.ok()) << rt.status().to_string();
    runtime = std::move(*rt);
  }
  r.status = runtime->set_inputs(data);
  for (size_t b = 0; b < data.size() && r.status.ok(); b += batch) {
    r.status = runtime->run_minibatch(b, std::min(data.size(), b + batch), &r.out, &r.last);
    r.ops += r.last.ops_recorded;
    r.launches += r.last.kernels_launched;
    r.rounds += r.last.value_rounds;
  }
  return r;
}

TEST(AcrobatAot, EveryBundledModelIsCompiledAtEverySize) {
  for (const ModelInfo& m : builtin_models()) {
    for (const char* size : {"small", "large", "test"}) {
      const AotModel* a = compiled(m.name + "_" + size);
      ASSERT_NE(a, nullptr) << m.name << " " << size;
      const int64_t want = std::strcmp(size, "small") == 0 ? m.small : std::strcmp(size, "large") == 0 ? m.large : 16;
      EXPECT_EQ(aot_overrides(*a), (std::map<std::string, int64_t>{{m.size_const, want}})) << a->name;
    }
  }
}

// The generated code records the interpreter's nodes (same kernels, operands, depths, phases),
// so each scheduler makes the same launches and the outputs are the same bit for bit; both
// equal the unbatched run within the tolerance rule of runtime_test.cpp (float32 rounding of
// the ops an output depends on: 16 eps sqrt(ops per instance), relative).
TEST(AcrobatAot, EqualsTheInterpreterUnderEveryScheduler) {
  for (const ModelInfo& m : builtin_models()) {
    const AotModel* aot = compiled(m.name + "_test");
    ASSERT_NE(aot, nullptr) << m.name;
    const bool dynamic = m.name == "drnn" || m.name == "berxit" || m.name == "stackrnn";
    const size_t n = dynamic ? 64 : 19;
    auto data = varied_data(m.name, n);
    Outcome ref = run(m.name, nullptr, Scheduler::kNone, data, n);
    ASSERT_TRUE(ref.status.ok()) << ref.status.to_string();
    ASSERT_EQ(ref.out.size(), n * 16);
    const double tol =
        16 * std::numeric_limits<float>::epsilon() * std::sqrt(double(ref.last.ops_recorded) / double(n));
    for (Scheduler s : {Scheduler::kAcrobat, Scheduler::kDynetAgenda, Scheduler::kDynetDepth, Scheduler::kNone}) {
      for (size_t batch : {size_t{7}, n}) {
        Outcome interp = run(m.name, nullptr, s, data, batch);
        Outcome comp = run(m.name, aot, s, data, batch);
        ASSERT_TRUE(interp.status.ok()) << interp.status.to_string();
        ASSERT_TRUE(comp.status.ok()) << comp.status.to_string();
        const std::string where = m.name + " " + scheduler_name(s) + " batch " + std::to_string(batch);
        EXPECT_EQ(comp.ops, interp.ops) << where;
        EXPECT_EQ(comp.launches, interp.launches) << where;
        EXPECT_EQ(comp.rounds, interp.rounds) << where;
        if (dynamic) { EXPECT_GT(comp.rounds, 0) << where; }
        ASSERT_EQ(comp.out.size(), ref.out.size()) << where;
        for (size_t i = 0; i < ref.out.size(); ++i) {
          ASSERT_NEAR(comp.out[i], ref.out[i], tol * (1 + std::fabs(ref.out[i]))) << where << " output " << i;
          ASSERT_EQ(comp.out[i], interp.out[i]) << where << " output " << i;
        }
      }
    }
  }
}

// A program using every construct the compiler emits (tests/every_construct.acr, built with
// acrobat_add_model as a user would): the same recording and outputs as interpreted, under
// every scheduler, on sentences of 1-40 words (its decisions read tensor values).
TEST(AcrobatAot, EveryConstructEqualsTheInterpreter) {
  auto source = read_text_file(std::string(TESTS_DIR) + "/every_construct.acr");
  ASSERT_TRUE(source.ok()) << source.status().to_string();
  const AotModel& aot = acrobat_model_every_construct();
  EXPECT_STREQ(aot.file, "every_construct.acr");
  auto data = sentences(40, 91, 1, 40);
  for (Scheduler s : {Scheduler::kAcrobat, Scheduler::kDynetAgenda, Scheduler::kDynetDepth, Scheduler::kNone}) {
    RuntimeOptions opt;
    opt.scheduler = s;
    opt.verify = true;
    auto program = compile_program("every_construct.acr", *source, compile_options_for(s));
    ASSERT_TRUE(program.ok()) << program.status().to_string();
    auto interp = Runtime::create(**program, opt);
    auto comp = load_aot_model(aot, opt);
    ASSERT_TRUE(interp.ok() && comp.ok());
    ASSERT_TRUE((*interp)->set_inputs(data).ok());
    ASSERT_TRUE(comp->runtime->set_inputs(data).ok());
    for (size_t batch : {size_t{1}, size_t{40}}) {
      std::vector<float> a, b;
      RunStats sa, sb;
      int64_t ops_a = 0, ops_b = 0, rounds_a = 0, rounds_b = 0;
      for (size_t i = 0; i < data.size(); i += batch) {
        ASSERT_TRUE((*interp)->run_minibatch(i, std::min(data.size(), i + batch), &a, &sa).ok());
        Status st = comp->runtime->run_minibatch(i, std::min(data.size(), i + batch), &b, &sb);
        ASSERT_TRUE(st.ok()) << st.to_string();
        ops_a += sa.ops_recorded;
        ops_b += sb.ops_recorded;
        rounds_a += sa.value_rounds;
        rounds_b += sb.value_rounds;
      }
      EXPECT_EQ(ops_b, ops_a) << scheduler_name(s);
      EXPECT_EQ(rounds_b, rounds_a) << scheduler_name(s);
      EXPECT_GT(rounds_b, 0) << scheduler_name(s);
      ASSERT_EQ(b.size(), data.size() * 4);
      EXPECT_EQ(a, b) << scheduler_name(s) << " batch " << batch;
    }
  }
}

// Every fused run of elementwise instructions in a compiled model's groups has its generated
// kernel (codegen_fused.h), under the executor's own split of the groups into steps.
TEST(AcrobatAot, EveryFusedRunHasItsGeneratedKernel) {
  std::vector<const AotModel*> models = compiled_bundled_models();
  models.push_back(&acrobat_model_fused_runs());
  int64_t runs = 0;
  for (const AotModel* m : models) {
    auto program = compile_program(m->file, m->source, compile_options_for(Scheduler::kAcrobat, aot_overrides(*m)));
    ASSERT_TRUE(program.ok()) << program.status().to_string();
    size_t expected = 0;
    for (size_t gi = 0; gi < (*program)->groups.size(); ++gi) {
      const GroupPlan plan = plan_group((*program)->groups[gi], /*fuse=*/true);
      for (const GroupStep& step : plan.steps) {
        if (!step.fused) continue;
        ++expected;
        bool found = false;
        for (size_t i = 0; i < m->analysed.num_fused_runs; ++i) {
          const AotFusedRun& run = m->analysed.fused_runs[i];
          found |= run.group == int(gi) && size_t(run.begin) == step.begin && size_t(run.end) == step.end &&
                   run.fn != nullptr;
        }
        EXPECT_TRUE(found) << m->name << " group " << gi << " step [" << step.begin << ", " << step.end << ")";
      }
    }
    EXPECT_EQ(m->analysed.num_fused_runs, expected) << m->name;
    EXPECT_EQ(m->plain.num_fused_runs, 0u) << m->name;  // no groups without coarsening
    runs += int64_t(expected);
  }
  EXPECT_GT(runs, 20);
}

// The generated fused kernels give the executor's own fused runs' results bit for bit, on
// tiles of one instance and of several, on one thread and split across two; and both equal the
// unbatched run. tests/fused_runs.acr takes every path of the generator (two sizes in one
// run, a view into a register its own loop writes, slices leaving the run).
TEST(AcrobatAot, GeneratedFusedKernelsEqualTheExecutorsOnEveryTiling) {
  struct Case {
    std::string model;
    const AotModel* aot;
  };
  std::vector<Case> cases = {{"fused_runs", &acrobat_model_fused_runs()}};
  for (const char* m : {"treelstm", "birnn", "nestedrnn", "berxit"})
    cases.push_back({m, compiled(std::string(m) + "_test")});
  for (const Case& c : cases) {
    ASSERT_NE(c.aot, nullptr) << c.model;
    const size_t n = 21;
    auto data = varied_data(c.model == "fused_runs" ? "treelstm" : c.model, n);
    auto source = c.model == "fused_runs" ? read_text_file(std::string(TESTS_DIR) + "/fused_runs.acr")
                                          : Result<std::string>(read_model(c.model));
    ASSERT_TRUE(source.ok());
    auto interpreted = [&](Scheduler s, const RuntimeOptions& base) {
      RuntimeOptions opt = base;
      opt.scheduler = s;
      opt.verify = true;
      auto program = compile_program(c.aot->file, *source, compile_options_for(s, aot_overrides(*c.aot)));
      EXPECT_TRUE(program.ok()) << program.status().to_string();
      auto rt = Runtime::create(**program, opt);
      EXPECT_TRUE(rt.ok());
      std::vector<float> out;
      RunStats stats;
      EXPECT_TRUE((*rt)->set_inputs(data).ok());
      Status st = (*rt)->run_minibatch(0, n, &out, &stats);
      EXPECT_TRUE(st.ok()) << st.to_string();
      return out;
    };
    const std::vector<float> unbatched = interpreted(Scheduler::kNone, {});
    ASSERT_EQ(unbatched.size(), n * (c.model == "fused_runs" ? 4 : 16)) << c.model;
    for (int tiles : {0, 1}) {
      for (int threads : {1, 2}) {
        RuntimeOptions opt;
        opt.threads = threads;
        opt.parallel_min_work = 1;
        if (tiles) {
          opt.group_tile_bytes = 1;  // one instance per tile
          opt.group_min_tile_rows = 1;
        }
        const std::string where =
            c.model + (tiles ? " tiles of one" : " one tile") + ", threads " + std::to_string(threads);
        const std::vector<float> interp = interpreted(Scheduler::kAcrobat, opt);
        opt.scheduler = Scheduler::kAcrobat;
        opt.verify = true;
        auto comp = load_aot_model(*c.aot, opt);
        ASSERT_TRUE(comp.ok()) << comp.status().to_string();
        ASSERT_TRUE(comp->runtime->set_inputs(data).ok());
        std::vector<float> out;
        RunStats stats;
        Status st = comp->runtime->run_minibatch(0, n, &out, &stats);
        ASSERT_TRUE(st.ok()) << where << ": " << st.to_string();
        ASSERT_EQ(out.size(), unbatched.size()) << where;
        for (size_t i = 0; i < out.size(); ++i) {
          ASSERT_EQ(out[i], interp[i]) << where << " output " << i;
          ASSERT_NEAR(out[i], unbatched[i], 1e-5 * (1 + std::fabs(unbatched[i]))) << where << " output " << i;
        }
      }
    }
  }
}

// Recursion deeper than the caller's stack budget reruns the minibatch on the large stack,
// as interpreted; a limit below the depth is the interpreter's error, and the runtime stays
// usable.
TEST(AcrobatAot, DeepRecursionRunsOrFailsCleanly) {
  std::vector<Instance> data = {chain_tree(3000), chain_tree(10)};
  const AotModel* aot = compiled("treelstm_test");
  ASSERT_NE(aot, nullptr);
  Outcome comp = run("treelstm", aot, Scheduler::kAcrobat, data, 2);
  Outcome interp = run("treelstm", nullptr, Scheduler::kAcrobat, data, 2);
  ASSERT_TRUE(comp.status.ok()) << comp.status.to_string();
  ASSERT_EQ(comp.out, interp.out);

  RuntimeOptions opt;
  opt.max_call_depth = 500;
  opt.scheduler = Scheduler::kAcrobat;
  auto m = load_aot_model(*aot, opt);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  ASSERT_TRUE(m->runtime->set_inputs(data).ok());
  std::vector<float> out;
  Status st = m->runtime->run_minibatch(0, 2, &out, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("recursion deeper than 500"), std::string::npos) << st.message();
  out.clear();
  ASSERT_TRUE(m->runtime->run_minibatch(1, 2, &out, nullptr).ok());
  EXPECT_EQ(out.size(), 16u);
}

// A bad lookup index fails at the same place with the same message, compiled or interpreted.
TEST(AcrobatAot, RunTimeErrorsNameThePlaceLikeTheInterpreter) {
  Instance bad;
  bad.kind = Instance::kSequence;
  bad.words = {3, 5000};
  for (Scheduler s : {Scheduler::kAcrobat, Scheduler::kDynetAgenda}) {
    Outcome comp = run("birnn", compiled("birnn_test"), s, {bad}, 1);
    Outcome interp = run("birnn", nullptr, s, {bad}, 1);
    ASSERT_FALSE(comp.status.ok());
    ASSERT_FALSE(interp.status.ok());
    EXPECT_EQ(comp.status.message(), interp.status.message());
    EXPECT_NE(comp.status.message().find("birnn.acr:"), std::string::npos) << comp.status.message();
    EXPECT_NE(comp.status.message().find("lookup index 5000 outside [0, 1000)"), std::string::npos)
        << comp.status.message();
  }
}

// Code generated from another program (here: a fingerprint that no longer matches) is refused
// before anything runs, with a message saying to compile again.
TEST(AcrobatAot, RefusesCodeGeneratedFromADifferentProgram) {
  const AotModel* aot = compiled("treelstm_test");
  ASSERT_NE(aot, nullptr);
  AotModel stale = *aot;
  stale.analysed.fingerprint ^= 1;
  RuntimeOptions opt;
  auto m = load_aot_model(stale, opt);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("acrobat compile"), std::string::npos) << m.status().message();
  opt.scheduler = Scheduler::kNone;  // the other variant is unaffected
  EXPECT_TRUE(load_aot_model(stale, opt).ok());
}

TEST(AcrobatAot, FingerprintFollowsTheAnalyses) {
  const std::string src = read_model("treelstm");
  auto a = compile_program("treelstm.acr", src, compile_options_for(Scheduler::kAcrobat));
  auto b = compile_program("treelstm.acr", src, compile_options_for(Scheduler::kAcrobat));
  auto plain = compile_program("treelstm.acr", src, compile_options_for(Scheduler::kNone));
  auto large = compile_program("treelstm.acr", src, compile_options_for(Scheduler::kAcrobat, {{"H", 512}}));
  ASSERT_TRUE(a.ok() && b.ok() && plain.ok() && large.ok());
  EXPECT_EQ(program_fingerprint(**a), program_fingerprint(**b));
  EXPECT_NE(program_fingerprint(**a), program_fingerprint(**plain));
  EXPECT_NE(program_fingerprint(**a), program_fingerprint(**large));
}

TEST(AcrobatAot, GeneratorRejectsBadNamesAndPrograms) {
  auto bad_name = generate_aot_cpp("treelstm.acr", read_model("treelstm"), "tree-lstm", {}, "");
  ASSERT_FALSE(bad_name.ok());
  EXPECT_NE(bad_name.status().message().find("C identifier"), std::string::npos) << bad_name.status().message();
  auto bad_program = generate_aot_cpp("bad.acr", "def main(x: Int) -> Tensor[4] =\n  frobnicate(x)\n", "bad", {}, "");
  ASSERT_FALSE(bad_program.ok());
  EXPECT_NE(bad_program.status().message().find("bad.acr:2:"), std::string::npos) << bad_program.status().message();
}

}  // namespace
}  // namespace perfmem::acrobat
