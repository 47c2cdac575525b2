// Whole-network ring plans: the shadow-state verifier passes for a sweep of layers and for the
// real models, catches a deliberately shrunk distance, and outputs equal the reference executor.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

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

// RingModel::run (the plan alone: no shadow state) returns the reference executor's bytes on
// random inputs seeded 1..seeds.
void expect_run_equals_reference(vm::RingModel& m, const vm::Graph& g, uint32_t seeds, const std::string& what) {
  auto ref = vm::Executor::create(g);
  ASSERT_TRUE(ref.ok()) << what;
  for (uint32_t seed = 1; seed <= seeds; ++seed) {
    const auto input = vmcu_test::random_input(g.tensors[g.inputs[0]], seed);
    auto a = m.run(input);
    auto b = ref->run(input);
    ASSERT_TRUE(a.ok() && b.ok()) << what;
    EXPECT_EQ(*a, *b) << what << " seed " << seed;
  }
}

struct LayerCase {
  const char* name;
  const char* spec;
};

const LayerCase kLayerCases[] = {
    {"conv3x3_same_odd", R"({"input":[1,7,9,3],"layers":[{"type":"conv","kernel":3,"out_channels":5}]})"},
    {"conv3x3_same_c_eq_k", R"({"input":[1,10,10,8],"layers":[{"type":"conv","kernel":3,"out_channels":8}]})"},
    {"conv_c_gt_k_stride2",
     R"({"input":[1,11,11,12],"layers":[{"type":"conv","kernel":3,"out_channels":4,"stride":2}]})"},
    {"conv_valid_5x5",
     R"({"input":[1,9,8,4],"layers":[{"type":"conv","kernel":5,"out_channels":6,"padding":"valid"}]})"},
    {"conv_kernel_larger_than_image", R"({"input":[1,3,3,4],"layers":[{"type":"conv","kernel":5,"out_channels":4}]})"},
    {"pointwise_c_lt_k", R"({"input":[1,9,7,3],"layers":[{"type":"pointwise","out_channels":11}]})"},
    {"pointwise_c_gt_k", R"({"input":[1,9,7,13],"layers":[{"type":"pointwise","out_channels":4}]})"},
    {"depthwise_same", R"({"input":[1,9,9,8],"layers":[{"type":"depthwise","kernel":3}]})"},
    {"depthwise_stride2_7x7", R"({"input":[1,13,11,5],"layers":[{"type":"depthwise","kernel":7,"stride":2}]})"},
    {"depthwise_multiplier", R"({"input":[1,6,6,3],"layers":[{"type":"depthwise","kernel":3,"depth_multiplier":2}]})"},
    {"depthwise_kernel_larger_than_image", R"({"input":[1,3,3,16],"layers":[{"type":"depthwise","kernel":7}]})"},
    {"conv9x9_runs_staged", R"({"input":[1,10,10,2],"layers":[{"type":"conv","kernel":9,"out_channels":3}]})"},
    {"pools",
     R"({"input":[1,9,9,6],"layers":[{"type":"maxpool","kernel":3,"stride":2},{"type":"avgpool","kernel":2,"stride":2},{"type":"global_avgpool"}]})"},
    {"fc_batches",
     R"({"input":[3,40],"layers":[{"type":"fully_connected","units":12},{"type":"fully_connected","units":50},{"type":"softmax"}]})"},
    {"bottleneck_residual",
     R"({"input":[1,10,10,8],"layers":[{"type":"bottleneck","mid_channels":24,"out_channels":8,"kernel":3,"residual":true}]})"},
    {"bottleneck_stride2",
     R"({"input":[1,11,11,8],"layers":[{"type":"bottleneck","mid_channels":24,"out_channels":12,"kernel":5,"stride":2}]})"},
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
  auto b = vm::plan_ring(g);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->plan().ring_bytes, b->ring_bytes);
  EXPECT_EQ(a->plan().base, b->base);
  ASSERT_EQ(a->plan().layers.size(), b->layers.size());
  for (size_t l = 0; l < b->layers.size(); ++l) {
    const vm::RingLayer& layer = b->layers[l];
    EXPECT_EQ(layer.params_index, static_cast<int>(l));
    for (int k = 0; k < 3; ++k) EXPECT_EQ(layer.ring_offset[k], a->plan().layers[l].ring_offset[k]);
    // Each layer carries its operands' ring offsets (one place per tensor unless relocated).
    if (b->placement == vm::RingPlacement::kMixed) continue;
    EXPECT_EQ(layer.ring_offset[0], b->ring_offset(layer.output));
    for (size_t k = 0; k < layer.inputs.size(); ++k)
      EXPECT_EQ(layer.ring_offset[k + 1], b->ring_offset(layer.inputs[k]));
  }
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
  for (const Sabotage& s :
       {Sabotage{R"({"input":[1,10,10,8],"layers":[{"type":"conv","kernel":3,"out_channels":8}]})", 8},
        Sabotage{R"({"input":[1,9,9,8],"layers":[{"type":"depthwise","kernel":3}]})", 8},
        Sabotage{R"({"input":[1,40],"layers":[{"type":"fully_connected","units":12}]})", 12},
        Sabotage{R"({"input":[1,6,6,4],"layers":[{"type":"pointwise","out_channels":12}]})", 4}}) {
    const vm::Graph g = built(s.spec);
    auto good = vm::RingModel::create(g);
    ASSERT_TRUE(good.ok());
    ASSERT_GT(good->plan().layers[0].distance[0], 0) << s.spec;
    const auto input = vmcu_test::random_input(g.tensors[g.inputs[0]], 5);
    ASSERT_TRUE(good->verify(input).ok());
    // The unsafe plan never leaves create(): it fails its verifier there, an internal error.
    auto bad = vm::create_ring_model_with_shrunk_distance(g, 0, s.segment);
    ASSERT_FALSE(bad.ok()) << s.spec;
    EXPECT_EQ(bad.status().code(), perfmem::StatusCode::kInternal);
    EXPECT_NE(bad.status().message().find("overwrote"), std::string::npos) << bad.status().to_string();
  }
}

// A graph output that the last operator also reads must survive that operator: the caller
// reads it after the last layer.
TEST(RingPlan, GraphOutputReadByTheLastLayerStaysIntact) {
  vm::Graph g = built(
      R"({"input":[1,6,6,8],"layers":[{"type":"pointwise","out_channels":8},{"type":"pointwise","out_channels":8}]})");
  ASSERT_EQ(g.ops.size(), 2u);
  const int middle = g.ops[1].inputs[0];
  g.outputs = {middle};  // the last operator reads the output; its own result goes unused
  auto m = vm::RingModel::create(g);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_GT(m->plan().last_layer[middle], 1);  // live past the last layer
  expect_run_equals_reference(*m, g, 3, "graph output read by the last layer");
  for (uint32_t seed = 1; seed <= 3; ++seed)
    ASSERT_TRUE(m->verify(vmcu_test::random_input(g.tensors[g.inputs[0]], seed)).ok());
}

TEST(RingPlan, FusesABottleneckWhenItNeedsLessMemoryAndStaysSafe) {
  const vm::Graph g = built(
      R"({"input":[1,20,20,16],"layers":[{"type":"bottleneck","mid_channels":48,"out_channels":16,"kernel":3,"residual":true}]})");
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
  auto bad = vm::create_ring_model_with_shrunk_distance(g, 0, 16);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("overwrote"), std::string::npos) << bad.status().to_string();
}

// A fused bottleneck keeps its expansion in a cache of expanded pixels when the peak budget
// allows it (and recomputes it per tap when it does not); both plans pass the verifier and equal
// the reference, and the verifier rejects either plan with its workspace shrunk by one byte.
TEST(RingPlan, RowCachedBottleneckIsVerifiedAndAShrunkWorkspaceIsCaught) {
  const char* specs[] = {
      R"({"input":[1,24,24,8],"layers":[{"type":"bottleneck","mid_channels":16,"out_channels":32,"kernel":3,"stride":2}]})",
      R"({"input":[1,9,7,8],"layers":[{"type":"bottleneck","mid_channels":24,"out_channels":8,"kernel":3,"residual":true}]})",
      R"({"input":[1,11,10,8],"layers":[{"type":"bottleneck","mid_channels":24,"out_channels":12,"kernel":5,"stride":2}]})"};
  for (const char* spec : specs) {
    const vm::Graph g = built(spec);
    const vm::Tensor& in = g.tensors[g.inputs[0]];
    const size_t w = static_cast<size_t>(in.shape[2]);
    const size_t k = spec[std::string(spec).find("\"kernel\":") + 9] - '0';
    const size_t mid = g.tensors[g.ops[0].outputs[0]].shape[3];
    const size_t out_c = g.tensors[g.outputs[0]].shape[3];
    vm::RingPlanOptions o;
    o.tensor_level_fallback = false;
    for (const double growth : {0.0, 10.0}) {
      o.row_cache_peak_growth = growth;
      auto m = vm::RingModel::create(g, o);
      ASSERT_TRUE(m.ok()) << spec << ": " << m.status().to_string();
      ASSERT_EQ(m->plan().layers.size(), 1u) << spec;
      const vm::RingLayer& layer = m->plan().layers[0];
      ASSERT_EQ(layer.kernel, vm::RingKernel::kBottleneck) << spec;
      // Recomputing: two stages; cached: (k - 1) rows and k pixels of expanded pixels more.
      const size_t cache = growth > 0 ? ((k - 1) * w + k) * mid : 0;
      EXPECT_EQ(layer.workspace_bytes, cache + mid + out_c) << spec << " growth " << growth;
      for (uint32_t seed = 1; seed <= 2; ++seed) {
        auto report = m->verify(vmcu_test::random_input(in, seed));
        ASSERT_TRUE(report.ok()) << spec << ": " << report.status().to_string();
      }
      expect_run_equals_reference(*m, g, 2, spec);
      auto bad = vm::create_ring_model_with_shrunk_workspace(g, 0, 1, o);
      ASSERT_FALSE(bad.ok()) << spec << " growth " << growth;
      EXPECT_NE(bad.status().message().find("workspace bytes"), std::string::npos) << bad.status().to_string();
    }
  }
}

// The first block of the paper's MCUNet-320KB-ImageNet network, its memory bottleneck: a 3x3
// stride-2 stem conv 3->16 on a 176x176 image, then a depthwise 3x3 and a 1x1 projection 16->8.
// The paper's vMCU needs 102.7 KB for it; the fused stem block keeps the 88x88x16 conv and
// depthwise outputs out of the ring (ring = the 92,928-byte image, plus three conv rows).
TEST(RingPlan, McunetImagenetFirstBlockFusesTheStemAtOrBelowThePaper) {
  const vm::Graph g = built(R"({"seed":1,"input":[1,176,176,3],"layers":[
      {"type":"conv","kernel":3,"out_channels":16,"stride":2},
      {"type":"bottleneck","mid_channels":16,"out_channels":8,"kernel":3}]})");
  ASSERT_EQ(g.ops.size(), 3u);
  auto m = vm::RingModel::create(g);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  ASSERT_EQ(m->plan().layers.size(), 1u);
  EXPECT_EQ(m->plan().layers[0].kernel, vm::RingKernel::kStemBlock);
  EXPECT_LE(m->plan().peak_bytes, 102700u);                                       // the paper's vMCU figure
  EXPECT_EQ(m->plan().peak_bytes, 176u * 176u * 3u + 3u * 88u * 16u + 16u + 8u);  // pinned: 97,176
  vm::RingPlanOptions no_fusion;
  no_fusion.fuse = false;
  auto plain = vm::RingModel::create(g, no_fusion);
  ASSERT_TRUE(plain.ok()) << plain.status().to_string();
  EXPECT_LT(m->plan().peak_bytes, plain->plan().peak_bytes);
  for (uint32_t seed = 1; seed <= 2; ++seed) {
    auto report = m->verify(vmcu_test::random_input(g.tensors[g.inputs[0]], seed));  // shadow state + bit-exact
    ASSERT_TRUE(report.ok()) << report.status().to_string();
  }
  expect_run_equals_reference(*m, g, 2, "MCUNet-320KB-ImageNet first block");
}

// Stem blocks of other shapes (odd sizes, VALID padding, a 5x5 stem, stride 2 in the stem and in
// the depthwise) are taken where they lower the peak, verified and bit-exact.
TEST(RingPlan, StemBlockEdgeCasesAreFusedAndBitExact) {
  const char* specs[] = {
      R"({"input":[1,45,37,3],"layers":[{"type":"conv","kernel":3,"out_channels":16,"stride":2},
          {"type":"bottleneck","mid_channels":16,"out_channels":8,"kernel":3}]})",
      R"({"input":[1,47,41,3],"layers":[{"type":"conv","kernel":3,"out_channels":16,"stride":2,"padding":"valid"},
          {"type":"bottleneck","mid_channels":16,"out_channels":5,"kernel":3,"stride":2}]})",
      R"({"input":[1,39,51,4],"layers":[{"type":"conv","kernel":5,"out_channels":24,"stride":2},
          {"type":"bottleneck","mid_channels":24,"out_channels":12,"kernel":5},{"type":"global_avgpool"}]})"};
  for (const char* spec : specs) {
    const vm::Graph g = built(spec);
    auto m = vm::RingModel::create(g);
    ASSERT_TRUE(m.ok()) << spec << ": " << m.status().to_string();
    ASSERT_FALSE(m->plan().layers.empty());
    EXPECT_EQ(m->plan().layers[0].kernel, vm::RingKernel::kStemBlock) << spec;
    vm::RingPlanOptions no_fusion;
    no_fusion.fuse = false;
    auto plain = vm::RingModel::create(g, no_fusion);
    ASSERT_TRUE(plain.ok());
    EXPECT_LT(m->plan().peak_bytes, plain->plan().peak_bytes) << spec;
    expect_verified(g, spec);
  }
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
  ASSERT_TRUE(m.ok());
  expect_run_equals_reference(*m, g, 5, "small_net");
  EXPECT_FALSE(m->run(std::vector<uint8_t>(3)).ok());  // wrong input size: an input error
}

// A random small network from the builder's layer types (always buildable: SAME padding,
// spatial layers only while the tensor is 4-D).
std::string random_spec(std::mt19937& rng) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const int h = pick(2, 14), w = pick(2, 14), c = pick(1, 24);
  std::string layers;
  bool spatial = true;
  int channels = c;
  const int count = pick(1, 6);
  for (int i = 0; i < count; ++i) {
    std::string l;
    const int kind = spatial ? pick(0, 9) : pick(8, 9);
    switch (kind) {
      case 0:
        channels = pick(1, 32);
        l = R"({"type":"conv","kernel":)" + std::to_string(pick(1, 3) * 2 - 1) + R"(,"out_channels":)" +
            std::to_string(channels) + R"(,"stride":)" + std::to_string(pick(1, 2)) + "}";
        break;
      case 1:
        channels = pick(1, 32);
        l = R"({"type":"pointwise","out_channels":)" + std::to_string(channels) + "}";
        break;
      case 2:
        l = R"({"type":"depthwise","kernel":)" + std::to_string(pick(1, 2) * 2 + 1) + R"(,"stride":)" +
            std::to_string(pick(1, 2)) + "}";
        break;
      case 3: {
        const bool residual = pick(0, 1) == 1;
        const int out = residual ? channels : pick(1, 24);
        l = R"({"type":"bottleneck","mid_channels":)" + std::to_string(pick(1, 4) * channels) + R"(,"out_channels":)" +
            std::to_string(out) + R"(,"kernel":3,"stride":)" + std::to_string(residual ? 1 : pick(1, 2)) +
            R"(,"residual":)" + (residual ? "true" : "false") + "}";
        channels = out;
        break;
      }
      case 4: l = R"({"type":"avgpool","kernel":2,"stride":)" + std::to_string(pick(1, 2)) + "}"; break;
      case 5: l = R"({"type":"maxpool","kernel":)" + std::to_string(pick(2, 3)) + R"(,"stride":2})"; break;
      case 6:
        l = R"({"type":"mean","keep_dims":)" + std::string(pick(0, 1) ? "true" : "false") + "}";
        spatial = l.find("true") != std::string::npos;
        break;
      case 7: l = R"({"type":"global_avgpool"})"; break;
      case 8:
        channels = pick(1, 40);
        l = R"({"type":"fully_connected","units":)" + std::to_string(channels) + "}";
        spatial = false;
        break;
      default: l = R"({"type":"softmax"})"; break;
    }
    layers += (layers.empty() ? "" : ",") + l;
  }
  return R"({"seed":)" + std::to_string(pick(1, 1000)) + R"(,"input":[1,)" + std::to_string(h) + "," +
         std::to_string(w) + "," + std::to_string(c) + R"(],"layers":[)" + layers + "]}";
}

// The vmcu planner never returns a plan larger than TFLite Micro's greedy arena nor than the
// whole-network segment-level plan, and every plan it returns runs bit-exactly under the
// shadow-state verifier and, without it, equals the reference executor.
TEST(RingPlan, NeverLargerThanGreedyOrTheSegmentPlanOnRandomNetworks) {
  std::mt19937 rng(2024);
  int placements[3] = {0, 0, 0};
  int smaller_than_both = 0;
  vm::RingPlanOptions segment_only;
  segment_only.tensor_level_fallback = false;
  for (int n = 0; n < 60; ++n) {
    const std::string spec = random_spec(rng);
    const vm::Graph g = built(spec);
    auto m = vm::RingModel::create(g);
    ASSERT_TRUE(m.ok()) << spec << ": " << m.status().to_string();
    const auto reqs = vm::planner_requirements(g, vm::PlannerKind::kGreedy);
    const size_t greedy = vm::plan_memory(reqs, vm::PlannerKind::kGreedy).peak_bytes;
    EXPECT_LE(m->plan().peak_bytes, greedy) << spec;
    auto segment = vm::RingModel::create(g, segment_only);
    ASSERT_TRUE(segment.ok()) << spec << ": " << segment.status().to_string();
    EXPECT_LE(m->plan().peak_bytes, segment->plan().peak_bytes) << spec;
    smaller_than_both += m->plan().peak_bytes < std::min(greedy, segment->plan().peak_bytes);
    ++placements[static_cast<int>(m->plan().placement)];
    auto report = m->verify(vmcu_test::random_input(g.tensors[g.inputs[0]], static_cast<uint32_t>(n)));
    ASSERT_TRUE(report.ok()) << spec << ": " << report.status().to_string();
    if (m->plan().placement == vm::RingPlacement::kMixed) expect_run_equals_reference(*m, g, 1, spec);
  }
  // Every placement occurs in the sample, and mixed plans are smaller than both whole plans.
  EXPECT_GT(placements[static_cast<int>(vm::RingPlacement::kSegment)], 0);
  EXPECT_GT(placements[static_cast<int>(vm::RingPlacement::kTensor)], 0);
  EXPECT_GT(placements[static_cast<int>(vm::RingPlacement::kMixed)], 0);
  EXPECT_EQ(smaller_than_both, placements[static_cast<int>(vm::RingPlacement::kMixed)]);
}

// Per region: a large convolution chain that the ring halves, then a staged softmax whose
// workspace (its whole input and output) would sit on top of the ring. The segment-level plan
// pays ring + workspace, the tensor-level plan the conv chain's two whole tensors; the mixed plan
// runs the convolutions in the ring, relocates the one tensor live at the cut and runs the tail
// at tensor level, below both, bit-exactly.
TEST(RingPlan, MixedPlanIsBelowBothWholeNetworkPlans) {
  const vm::Graph g = built(R"({"seed":5,"input":[1,32,32,16],"layers":[
      {"type":"pointwise","out_channels":16},{"type":"conv","kernel":3,"out_channels":16},
      {"type":"global_avgpool"},{"type":"fully_connected","units":600},{"type":"softmax"}]})");
  const auto reqs = vm::planner_requirements(g, vm::PlannerKind::kGreedy);
  const size_t greedy = vm::plan_memory(reqs, vm::PlannerKind::kGreedy).peak_bytes;
  vm::RingPlanOptions segment_only;
  segment_only.tensor_level_fallback = false;
  auto segment = vm::RingModel::create(g, segment_only);
  ASSERT_TRUE(segment.ok()) << segment.status().to_string();
  auto m = vm::RingModel::create(g);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  const vm::RingPlan& plan = m->plan();
  ASSERT_EQ(plan.placement, vm::RingPlacement::kMixed);
  EXPECT_LT(plan.peak_bytes, greedy);
  EXPECT_LT(plan.peak_bytes, segment->plan().peak_bytes);
  int relocations = 0, tensor_level = 0, segment_level = 0;
  for (const vm::RingLayer& l : plan.layers) {
    relocations += l.kernel == vm::RingKernel::kRelocate;
    tensor_level += l.kernel == vm::RingKernel::kTensorLevel;
    segment_level += l.kernel != vm::RingKernel::kRelocate && l.kernel != vm::RingKernel::kTensorLevel;
    if (l.kernel == vm::RingKernel::kRelocate) {
      ASSERT_EQ(l.inputs.size(), 1u);
      EXPECT_EQ(l.inputs[0], l.output);
      EXPECT_NE(l.ring_offset[0], l.ring_offset[1]);
    }
  }
  EXPECT_GE(relocations, 1);
  EXPECT_GT(tensor_level, 0);
  EXPECT_GT(segment_level, 0);
  // The softmax runs at tensor level: its staged workspace is gone.
  EXPECT_EQ(segment->plan().layers.back().kernel, vm::RingKernel::kStaged);
  EXPECT_EQ(plan.layers.back().kernel, vm::RingKernel::kTensorLevel);
  EXPECT_LT(plan.workspace_bytes, segment->plan().workspace_bytes);
  expect_verified(g, "mixed");
  expect_run_equals_reference(*m, g, 3, "mixed");
}

// Staged layers (operators without a segment kernel) and tensor-level layers are plan entries
// like the others: the plan runner evaluates them from the plan's prepared parameters in the
// plan's own memory, and RingModel::run (no shadow state, no reference executor) returns the
// reference executor's bytes on random networks and the shared models.
TEST(RingPlan, PlanRunsStagedAndTensorLevelLayersBitExact) {
  std::mt19937 rng(77);
  std::vector<vm::Graph> graphs;
  for (int n = 0; n < 40; ++n) {
    const std::string spec = random_spec(rng);
    graphs.push_back(built(spec));
    graphs.back().source = spec;  // names the network in failures
  }
  // A staged MEAN (its int32 accumulators count as workspace).
  graphs.push_back(built(R"({"input":[1,7,5,6],"layers":[{"type":"conv","kernel":3,"out_channels":12},
      {"type":"mean","keep_dims":false},{"type":"fully_connected","units":5},{"type":"softmax"}]})"));
  for (const char* file : {"mcunet-vww1_int8.tflite", "mlperf-tiny-resnet8_int8.tflite",
                           "mlperf-tiny-dscnn-kws_int8.tflite", "mlperf-tiny-vww_96_int8.tflite"}) {
    const std::string path = vmcu_test::shared_model(file);
    if (!std::filesystem::exists(path)) continue;
    auto g = vm::load_tflite(path);
    ASSERT_TRUE(g.ok()) << g.status().to_string();
    graphs.push_back(std::move(*g));
  }
  int staged = 0, tensor_level = 0;
  for (const vm::Graph& g : graphs) {
    auto m = vm::RingModel::create(g);
    ASSERT_TRUE(m.ok()) << g.source << ": " << m.status().to_string();
    for (const vm::RingLayer& l : m->plan().layers) {
      if (l.kernel == vm::RingKernel::kStaged) {
        ++staged;
        const size_t in = g.tensors[l.inputs[0]].bytes(), out = g.tensors[l.output].bytes();
        EXPECT_GE(l.workspace_bytes, in + out) << g.source;  // input and output staged whole
      }
      tensor_level += l.kernel == vm::RingKernel::kTensorLevel;
      EXPECT_GE(l.params_index, 0);
    }
    expect_run_equals_reference(*m, g, 2, g.source);
  }
  EXPECT_GT(staged, 0);
  EXPECT_GT(tensor_level, 0);
}

// A staged operator's workspace (its whole input and output) sits on top of the ring, so a
// lone softmax needs more memory at segment level than greedy's two tensors: the planner takes
// the tensor-level plan, greedy's arena, with no workspace, and it runs bit-exactly.
TEST(RingPlan, TensorLevelPlanWhenTheRingWouldBeLarger) {
  const vm::Graph g =
      built(R"({"input":[2,100],"layers":[{"type":"fully_connected","units":100},{"type":"softmax"}]})");
  const auto reqs = vm::planner_requirements(g, vm::PlannerKind::kGreedy);
  const auto greedy = vm::plan_memory(reqs, vm::PlannerKind::kGreedy);
  vm::RingPlanOptions no_fallback;
  no_fallback.tensor_level_fallback = false;
  auto segment = vm::RingModel::create(g, no_fallback);
  ASSERT_TRUE(segment.ok()) << segment.status().to_string();
  ASSERT_GT(segment->plan().peak_bytes, greedy.peak_bytes);
  vm::RingPlanOptions whole_network;  // (a mixed plan saves 8 bytes here: the FC in the ring)
  whole_network.per_region_choice = false;
  auto m = vm::RingModel::create(g, whole_network);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->plan().placement, vm::RingPlacement::kTensor);
  EXPECT_EQ(m->plan().peak_bytes, greedy.peak_bytes);
  EXPECT_EQ(m->plan().workspace_bytes, 0u);
  for (size_t i = 0; i < reqs.size(); ++i)
    EXPECT_EQ(m->plan().ring_offset(reqs[i].tensor), static_cast<int32_t>(greedy.placements[i].offset)) << reqs[i].name;
  auto ref = vm::Executor::create(g);
  ASSERT_TRUE(ref.ok());
  const auto input = vmcu_test::random_input(g.tensors[g.inputs[0]], 3);
  auto a = m->run(input);
  auto b = ref->run(input);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
}

// A float32 graph input quantized by the first operator (as mcunet-vww1 ships): with_int8_input
// starts the graph at the QUANTIZE output, and the int8 graph fed the quantized pixels gives the
// float graph's output byte for byte.
TEST(RingPlan, Int8InputDropsAFloatInputQuantize) {
  vm::Graph g =
      built(R"({"input":[1,6,6,3],"layers":[{"type":"conv","kernel":3,"out_channels":4},{"type":"global_avgpool"}]})");
  const int q = g.inputs[0];
  vm::Tensor f = g.tensors[q];
  f.name = "float_pixels";
  f.type = vm::ElementType::kFloat32;
  f.quantization = {};
  g.tensors.push_back(f);
  const int fi = static_cast<int>(g.tensors.size()) - 1;
  vm::Operator quantize;
  quantize.kind = vm::OpKind::kQuantize;
  quantize.inputs = {fi};
  quantize.outputs = {q};
  g.ops.insert(g.ops.begin(), quantize);
  g.inputs = {fi};
  auto dropped = vm::with_int8_input(g);
  ASSERT_TRUE(dropped.ok()) << dropped.status().to_string();
  ASSERT_EQ(dropped->ops.size(), g.ops.size() - 1);
  EXPECT_EQ(dropped->ops.front().kind, vm::OpKind::kConv2D);
  ASSERT_EQ(dropped->inputs.size(), 1u);
  EXPECT_EQ(dropped->inputs[0], q);
  EXPECT_EQ(dropped->tensors[q].type, vm::ElementType::kInt8);
  auto as_float = vm::Executor::create(g);
  auto as_int8 = vm::Executor::create(*dropped);
  ASSERT_TRUE(as_float.ok() && as_int8.ok());
  const auto pixels = vmcu_test::random_input(g.tensors[fi], 6);
  auto a = as_float->run(pixels);
  ASSERT_TRUE(a.ok());
  const auto quantized = as_float->tensor_bytes(q);
  auto b = as_int8->run(std::vector<uint8_t>(quantized.begin(), quantized.end()));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*a, *b);
  // The float input no longer has to sit in RAM: the vmcu plan shrinks by at least its bytes
  // minus the int8 copy it replaced.
  auto ring_float = vm::RingModel::create(g);
  auto ring_int8 = vm::RingModel::create(*dropped);
  ASSERT_TRUE(ring_float.ok() && ring_int8.ok());
  EXPECT_LT(ring_int8->plan().peak_bytes, ring_float->plan().peak_bytes);
  // A float input that a later operator reads again stays.
  vm::Graph kept = g;
  kept.outputs.push_back(fi);
  vm::Operator again = quantize;
  again.outputs = {static_cast<int>(kept.tensors.size())};
  kept.tensors.push_back(g.tensors[q]);
  kept.ops.push_back(again);
  auto unchanged = vm::with_int8_input(kept);
  ASSERT_TRUE(unchanged.ok());
  EXPECT_EQ(unchanged->ops.size(), kept.ops.size());
}

// Pinned vmcu peaks of the shared models (a change must be deliberate) and the ratio targets
// against TFLite Micro's greedy arena for the same graph.
TEST(RingPlan, SharedModelPeaksArePinnedAndMeetTheirTargets) {
  struct Pin {
    const char* file;
    bool int8_input;
    size_t peak;
    double target;  // vmcu / greedy
  };
  const Pin pins[] = {
      {"mcunet-vww1_int8.tflite", false, 76848, 1.0},          {"mcunet-vww1_int8.tflite", true, 21856, 0.18},
      {"mlperf-tiny-resnet8_int8.tflite", false, 18038, 0.37}, {"mlperf-tiny-dscnn-kws_int8.tflite", false, 8448, 0.55},
      {"mlperf-tiny-vww_96_int8.tflite", false, 29374, 0.40},  {"mlperf-tiny-ad01_int8.tflite", false, 767, 1.0}};
  int checked = 0;
  for (const Pin& pin : pins) {
    const std::string path = vmcu_test::shared_model(pin.file);
    if (!std::filesystem::exists(path)) continue;
    auto g = vm::load_tflite(path);
    ASSERT_TRUE(g.ok()) << g.status().to_string();
    if (pin.int8_input) {
      auto dropped = vm::with_int8_input(*g);
      ASSERT_TRUE(dropped.ok());
      ASSERT_EQ(dropped->ops.size() + 1, g->ops.size()) << pin.file << ": the float input QUANTIZE was not dropped";
      ASSERT_EQ(dropped->tensors[dropped->inputs[0]].type, vm::ElementType::kInt8);
      g = std::move(dropped);
    }
    auto m = vm::RingModel::create(*g);
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    const auto reqs = vm::planner_requirements(*g, vm::PlannerKind::kGreedy);
    const size_t greedy = vm::plan_memory(reqs, vm::PlannerKind::kGreedy).peak_bytes;
    const double ratio = static_cast<double>(m->plan().peak_bytes) / static_cast<double>(greedy);
    EXPECT_EQ(m->plan().peak_bytes, pin.peak)
        << pin.file << (pin.int8_input ? " (int8 input)" : "") << ": update the pin";
    EXPECT_LE(ratio, pin.target) << pin.file << (pin.int8_input ? " (int8 input)" : "");
    ++checked;
  }
  if (checked == 0) PERFMEM_SKIP_UNLESS_REQUIRED("shared models not present under " << PERFMEM_SHARED_DIR);
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
  const auto greedy = vm::plan_memory(vm::planner_requirements(*g, vm::PlannerKind::kGreedy), vm::PlannerKind::kGreedy);
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
