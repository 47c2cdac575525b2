// What the interpreter records for one minibatch: the nodes (one per tensor op or fused group)
// with their operands, depths and phases, and the tensors they produce. Schedulers read it;
// the executor fills in the tensors' data.
//
//   Recording rec;
//   rec.set_persistent({param0.data(), param1.data()});     // parameters and constants first
//   uint32_t out = rec.add_node(/*kernel=*/3, /*depth=*/0, /*phase=*/0, operands, 2, /*nouts=*/1);
//
// Invariants: tensors [0, num_persistent()) are the parameters and constant tensors (producer
// -1, data set); every operand id of a node is a tensor recorded before that node; a node's
// outputs are the tensors [out, out + nouts); nodes [0, executed_nodes) have executed.
#pragma once

#include <cstdint>
#include <vector>

namespace perfmem::acrobat {

struct TensorRec {
  float* data = nullptr;  // null until the producing node has executed
  int32_t node = -1;      // producing node, -1 for parameters, constants and views
};

struct RecordedNode {
  int32_t kernel;      // index into Program::kernels: nodes batch together only with equal kernels
  int32_t depth;       // acrobat's inline depth (static or dynamic); 0 where unused
  int32_t phase;       // program phase (`phase` in main)
  uint32_t arg_begin;  // operands: args[arg_begin, arg_begin + nargs)
  uint16_t nargs;
  uint16_t nouts;
  uint32_t out;  // first output tensor id
};

class Recording {
 public:
  // Starts a fresh recording whose first tensors are the given parameters and constants.
  void set_persistent(const std::vector<float*>& data) {
    tensors.clear();
    for (float* d : data) tensors.push_back({d, -1});
    num_persistent_ = tensors.size();
    clear();
  }
  // Drops everything but the persistent tensors (capacity is kept).
  void clear() {
    tensors.resize(num_persistent_);
    nodes.clear();
    args.clear();
    max_depth = 0;
    executed_nodes = 0;
  }
  size_t num_persistent() const { return num_persistent_; }

  uint32_t add_tensor(float* data, int32_t node) {
    tensors.push_back({data, node});
    return static_cast<uint32_t>(tensors.size() - 1);
  }
  // Appends a node; returns its first output tensor id.
  uint32_t add_node(int kernel, int depth, int phase, const uint32_t* operands, int nargs, int nouts) {
    RecordedNode n;
    n.kernel = kernel;
    n.depth = depth;
    n.phase = phase;
    n.arg_begin = static_cast<uint32_t>(args.size());
    n.nargs = static_cast<uint16_t>(nargs);
    n.nouts = static_cast<uint16_t>(nouts);
    n.out = static_cast<uint32_t>(tensors.size());
    int32_t id = static_cast<int32_t>(nodes.size());
    args.insert(args.end(), operands, operands + nargs);
    for (int k = 0; k < nouts; ++k) tensors.push_back({nullptr, id});
    nodes.push_back(n);
    if (depth > max_depth) max_depth = depth;
    return n.out;
  }
  // The node producing operand i of node `node`, or -1 (parameter, constant, view).
  int32_t producer(const RecordedNode& node, int i) const { return tensors[args[node.arg_begin + i]].node; }

  std::vector<TensorRec> tensors;
  std::vector<RecordedNode> nodes;
  std::vector<uint32_t> args;
  int max_depth = 0;  // largest node depth
  // Nodes [0, executed_nodes) were executed in an earlier round of this minibatch (an instance
  // waited for a tensor's value). Schedulers batch only the nodes after them; the outputs of
  // executed nodes are available operands, like parameters.
  size_t executed_nodes = 0;

 private:
  size_t num_persistent_ = 0;
};

}  // namespace perfmem::acrobat
