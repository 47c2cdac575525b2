#include "perfmem/vmcu/planner.h"

#include <algorithm>
#include <numeric>

namespace perfmem::vmcu {

std::string_view planner_name(PlannerKind kind) {
  switch (kind) {
    case PlannerKind::kNaive: return "naive";
    case PlannerKind::kGreedy: return "greedy";
    case PlannerKind::kTinyEngine: return "tinyengine";
  }
  return "?";
}

Result<PlannerKind> parse_planner(std::string_view name) {
  if (name == "naive") return PlannerKind::kNaive;
  if (name == "greedy") return PlannerKind::kGreedy;
  if (name == "tinyengine") return PlannerKind::kTinyEngine;
  return input_error("--planner", "value", "naive, greedy or tinyengine", std::string(name));
}

namespace {

bool lifetimes_intersect(const Placement& a, int first, int last) { return a.first_use <= last && first <= a.last_use; }

// Lowest offset at which [offset, offset + bytes) avoids every placed buffer alive during
// [first, last]: walk the conflicting buffers by offset and take the first gap that fits.
size_t lowest_fit(const std::vector<Placement>& placed, const std::vector<bool>& is_placed, size_t bytes, int first,
                  int last) {
  std::vector<const Placement*> live;
  for (size_t i = 0; i < placed.size(); ++i)
    if (is_placed[i] && placed[i].bytes > 0 && lifetimes_intersect(placed[i], first, last)) live.push_back(&placed[i]);
  std::sort(live.begin(), live.end(), [](const Placement* a, const Placement* b) {
    return a->offset != b->offset ? a->offset < b->offset : a->bytes < b->bytes;
  });
  size_t candidate = 0;
  for (const Placement* p : live) {
    if (p->offset >= candidate + bytes) break;
    candidate = std::max(candidate, p->offset + p->bytes);
  }
  return candidate;
}

void finish(MemoryPlan& plan) {
  plan.peak_bytes = 0;
  for (const auto& p : plan.placements) plan.peak_bytes = std::max(plan.peak_bytes, p.offset + p.bytes);
}

}  // namespace

MemoryPlan plan_memory(const std::vector<BufferRequirement>& reqs, PlannerKind kind) {
  MemoryPlan plan;
  plan.planner = kind;
  plan.placements.resize(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    plan.placements[i].name = reqs[i].name;
    plan.placements[i].bytes = reqs[i].bytes;
    plan.placements[i].first_use = reqs[i].first_use;
    plan.placements[i].last_use = reqs[i].last_use;
  }
  std::vector<bool> placed(reqs.size(), false);
  switch (kind) {
    case PlannerKind::kNaive: {
      size_t offset = 0;
      for (auto& p : plan.placements) {
        p.offset = offset;
        offset += p.bytes;
      }
      break;
    }
    case PlannerKind::kGreedy: {
      // TFLite Micro fills its sort array from the tail (the last buffer added first), then
      // bubble-sorts it by size, largest first; the bubble sort is stable, so buffers of equal
      // size are placed last-added first.
      std::vector<size_t> order(reqs.size());
      for (size_t i = 0; i < reqs.size(); ++i) order[i] = reqs.size() - 1 - i;
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return reqs[a].bytes > reqs[b].bytes; });
      for (size_t i : order) {
        plan.placements[i].offset =
            lowest_fit(plan.placements, placed, reqs[i].bytes, reqs[i].first_use, reqs[i].last_use);
        placed[i] = true;
      }
      break;
    }
    case PlannerKind::kTinyEngine: {
      // In-place hand-overs first: each chain A -> B -> C ... of legal partners becomes one
      // block (lifetime = union, size = the head's, since members never grow), then blocks are
      // placed first-fit, largest first, and each in-place step's workspace fits in around them.
      std::vector<int> head(reqs.size());
      for (size_t i = 0; i < reqs.size(); ++i) head[i] = static_cast<int>(i);
      for (size_t i = 0; i < reqs.size(); ++i) {
        const int partner = reqs[i].inplace_partner;
        if (partner < 0 || static_cast<size_t>(partner) >= reqs.size()) continue;
        if (reqs[partner].last_use != reqs[i].first_use || reqs[i].bytes > reqs[partner].bytes) continue;
        head[i] = partner;
        plan.placements[i].inplace_of = partner;
      }
      auto root = [&](int i) {
        while (head[i] != i) i = head[i];
        return i;
      };
      std::vector<Placement> blocks(reqs.size());
      std::vector<bool> is_root(reqs.size(), false);
      for (size_t i = 0; i < reqs.size(); ++i) {
        const int r = root(static_cast<int>(i));
        if (r == static_cast<int>(i)) {
          is_root[i] = true;
          blocks[i] = plan.placements[i];
        }
      }
      for (size_t i = 0; i < reqs.size(); ++i) {
        Placement& b = blocks[root(static_cast<int>(i))];
        b.first_use = std::min(b.first_use, reqs[i].first_use);
        b.last_use = std::max(b.last_use, reqs[i].last_use);
        b.bytes = std::max(b.bytes, reqs[i].bytes);
      }
      std::vector<size_t> order;
      for (size_t i = 0; i < reqs.size(); ++i)
        if (is_root[i]) order.push_back(i);
      std::stable_sort(order.begin(), order.end(),
                       [&](size_t a, size_t b) { return blocks[a].bytes > blocks[b].bytes; });
      std::vector<bool> block_placed(reqs.size(), false);
      for (size_t i : order) {
        blocks[i].offset = lowest_fit(blocks, block_placed, blocks[i].bytes, blocks[i].first_use, blocks[i].last_use);
        block_placed[i] = true;
      }
      for (size_t i = 0; i < reqs.size(); ++i) plan.placements[i].offset = blocks[root(static_cast<int>(i))].offset;
      std::fill(placed.begin(), placed.end(), true);
      for (size_t i = 0; i < reqs.size(); ++i) {
        if (plan.placements[i].inplace_of < 0 || reqs[i].inplace_workspace_bytes == 0) continue;
        Placement w;
        w.name = reqs[i].name + " (in-place workspace)";
        w.bytes = reqs[i].inplace_workspace_bytes;
        w.first_use = w.last_use = reqs[i].first_use;
        w.is_workspace = true;
        w.offset = lowest_fit(plan.placements, placed, w.bytes, w.first_use, w.last_use);
        plan.placements.push_back(w);
        placed.push_back(true);
      }
      break;
    }
  }
  finish(plan);
  return plan;
}

Status verify_plan(const std::vector<BufferRequirement>& reqs, const MemoryPlan& plan) {
  const std::string source = std::string("plan (") + std::string(planner_name(plan.planner)) + ")";
  if (plan.placements.size() < reqs.size())
    return input_error(source, "placements", std::to_string(reqs.size()) + " or more",
                       std::to_string(plan.placements.size()));
  for (size_t i = 0; i < reqs.size(); ++i) {
    const Placement& p = plan.placements[i];
    if (p.bytes != reqs[i].bytes || p.first_use != reqs[i].first_use || p.last_use != reqs[i].last_use ||
        p.is_workspace)
      return input_error(source, "placement " + std::to_string(i) + " (" + reqs[i].name + ")",
                         "the requirement's size and lifetime");
  }
  for (size_t i = reqs.size(); i < plan.placements.size(); ++i)
    if (!plan.placements[i].is_workspace || plan.placements[i].first_use != plan.placements[i].last_use)
      return input_error(source, "placement " + std::to_string(i), "a single-step workspace");
  size_t peak = 0;
  for (size_t i = 0; i < plan.placements.size(); ++i) {
    const Placement& a = plan.placements[i];
    peak = std::max(peak, a.offset + a.bytes);
    for (size_t j = i + 1; j < plan.placements.size(); ++j) {
      const Placement& b = plan.placements[j];
      const bool time = a.first_use <= b.last_use && b.first_use <= a.last_use;
      const bool space = a.bytes > 0 && b.bytes > 0 && a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
      if (!time || !space) continue;
      // The one legal overlap: an in-place hand-over declared by the requirements.
      auto legal_inplace = [&](size_t later, size_t earlier) {
        if (later >= reqs.size() || earlier >= reqs.size()) return false;
        const Placement& l = plan.placements[later];
        const Placement& e = plan.placements[earlier];
        return reqs[later].inplace_partner == static_cast<int>(earlier) && l.inplace_of == static_cast<int>(earlier) &&
               l.offset == e.offset && l.bytes <= e.bytes && l.first_use == e.last_use;
      };
      if (legal_inplace(i, j) || legal_inplace(j, i)) continue;
      return input_error(source, "buffers '" + a.name + "' and '" + b.name + "'",
                         "disjoint addresses while both are live",
                         "[" + std::to_string(a.offset) + "," + std::to_string(a.offset + a.bytes) + ") steps " +
                             std::to_string(a.first_use) + ".." + std::to_string(a.last_use) + " vs [" +
                             std::to_string(b.offset) + "," + std::to_string(b.offset + b.bytes) + ") steps " +
                             std::to_string(b.first_use) + ".." + std::to_string(b.last_use));
    }
  }
  if (peak != plan.peak_bytes)
    return input_error(source, "peak_bytes", std::to_string(peak) + " (max end address)",
                       std::to_string(plan.peak_bytes));
  return Status::Ok();
}

std::vector<BufferRequirement> buffer_requirements(const Graph& graph, size_t alignment) {
  const Liveness live = compute_liveness(graph);
  std::vector<int> req_of_tensor(graph.tensors.size(), -1);
  std::vector<BufferRequirement> reqs;
  const size_t align = std::max<size_t>(alignment, 1);
  for (size_t t = 0; t < graph.tensors.size(); ++t) {
    const Tensor& tensor = graph.tensors[t];
    // As TFLite Micro: constants live in flash and zero-sized tensors need no storage.
    if (tensor.is_constant || live.first_use[t] < 0 || tensor.bytes() == 0) continue;
    BufferRequirement r;
    r.name = tensor.name.empty() ? "tensor " + std::to_string(t) : tensor.name;
    r.tensor = static_cast<int>(t);
    r.bytes = (tensor.bytes() + align - 1) / align * align;
    r.first_use = live.first_use[t];
    r.last_use = live.last_use[t];
    req_of_tensor[t] = static_cast<int>(reqs.size());
    reqs.push_back(r);
  }
  for (size_t i = 0; i < graph.ops.size(); ++i) {
    const Operator& op = graph.ops[i];
    const int out = op.outputs[0];
    if (req_of_tensor[out] < 0) continue;
    BufferRequirement& r = reqs[req_of_tensor[out]];
    auto candidate = [&](int in) {
      if (in < 0 || req_of_tensor[in] < 0 || r.inplace_partner >= 0) return false;
      const BufferRequirement& src = reqs[req_of_tensor[in]];
      // Legal only if the input dies here and is not a graph output.
      return src.last_use == static_cast<int>(i) && r.bytes <= src.bytes &&
             std::find(graph.outputs.begin(), graph.outputs.end(), in) == graph.outputs.end();
    };
    switch (op.kind) {
      case OpKind::kDepthwiseConv2D: {
        const Tensor& in = graph.tensors[op.inputs[0]];
        const Tensor& o = graph.tensors[out];
        if (in.shape.size() == 4 && o.shape.size() == 4 && in.shape[3] == o.shape[3] && candidate(op.inputs[0])) {
          r.inplace_partner = req_of_tensor[op.inputs[0]];
          // One input channel, copied out before its outputs overwrite it.
          r.inplace_workspace_bytes = static_cast<size_t>(in.shape[1]) * static_cast<size_t>(in.shape[2]);
        }
        break;
      }
      case OpKind::kAdd:
        for (size_t k = 0; k < 2 && k < op.inputs.size(); ++k)
          if (candidate(op.inputs[k])) r.inplace_partner = req_of_tensor[op.inputs[k]];
        break;
      case OpKind::kReshape:
        if (candidate(op.inputs[0])) r.inplace_partner = req_of_tensor[op.inputs[0]];
        break;
      case OpKind::kQuantize:
        if (graph.tensors[op.inputs[0]].type == ElementType::kInt8 && candidate(op.inputs[0]))
          r.inplace_partner = req_of_tensor[op.inputs[0]];
        break;
      default: break;
    }
  }
  return reqs;
}

std::vector<BufferRequirement> planner_requirements(const Graph& graph, PlannerKind kind) {
  return buffer_requirements(graph, kind == PlannerKind::kGreedy ? kTflmArenaAlignment : 1);
}

std::vector<size_t> live_bytes_per_step(const MemoryPlan& plan, int steps) {
  std::vector<size_t> live(std::max(steps, 0), 0);
  for (const Placement& p : plan.placements) {
    for (int s = std::max(0, p.first_use); s <= p.last_use && s < steps; ++s) {
      // Storage shared with an in-place partner is counted once at the hand-over step.
      if (p.inplace_of >= 0 && s == p.first_use) {
        const Placement& partner = plan.placements[p.inplace_of];
        live[s] += p.bytes > partner.bytes ? p.bytes - partner.bytes : 0;
        continue;
      }
      live[s] += p.bytes;
    }
  }
  return live;
}

}  // namespace perfmem::vmcu
