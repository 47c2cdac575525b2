// The shared benchmark workloads (TreeLSTM, MV-RNN, NestedRNN, BiRNN) written against real
// DyNet 2.1.2's C++ API, for running side by side with acrobat (acrobat_vs_dynet.cpp).
//
//   initialize_dynet();                                   // once per process
//   auto w = DynetWorkload::create("treelstm", 256);      // parameters from the hash formula
//   std::vector<float> logits;
//   w->run(data, 0, 64, DynetMode::kAgenda, &logits);     // one minibatch, instance-major
//
// This header deliberately includes no DyNet or Eigen header: dynet_workloads.cpp is the only
// file compiled with DyNet's flags (-march=native, Eigen configuration), so the rest of the
// program never sees Eigen types whose layout depends on those flags.
//
// The model code follows the workload definitions op for op (VanillaLSTMBuilder for the LSTM
// cells, affine_transform, pick_range, concatenate) and uses the same parameter values as the
// .acr models (hashed_parameter, converted to DyNet's column-major layout), so the outputs of
// both systems agree to float rounding and the conformance checksums apply to both.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "perfmem/acrobat/data.h"

namespace perfmem::acrobat::dynet_bench {

// DyNet's execution modes: --dynet-autobatch 0 (none), 1 (agenda), 2 (depth).
enum class DynetMode { kNone = 0, kAgenda = 1, kDepth = 2 };
const char* dynet_mode_name(DynetMode mode);

// dynet::initialize with a fixed seed and autobatching off; the mode is set per run through
// DyNet's global autobatch flag (the same variable --dynet-autobatch sets). Idempotent.
void initialize_dynet();

class DynetWorkload {
 public:
  // model: treelstm, mvrnn, birnn or nestedrnn; h: the hidden size. nullptr for another name.
  static std::unique_ptr<DynetWorkload> create(const std::string& model, int64_t h);
  virtual ~DynetWorkload() = default;
  // Builds one computation graph for instances [begin, end) of `data` (in the workload's build
  // order), runs it forward under `mode` and stores every instance's logits, instance-major.
  // DyNet reports errors by exceptions; they propagate to the caller.
  virtual void run(const std::vector<Instance>& data, size_t begin, size_t end, DynetMode mode,
                   std::vector<float>* out) = 0;
};

}  // namespace perfmem::acrobat::dynet_bench
