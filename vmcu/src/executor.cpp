// Prepare (validate + precompute integer parameters) and run each operator through its module
// in the operator table (ops/registry.h).
#include "perfmem/vmcu/executor.h"

#include <cstring>
#include <string>

#include "ops/registry.h"
#include "prepared_op.h"

namespace perfmem::vmcu {

namespace {

// Host executor limit on the sum of activation bytes (a corrupt shape must not exhaust memory).
constexpr size_t kMaxActivationBytes = size_t{1} << 30;

}  // namespace

Status prepare_op(const Graph& g, size_t index, PreparedOp& po) {
  const OpKind kind = g.ops[index].kind;
  if (static_cast<size_t>(kind) >= kOpKindCount) return unsupported_error(g.source, g.op_place(index), "operator kind");
  return ops::registration(kind).prepare(ops::PrepareContext(g, index), po);
}

Executor::Executor(Executor&&) noexcept = default;
Executor& Executor::operator=(Executor&&) noexcept = default;
Executor::~Executor() = default;

Result<Executor> Executor::create(Graph graph) {
  Executor e;
  e.graph_ = std::move(graph);
  const Graph& g = e.graph_;
  // Several inputs only through run_with_inputs (the single-operator graphs of ring layers).
  if (g.inputs.empty() || g.outputs.size() != 1)
    return unsupported_error(g.source, "subgraph",
                             "models with one input (or more) and exactly one output (found " +
                                 std::to_string(g.inputs.size()) + " and " + std::to_string(g.outputs.size()) + ")");
  // Every activation must be produced before it is read (or be the graph input).
  std::vector<bool> ready(g.tensors.size(), false);
  for (size_t t = 0; t < g.tensors.size(); ++t) ready[t] = g.tensors[t].is_constant;
  for (int t : g.inputs) {
    if (g.tensors[t].is_constant)
      return input_error(g.source, "subgraph input " + g.tensors[t].name, "an activation tensor", "constant data");
    ready[t] = true;
  }
  for (size_t i = 0; i < g.ops.size(); ++i) {
    for (int t : g.ops[i].inputs)
      if (t >= 0 && !ready[t])
        return input_error(g.source, g.op_place(i) + " input " + std::to_string(t) + " (" + g.tensors[t].name + ")",
                           "a tensor computed by an earlier operator", "one that is not yet computed");
    const int o = g.ops[i].outputs[0];
    if (ready[o])
      return input_error(g.source, g.op_place(i) + " output (" + g.tensors[o].name + ")",
                         "a tensor written exactly once", "one already written or constant");
    auto po = std::make_unique<PreparedOp>();
    PERFMEM_RETURN_IF_ERROR(prepare_op(g, i, *po));
    e.prepared_.push_back(std::move(po));
    ready[o] = true;
  }
  for (int t : g.outputs)
    if (!ready[t])
      return input_error(g.source, "subgraph output " + g.tensors[t].name, "a computed tensor", "never written");
  size_t activation_bytes = 0;
  for (const auto& t : g.tensors)
    if (!t.is_constant) activation_bytes += t.bytes();
  if (activation_bytes > kMaxActivationBytes)
    return unsupported_error(
        g.source, "tensors",
        "activations of " + std::to_string(activation_bytes) + " bytes in total (the host executor's limit is 1 GiB)");
  e.buffers_.resize(g.tensors.size());
  for (size_t t = 0; t < g.tensors.size(); ++t)
    if (!g.tensors[t].is_constant) e.buffers_[t].assign(g.tensors[t].bytes(), 0);
  return e;
}

size_t Executor::input_bytes() const { return graph_.tensors[graph_.inputs[0]].bytes(); }
size_t Executor::output_bytes() const { return graph_.tensors[graph_.outputs[0]].bytes(); }

std::span<const uint8_t> Executor::tensor_bytes(int tensor) const {
  const Tensor& t = graph_.tensors[tensor];
  if (t.is_constant) return t.data;
  return buffers_[tensor];
}

Result<std::vector<uint8_t>> Executor::run(std::span<const uint8_t> input) {
  if (graph_.inputs.size() != 1)
    return unsupported_error(
        graph_.source, "subgraph",
        "models with exactly one input for a run (found " + std::to_string(graph_.inputs.size()) + ")");
  const std::span<const uint8_t> inputs[1] = {input};
  return run_with_inputs(inputs);
}

Result<std::vector<uint8_t>> Executor::run_with_inputs(std::span<const std::span<const uint8_t>> inputs) {
  if (inputs.size() != graph_.inputs.size())
    return input_error("input", "count", std::to_string(graph_.inputs.size()) + " (one per graph input)",
                       std::to_string(inputs.size()));
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& in_t = graph_.tensors[graph_.inputs[k]];
    if (inputs[k].size() != in_t.bytes())
      return input_error("input", "size",
                         std::to_string(in_t.bytes()) + " bytes (" + std::string(element_type_name(in_t.type)) +
                             " tensor '" + in_t.name + "')",
                         std::to_string(inputs[k].size()) + " bytes");
    if (!inputs[k].empty()) std::memcpy(buffers_[graph_.inputs[k]].data(), inputs[k].data(), inputs[k].size());
  }
  for (size_t i = 0; i < graph_.ops.size(); ++i) {
    const Operator& op = graph_.ops[i];
    ops::EvalContext ctx{graph_, i, {}, buffers_[op.outputs[0]]};
    for (size_t k = 0; k < op.inputs.size() && k < ctx.inputs.size(); ++k)
      if (op.inputs[k] >= 0) ctx.inputs[k] = tensor_bytes(op.inputs[k]);
    PERFMEM_RETURN_IF_ERROR(ops::registration(op.kind).eval(ctx, *prepared_[i]));
  }
  return buffers_[graph_.outputs[0]];
}

}  // namespace perfmem::vmcu
