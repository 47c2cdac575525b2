// The executor: batches through the kernels, fused groups over tiles (design in executor.h).
#include "executor.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

namespace perfmem::acrobat {
namespace {

constexpr int kMaxArgs = 64;

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int64_t numel(const std::vector<int64_t>& d) {
  int64_t n = 1;
  for (int64_t x : d) n *= x;
  return n;
}

// Elements per row of a slice's operand (a vector slices elements, a matrix rows).
int64_t slice_row(const KernelSig& sig) { return sig.arg_dims[0].size() == 2 ? sig.arg_dims[0][1] : 1; }

}  // namespace

GroupPlan plan_group(const FusedGroup& g, bool fuse) {
  GroupPlan plan;
  plan.built = true;
  size_t count = g.instrs.size();
  auto movable = [&](const GroupInstr& in) {
    return fuse && !in.paired_with_next && (kernels::is_elementwise(in.sig.op) || in.sig.op == OpKind::kSlice);
  };
  std::vector<int> run_of(count, -1);
  for (size_t k = 0; k < count;) {
    const GroupInstr& in = g.instrs[k];
    if (!movable(in)) {
      plan.steps.push_back({k, k + 1, false});
      k += in.paired_with_next ? 2 : 1;
      continue;
    }
    size_t end = k;
    while (end < count && movable(g.instrs[end])) ++end;
    for (size_t j = k; j < end; ++j) run_of[j] = static_cast<int>(plan.steps.size());
    plan.steps.push_back({k, end, true});
    k = end;
  }
  // A register is local when a fused run defines it and nothing outside that run reads it.
  std::vector<int> def_run(g.num_regs, -1);
  for (size_t k = 0; k < count; ++k) def_run[g.instrs[k].out] = run_of[k];
  plan.local.assign(g.num_regs, 0);
  for (int r = 0; r < g.num_regs; ++r) plan.local[r] = def_run[r] >= 0;
  for (int r : g.output_regs) plan.local[r] = 0;
  for (size_t k = 0; k < count; ++k)
    for (int r : g.instrs[k].regs)
      if (def_run[r] >= 0 && run_of[k] != def_run[r]) plan.local[r] = 0;
  // A slice is a view: when it is read outside its run, so is the memory it points into,
  // which must then outlive the instance (not the per-instance buffer). Backwards, so that a
  // view of a view passes it on.
  for (size_t k = count; k-- > 0;) {
    const GroupInstr& in = g.instrs[k];
    if (in.sig.op == OpKind::kSlice && !plan.local[in.out]) plan.local[in.regs[0]] = 0;
  }
  plan.local_off.assign(g.num_regs, 0);
  for (const GroupInstr& in : g.instrs)
    if (plan.local[in.out] && in.sig.op != OpKind::kSlice) {
      plan.local_off[in.out] = plan.local_size;
      plan.local_size += (g.reg_size[in.out] + 15) / 16 * 16;  // 64-byte aligned rows
    }
  return plan;
}

Executor::Executor(const Program& program, const RuntimeOptions& options) : prog_(program), opt_(options) {
  for (const auto& k : program.kernels) kernel_out_size_.push_back(k.group >= 0 ? 0 : numel(k.out_dims));
  group_plans_.resize(program.groups.size());
  arena_.set_limit(options.max_minibatch_bytes);
  if (options.threads > 1) {
    pool_ = std::make_unique<ThreadPool>(static_cast<size_t>(options.threads - 1));
    scratch_.pool = pool_.get();
  }
  scratch_.parallel_min_work = options.parallel_min_work;
  if (!options.reference_kernels) kernels::warm_up_blas(pool_.get());
}

void Executor::run(Recording& rec, const Schedule& schedule, RunStats* stats) {
  stats_ = stats;
  double t0 = now_ms();
  for (const Batch& b : schedule.batches)
    run_batch(rec, b.kernel, schedule.order.data() + b.begin, static_cast<int>(b.count), schedule.gather_copy);
  stats->kernel_ms += now_ms() - t0;
  stats->kernels_launched += static_cast<int64_t>(schedule.batches.size());
}

const float* const* Executor::arg_ptrs(Recording& rec, const uint32_t* batch, int n, int i, bool shared,
                                       bool gather_copy, int64_t size) {
  size_t base = ptr_buf_.size();
  ptr_buf_.resize(base + n);
  float** p = ptr_buf_.data() + base;
  for (int b = 0; b < n; ++b) {
    const RecordedNode& nd = rec.nodes[batch[b]];
    const TensorRec& t = rec.tensors[rec.args[nd.arg_begin + i]];
    if (opt_.verify) {
      PERFMEM_CHECK(t.data != nullptr, "schedule check: operand used before it was computed");
      if (shared)
        PERFMEM_CHECK(rec.args[nd.arg_begin + i] == rec.args[rec.nodes[batch[0]].arg_begin + i],
                      "schedule check: a shared parameter differs across a batch");
    }
    p[b] = t.data;
  }
  if (gather_copy && !shared && n > 1 && size > 0) {
    bool adjacent = true;
    for (int b = 1; b < n && adjacent; ++b) adjacent = p[b] == p[0] + b * size;
    if (!adjacent) {
      float* block = arena_.alloc_floats(int64_t{n} * size);
      for (int b = 0; b < n; ++b) {
        std::memcpy(block + b * size, p[b], sizeof(float) * size);
        p[b] = block + b * size;
      }
    }
  }
  return p;
}

void Executor::run_kernel(const KernelSig& sig, int n, const float* const* const* a, float* const* out) {
  double t0 = opt_.profile ? now_ms() : 0;
  if (sig.op == OpKind::kMatMul || sig.op == OpKind::kDense) {
    const int64_t columns = sig.arg_dims[1].size() == 2 ? sig.arg_dims[1][1] : 1;
    stats_->product_flops += 2 * sig.arg_dims[0][0] * sig.arg_dims[0][1] * columns * n;
  }
  if (opt_.reference_kernels)
    kernels::run_reference(sig, n, a, out);
  else
    kernels::run_batched(sig, n, a, out, scratch_);
  if (opt_.profile) {
    std::string key = op_name(sig.op);
    if ((sig.op == OpKind::kMatMul || sig.op == OpKind::kDense) && sig.shared_param[0] < 0) key += "(per-instance)";
    stats_->kernel_ms_by_op[key] += now_ms() - t0;
  }
}

void Executor::run_batch(Recording& rec, int kernel, const uint32_t* batch, int n, bool gather_copy) {
  const KernelSig& sig = prog_.kernels[kernel];
  ptr_buf_.clear();
  out_buf_.clear();
  if (sig.group >= 0) return run_group(rec, sig.group, batch, n, gather_copy);
  int nargs = static_cast<int>(sig.arg_dims.size());
  // Pointer arrays are taken by index: ptr_buf_ may grow while they are built.
  size_t offs[kMaxArgs];
  for (int i = 0; i < nargs; ++i) {
    offs[i] = ptr_buf_.size();
    // A lookup is itself the copy of its rows: nothing to gather first.
    arg_ptrs(rec, batch, n, i, sig.shared_param[i] >= 0, gather_copy && sig.op != OpKind::kLookup,
             numel(sig.arg_dims[i]));
  }
  const float* const* a[kMaxArgs];
  for (int i = 0; i < nargs; ++i) a[i] = ptr_buf_.data() + offs[i];
  if (sig.op == OpKind::kSlice) {  // a view: the output points into the operand
    for (int b = 0; b < n; ++b)
      rec.tensors[rec.nodes[batch[b]].out].data = const_cast<float*>(a[0][b]) + sig.ints[0] * slice_row(sig);
    return;
  }
  int64_t size = kernel_out_size_[kernel];
  float* block = arena_.alloc_floats(int64_t{n} * size);
  out_buf_.resize(n);
  for (int b = 0; b < n; ++b) {
    out_buf_[b] = block + b * size;
    rec.tensors[rec.nodes[batch[b]].out].data = out_buf_[b];
  }
  run_kernel(sig, n, a, out_buf_.data());
}

// A fused group runs step by step over tiles of instances (GroupStep): same-op calls stay
// batched, products by a parameter stay one GEMM per tile, and the tile's intermediates stay
// in cache. Stored intermediates live in one scratch block reused by every tile; outputs get
// contiguous arena blocks for the whole batch. Slices are views (pointer offsets).
void Executor::run_group(Recording& rec, int group, const uint32_t* batch, int n, bool gather_copy) {
  const FusedGroup& g = prog_.groups[group];
  GroupPlan& plan = group_plans_[group];
  if (!plan.built) {
    plan = plan_group(g, !opt_.reference_kernels);
    plan.compiled.assign(plan.steps.size(), nullptr);
    for (size_t k = 0; k < plan.steps.size(); ++k)
      for (size_t i = 0; i < opt_.num_aot_fused_runs && plan.steps[k].fused; ++i) {
        const AotFusedRun& run = opt_.aot_fused_runs[i];
        if (run.group == group && size_t(run.begin) == plan.steps[k].begin && size_t(run.end) == plan.steps[k].end)
          plan.compiled[k] = run.fn;
      }
  }
  const int64_t tile_bytes = std::max<int64_t>(1, opt_.group_tile_bytes);
  group_reg_off_.assign(g.num_regs, 0);
  group_kind_.assign(g.num_regs, RegKind::kInternal);
  for (int r : g.output_regs) group_kind_[r] = RegKind::kOutput;
  // An output that is a slice views its operand, which must then outlive the tiles too: it is
  // stored like an output (backwards, so that a view of a view passes it on).
  for (size_t k = g.instrs.size(); k-- > 0;) {
    const GroupInstr& in = g.instrs[k];
    if (in.sig.op == OpKind::kSlice && group_kind_[in.out] == RegKind::kOutput)
      group_kind_[in.regs[0]] = RegKind::kOutput;
  }
  for (size_t i = 0; i < g.input_regs.size(); ++i) {
    int r = g.input_regs[i];
    group_kind_[r] = RegKind::kInput;
    group_reg_off_[r] = ptr_buf_.size();
    arg_ptrs(rec, batch, n, static_cast<int>(i), g.reg_param[r] >= 0, gather_copy, g.reg_size[r]);
  }
  // Internal registers that need tile storage: not local, not a slice (a view).
  std::vector<char>& stored = group_stored_;
  stored.assign(g.num_regs, 0);
  for (const GroupInstr& in : g.instrs)
    stored[in.out] = group_kind_[in.out] == RegKind::kInternal && !plan.local[in.out] && in.sig.op != OpKind::kSlice;
  int64_t internal_per_instance = 0;
  for (int r = 0; r < g.num_regs; ++r)
    if (stored[r]) internal_per_instance += g.reg_size[r];
  // Products keep at least group_min_tile_rows rows per call (RuntimeOptions).
  bool has_product = false;
  for (const GroupInstr& in : g.instrs) has_product |= in.sig.op == OpKind::kMatMul || in.sig.op == OpKind::kDense;
  int64_t min_tile = std::max(1, has_product ? opt_.group_min_tile_rows : std::min(32, opt_.group_min_tile_rows));
  int tile = n;
  if (internal_per_instance * 4 * n > tile_bytes)
    tile = static_cast<int>(std::clamp<int64_t>(tile_bytes / std::max<int64_t>(1, internal_per_instance * 4),
                                                std::min<int64_t>(min_tile, n), n));
  float* scratch_block = arena_.alloc_floats(internal_per_instance * tile);
  // In instruction order, so the results of a paired product are adjacent in memory.
  for (const GroupInstr& instr : g.instrs) {
    int r = instr.out;
    if (group_kind_[r] == RegKind::kInput) continue;
    group_reg_off_[r] = ptr_buf_.size();
    if (group_kind_[r] == RegKind::kInternal) {
      ptr_buf_.resize(ptr_buf_.size() + tile);
      if (stored[r]) {
        for (int b = 0; b < tile; ++b) ptr_buf_[group_reg_off_[r] + b] = scratch_block + b * g.reg_size[r];
        scratch_block += g.reg_size[r] * tile;
      }
    } else {
      float* block = arena_.alloc_floats(g.reg_size[r] * n);
      ptr_buf_.resize(ptr_buf_.size() + n);
      for (int b = 0; b < n; ++b) ptr_buf_[group_reg_off_[r] + b] = block + b * g.reg_size[r];
    }
  }
  for (int t0 = 0; t0 < n; t0 += tile) {
    int count = std::min(tile, n - t0);
    // Register r's pointers for this tile: internal registers restart at 0 every tile.
    auto regs_at = [&](int r) {
      return ptr_buf_.data() + group_reg_off_[r] + (group_kind_[r] == RegKind::kInternal ? 0 : t0);
    };
    for (size_t k = 0; k < plan.steps.size(); ++k) {
      const GroupStep& step = plan.steps[k];
      const GroupInstr& in = g.instrs[step.begin];
      if (step.fused && plan.compiled[k]) {
        run_compiled(g, plan, step, plan.compiled[k], count, regs_at);
        continue;
      }
      if (step.fused) {
        run_fused(g, plan, step, count, regs_at);
        continue;
      }
      if (in.paired_with_next) {
        // One GEMM over both instructions' rows: concatenated pointer arrays.
        const GroupInstr& next = g.instrs[step.begin + 1];
        pair_in_.clear();
        pair_out_.clear();
        for (const GroupInstr* x : {&in, &next}) {
          float* const* src = regs_at(x->regs[1]);
          float* const* dst = regs_at(x->out);
          pair_in_.insert(pair_in_.end(), src, src + count);
          pair_out_.insert(pair_out_.end(), dst, dst + count);
        }
        const float* const* a[kMaxArgs];
        for (size_t i = 0; i < in.regs.size(); ++i) a[i] = regs_at(in.regs[i]);
        // Shared operands read [0] only; the per-instance operand gets the joint array.
        a[1] = pair_in_.data();
        run_kernel(in.sig, 2 * count, a, pair_out_.data());
        continue;
      }
      if (in.sig.op == OpKind::kSlice) {
        float* const* src = regs_at(in.regs[0]);
        float** dst = regs_at(in.out);
        for (int b = 0; b < count; ++b)
          dst[b] = src[g.reg_param[in.regs[0]] >= 0 ? 0 : b] + in.sig.ints[0] * slice_row(in.sig);
        continue;
      }
      const float* const* a[kMaxArgs];
      for (size_t i = 0; i < in.regs.size(); ++i) a[i] = regs_at(in.regs[i]);
      run_kernel(in.sig, count, a, regs_at(in.out));
    }
  }
  for (size_t j = 0; j < g.output_regs.size(); ++j)
    for (int b = 0; b < n; ++b)
      rec.tensors[rec.nodes[batch[b]].out + j].data = ptr_buf_[group_reg_off_[g.output_regs[j]] + b];
}

// The calling thread's buffer for a fused run's local registers (GroupPlan::local_off), 64-byte
// aligned; reused by every run on the thread (no allocation once warm).
static float* local_registers(const GroupPlan& plan) {
  thread_local std::vector<float> buf;
  if (buf.size() < static_cast<size_t>(plan.local_size) + 16) buf.resize(plan.local_size + 16);
  float* base = buf.data();
  return base + ((64 - reinterpret_cast<uintptr_t>(base) % 64) % 64) / sizeof(float);
}

// A fused run compiled ahead of time: the same split of the tile's instances across
// threads, each thread with its own buffer for the run's local registers.
template <class RegsAt>
void Executor::run_compiled(const FusedGroup& g, const GroupPlan& plan, const GroupStep& step, AotFusedRunFn fn,
                            int count, const RegsAt& regs_at) {
  double t0 = opt_.profile ? now_ms() : 0;
  int64_t work = 0;
  for (size_t k = step.begin; k < step.end; ++k) work += g.reg_size[g.instrs[k].out];
  fused_regs_.assign(g.num_regs, nullptr);
  for (int r = 0; r < g.num_regs; ++r)
    if (!plan.local[r]) fused_regs_[r] = regs_at(r);
  kernels::parallel_ranges(scratch_, count, work * count,
                           [&](int64_t b0, int64_t b1) { fn(b0, b1, fused_regs_.data(), local_registers(plan)); });
  if (opt_.profile) stats_->kernel_ms_by_op["elementwise (fused)"] += now_ms() - t0;
}

// One fused run over `count` instances of a tile, instance by instance; with a pool, the
// instances are split across threads. Each thread keeps its local registers in its own
// buffer (thread_local: reused across runs, no allocation once warm).
template <class RegsAt>
void Executor::run_fused(const FusedGroup& g, const GroupPlan& plan, const GroupStep& step, int count,
                         const RegsAt& regs_at) {
  double t0 = opt_.profile ? now_ms() : 0;
  int64_t work = 0;
  for (size_t k = step.begin; k < step.end; ++k) work += g.reg_size[g.instrs[k].out];
  kernels::parallel_ranges(scratch_, count, work * count, [&](int64_t b0, int64_t b1) {
    thread_local std::vector<float*> cur;  // this instance's local registers
    float* local_base = local_registers(plan);
    cur.assign(g.num_regs, nullptr);
    for (int r = 0; r < g.num_regs; ++r)
      if (plan.local[r]) cur[r] = local_base + plan.local_off[r];
    for (int64_t b = b0; b < b1; ++b) {
      for (size_t k = step.begin; k < step.end; ++k) {
        const GroupInstr& in = g.instrs[k];
        const float* operands[kMaxArgs];
        for (size_t i = 0; i < in.regs.size(); ++i) {
          int r = in.regs[i];
          operands[i] = plan.local[r] ? cur[r] : regs_at(r)[b];
        }
        if (in.sig.op == OpKind::kSlice) {
          float* out = const_cast<float*>(operands[0]) + in.sig.ints[0] * slice_row(in.sig);
          if (plan.local[in.out])
            cur[in.out] = out;
          else
            regs_at(in.out)[b] = out;
          continue;
        }
        float* out = plan.local[in.out] ? cur[in.out] : regs_at(in.out)[b];
        kernels::run_elementwise(in.sig, operands, out);
      }
    }
  });
  if (opt_.profile) stats_->kernel_ms_by_op["elementwise (fused)"] += now_ms() - t0;
}

}  // namespace perfmem::acrobat
