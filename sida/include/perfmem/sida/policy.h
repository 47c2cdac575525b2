// Residency policies for the fast tier: pure functions of (what is needed now or later, what is
// resident, the slots of the budget) -> which expert to load into which slot, evicting its
// occupant. No I/O and no clocks, so they are unit-tested on plain vectors.
//
//   std::vector<perfmem::sida::SlotState> slots(3);          // budget = 3 slots, all free
//   auto d = perfmem::sida::choose_slot(perfmem::sida::Policy::kLru, slots, /*upcoming=*/{});
//   // d: the free slot 0. When full: the least recently used unpinned slot.
//   auto p = perfmem::sida::plan_prefetch(slots, upcoming, 256);   // next load ahead, if any
//
// Policies:
//  * all-resident: every expert loaded up front; needs a slot per expert, never evicts.
//  * lru / fifo: load on demand; evict the least recently used / the earliest loaded.
//  * prefetch: knows the upcoming access sequence (a route table). It loads in the order
//    experts will be needed and evicts the expert whose next use is furthest away (Belady),
//    never one needed before the expert it would make room for. An expert the plan does not
//    list but that was reused at a regular interval (a decoder layer's expert, step after
//    step) is expected again one interval after its last use, until that time has passed
//    twice over; other unlisted experts are never needed again.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "perfmem/core/status.h"

namespace perfmem::sida {

enum class Policy { kAllResident, kLru, kFifo, kPrefetch };

Result<Policy> parse_policy(const std::string& name);
std::string policy_name(Policy policy);
std::vector<std::string> policy_names();

struct SlotState {
  int32_t expert = -1;     // -1 when free
  bool loading = false;    // a read into this slot is in flight
  int32_t pins = 0;        // engine users; a pinned slot is never evicted
  uint64_t last_used = 0;  // logical time of the last release
  // Logical time of the release before that, since the expert was loaded (0: used at most
  // once): its last reuse interval, the prefetch policy's guess of when an expert the plan does
  // not list is needed again.
  uint64_t previous_used = 0;
  uint64_t loaded_at = 0;  // logical time the load was issued
};

// A slot may be reused when free, or when its load finished and nobody holds it.
bool slot_evictable(const SlotState& slot);

// Slot to load a demanded expert into (its occupant, if any, is evicted); nullopt when every
// slot is pinned or loading (wait and ask again). Free slots come first (lowest index).
// `upcoming` is the future access sequence after the current access (prefetch only).
std::optional<int32_t> choose_slot(Policy policy, std::span<const SlotState> slots, std::span<const int32_t> upcoming);

struct PrefetchLoad {
  int32_t expert = -1;
  int32_t slot = -1;
  int32_t position = -1;  // index in `upcoming` of the access it serves
};

// The prefetch policy's next load: the first access among the next `horizon` of `upcoming`
// whose expert is neither resident nor loading, into a free slot or in place of the evictable
// expert used furthest in the future, provided that expert is not needed before it. nullopt
// when no such load helps.
std::optional<PrefetchLoad> plan_prefetch(std::span<const SlotState> slots, std::span<const int32_t> upcoming,
                                          size_t horizon);

// How many of the expected accesses `upcoming` (from the current position on) the engine's
// acquisition of `expert` consumes: the prefetcher's view of the future follows what the engine
// does. Plans list each window's accesses layer by layer (expert ids are moe_layer *
// experts_per_layer + e), so
//  * when `expert` is among the next `search` expected accesses, through it: the expected
//    accesses before it were mispredictions and will not happen;
//  * otherwise, when it belongs to a later layer than every layer left in the current window's
//    plan (which ends where the layer drops back), that whole rest: the engine has gone past the
//    layers the plan covers (a Switch model's decoder, after a plan of the encoder);
//  * otherwise none.
// Without the second rule, a plan's mispredictions in its last layers stayed "next" for ever
// once generation went on to the decoder: the prefetcher kept them resident and evicted the
// decoder's experts after every use. Mispredictions inside the planned layers are kept until a
// later expected access is matched (dropping them as soon as the engine left their layer was
// tried: request by request on switch-base-128 shapes it read 79.7 GiB against 73.4, and was
// slower, as their experts, often the popular ones, were then evicted first).
size_t consumed_accesses(std::span<const int32_t> upcoming, int32_t expert, int64_t experts_per_layer,
                         size_t search = 64);

}  // namespace perfmem::sida
