#include "perfmem/sida/expert_store.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "perfmem/core/stats.h"

namespace perfmem::sida {
namespace {

constexpr uint64_t kPage = 4096;

class DiskTier final : public SlowTier {
 public:
  DiskTier(const ModelWeights& model, bool direct_io) : model_(model), direct_io_(direct_io) {
    uint64_t largest = 0;
    for (int64_t m = 0; m < model.config().num_moe_layers(); ++m)
      for (int64_t e = 0; e < model.config().num_experts; ++e) {
        const ExpertTensors& t = model.expert(m, e);
        largest = std::max({largest, t.wi->nbytes(), t.wo->nbytes(), t.up ? t.up->nbytes() : 0});
      }
    staging_ = AlignedBuffer(largest + kSlotSlack, kPage);
  }

  Result<uint64_t> read_expert(int32_t id, float* wi_dst, float* wo_dst) override {
    const int64_t E = model_.config().num_experts;
    const ExpertTensors& t = model_.expert(id / E, id % E);
    PERFMEM_ASSIGN_OR_RETURN(uint64_t a, read_tensor(*t.wi_file, *t.wi, wi_dst));
    uint64_t up = 0;
    if (t.up) {  // gated experts: the up matrix stacked under the gate (its read may overrun into it)
      PERFMEM_ASSIGN_OR_RETURN(up, read_tensor(*t.up_file, *t.up, wi_dst + t.wi->nbytes() / dtype_size(t.wi->dtype)));
    }
    PERFMEM_ASSIGN_OR_RETURN(uint64_t b, read_tensor(*t.wo_file, *t.wo, wo_dst));
    return a + up + b;
  }

  Result<uint64_t> read_expert_bf16(int32_t id, uint16_t* wi_dst, uint16_t* wo_dst) override {
    const int64_t E = model_.config().num_experts;
    const ExpertTensors& t = model_.expert(id / E, id % E);
    PERFMEM_ASSIGN_OR_RETURN(uint64_t a, read_raw(*t.wi_file, *t.wi, wi_dst));
    uint64_t up = 0;
    if (t.up) { PERFMEM_ASSIGN_OR_RETURN(up, read_raw(*t.up_file, *t.up, wi_dst + t.wi->nbytes() / 2)); }
    PERFMEM_ASSIGN_OR_RETURN(uint64_t b, read_raw(*t.wo_file, *t.wo, wo_dst));
    return a + up + b;
  }

 private:
  // Reads one expert matrix into dst (a slot: 4096-aligned, kSlotSlack bytes beyond the f32
  // matrix) through core's safetensors reader, widening bf16/f16 to f32; returns the bytes read
  // from the file. With O_DIRECT the read covers the aligned span, so the tensor starts `lead`
  // bytes in and is moved to the slot's start.
  // A destination that is not page-aligned (the up matrix under the gate) goes through the
  // staging buffer, which O_DIRECT can target.
  Result<uint64_t> read_tensor(const SafetensorsFile& file, const TensorInfo& info, float* dst) {
    const bool f32 = info.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(dst) % kPage == 0;
    return read_into(file, info, dst, f32);
  }
  // The stored bytes as they are (a bf16 fast tier holding bf16 tensors).
  Result<uint64_t> read_raw(const SafetensorsFile& file, const TensorInfo& info, void* dst) {
    const bool aligned = reinterpret_cast<uintptr_t>(dst) % kPage == 0;
    return read_into(file, info, dst, aligned, /*convert=*/false);
  }
  // Reads straight into dst when `direct` (page-aligned, same dtype), else through the staging
  // buffer, then copies or widens to fp32 (`convert`).
  Result<uint64_t> read_into(const SafetensorsFile& file, const TensorInfo& info, void* dst_bytes, bool direct,
                             bool convert = true) {
    const bool f32 = direct;
    float* dst = static_cast<float*>(dst_bytes);
    uint8_t* target = f32 ? static_cast<uint8_t*>(dst_bytes) : staging_.data_as<uint8_t>();
    uint64_t lead = 0, bytes_read = info.nbytes();
    if (direct_io_) {
      const auto span = SafetensorsFile::direct_read_span(info.file_offset, info.nbytes());
      lead = span.lead;
      if (file.direct_io_available()) bytes_read = std::min(span.aligned_size, file.file_size() - span.aligned_offset);
    }
    PERFMEM_RETURN_IF_ERROR(file.read(info, target, info.nbytes(), 0, direct_io_));
    if (f32) {
      if (lead) std::memmove(target, target + lead, info.nbytes());
    } else if (info.dtype == DType::kF32 || !convert) {
      std::memcpy(dst_bytes, target + lead, info.nbytes());
    } else {
      convert_to_f32(info.dtype, target + lead, dst, info.nbytes() / dtype_size(info.dtype));
    }
    return bytes_read;
  }

  const ModelWeights& model_;
  bool direct_io_;
  AlignedBuffer staging_;
};

// A slot holds the expert's input matrix (or the stacked gate and up matrices), then its output
// matrix, each region page-aligned with kSlotSlack spare bytes.
uint64_t region_bytes(uint64_t matrix_bytes) {
  return (matrix_bytes + SlowTier::kSlotSlack + kPage - 1) / kPage * kPage;
}
uint64_t in_region_bytes(const SwitchConfig& c, uint64_t elem) {
  return region_bytes(uint64_t(c.expert_in_rows() * c.d_model) * elem);
}
uint64_t out_region_bytes(const SwitchConfig& c, uint64_t elem) {
  return region_bytes(uint64_t(c.d_model * c.d_ff) * elem);
}

}  // namespace

std::unique_ptr<SlowTier> make_disk_tier(const ModelWeights& model, bool direct_io) {
  return std::make_unique<DiskTier>(model, direct_io);
}

Result<std::unique_ptr<ExpertStore>> ExpertStore::create(const ModelWeights& model, StoreOptions options,
                                                         std::unique_ptr<SlowTier> slow) {
  const SwitchConfig& c = model.config();
  const uint64_t total = uint64_t(c.num_moe_layers() * c.num_experts);
  const uint64_t per_expert = options.bf16_fast_tier ? c.expert_f32_bytes() / 2 : c.expert_f32_bytes();
  if (options.bf16_fast_tier) {
    // Every expert tensor must share one 16-bit type, the first expert's (BF16 or F16).
    const DType half = model.expert(0, 0).wi->dtype;
    for (int64_t m = 0; m < c.num_moe_layers(); ++m)
      for (int64_t e = 0; e < c.num_experts; ++e) {
        const ExpertTensors& t = model.expert(m, e);
        for (const TensorInfo* info : {t.wi, t.up, t.wo})
          if (info && (info->dtype != half || (half != DType::kBF16 && half != DType::kF16)))
            return input_error(t.wi_file->path(), "tensor \"" + info->name + "\"",
                               half == DType::kBF16 || half == DType::kF16
                                   ? "dtype " + std::string(dtype_safetensors_name(half)) +
                                         " like every other expert tensor (a 16-bit fast tier keeps experts as stored)"
                                   : "dtype BF16 or F16 (a 16-bit fast tier keeps experts as stored)",
                               std::string(dtype_safetensors_name(info->dtype)));
      }
  }
  uint64_t slots = options.budget_bytes == 0 ? total : options.budget_bytes / per_expert;
  slots = std::min(slots, total);
  if (slots < 1)
    return input_error("--budget", "expert budget", "at least one expert (" + format_bytes(double(per_expert)) + ")",
                       format_bytes(double(options.budget_bytes)));
  if (options.policy == Policy::kAllResident && slots < total)
    return input_error(
        "--budget", "all-resident policy",
        "room for all " + std::to_string(total) + " experts (" + format_bytes(double(per_expert * total)) + ")",
        "room for " + std::to_string(slots));
  if (!slow) slow = make_disk_tier(model, options.direct_io);
  return std::unique_ptr<ExpertStore>(new ExpertStore(model, options, std::move(slow), size_t(slots)));
}

ExpertStore::ExpertStore(const ModelWeights& model, StoreOptions options, std::unique_ptr<SlowTier> slow, size_t slots)
    : model_(model), options_(options), slow_(std::move(slow)) {
  const SwitchConfig& c = model.config();
  elem_bytes_ = options.bf16_fast_tier ? 2 : 4;
  half_is_f16_ = options.bf16_fast_tier && model.expert(0, 0).wi->dtype == DType::kF16;
  slot_bytes_ = c.expert_f32_bytes() / 4 * elem_bytes_;
  for (size_t s = 0; s < slots; ++s)
    memory_.emplace_back(in_region_bytes(c, elem_bytes_) + out_region_bytes(c, elem_bytes_), kPage);
  slots_.resize(slots);
  slot_of_.assign(size_t(c.num_moe_layers() * c.num_experts), -1);
  io_thread_ = std::thread([this] { io_loop(); });
}

ExpertStore::~ExpertStore() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    ++version_;
  }
  changed_.notify_all();
  io_thread_.join();
}

std::span<const int32_t> ExpertStore::upcoming_locked() const {
  return std::span<const int32_t>(upcoming_).subspan(cursor_);
}

void ExpertStore::io_loop() {
  const uint64_t region = in_region_bytes(model_.config(), elem_bytes_);
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    int32_t expert = -1, slot = -1;
    while (true) {
      if (stopping_) return;
      if (!demand_.empty()) {
        std::tie(expert, slot) = demand_.front();
        demand_.pop_front();
        break;
      }
      if (options_.policy == Policy::kPrefetch) {
        auto p = plan_prefetch(slots_, upcoming_locked(), options_.prefetch_horizon);
        if (p && !failed_.count(p->expert)) {
          expert = p->expert;
          slot = p->slot;
          SlotState& s = slots_[size_t(slot)];
          if (s.expert >= 0) {
            slot_of_[size_t(s.expert)] = -1;
            ++stats_.evictions;
          }
          s.expert = expert;
          s.loading = true;
          s.loaded_at = ++clock_;
          slot_of_[size_t(expert)] = slot;
          ++stats_.prefetch_loads;
          break;
        }
      }
      const uint64_t seen = version_;
      changed_.wait(lock, [&] { return stopping_ || version_ != seen; });
    }
    lock.unlock();
    auto* base = memory_[size_t(slot)].data_as<uint8_t>();
    Stopwatch watch;
    Result<uint64_t> read = elem_bytes_ == 2 ? slow_->read_expert_bf16(expert, reinterpret_cast<uint16_t*>(base),
                                                                       reinterpret_cast<uint16_t*>(base + region))
                                             : slow_->read_expert(expert, reinterpret_cast<float*>(base),
                                                                  reinterpret_cast<float*>(base + region));
    const double seconds = watch.elapsed_s();
    lock.lock();
    stats_.read_s += seconds;
    SlotState& s = slots_[size_t(slot)];
    s.loading = false;
    if (read.ok()) {
      stats_.bytes_read += *read;
      ++stats_.loads;
    } else {
      ++stats_.read_errors;
      s = SlotState{};
      slot_of_[size_t(expert)] = -1;
      failed_[expert] = read.status();
    }
    ++version_;
    changed_.notify_all();
  }
}

Result<ExpertView> ExpertStore::acquire(int32_t id) {
  PERFMEM_CHECK(id >= 0 && size_t(id) < slot_of_.size(), "expert id out of range");
  Stopwatch watch;
  std::unique_lock<std::mutex> lock(mutex_);
  ++stats_.accesses;
  // Keep the prefetcher's view of the future in step with what the engine actually does.
  if (const size_t consumed = consumed_accesses(upcoming_locked(), id, model_.config().num_experts)) {
    cursor_ += consumed;
    ++version_;
  }
  // The slot holding (or loading) `id` is pinned as soon as it is found or claimed, so that the
  // prefetcher cannot evict it between the end of its read and this thread waking up.
  bool counted = false, waited = false, pinned = false;
  auto finish_wait = [&] {
    if (waited) stats_.io_wait_s += watch.elapsed_s();
  };
  while (true) {
    const int32_t slot = slot_of_[size_t(id)];
    if (slot >= 0) {
      SlotState& s = slots_[size_t(slot)];
      if (!pinned) {
        ++s.pins;
        pinned = true;
      }
      if (!s.loading) {
        if (!counted) ++stats_.hits;
        finish_wait();
        const uint64_t region = in_region_bytes(model_.config(), elem_bytes_);
        auto* base = memory_[size_t(slot)].data_as<uint8_t>();
        if (elem_bytes_ == 2)
          return ExpertView{nullptr,
                            nullptr,
                            id,
                            slot,
                            reinterpret_cast<const uint16_t*>(base),
                            reinterpret_cast<const uint16_t*>(base + region),
                            half_is_f16_};
        return ExpertView{reinterpret_cast<const float*>(base), reinterpret_cast<const float*>(base + region), id,
                          slot};
      }
      if (!counted) ++stats_.inflight_hits;
      counted = waited = true;
      changed_.wait(lock);
      continue;
    }
    pinned = false;  // a failed read resets its slot, pins included
    if (auto f = failed_.find(id); f != failed_.end()) {
      Status error = f->second;
      failed_.erase(f);
      if (!counted) ++stats_.misses;
      finish_wait();
      return error;
    }
    if (!counted) ++stats_.misses;
    counted = waited = true;
    auto choice = choose_slot(options_.policy, slots_, upcoming_locked());
    if (choice) {
      SlotState& s = slots_[size_t(*choice)];
      if (s.expert >= 0) {
        slot_of_[size_t(s.expert)] = -1;
        ++stats_.evictions;
      }
      s.expert = id;
      s.loading = true;
      s.pins = 1;
      pinned = true;
      s.loaded_at = ++clock_;
      slot_of_[size_t(id)] = *choice;
      demand_.emplace_back(id, *choice);
      ++version_;
      changed_.notify_all();
    }
    changed_.wait(lock);
  }
}

void ExpertStore::release(const ExpertView& view) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    SlotState& s = slots_[size_t(view.slot)];
    PERFMEM_CHECK(s.pins > 0 && s.expert == view.id, "release of an expert not acquired");
    --s.pins;
    s.previous_used = s.last_used > s.loaded_at ? s.last_used : 0;  // reuses since this load only
    s.last_used = ++clock_;
    ++version_;
  }
  changed_.notify_all();
}

Status ExpertStore::load_all() {
  const size_t total = slot_of_.size();
  for (size_t id = 0; id < total && id < slots_.size(); ++id) {
    PERFMEM_ASSIGN_OR_RETURN(ExpertView view, acquire(int32_t(id)));
    release(view);
  }
  return Status::Ok();
}

void ExpertStore::set_upcoming(const std::vector<int32_t>& accesses) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    upcoming_ = accesses;
    cursor_ = 0;
    ++version_;
  }
  changed_.notify_all();
}

StoreStats ExpertStore::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void ExpertStore::reset_stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_ = StoreStats{};
}

uint64_t all_expert_slot_bytes(const SwitchConfig& config, bool bf16_slots) {
  const uint64_t per_expert = bf16_slots ? config.expert_f32_bytes() / 2 : config.expert_f32_bytes();
  return uint64_t(config.num_moe_layers() * config.num_experts) * per_expert;
}

Result<uint64_t> parse_expert_budget(const std::string& text, uint64_t all_expert_bytes, const std::string& option) {
  if (!text.empty() && text.back() == '%') {
    char* end = nullptr;
    const double share = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() - 1 || !(share > 0 && share <= 100))
      return input_error(option, "share", "a percentage in (0, 100]", text);
    return std::max<uint64_t>(1, uint64_t(double(all_expert_bytes) * share / 100.0 + 0.5));
  }
  size_t bytes = 0;
  if (!parse_bytes(text, &bytes) || bytes == 0)
    return input_error(option, "size",
                       "a positive size like 512MiB, or a percentage like 25% (100% gives every expert a slot)", text);
  return uint64_t(bytes);
}

}  // namespace perfmem::sida
