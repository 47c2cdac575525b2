// The schedulers as pure functions on hand-built recordings: batch counts, which nodes share
// a batch, and dependency order. No program, no kernels run.
#include <gtest/gtest.h>

#include <set>

#include "perfmem/acrobat/schedulers.h"

namespace perfmem::acrobat {
namespace {

// A small kernel table: 0 = matmul by parameter 0, 1 = tanh, 2 = add, 3 = matmul by a
// per-instance matrix (first operand computed).
std::vector<KernelSig> kernel_table() {
  auto make = [](OpKind op, std::vector<std::vector<int64_t>> args, std::vector<int> shared, std::vector<int64_t> out) {
    KernelSig s;
    s.op = op;
    s.arg_dims = std::move(args);
    s.shared_param = std::move(shared);
    s.out_dims = std::move(out);
    return s;
  };
  return {make(OpKind::kMatMul, {{4, 4}, {4}}, {0, -1}, {4}), make(OpKind::kTanh, {{4}}, {-1}, {4}),
          make(OpKind::kAdd, {{4}, {4}}, {-1, -1}, {4}), make(OpKind::kMatMul, {{4, 4}, {4}}, {-1, -1}, {4})};
}

// Persistent tensors: 0 = the parameter W, 1 and 2 = two inputs (views).
Recording fresh() {
  static float storage[3][16] = {};
  Recording r;
  r.set_persistent({storage[0], storage[1], storage[2]});
  return r;
}

uint32_t node(Recording& r, int kernel, int depth, std::vector<uint32_t> args, int phase = 0) {
  return r.add_node(kernel, depth, phase, args.data(), static_cast<int>(args.size()), 1);
}

// Every node exactly once, every batch one kernel, producers in strictly earlier batches.
void expect_valid(const Recording& r, const Schedule& s, const char* name) {
  std::vector<int> batch_of(r.nodes.size(), -1);
  ASSERT_EQ(s.order.size(), r.nodes.size()) << name;
  for (size_t b = 0; b < s.batches.size(); ++b) {
    const Batch& bt = s.batches[b];
    ASSERT_GT(bt.count, 0u) << name;
    for (uint32_t i = bt.begin; i < bt.begin + bt.count; ++i) {
      uint32_t id = s.order[i];
      ASSERT_LT(id, r.nodes.size()) << name;
      ASSERT_EQ(batch_of[id], -1) << name << ": node " << id << " scheduled twice";
      batch_of[id] = static_cast<int>(b);
      EXPECT_EQ(r.nodes[id].kernel, bt.kernel) << name;
    }
  }
  for (size_t id = 0; id < r.nodes.size(); ++id) {
    ASSERT_GE(batch_of[id], 0) << name << ": node " << id << " never scheduled";
    for (int a = 0; a < r.nodes[id].nargs; ++a) {
      int32_t p = r.producer(r.nodes[id], a);
      if (p >= 0) { EXPECT_LT(batch_of[p], batch_of[id]) << name << ": node " << id << " before its operand " << p; }
    }
  }
}

// The batches as sets of node ids, in order.
std::vector<std::set<uint32_t>> batches(const Schedule& s) {
  std::vector<std::set<uint32_t>> out;
  for (const Batch& b : s.batches) out.emplace_back(s.order.begin() + b.begin, s.order.begin() + b.begin + b.count);
  return out;
}

Schedule run(Scheduler which, const Recording& r, int phases = 1) {
  Schedule s;
  schedule(which, r, kernel_table(), phases, &s);
  expect_valid(r, s, scheduler_name(which));
  return s;
}

TEST(AcrobatSchedulers, TwoEqualChainsBatchLevelByLevel) {
  // Two instances, each matmul -> tanh -> matmul, recorded one after the other.
  Recording r = fresh();
  for (uint32_t input : {1u, 2u}) {
    uint32_t a = node(r, 0, 0, {0, input});
    uint32_t b = node(r, 1, 1, {a});
    node(r, 0, 2, {0, b});
  }
  EXPECT_EQ(run(Scheduler::kNone, r).batches.size(), 6u);
  using Sets = std::vector<std::set<uint32_t>>;
  const Sets levels = {{0, 3}, {1, 4}, {2, 5}};
  EXPECT_EQ(batches(run(Scheduler::kAcrobat, r)), levels);
  EXPECT_EQ(batches(run(Scheduler::kDynetDepth, r)), levels);
  EXPECT_EQ(batches(run(Scheduler::kDynetAgenda, r)), levels);
  EXPECT_FALSE(run(Scheduler::kAcrobat, r).gather_copy);
  EXPECT_TRUE(run(Scheduler::kDynetAgenda, r).gather_copy);
  EXPECT_TRUE(run(Scheduler::kDynetDepth, r).gather_copy);
  // none keeps the recording order.
  Schedule none = run(Scheduler::kNone, r);
  for (uint32_t i = 0; i < 6; ++i) EXPECT_EQ(none.order[none.batches[i].begin], i);
}

TEST(AcrobatSchedulers, AgendaAndDepthDifferWhereTheGreedyChoiceLoses) {
  // Instance A: t1 = tanh(x), t2 = tanh(t1). Instance B: s1 = add(y, y), s2 = tanh(s1).
  // Dataflow depths put t2 and s2 together (3 batches); the agenda breaks the tie between
  // {t1} and {s1} for the signature seen first (tanh), runs t2 alone, then s1, then s2 (4).
  Recording r = fresh();
  uint32_t t1 = node(r, 1, 0, {1});
  node(r, 1, 1, {t1});
  uint32_t s1 = node(r, 2, 0, {2, 2});
  node(r, 1, 1, {s1});
  using Sets = std::vector<std::set<uint32_t>>;
  EXPECT_EQ(batches(run(Scheduler::kDynetDepth, r)), (Sets{{0}, {2}, {1, 3}}));
  EXPECT_EQ(batches(run(Scheduler::kDynetAgenda, r)), (Sets{{0}, {1}, {2}, {3}}));
  EXPECT_EQ(batches(run(Scheduler::kAcrobat, r)), (Sets{{0}, {2}, {1, 3}}));
}

TEST(AcrobatSchedulers, AgendaPrefersTheSignatureWithMostReadyNodes) {
  // Three independent tanh and one add: the three tanh go first, in one batch.
  Recording r = fresh();
  node(r, 2, 0, {1, 2});
  node(r, 1, 0, {1});
  node(r, 1, 0, {2});
  node(r, 1, 0, {1});
  using Sets = std::vector<std::set<uint32_t>>;
  EXPECT_EQ(batches(run(Scheduler::kDynetAgenda, r)), (Sets{{1, 2, 3}, {0}}));
}

TEST(AcrobatSchedulers, DynetBatchesPerInstanceProductsOnlyWithTheSameFirstOperand) {
  // Two products by computed matrices (MV-RNN's B a): the same kernel and depth for acrobat
  // (one launch of per-instance GEMVs), different first operands for DyNet (two launches).
  Recording r = fresh();
  uint32_t m1 = node(r, 1, 0, {1});
  uint32_t m2 = node(r, 1, 0, {2});
  node(r, 3, 1, {m1, 1});
  node(r, 3, 1, {m2, 2});
  node(r, 3, 1, {m1, 2});  // shares its first operand with node 2
  using Sets = std::vector<std::set<uint32_t>>;
  EXPECT_EQ(batches(run(Scheduler::kAcrobat, r)), (Sets{{0, 1}, {2, 3, 4}}));
  EXPECT_EQ(batches(run(Scheduler::kDynetDepth, r)), (Sets{{0, 1}, {2, 4}, {3}}));
  EXPECT_EQ(run(Scheduler::kDynetAgenda, r).batches.size(), 3u);
}

TEST(AcrobatSchedulers, AcrobatNeverMixesPhasesAndOrdersThemFirst) {
  // Same kernel and depth, different phases: separate launches, phase 0 first, even when
  // phase 1's node was recorded first (another instance reached its phase change earlier).
  Recording r = fresh();
  node(r, 1, 3, {1}, /*phase=*/1);
  node(r, 1, 3, {2}, /*phase=*/0);
  node(r, 1, 3, {1}, /*phase=*/0);
  using Sets = std::vector<std::set<uint32_t>>;
  EXPECT_EQ(batches(run(Scheduler::kAcrobat, r, 2)), (Sets{{1, 2}, {0}}));
}

TEST(AcrobatSchedulers, AcrobatOrdersBucketsByDepthAndKernelsByFirstAppearance) {
  Recording r = fresh();
  node(r, 1, 2, {1});  // deeper first in recording order
  node(r, 2, 0, {1, 2});
  node(r, 1, 0, {2});
  node(r, 2, 0, {2, 1});
  Schedule s = run(Scheduler::kAcrobat, r);
  using Sets = std::vector<std::set<uint32_t>>;
  EXPECT_EQ(batches(s), (Sets{{1, 3}, {2}, {0}}));
  EXPECT_EQ(s.batches[0].kernel, 2);
  // The schedule is reusable: a second recording through the same Schedule gives its own.
  Recording q = fresh();
  node(q, 1, 0, {1});
  schedule(Scheduler::kAcrobat, q, kernel_table(), 1, &s);
  EXPECT_EQ(batches(s), (Sets{{0}}));
}

// The inline-depth ablation: the recorded depths are ignored (here all 0, which would be
// wrong for acrobat's own bucketing) and recomputed from the operand edges within a phase.
TEST(AcrobatSchedulers, DataflowDepthAblationRecomputesDepthsFromOperands) {
  Recording r = fresh();
  uint32_t a = node(r, 1, 0, {1});  // instance 1: tanh -> tanh -> add
  uint32_t b = node(r, 1, 0, {a});
  node(r, 2, 0, {b, 1});
  uint32_t c = node(r, 1, 0, {2});  // instance 2: tanh -> add
  node(r, 2, 0, {c, 2});
  uint32_t e = node(r, 1, 0, {c}, 1);  // phase 1 reads phase 0: depth 0 of its phase
  node(r, 1, 0, {e}, 1);
  Schedule s;
  schedule_acrobat_dataflow_depth(r, kernel_table().size(), 2, &s);
  expect_valid(r, s, "acrobat, dataflow depth");
  using Sets = std::vector<std::set<uint32_t>>;
  EXPECT_EQ(batches(s), (Sets{{0, 3}, {1}, {4}, {2}, {5}, {6}}));
  // Nodes of an earlier round count as available operands: depth 0 again.
  r.executed_nodes = r.nodes.size();
  node(r, 1, 0, {b});
  node(r, 1, 0, {2});
  schedule_acrobat_dataflow_depth(r, kernel_table().size(), 2, &s);
  EXPECT_EQ(batches(s), (Sets{{7, 8}}));
}

TEST(AcrobatSchedulers, EmptyRecordingHasNoBatches) {
  Recording r = fresh();
  for (Scheduler which : kAllSchedulers) EXPECT_TRUE(run(which, r).batches.empty()) << scheduler_name(which);
}

// A second round (an instance waited for a tensor value): nodes [0, executed_nodes) have
// executed, so every scheduler batches only the later nodes and treats the executed nodes'
// outputs as available. The new round's depths restart low (below the executed nodes').
TEST(AcrobatSchedulers, OnlyNodesAfterTheExecutedOnesAreScheduled) {
  Recording r = fresh();
  uint32_t a = node(r, 0, 5, {0, 1});  // round 1: W x1, tanh, at depths 5 and 6
  uint32_t b = node(r, 1, 6, {a});
  r.executed_nodes = r.nodes.size();
  // Round 2: two instances, each tanh of a round-1 value, then W times it.
  uint32_t c = node(r, 1, 0, {b});
  uint32_t d = node(r, 1, 0, {a});
  node(r, 0, 1, {0, c});
  node(r, 0, 1, {0, d});
  for (Scheduler which : kAllSchedulers) {
    Schedule s;
    schedule(which, r, kernel_table(), 1, &s);
    const char* name = scheduler_name(which);
    ASSERT_EQ(s.order.size(), 4u) << name;
    std::vector<int> batch_of(r.nodes.size(), -1);
    for (size_t k = 0; k < s.batches.size(); ++k)
      for (uint32_t i = s.batches[k].begin; i < s.batches[k].begin + s.batches[k].count; ++i) {
        uint32_t id = s.order[i];
        ASSERT_GE(id, r.executed_nodes) << name << ": executed node " << id << " scheduled again";
        ASSERT_LT(id, r.nodes.size()) << name;
        ASSERT_EQ(batch_of[id], -1) << name;
        batch_of[id] = static_cast<int>(k);
        EXPECT_EQ(r.nodes[id].kernel, s.batches[k].kernel) << name;
      }
    for (size_t id = r.executed_nodes; id < r.nodes.size(); ++id) {
      ASSERT_GE(batch_of[id], 0) << name << ": node " << id << " never scheduled";
      for (int k = 0; k < r.nodes[id].nargs; ++k) {
        int32_t p = r.producer(r.nodes[id], k);
        if (p >= static_cast<int32_t>(r.executed_nodes)) { EXPECT_LT(batch_of[p], batch_of[id]) << name; }
      }
    }
    // The two tanh and the two products batch (none: one per node).
    EXPECT_EQ(s.batches.size(), which == Scheduler::kNone ? 4u : 2u) << name;
  }
  // clear() forgets the executed prefix with the nodes.
  r.clear();
  EXPECT_EQ(r.executed_nodes, 0u);
}

}  // namespace
}  // namespace perfmem::acrobat
