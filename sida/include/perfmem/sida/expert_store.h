// The two-tier expert store: a fast tier of fixed byte budget (slots allocated once, each holding
// one expert's input and output matrices in fp32) in front of a slow tier (the safetensors files on disk, read
// with pread, O_DIRECT by default so the page cache does not act as a hidden third tier).
// Reads run on the store's own I/O thread; the engine only waits for the expert it needs now.
//
//   perfmem::sida::StoreOptions opt;
//   opt.budget_bytes = 2ull << 30;                       // --budget 2GiB
//   opt.policy = perfmem::sida::Policy::kPrefetch;
//   auto store = perfmem::sida::ExpertStore::create(model, opt);
//   (*store)->set_upcoming(window_accesses);             // prefetch policy only
//   perfmem::sida::Engine engine(model, **store);        // acquire()/release() per expert
//   perfmem::sida::StoreStats s = (*store)->stats();     // hits, bytes read, I/O wait...
//
// Slow tiers are an interface (SlowTier) so that a GPU build can put device memory in front of
// host RAM without changing callers. Invariants: a slot is evicted only when no engine user
// holds it and no read targets it; every acquire either returns the expert's exact bytes (as
// converted to fp32) or the read error, which is reported, never retried silently in a loop.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "perfmem/core/tensor.h"
#include "perfmem/sida/checkpoint.h"
#include "perfmem/sida/engine.h"
#include "perfmem/sida/policy.h"

namespace perfmem::sida {

// Where experts come from when they are not in the fast tier.
class SlowTier {
 public:
  virtual ~SlowTier() = default;
  // Writes expert `id`'s wi then wo as fp32 into wi_dst / wo_dst (expert_in_rows() * d_model and
  // d_model * d_ff floats, 4096-byte aligned, with kSlotSlack spare bytes after them; a gated
  // expert's wi_dst receives the gate then the up matrix). Returns bytes read.
  virtual Result<uint64_t> read_expert(int32_t id, float* wi_dst, float* wo_dst) = 0;
  static constexpr size_t kSlotSlack = 2 * 4096;
  // The same for a bf16 fast tier: the stored bf16 bits as they are, in half the bytes. Tiers
  // that cannot hold bf16 refuse.
  virtual Result<uint64_t> read_expert_bf16(int32_t id, uint16_t* wi_dst, uint16_t* wo_dst) {
    (void)wi_dst;
    (void)wo_dst;
    return Status(StatusCode::kUnsupported, "this slow tier cannot read expert " + std::to_string(id) + " as bf16");
  }
};

// The safetensors files of a checkpoint, read with pread (O_DIRECT unless disabled).
std::unique_ptr<SlowTier> make_disk_tier(const ModelWeights& model, bool direct_io);

// A fast-tier budget as the CLIs take it: a size ("2GiB", "512MiB", bytes) or a share of every
// expert's slot bytes ("25%", in (0, 100]; the result is at least 1 byte). `all_expert_bytes`:
// the slot bytes of all experts (bf16 slots: half of fp32). Errors name `option` and say what was
// expected; a size of 0 is refused (leaving the option out gives every expert a slot).
Result<uint64_t> parse_expert_budget(const std::string& text, uint64_t all_expert_bytes, const std::string& option);

// The fast tier's bytes for every expert of `config`: fp32 slots, or half of that in bf16 slots.
uint64_t all_expert_slot_bytes(const SwitchConfig& config, bool bf16_slots);

struct StoreOptions {
  uint64_t budget_bytes = 0;  // 0 = room for every expert
  Policy policy = Policy::kLru;
  bool direct_io = true;
  size_t prefetch_horizon = 512;  // accesses the prefetcher looks ahead
  // Keep BF16 (or F16) experts in their stored type in the slots (half the bytes per slot, so
  // twice the experts per budget; the kernels widen to fp32 as they read, with the bits of an fp32
  // tier). Every expert tensor must be stored in the same one of the two types.
  bool bf16_fast_tier = false;
};

struct StoreStats {
  uint64_t accesses = 0;
  uint64_t hits = 0;           // resident and ready when asked for
  uint64_t inflight_hits = 0;  // a prefetch was already reading it (waited for the rest)
  uint64_t misses = 0;         // loaded on demand
  uint64_t loads = 0, prefetch_loads = 0, evictions = 0;
  uint64_t bytes_read = 0;
  uint64_t read_errors = 0;
  double io_wait_s = 0;  // time acquire() spent waiting for reads
  double read_s = 0;     // time the I/O thread spent reading
  double hit_rate() const { return accesses ? double(hits) / double(accesses) : 0.0; }
};

class ExpertStore final : public ExpertProvider {
 public:
  // Slot count = budget / expert_f32_bytes; an error when it is below 1, or below the number of
  // experts for all-resident.
  static Result<std::unique_ptr<ExpertStore>> create(const ModelWeights& model, StoreOptions options,
                                                     std::unique_ptr<SlowTier> slow = nullptr);
  ~ExpertStore() override;

  Result<ExpertView> acquire(int32_t id) override;
  void release(const ExpertView& view) override;
  bool holds_every_expert() const override { return slots_.size() >= slot_of_.size(); }

  // Loads every expert (all-resident) or as many as fit, in id order; blocks until done.
  Status load_all();
  // Replaces the accesses still expected with `accesses` (expert ids in the order the engine will
  // acquire them; the prefetch policy plans from them, others ignore them). Callers plan each
  // window as it starts: what an earlier plan expected but never happened is dropped, so the plan
  // never grows without bound and a stale plan cannot stall the prefetcher.
  void set_upcoming(const std::vector<int32_t>& accesses);

  size_t num_slots() const { return slots_.size(); }
  uint64_t slot_bytes() const { return slot_bytes_; }
  StoreStats stats() const;
  void reset_stats();
  Policy policy() const { return options_.policy; }

 private:
  ExpertStore(const ModelWeights& model, StoreOptions options, std::unique_ptr<SlowTier> slow, size_t slots);
  void io_loop();
  std::span<const int32_t> upcoming_locked() const;

  const ModelWeights& model_;
  StoreOptions options_;
  std::unique_ptr<SlowTier> slow_;
  uint64_t slot_bytes_ = 0;
  uint64_t elem_bytes_ = 4;            // 4: fp32 slots; 2: 16-bit slots (bf16 or f16, as stored)
  bool half_is_f16_ = false;           // 16-bit slots hold IEEE f16 (else bf16)
  std::vector<AlignedBuffer> memory_;  // one per slot: wi then wo, fp32
  std::vector<SlotState> slots_;
  std::vector<int32_t> slot_of_;                    // expert id -> slot, -1 when absent
  std::map<int32_t, Status> failed_;                // expert id -> read error, until reported
  std::deque<std::pair<int32_t, int32_t>> demand_;  // (expert, slot) reads asked for by acquire
  std::vector<int32_t> upcoming_;
  size_t cursor_ = 0;  // upcoming_[cursor_] is the next expected access
  uint64_t clock_ = 0;
  uint64_t version_ = 0;  // bumps on every state change the I/O thread cares about
  StoreStats stats_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;
  std::thread io_thread_;
};

}  // namespace perfmem::sida
