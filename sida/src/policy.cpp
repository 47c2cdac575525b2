#include "perfmem/sida/policy.h"

#include <algorithm>
#include <limits>
#include <unordered_map>

namespace perfmem::sida {
namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

int64_t next_use(int32_t expert, std::span<const int32_t> upcoming, size_t limit) {
  for (size_t i = 0; i < upcoming.size() && i < limit; ++i)
    if (upcoming[i] == expert) return int64_t(i);
  return kNever;
}

std::optional<int32_t> free_slot(std::span<const SlotState> slots) {
  for (size_t s = 0; s < slots.size(); ++s)
    if (slots[s].expert < 0 && !slots[s].loading) return int32_t(s);
  return std::nullopt;
}

// When an expert the plan does not list is expected next: one reuse interval after its last
// use while less than two intervals have passed (the logical clock's `now`), else never. Only
// uses since the slot's load count: times from before it belong to the expert it replaced.
int64_t expected_reuse(const SlotState& slot, uint64_t now) {
  if (slot.previous_used <= slot.loaded_at || slot.last_used <= slot.previous_used || now < slot.last_used)
    return kNever;
  const uint64_t interval = slot.last_used - slot.previous_used, age = now - slot.last_used;
  if (age > 2 * interval) return kNever;
  return age >= interval ? 0 : int64_t(interval - age);
}

// Evictable slot whose expert is next used furthest away (ties: least recently used, then
// lowest slot), with that distance.
std::optional<std::pair<int32_t, int64_t>> furthest_slot(std::span<const SlotState> slots,
                                                         std::span<const int32_t> upcoming, size_t limit) {
  uint64_t now = 0;  // the latest event the slots show
  for (const SlotState& s : slots) now = std::max({now, s.last_used, s.loaded_at});
  std::optional<std::pair<int32_t, int64_t>> best;
  for (size_t s = 0; s < slots.size(); ++s) {
    if (!slot_evictable(slots[s]) || slots[s].expert < 0) continue;
    int64_t use = next_use(slots[s].expert, upcoming, limit);
    if (use == kNever) use = expected_reuse(slots[s], now);
    if (!best || use > best->second ||
        (use == best->second && slots[s].last_used < slots[size_t(best->first)].last_used))
      best = std::pair{int32_t(s), use};
  }
  return best;
}

}  // namespace

bool slot_evictable(const SlotState& slot) { return !slot.loading && slot.pins == 0; }

Result<Policy> parse_policy(const std::string& name) {
  if (name == "all-resident") return Policy::kAllResident;
  if (name == "lru") return Policy::kLru;
  if (name == "fifo") return Policy::kFifo;
  if (name == "prefetch") return Policy::kPrefetch;
  return Status(StatusCode::kInvalidInput,
                "unknown policy \"" + name + "\" (known: all-resident, lru, fifo, prefetch)");
}

std::string policy_name(Policy policy) {
  switch (policy) {
    case Policy::kAllResident: return "all-resident";
    case Policy::kLru: return "lru";
    case Policy::kFifo: return "fifo";
    case Policy::kPrefetch: return "prefetch";
  }
  return "?";
}

std::vector<std::string> policy_names() { return {"all-resident", "lru", "fifo", "prefetch"}; }

std::optional<int32_t> choose_slot(Policy policy, std::span<const SlotState> slots, std::span<const int32_t> upcoming) {
  if (auto s = free_slot(slots)) return s;
  std::optional<int32_t> best;
  switch (policy) {
    case Policy::kAllResident:  // sized to hold everything; evicting would be a logic error
    case Policy::kLru:
      for (size_t s = 0; s < slots.size(); ++s)
        if (slot_evictable(slots[s]) && (!best || slots[s].last_used < slots[size_t(*best)].last_used))
          best = int32_t(s);
      return best;
    case Policy::kFifo:
      for (size_t s = 0; s < slots.size(); ++s)
        if (slot_evictable(slots[s]) && (!best || slots[s].loaded_at < slots[size_t(*best)].loaded_at))
          best = int32_t(s);
      return best;
    case Policy::kPrefetch:
      if (auto f = furthest_slot(slots, upcoming, upcoming.size())) return f->first;
      return std::nullopt;
  }
  return std::nullopt;
}

std::optional<PrefetchLoad> plan_prefetch(std::span<const SlotState> slots, std::span<const int32_t> upcoming,
                                          size_t horizon) {
  const size_t limit = std::min(horizon, upcoming.size());
  std::unordered_map<int32_t, bool> resident;
  for (const SlotState& s : slots)
    if (s.expert >= 0) resident[s.expert] = true;
  for (size_t i = 0; i < limit; ++i) {
    const int32_t expert = upcoming[i];
    if (resident.count(expert)) continue;
    if (auto s = free_slot(slots)) return PrefetchLoad{expert, *s, int32_t(i)};
    auto victim = furthest_slot(slots, upcoming, limit);
    // Only worth it when the victim is needed strictly after this access (or never).
    if (victim && victim->second > int64_t(i)) return PrefetchLoad{expert, victim->first, int32_t(i)};
    return std::nullopt;
  }
  return std::nullopt;
}

size_t consumed_accesses(std::span<const int32_t> upcoming, int32_t expert, int64_t experts_per_layer, size_t search) {
  for (size_t j = 0; j < upcoming.size() && j < search; ++j)
    if (upcoming[j] == expert) return j + 1;
  if (experts_per_layer <= 0) return 0;
  // The rest of the current window's plan: entries up to where the layer drops back.
  size_t rest = 0;
  int64_t last_layer = -1;
  for (; rest < upcoming.size(); ++rest) {
    const int64_t planned = upcoming[rest] / experts_per_layer;
    if (planned < last_layer) break;
    last_layer = planned;
  }
  return expert / experts_per_layer > last_layer ? rest : 0;
}

}  // namespace perfmem::sida
