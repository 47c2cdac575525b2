// The four schedulers (contracts in schedulers.h): pure functions of a recording.
#include "perfmem/acrobat/schedulers.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

namespace perfmem::acrobat {

Result<Scheduler> parse_scheduler(const std::string& name) {
  for (Scheduler s : kAllSchedulers)
    if (name == scheduler_name(s)) return s;
  return input_error("--scheduler", "value", "one of none, acrobat, dynet-agenda, dynet-depth", "'" + name + "'");
}

const char* scheduler_name(Scheduler s) {
  switch (s) {
    case Scheduler::kNone: return "none";
    case Scheduler::kAcrobat: return "acrobat";
    case Scheduler::kDynetAgenda: return "dynet-agenda";
    case Scheduler::kDynetDepth: return "dynet-depth";
  }
  return "?";
}

void schedule_none(const Recording& rec, Schedule* out) {
  const size_t first = rec.executed_nodes, count = rec.nodes.size() - first;
  out->gather_copy = false;
  out->order.resize(count);
  out->batches.clear();
  for (size_t i = 0; i < count; ++i) {
    out->order[i] = static_cast<uint32_t>(first + i);
    out->batches.push_back({rec.nodes[first + i].kernel, static_cast<uint32_t>(i), 1});
  }
}

namespace {

// acrobat's bucketing with the depth of node i given by depth_of(i): counting sort into
// buckets (phase, depth), then by kernel inside a bucket.
template <class DepthOf>
void schedule_by_depth(const Recording& rec, size_t num_kernels, int num_phases, const DepthOf& depth_of,
                       Schedule* out) {
  const auto& nodes = rec.nodes;
  const size_t first = rec.executed_nodes, count = nodes.size() - first;
  out->gather_copy = false;
  out->batches.clear();
  int max_d = 0;
  for (size_t i = first; i < nodes.size(); ++i) max_d = std::max(max_d, depth_of(i));
  size_t per_phase = static_cast<size_t>(max_d) + 1;
  size_t buckets = per_phase * static_cast<size_t>(std::max(num_phases, 1));
  // Counting sort into buckets (phase, depth).
  std::vector<uint32_t>& start = out->work_a;
  std::vector<uint32_t>& bucketed = out->work_b;
  std::vector<uint32_t>& cursor = out->work_c;
  start.assign(buckets + 1, 0);
  for (size_t i = first; i < nodes.size(); ++i) start[nodes[i].phase * per_phase + depth_of(i) + 1]++;
  for (size_t b = 0; b < buckets; ++b) start[b + 1] += start[b];
  bucketed.resize(count);
  cursor.assign(start.begin(), start.end() - 1);
  for (size_t i = first; i < nodes.size(); ++i) {
    const RecordedNode& nd = nodes[i];
    bucketed[cursor[nd.phase * per_phase + depth_of(i)]++] = static_cast<uint32_t>(i);
  }
  // Inside a bucket: group by kernel with a counting pass over the kernels it touches.
  // kernel_count doubles as the write cursor and is all zero again after each bucket.
  std::vector<uint32_t>& kernel_count = cursor;
  kernel_count.assign(num_kernels, 0);
  std::vector<int>& touched = out->work_d;
  out->order.resize(count);
  for (size_t b = 0; b < buckets; ++b) {
    uint32_t lo = start[b], hi = start[b + 1];
    if (lo == hi) continue;
    touched.clear();
    for (uint32_t i = lo; i < hi; ++i) {
      int k = nodes[bucketed[i]].kernel;
      if (kernel_count[k]++ == 0) touched.push_back(k);
    }
    uint32_t pos = lo;
    for (int k : touched) {
      uint32_t c = kernel_count[k];
      out->batches.push_back({k, pos, c});
      kernel_count[k] = pos;
      pos += c;
    }
    for (uint32_t i = lo; i < hi; ++i) {
      uint32_t id = bucketed[i];
      out->order[kernel_count[nodes[id].kernel]++] = id;
    }
    for (int k : touched) kernel_count[k] = 0;
  }
}

}  // namespace

void schedule_acrobat(const Recording& rec, size_t num_kernels, int num_phases, Schedule* out) {
  schedule_by_depth(
      rec, num_kernels, num_phases, [&](size_t i) { return rec.nodes[i].depth; }, out);
}

void schedule_acrobat_dataflow_depth(const Recording& rec, size_t num_kernels, int num_phases, Schedule* out) {
  const size_t first = rec.executed_nodes, count = rec.nodes.size() - first;
  // One more than the deepest pending producer in the same phase (recording order is
  // topological); a producer in an earlier phase runs before the whole phase anyway.
  std::vector<int> depth(count, 0);
  for (size_t i = 0; i < count; ++i) {
    const RecordedNode& nd = rec.nodes[first + i];
    int d = 0;
    for (int a = 0; a < nd.nargs; ++a) {
      int32_t p = rec.producer(nd, a);
      if (p >= static_cast<int32_t>(first) && rec.nodes[p].phase == nd.phase) d = std::max(d, depth[p - first] + 1);
    }
    depth[i] = d;
  }
  schedule_by_depth(
      rec, num_kernels, num_phases, [&](size_t i) { return depth[i - first]; }, out);
}

uint64_t dynet_signature(const Recording& rec, const RecordedNode& nd, const std::vector<KernelSig>& kernels) {
  const KernelSig& sig = kernels[nd.kernel];
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
  mix(static_cast<uint64_t>(sig.op));
  for (int64_t d : sig.out_dims) mix(static_cast<uint64_t>(d));
  for (int i = 0; i < nd.nargs; ++i) {
    if (sig.shared_param[i] >= 0)
      mix(0x1000000ull + rec.args[nd.arg_begin + i]);
    else
      for (int64_t d : sig.arg_dims[i]) mix(static_cast<uint64_t>(d));
  }
  if ((sig.op == OpKind::kMatMul || sig.op == OpKind::kDense) && sig.shared_param[0] < 0)
    mix(0x2000000000ull + rec.args[nd.arg_begin]);
  for (int64_t v : sig.ints) mix(static_cast<uint64_t>(v));
  return h;
}

namespace {

// Empties `out` for a DyNet schedule (operands gathered by copy) and gives every node a dense
// signature id, in order of first appearance, and every signature its kernel.
void start_dynet(const Recording& rec, const std::vector<KernelSig>& kernels, Schedule* out, std::vector<int>* sig,
                 std::vector<int>* sig_kernel) {
  out->gather_copy = true;
  out->batches.clear();
  out->order.clear();
  std::unordered_map<uint64_t, int> ids;
  const size_t first = rec.executed_nodes;
  sig->resize(rec.nodes.size() - first);
  sig_kernel->clear();
  for (size_t i = first; i < rec.nodes.size(); ++i) {
    auto [it, inserted] = ids.emplace(dynet_signature(rec, rec.nodes[i], kernels), static_cast<int>(ids.size()));
    if (inserted) sig_kernel->push_back(rec.nodes[i].kernel);
    (*sig)[i - first] = it->second;
  }
}

// The producer of operand a of node `nd` as an index among the unexecuted nodes, or -1 when
// the operand is already available (parameter, constant, view, or executed in a past round).
int32_t pending_producer(const Recording& rec, const RecordedNode& nd, int a) {
  int32_t p = rec.producer(nd, a);
  const auto first = static_cast<int32_t>(rec.executed_nodes);
  return p >= first ? p - first : -1;
}

}  // namespace

void schedule_dynet_depth(const Recording& rec, const std::vector<KernelSig>& kernels, Schedule* out) {
  const size_t first = rec.executed_nodes, count = rec.nodes.size() - first;
  std::vector<int> sig, sig_kernel;
  start_dynet(rec, kernels, out, &sig, &sig_kernel);
  // Dataflow depth: one more than the deepest producer (recording order is topological).
  std::vector<int> dep(count, 0);
  for (size_t i = 0; i < count; ++i) {
    int d = 0;
    const RecordedNode& nd = rec.nodes[first + i];
    for (int a = 0; a < nd.nargs; ++a) {
      int32_t p = pending_producer(rec, nd, a);
      if (p >= 0) d = std::max(d, dep[p] + 1);
    }
    dep[i] = d;
  }
  // Groups of (depth, signature) in order of first appearance, then stably by depth.
  std::unordered_map<uint64_t, size_t> group_of;
  std::vector<std::pair<std::pair<int, int>, std::vector<uint32_t>>> groups;
  for (size_t i = 0; i < count; ++i) {
    uint64_t key = (static_cast<uint64_t>(dep[i]) << 32) | static_cast<uint32_t>(sig[i]);
    auto [it, inserted] = group_of.emplace(key, groups.size());
    if (inserted) groups.push_back({{dep[i], sig[i]}, {}});
    groups[it->second].second.push_back(static_cast<uint32_t>(first + i));
  }
  std::stable_sort(groups.begin(), groups.end(),
                   [](const auto& x, const auto& y) { return x.first.first < y.first.first; });
  for (const auto& g : groups) {
    out->batches.push_back(
        {sig_kernel[g.first.second], static_cast<uint32_t>(out->order.size()), static_cast<uint32_t>(g.second.size())});
    out->order.insert(out->order.end(), g.second.begin(), g.second.end());
  }
}

void schedule_dynet_agenda(const Recording& rec, const std::vector<KernelSig>& kernels, Schedule* out) {
  const size_t first = rec.executed_nodes, count = rec.nodes.size() - first;
  std::vector<int> sig, sig_kernel;
  start_dynet(rec, kernels, out, &sig, &sig_kernel);
  // Successor lists (CSR) and in-degrees over operand edges, indexed among the unexecuted nodes.
  std::vector<int> indeg(count, 0);
  std::vector<uint32_t> succ_start(count + 1, 0), succ;
  for (size_t i = 0; i < count; ++i) {
    const RecordedNode& nd = rec.nodes[first + i];
    for (int a = 0; a < nd.nargs; ++a) {
      int32_t p = pending_producer(rec, nd, a);
      if (p >= 0) {
        indeg[i]++;
        succ_start[p + 1]++;
      }
    }
  }
  for (size_t i = 0; i < count; ++i) succ_start[i + 1] += succ_start[i];
  succ.resize(succ_start[count]);
  std::vector<uint32_t> fill(succ_start.begin(), succ_start.end() - 1);
  for (size_t i = 0; i < count; ++i) {
    const RecordedNode& nd = rec.nodes[first + i];
    for (int a = 0; a < nd.nargs; ++a) {
      int32_t p = pending_producer(rec, nd, a);
      if (p >= 0) succ[fill[p]++] = static_cast<uint32_t>(i);
    }
  }
  std::vector<std::vector<uint32_t>> ready(sig_kernel.size());
  for (size_t i = 0; i < count; ++i)
    if (indeg[i] == 0) ready[sig[i]].push_back(static_cast<uint32_t>(i));
  std::vector<uint32_t> batch;
  while (true) {
    int best = -1;
    for (size_t s = 0; s < ready.size(); ++s)
      if (!ready[s].empty() && (best < 0 || ready[s].size() > ready[best].size())) best = static_cast<int>(s);
    if (best < 0) break;
    batch.swap(ready[best]);
    ready[best].clear();
    out->batches.push_back(
        {sig_kernel[best], static_cast<uint32_t>(out->order.size()), static_cast<uint32_t>(batch.size())});
    out->order.insert(out->order.end(), batch.begin(), batch.end());
    for (uint32_t id : batch)
      for (uint32_t k = succ_start[id]; k < succ_start[id + 1]; ++k)
        if (--indeg[succ[k]] == 0) ready[sig[succ[k]]].push_back(succ[k]);
  }
  for (uint32_t& id : out->order) id += static_cast<uint32_t>(first);
}

void schedule(Scheduler s, const Recording& rec, const std::vector<KernelSig>& kernels, int num_phases, Schedule* out) {
  switch (s) {
    case Scheduler::kNone: return schedule_none(rec, out);
    case Scheduler::kAcrobat: return schedule_acrobat(rec, kernels.size(), num_phases, out);
    case Scheduler::kDynetAgenda: return schedule_dynet_agenda(rec, kernels, out);
    case Scheduler::kDynetDepth: return schedule_dynet_depth(rec, kernels, out);
  }
}

}  // namespace perfmem::acrobat
