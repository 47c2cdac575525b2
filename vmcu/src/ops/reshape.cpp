// RESHAPE: the bytes unchanged under a new shape (the ring lowering aliases them).
#include "op_module.h"

#include <algorithm>
#include <cstring>

namespace perfmem::vmcu::ops {

Status prepare_reshape(const PrepareContext& p, PreparedOp&) {
  const Operator& op = p.op();
  if (op.inputs.empty() || op.inputs[0] < 0) return p.fail("input 0", "a tensor", "none");
  const Tensor& in = p.in(0);
  if (in.type != p.out().type)
    return p.fail("output type", std::string(element_type_name(in.type)), std::string(element_type_name(p.out().type)));
  if (in.element_count() != p.out().element_count())
    return p.fail("output shape", std::to_string(in.element_count()) + " elements", shape_str(p.out().shape));
  return Status::Ok();
}

Status eval_reshape(const EvalContext& e, PreparedOp&) {
  if (!e.inputs[0].empty()) std::memcpy(e.output.data(), e.inputs[0].data(), e.inputs[0].size());
  return Status::Ok();
}

// The output aliases the input's bytes when the input dies here and is neither a graph input
// nor a graph output (their bytes must stay where the caller sees them).
Status lower_reshape(const LowerContext& c, LayerDraft& layer, RingLayerParams&, bool& done) {
  const Graph& g = c.graph;
  const int in = g.ops[c.index].inputs[0];
  const bool graph_output = std::find(g.outputs.begin(), g.outputs.end(), in) != g.outputs.end();
  const bool graph_input = std::find(g.inputs.begin(), g.inputs.end(), in) != g.inputs.end();
  if (c.live.last_use[in] == static_cast<int>(c.index) && !graph_output && !graph_input) {
    layer.kernel = RingKernel::kAlias;
    layer.inputs = {in};
    done = true;
  }
  return Status::Ok();
}

}  // namespace perfmem::vmcu::ops
