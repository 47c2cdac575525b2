// Planners on hand-made requirements, the verifier on broken plans, and the real models' plans
// verified with their peaks pinned (the test fails if a planner gets worse).
#include <gtest/gtest.h>

#include <map>

#include "perfmem/vmcu/builder.h"
#include "perfmem/vmcu/planner.h"
#include "test_support.h"
#include "perfmem/testing/required.h"

namespace {
namespace vm = perfmem::vmcu;
using vm::BufferRequirement;
using vm::PlannerKind;

// A chain a -> b -> c -> d where each buffer lives over two steps.
std::vector<BufferRequirement> chain() {
  return {{"a", 100, 0, 0, -1, 0}, {"b", 50, 0, 1, -1, 0}, {"c", 100, 1, 2, -1, 0}, {"d", 10, 2, 2, -1, 0}};
}

TEST(VmcuPlanner, NaiveSumsEverything) {
  auto plan = vm::plan_memory(chain(), PlannerKind::kNaive);
  EXPECT_EQ(plan.peak_bytes, 260u);
  EXPECT_TRUE(vm::verify_plan(chain(), plan).ok());
}

TEST(VmcuPlanner, GreedyReusesDeadSpaceLargestFirst) {
  auto plan = vm::plan_memory(chain(), PlannerKind::kGreedy);
  // a@0 and c@0 (never live together); b above a/c at 100; d between? d overlaps c only -> 100.
  EXPECT_EQ(plan.placements[0].offset, 0u);
  EXPECT_EQ(plan.placements[2].offset, 0u);
  EXPECT_EQ(plan.placements[1].offset, 100u);
  EXPECT_EQ(plan.placements[3].offset, 100u);
  EXPECT_EQ(plan.peak_bytes, 150u);
  EXPECT_TRUE(vm::verify_plan(chain(), plan).ok());
}

TEST(VmcuPlanner, GreedyFillsTheFirstGapThatFits) {
  // x [0,10) and z [30,40) live throughout; y (20 bytes) fits in the gap [10,30) only if x,z
  // are placed first (they are larger).
  std::vector<BufferRequirement> reqs = {{"x", 30, 0, 3, -1, 0},
                                         {"y", 20, 1, 2, -1, 0},
                                         {"z", 25, 0, 3, -1, 0},
                                         {"w", 40, 0, 0, -1, 0},
                                         {"v", 40, 3, 3, -1, 0}};
  auto plan = vm::plan_memory(reqs, PlannerKind::kGreedy);
  EXPECT_TRUE(vm::verify_plan(reqs, plan).ok());
  // w(40)@0, v(40)@0, x(30)@40, z(25)@70, y(20) lives 1..2 where w,v are dead -> @0.
  EXPECT_EQ(plan.placements[1].offset, 0u);
  EXPECT_EQ(plan.peak_bytes, 95u);
}

// TFLite Micro fills its sort array from the tail and bubble-sorts it (stable): buffers of
// equal size are placed last-added first.
TEST(VmcuPlanner, GreedyPlacesEqualSizesLastAddedFirstAsTfliteMicro) {
  std::vector<BufferRequirement> reqs = {
      {"first", 64, 0, 1, -1, 0}, {"second", 64, 1, 2, -1, 0}, {"small", 16, 0, 2, -1, 0}};
  auto plan = vm::plan_memory(reqs, PlannerKind::kGreedy);
  ASSERT_TRUE(vm::verify_plan(reqs, plan).ok());
  EXPECT_EQ(plan.placements[1].offset, 0u);
  EXPECT_EQ(plan.placements[0].offset, 64u);
  EXPECT_EQ(plan.placements[2].offset, 128u);
  EXPECT_EQ(plan.peak_bytes, 144u);
}

// What TFLite Micro's allocator feeds its planner: 16-byte aligned sizes, activations only.
TEST(VmcuPlanner, GreedyRequirementsAreTfliteMicrosArenaBuffers) {
  auto bytes = vm::build_model_from_json(R"({"input":[1,3,3,3],"layers":[{"type":"conv","kernel":3,"out_channels":5},
      {"type":"global_avgpool"},{"type":"fully_connected","units":3}]})",
                                         "aligned");
  ASSERT_TRUE(bytes.ok());
  auto g = vm::parse_tflite(*bytes, "aligned");
  ASSERT_TRUE(g.ok());
  const auto exact = vm::planner_requirements(*g, PlannerKind::kNaive);
  const auto tflm = vm::planner_requirements(*g, PlannerKind::kGreedy);
  ASSERT_EQ(exact.size(), tflm.size());
  ASSERT_FALSE(exact.empty());
  for (size_t i = 0; i < exact.size(); ++i) {
    EXPECT_EQ(tflm[i].bytes % 16, 0u) << tflm[i].name;
    EXPECT_EQ(tflm[i].bytes, (exact[i].bytes + 15) / 16 * 16) << tflm[i].name;
    EXPECT_FALSE(g->tensors[tflm[i].tensor].is_constant);
    EXPECT_EQ(g->tensors[tflm[i].tensor].bytes(), exact[i].bytes);
  }
  EXPECT_EQ(exact[0].bytes, 27u);  // the 3x3x3 input
  EXPECT_EQ(tflm[0].bytes, 32u);
}

TEST(VmcuPlanner, TinyEngineComputesDepthwiseInPlace) {
  std::vector<BufferRequirement> reqs = {
      {"in", 1000, 0, 1, -1, 0}, {"dw", 1000, 1, 2, 0, 100}, {"out", 500, 2, 2, -1, 0}};
  auto te = vm::plan_memory(reqs, PlannerKind::kTinyEngine);
  ASSERT_TRUE(vm::verify_plan(reqs, te).ok()) << vm::verify_plan(reqs, te).to_string();
  EXPECT_EQ(te.placements[1].offset, te.placements[0].offset);
  EXPECT_EQ(te.placements[1].inplace_of, 0);
  ASSERT_EQ(te.placements.size(), 4u);  // + the one-channel workspace
  EXPECT_TRUE(te.placements[3].is_workspace);
  EXPECT_EQ(te.peak_bytes, 1500u);
  auto greedy = vm::plan_memory(reqs, PlannerKind::kGreedy);
  EXPECT_EQ(greedy.peak_bytes, 2000u);  // in + dw both whole at step 1
}

TEST(VmcuVerifier, RejectsOverlapsAndWrongPeaks) {
  auto reqs = chain();
  auto plan = vm::plan_memory(reqs, PlannerKind::kGreedy);
  auto bad = plan;
  bad.placements[1].offset = 50;  // b overlaps a at step 0
  auto s = vm::verify_plan(reqs, bad);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'a'"), std::string::npos) << s.to_string();
  bad = plan;
  bad.peak_bytes = 1;
  EXPECT_FALSE(vm::verify_plan(reqs, bad).ok());
  // An in-place hand-over the requirements do not declare is an overlap.
  std::vector<BufferRequirement> undeclared = {{"in", 100, 0, 1, -1, 0}, {"out", 100, 1, 1, -1, 0}};
  vm::MemoryPlan sneaky;
  sneaky.placements = {{"in", 100, 0, 1, 0, -1, false}, {"out", 100, 1, 1, 0, 0, false}};
  sneaky.peak_bytes = 100;
  EXPECT_FALSE(vm::verify_plan(undeclared, sneaky).ok());
  undeclared[1].inplace_partner = 0;
  EXPECT_TRUE(vm::verify_plan(undeclared, sneaky).ok());
}

TEST(VmcuPlanner, PlansArePureFunctions) {
  auto reqs = chain();
  for (auto kind : {PlannerKind::kNaive, PlannerKind::kGreedy, PlannerKind::kTinyEngine}) {
    auto a = vm::plan_memory(reqs, kind), b = vm::plan_memory(reqs, kind);
    ASSERT_EQ(a.placements.size(), b.placements.size());
    for (size_t i = 0; i < a.placements.size(); ++i) EXPECT_EQ(a.placements[i].offset, b.placements[i].offset);
  }
}

TEST(VmcuPlanner, InPlacePartnersOnlyWhereLegal) {
  auto bytes = vm::build_model_from_json(R"({"input":[1,8,8,4],"layers":[
      {"type":"depthwise","kernel":3},
      {"type":"depthwise","kernel":3,"depth_multiplier":2},
      {"type":"bottleneck","mid_channels":16,"out_channels":8,"kernel":3,"residual":true},
      {"type":"depthwise","kernel":3}]})",
                                         "inplace");
  ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
  auto g = vm::parse_tflite(*bytes, "inplace");
  ASSERT_TRUE(g.ok());
  const auto reqs = vm::buffer_requirements(*g);
  // Requirements follow tensor order among activations: input, dw1, dw2, expand, dw3, project, add, dw4.
  ASSERT_EQ(reqs.size(), 8u);
  EXPECT_EQ(reqs[1].inplace_partner, 0);            // same channels, input dies at op 0
  EXPECT_EQ(reqs[1].inplace_workspace_bytes, 64u);  // one 8x8 channel
  EXPECT_EQ(reqs[2].inplace_partner, -1);           // depth multiplier 2: output has more channels
  EXPECT_EQ(reqs[4].inplace_partner, 3);            // block depthwise over its expand output
  EXPECT_EQ(reqs[6].inplace_partner, 2);            // ADD over its first dying input (the block input)
  EXPECT_EQ(reqs[7].inplace_partner, 6);            // the last depthwise over the dying ADD output
  for (auto kind : {PlannerKind::kNaive, PlannerKind::kGreedy, PlannerKind::kTinyEngine}) {
    auto plan = vm::plan_memory(reqs, kind);
    EXPECT_TRUE(vm::verify_plan(reqs, plan).ok()) << vm::planner_name(kind);
  }
}

// Pinned peaks (bytes) of the real models: naive, greedy, tinyengine. The greedy peaks are the
// arena sizes TFLite Micro's GreedyMemoryPlanner computes for these models.
struct Pinned {
  size_t naive, greedy, tinyengine;
};
const std::map<std::string, Pinned> kPinned = {
    {"mcunet-vww1_int8.tflite", {722702, 161472, 161472}},
    {"mlperf-tiny-ad01_int8.tflite", {2312, 768, 768}},
    {"mlperf-tiny-dscnn-kws_int8.tflite", {72642, 16000, 16000}},
    {"mlperf-tiny-resnet8_int8.tflite", {117908, 49152, 49152}},
    {"mlperf-tiny-vww_96_int8.tflite", {259716, 73728, 55296}},
};

TEST(VmcuPlanner, RealModelPlansVerifyAndPeaksDoNotRegress) {
  int checked = 0;
  for (const auto& [name, pinned] : kPinned) {
    const std::string path = vmcu_test::shared_model(name);
    if (!std::filesystem::exists(path)) continue;
    auto g = vm::load_tflite(path);
    ASSERT_TRUE(g.ok()) << g.status().to_string();
    const size_t want[3] = {pinned.naive, pinned.greedy, pinned.tinyengine};
    int k = 0;
    for (auto kind : {PlannerKind::kNaive, PlannerKind::kGreedy, PlannerKind::kTinyEngine}) {
      const auto reqs = vm::planner_requirements(*g, kind);
      auto plan = vm::plan_memory(reqs, kind);
      auto s = vm::verify_plan(reqs, plan);
      EXPECT_TRUE(s.ok()) << name << ": " << s.to_string();
      EXPECT_LE(plan.peak_bytes, want[k]) << name << " " << vm::planner_name(kind) << " got worse";
      EXPECT_EQ(plan.peak_bytes, want[k]) << name << " " << vm::planner_name(kind) << " changed: update the pin";
      ++k;
    }
    // The tensor-level lower bound: no plan can beat the largest single-step live set.
    const auto reqs = vm::planner_requirements(*g, PlannerKind::kGreedy);
    auto greedy = vm::plan_memory(reqs, PlannerKind::kGreedy);
    size_t bound = 0;
    for (size_t b :
         vm::live_bytes_per_step(vm::plan_memory(reqs, PlannerKind::kNaive), static_cast<int>(g->ops.size())))
      bound = std::max(bound, b);
    EXPECT_GE(greedy.peak_bytes, bound);
    ++checked;
  }
  if (checked == 0) PERFMEM_SKIP_UNLESS_REQUIRED("shared models not present under " << PERFMEM_SHARED_DIR);
}

}  // namespace
