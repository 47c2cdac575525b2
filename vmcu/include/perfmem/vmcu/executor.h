// perfmem/vmcu/executor.h: runs an int8 Graph on the host with the reference kernels.
//
//   PERFMEM_ASSIGN_OR_RETURN(auto graph, perfmem::vmcu::load_tflite("model.tflite"));
//   PERFMEM_ASSIGN_OR_RETURN(auto exec, perfmem::vmcu::Executor::create(std::move(graph)));
//   std::vector<uint8_t> input(exec.input_bytes());             // raw bytes, model layout
//   PERFMEM_ASSIGN_OR_RETURN(auto output, exec.run(input));      // raw bytes of output 0
//
// create() is the prepare step: it checks every operator's operand types and shapes against
// what the kernels need (naming the operator on failure) and precomputes the integer
// parameters, so run() cannot read or write outside a buffer. Each activation tensor gets its
// own buffer here; memory planning is a separate concern (planner.h).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/vmcu/model.h"

namespace perfmem::vmcu {

struct PreparedOp;  // kernel parameters of one operator (executor.cpp)

class Executor {
 public:
  static Result<Executor> create(Graph graph);
  Executor(Executor&&) noexcept;
  Executor& operator=(Executor&&) noexcept;
  ~Executor();

  const Graph& graph() const { return graph_; }
  size_t input_bytes() const;   // of graph input 0
  size_t output_bytes() const;  // of graph output 0

  // Runs with `input` as the bytes of graph input 0; returns the bytes of graph output 0.
  // A wrong input size is an input error stating the expected size.
  Result<std::vector<uint8_t>> run(std::span<const uint8_t> input);
  // The same with the bytes of every graph input, in graph-input order (run() needs a graph
  // with exactly one input; create() accepts several for this call).
  Result<std::vector<uint8_t>> run_with_inputs(std::span<const std::span<const uint8_t>> inputs);
  // Bytes of any tensor after the last run (constants included), for debugging and tests.
  std::span<const uint8_t> tensor_bytes(int tensor) const;

 private:
  Executor() = default;
  Graph graph_;
  std::vector<std::vector<uint8_t>> buffers_;  // one per tensor (constants: their data)
  std::vector<std::unique_ptr<PreparedOp>> prepared_;
};

}  // namespace perfmem::vmcu
