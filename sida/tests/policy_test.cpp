// Residency policies as pure functions, without disk. A small simulator replays access traces
// through choose_slot / plan_prefetch and an independent checker verifies what they promise:
// never evict a pinned or loading slot, Belady (prefetch) never misses more than LRU or FIFO on
// the same trace, and prefetching never evicts an expert needed before the one it loads.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "perfmem/sida/policy.h"

namespace perfmem::sida {
namespace {

std::vector<SlotState> slots_holding(std::vector<int32_t> experts) {
  std::vector<SlotState> s(experts.size());
  for (size_t i = 0; i < experts.size(); ++i) {
    s[i].expert = experts[i];
    s[i].last_used = 10 + i;
    s[i].loaded_at = 10 + i;
  }
  return s;
}

TEST(Policy, FreeSlotFirst) {
  auto s = slots_holding({4, -1, 6});
  for (Policy p : {Policy::kLru, Policy::kFifo, Policy::kPrefetch}) EXPECT_EQ(choose_slot(p, s, {}), 1);
}

TEST(Policy, LruEvictsLeastRecentlyUsedAndFifoEarliestLoaded) {
  auto s = slots_holding({4, 5, 6});
  s[0].last_used = 50;  // recently used, but loaded first
  EXPECT_EQ(choose_slot(Policy::kLru, s, {}), 1);
  EXPECT_EQ(choose_slot(Policy::kFifo, s, {}), 0);
}

TEST(Policy, PinnedAndLoadingSlotsAreNeverChosen) {
  auto s = slots_holding({4, 5, 6});
  s[0].pins = 1;
  s[1].loading = true;
  for (Policy p : {Policy::kLru, Policy::kFifo, Policy::kPrefetch}) EXPECT_EQ(choose_slot(p, s, {}), 2);
  s[2].pins = 2;
  for (Policy p : {Policy::kLru, Policy::kFifo, Policy::kPrefetch}) EXPECT_EQ(choose_slot(p, s, {}), std::nullopt);
}

TEST(Policy, PrefetchEvictsTheExpertNeededFurthestAway) {
  auto s = slots_holding({4, 5, 6});
  std::vector<int32_t> upcoming = {6, 4, 9, 6, 5};
  EXPECT_EQ(choose_slot(Policy::kPrefetch, s, upcoming), 1);  // 5 is needed last
  upcoming = {6, 5};
  EXPECT_EQ(choose_slot(Policy::kPrefetch, s, upcoming), 0);  // 4 is never needed again
}

// A decoder layer's expert is in no plan (the predictor plans the encoder) but comes back
// every decoding step: reused at a regular interval, it is expected one interval after its last
// use, so a prefetch for a later planned access evicts something else; once two intervals have
// passed without it (the request ended), it is never needed again.
TEST(Policy, PrefetchKeepsAnUnplannedExpertReusedAtARegularInterval) {
  auto s = slots_holding({4, 7});
  s[0].loaded_at = 10;
  s[0].previous_used = 20;  // used at 20 and 26: interval 6
  s[0].last_used = 26;
  s[1].loaded_at = 28;  // the clock's latest event: expert 4 is due in 6 - 2 = 4
  s[1].last_used = 0;
  const std::vector<int32_t> upcoming = {9, 8, 8, 8, 8, 7};  // 7 is planned at position 5
  EXPECT_EQ(choose_slot(Policy::kPrefetch, s, upcoming), 1);
  auto p = plan_prefetch(s, upcoming, 16);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->expert, 9);
  EXPECT_EQ(p->slot, 1);
  // Used once only since its load: no interval to go by, never needed again.
  auto once = s;
  once[0].previous_used = 0;
  EXPECT_EQ(choose_slot(Policy::kPrefetch, once, upcoming), 0);
  // Reloaded with another expert (at 27) before that one was used: the times are the old
  // expert's, so the new one is never needed again.
  auto reloaded = s;
  reloaded[0].loaded_at = 27;
  EXPECT_EQ(choose_slot(Policy::kPrefetch, reloaded, upcoming), 0);
  // Thirteen events after its last use (more than two intervals): not expected any more.
  auto stale = s;
  stale[1].loaded_at = 39;
  EXPECT_EQ(choose_slot(Policy::kPrefetch, stale, upcoming), 0);
}

TEST(Policy, PlanPrefetchLoadsInOrderOfNeed) {
  auto s = slots_holding({4, -1});
  std::vector<int32_t> upcoming = {4, 7, 8};
  auto p = plan_prefetch(s, upcoming, 16);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->expert, 7);
  EXPECT_EQ(p->slot, 1);
  EXPECT_EQ(p->position, 1);
}

TEST(Policy, PlanPrefetchNeverEvictsWhatIsNeededFirst) {
  auto s = slots_holding({4, 7});
  // 8 is needed after both residents: nothing may be evicted for it.
  EXPECT_EQ(plan_prefetch(s, std::vector<int32_t>{4, 7, 8}, 16), std::nullopt);
  // 8 is needed before 7's next use: 7 makes room.
  auto p = plan_prefetch(s, std::vector<int32_t>{4, 8, 7}, 16);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->expert, 8);
  EXPECT_EQ(p->slot, 1);
  // Beyond the horizon nothing is planned.
  EXPECT_EQ(plan_prefetch(slots_holding({4, -1}), std::vector<int32_t>{4, 4, 9}, 2), std::nullopt);
}

// Expert ids are layer * 8 + e below (8 experts per layer).
TEST(PolicyCursor, AnExpectedAccessIsConsumedWithTheMispredictionsBeforeIt) {
  const std::vector<int32_t> plan = {1, 3, 6, 9, 12};  // layer 0: 1 3 6; layer 1: 9 12
  EXPECT_EQ(consumed_accesses(plan, 1, 8), 1u);
  EXPECT_EQ(consumed_accesses(plan, 6, 8), 3u);  // 1 and 3 were not used
  EXPECT_EQ(consumed_accesses(plan, 12, 8), 5u);
  // Beyond the search window a match is not taken for one.
  EXPECT_EQ(consumed_accesses(plan, 12, 8, 4), 0u);
}

TEST(PolicyCursor, GoingPastThePlannedLayersDropsTheRestOfThePlan) {
  // The engine reaches layer 2 (a layer the plan does not cover) with 6 (layer 0) and 9, 12
  // (layer 1) still expected: they will not be used now.
  const std::vector<int32_t> plan = {6, 9, 12};
  EXPECT_EQ(consumed_accesses(plan, 17, 8), 3u);
  // A misprediction in a planned layer (10 of layer 1) consumes nothing: the plan's entries are
  // kept until a later one is matched.
  EXPECT_EQ(consumed_accesses(plan, 10, 8), 0u);
  // Nor does an earlier layer than the next expected access (a new decoding step, or the next
  // window running before its plan arrived).
  EXPECT_EQ(consumed_accesses(std::vector<int32_t>{9, 12}, 3, 8), 0u);
  EXPECT_EQ(consumed_accesses(std::vector<int32_t>{}, 3, 8), 0u);
}

TEST(PolicyCursor, TheNextWindowsPlanIsNeverDropped) {
  // This window's layer 1 leftovers (9, 12), then the next window's plan from layer 0 (2, 11).
  const std::vector<int32_t> plan = {9, 12, 2, 11};
  EXPECT_EQ(consumed_accesses(plan, 20, 8), 2u);  // stops where the layer drops back
  // A model without experts per layer known consumes only exact matches.
  EXPECT_EQ(consumed_accesses(plan, 20, 0), 0u);
  EXPECT_EQ(consumed_accesses(plan, 2, 0), 3u);
}

// Replays a trace with demand loads only (plus prefetches when asked); returns demand misses.
// Checks at every step that the chosen slot was evictable and that the resident set is unique.
int64_t simulate(Policy policy, const std::vector<int32_t>& trace, size_t slots, bool prefetch) {
  std::vector<SlotState> s(slots);
  uint64_t clock = 0;
  int64_t misses = 0;
  for (size_t i = 0; i < trace.size(); ++i) {
    std::span<const int32_t> rest(trace.data() + i + 1, trace.size() - i - 1);
    if (prefetch) {
      // Let the prefetcher run while the previous access computes (it may issue several loads).
      std::span<const int32_t> ahead(trace.data() + i, trace.size() - i);
      for (int k = 0; k < 2; ++k) {
        auto p = plan_prefetch(s, ahead, 64);
        if (!p) break;
        EXPECT_TRUE(slot_evictable(s[size_t(p->slot)]));
        if (s[size_t(p->slot)].expert >= 0) {
          // Independent check: the victim is not needed before the access the load serves.
          for (int32_t j = 0; j < p->position; ++j) EXPECT_NE(ahead[size_t(j)], s[size_t(p->slot)].expert);
        }
        s[size_t(p->slot)] = SlotState{p->expert, false, 0, clock, ++clock};
      }
    }
    bool hit = false;
    for (SlotState& slot : s)
      if (slot.expert == trace[i]) {
        slot.last_used = ++clock;
        hit = true;
      }
    if (hit) continue;
    ++misses;
    auto c = choose_slot(policy, s, rest);
    EXPECT_TRUE(c.has_value());
    if (!c) return -1;
    EXPECT_TRUE(slot_evictable(s[size_t(*c)]));
    s[size_t(*c)] = SlotState{trace[i], false, 0, ++clock, clock};
    for (size_t a = 0; a < s.size(); ++a)
      for (size_t b = a + 1; b < s.size(); ++b)
        if (s[a].expert >= 0) { EXPECT_NE(s[a].expert, s[b].expert); }
  }
  return misses;
}

TEST(PolicyVerifier, BeladyNeverMissesMoreThanLruOrFifo) {
  std::mt19937 gen(11);
  for (int round = 0; round < 200; ++round) {
    const int experts = 3 + int(gen() % 12);
    const size_t slots = 1 + gen() % 6;
    std::vector<int32_t> trace;
    for (int i = 0; i < 60; ++i) trace.push_back(int32_t(gen() % uint32_t(experts)));
    const int64_t belady = simulate(Policy::kPrefetch, trace, slots, false);
    EXPECT_LE(belady, simulate(Policy::kLru, trace, slots, false)) << "round " << round;
    EXPECT_LE(belady, simulate(Policy::kFifo, trace, slots, false)) << "round " << round;
    // With prefetching on top, demand misses do not grow either.
    EXPECT_LE(simulate(Policy::kPrefetch, trace, slots, true), belady) << "round " << round;
  }
}

TEST(Policy, NamesRoundTrip) {
  for (const std::string& n : policy_names()) {
    auto p = parse_policy(n);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(policy_name(*p), n);
  }
  EXPECT_FALSE(parse_policy("random").ok());
}

}  // namespace
}  // namespace perfmem::sida
