// Whole-network ring plans: the shadow-state verifier passes for a sweep of layers and for the
// real models, catches a deliberately shrunk distance, and outputs equal the reference executor.
#include <gtest/gtest.h>

#include <filesystem>

#include "perfmem/vmcu/builder.h"
#include "perfmem/vmcu/executor.h"
#include "perfmem/vmcu/planner.h"
#include "perfmem/vmcu/ring_plan.h"
#include "test_support.h"
#include "perfmem/testing/required.h"

namespace {
namespace vm = perfmem::vmcu;

vm::Graph built(const std::string& spec) {
  auto bytes = vm::build_model_from_json(spec, "spec");
  EXPECT_TRUE(bytes.ok()) << bytes.status().to_string();
  auto g = vm::parse_tflite(*bytes, "built.tflite");
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  return std::move(*g);
}

// Verifies the ring plan of `g` on three random inputs.
void expect_verified(const vm::Graph& g, const std::string& what) {
  auto m = vm::RingModel::create(g);
  ASSERT_TRUE(m.ok()) << what << ": " << m.status().to_string();
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    const auto input = vmcu_test::random_input(g.tensors[g.inputs[0]], seed);
    auto report = m->verify(input);
    ASSERT_TRUE(report.ok()) << what << ": " << report.status().to_string();
    EXPECT_TRUE(report->bit_exact);
    EXPECT_GT(report->checked_reads, 0u);
    EXPECT_EQ(report->ring_bytes, m->plan().ring_bytes);
  }
}

struct LayerCase {
  const char* name;
  const char* spec;
};

const LayerCase kLayerCases[] = {
    {"conv3x3_same_odd", R"({"input":[1,7,9,3],"layers":[{"type":"conv","kernel":3,"out_channels":5}]})"},
    {"conv3x3_same_c_eq_k", R"({"input":[1,10,10,8],"layers":[{"type":"conv","kernel":3,"out_channels":8}]})"},
    {"conv_c_gt_k_stride2", R"({"input":[1,11,11,12],"layers":[{"type":"conv","kernel":3,"out_channels":4,"stride":2}]})"},
    {"conv_valid_5x5", R"({"input":[1,9,8,4],"layers":[{"type":"conv","kernel":5,"out_channels":6,"padding":"valid"}]})"},
    {"conv_kernel_larger_than_image", R"({"input":[1,3,3,4],"layers":[{"type":"conv","kernel":5,"out_channels":4}]})"},
    {"pointwise_c_lt_k", R"({"input":[1,9,7,3],"layers":[{"type":"pointwise","out_channels":11}]})"},
    {"pointwise_c_gt_k", R"({"input":[1,9,7,13],"layers":[{"type":"pointwise","out_channels":4}]})"},
    {"depthwise_same", R"({"input":[1,9,9,8],"layers":[{"type":"depthwise","kernel":3}]})"},
    {"depthwise_stride2_7x7", R"({"input":[1,13,11,5],"layers":[{"type":"depthwise","kernel":7,"stride":2}]})"},
    {"depthwise_multiplier", R"({"input":[1,6,6,3],"layers":[{"type":"depthwise","kernel":3,"depth_multiplier":2}]})"},
    {"depthwise_kernel_larger_than_image", R"({"input":[1,3,3,16],"layers":[{"type":"depthwise","kernel":7}]})"},
    {"conv9x9_runs_staged", R"({"input":[1,10,10,2],"layers":[{"type":"conv","kernel":9,"out_channels":3}]})"},
    {"pools", R"({"input":[1,9,9,6],"layers":[{"type":"maxpool","kernel":3,"stride":2},{"type":"avgpool","kernel":2,"stride":2},{"type":"global_avgpool"}]})"},
    {"fc_batches", R"({"input":[3,40],"layers":[{"type":"fully_connected","units":12},{"type":"fully_connected","units":50},{"type":"softmax"}]})"},
    {"bottleneck_residual", R"({"input":[1,10,10,8],"layers":[{"type":"bottleneck","mid_channels":24,"out_channels":8,"kernel":3,"residual":true}]})"},
    {"bottleneck_stride2", R"({"input":[1,11,11,8],"layers":[{"type":"bottleneck","mid_channels":24,"out_channels":12,"kernel":5,"stride":2}]})"},
    {"small_net", R"({"seed":3,"input":[1,16,16,3],"layers":[{"type":"conv","kernel":3,"out_channels":8,"stride":2},
        {"type":"bottleneck","mid_channels":24,"out_channels":8,"kernel":3,"residual":true},
        {"type":"depthwise","kernel":3,"stride":2},{"type":"global_avgpool"},
        {"type":"fully_connected","units":4},{"type":"softmax"}]})"},
};

TEST(RingPlan, VerifierPassesForEveryLayerKind) {
  for (const LayerCase& c : kLayerCases) expect_verified(built(c.spec), c.name);
}

TEST(RingPlan, PlanIsAPureFunctionOfTheGraph) {
  const vm::Graph g = built(kLayerCases[16].spec);
  auto a = vm::RingModel::create(g);
  auto b = vm::RingModel::create(g);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->plan().ring_bytes, b->plan().ring_bytes);
  EXPECT_EQ(a->plan().base, b->plan().base);
}

TEST(RingPlan, PointwiseRingIsTheLargerTensor) {
  const vm::Graph g = built(R"({"input":[1,20,20,48],"layers":[{"type":"pointwise","out_channels":24}]})");
  auto m = vm::RingModel::create(g);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->plan().ring_bytes, 20u * 20u * 48u);
  EXPECT_EQ(m->plan().workspace_bytes, 24u);  // one output pixel staged: one segment
}

// A layer whose solved distance is positive, run with the distance shrunk by one segment, must
// be rejected by the verifier (and the same plan with the true distance accepted).
TEST(RingPlan, VerifierCatchesADistanceShrunkByOneSegment) {
  struct Sabotage {
    const char* spec;
    int64_t segment;
  };
  for (const Sabotage& s : {Sabotage{R"({"input":[1,10,10,8],"layers":[{"type":"conv","kernel":3,"out_channels":8}]})", 8},
                            Sabotage{R"({"input":[1,9,9,8],"layers":[{"type":"depthwise","kernel":3}]})", 8},
                            Sabotage{R"({"input":[1,40],"layers":[{"type":"fully_connected","units":12}]})", 12},
                            Sabotage{R"({"input":[1,6,6,4],"layers":[{"type":"pointwise","out_channels":12}]})", 4}}) {
    const vm::Graph g = built(s.spec);
    auto good = vm::RingModel::create(g);
    ASSERT_TRUE(good.ok());
    ASSERT_GT(good->plan().layers[0].distance[0], 0) << s.spec;
    const auto input = vmcu_test::random_input(g.tensors[g.inputs[0]], 5);
    ASSERT_TRUE(good->verify(input).ok());
    vm::RingPlanOptions options;
    options.sabotage_layer = 0;
    options.sabotage_bytes = s.segment;
    auto bad = vm::RingModel::create(g, options);
    ASSERT_TRUE(bad.ok());
    auto report = bad->verify(input);
    ASSERT_FALSE(report.ok()) << s.spec;
    EXPECT_NE(report.status().message().find("overwrote"), std::string::npos) << report.status().to_string();
  }
}

TEST(RingPlan, FusesABottleneckWhenItNeedsLessMemoryAndStaysSafe) {
  const vm::Graph g = built(R"({"input":[1,20,20,16],"layers":[{"type":"bottleneck","mid_channels":48,"out_channels":16,"kernel":3,"residual":true}]})");
  auto fused = vm::RingModel::create(g);
  vm::RingPlanOptions no_fusion;
  no_fusion.fuse = false;
  auto plain = vm::RingModel::create(g, no_fusion);
  ASSERT_TRUE(fused.ok() && plain.ok());
  ASSERT_EQ(fused->plan().layers.size(), 1u);
  EXPECT_EQ(fused->plan().layers[0].kernel, vm::RingKernel::kBottleneck);
  EXPECT_LT(fused->plan().peak_bytes, plain->plan().peak_bytes);
  // The MCUNet-VWW S1 block: the paper's vMCU needs 13.9 KB.
  EXPECT_LE(fused->plan().peak_bytes, 13900u);
  const auto input = vmcu_test::random_input(g.tensors[g.inputs[0]], 9);
  ASSERT_TRUE(fused->verify(input).ok());
  ASSERT_TRUE(plain->verify(input).ok());
  // The fused block's own distance shrunk by one segment (16 bytes) must be caught.
  ASSERT_GT(fused->plan().layers[0].distance[0], 0);
  vm::RingPlanOptions sabotage;
  sabotage.sabotage_layer = 0;
  sabotage.sabotage_bytes = 16;
  auto bad = vm::RingModel::create(g, sabotage);
  ASSERT_TRUE(bad.ok());
  auto report = bad->verify(input);
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.status().message().find("overwrote"), std::string::npos) << report.status().to_string();
}

TEST(RingPlan, Int8InputDropsOnlyAnInputQuantize) {
  const vm::Graph g = built(kLayerCases[0].spec);
  auto same = vm::with_int8_input(g);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->ops.size(), g.ops.size());  // int8 input already: unchanged
}

TEST(RingPlan, RunEqualsTheReferenceExecutor) {
  const vm::Graph g = built(kLayerCases[16].spec);
  auto m = vm::RingModel::create(g);
  auto ref = vm::Executor::create(g);
  ASSERT_TRUE(m.ok() && ref.ok());
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    const auto input = vmcu_test::random_input(g.tensors[g.inputs[0]], seed);
    auto a = m->run(input);
    auto b = ref->run(input);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a, *b);
  }
  EXPECT_FALSE(m->run(std::vector<uint8_t>(3)).ok());  // wrong input size: an input error
}

class RealModels : public ::testing::TestWithParam<const char*> {};

TEST_P(RealModels, VerifiedBitExactAndNoLargerThanGreedy) {
  const std::string path = vmcu_test::shared_model(GetParam());
  if (!std::filesystem::exists(path)) PERFMEM_SKIP_UNLESS_REQUIRED(path << " is absent (shared models not installed)");
  auto g = vm::load_tflite(path);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  expect_verified(*g, GetParam());
  auto m = vm::RingModel::create(*g);
  ASSERT_TRUE(m.ok());
  const auto greedy = vm::plan_memory(vm::buffer_requirements(*g), vm::PlannerKind::kGreedy);
  EXPECT_LE(m->plan().peak_bytes, greedy.peak_bytes) << GetParam();
  // Without fusion the plan must be safe as well.
  vm::RingPlanOptions no_fusion;
  no_fusion.fuse = false;
  auto plain = vm::RingModel::create(*g, no_fusion);
  ASSERT_TRUE(plain.ok());
  auto report = plain->verify(vmcu_test::random_input(g->tensors[g->inputs[0]], 4));
  ASSERT_TRUE(report.ok()) << report.status().to_string();
}

INSTANTIATE_TEST_SUITE_P(Shared, RealModels,
                         ::testing::Values("mcunet-vww1_int8.tflite", "mlperf-tiny-ad01_int8.tflite",
                                           "mlperf-tiny-dscnn-kws_int8.tflite", "mlperf-tiny-resnet8_int8.tflite",
                                           "mlperf-tiny-vww_96_int8.tflite"),
                         [](const auto& info) {
                           std::string n = info.param;
                           n = n.substr(0, n.find('.'));
                           for (char& ch : n)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

}  // namespace
