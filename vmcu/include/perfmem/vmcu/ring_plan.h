// perfmem/vmcu/ring_plan.h: vMCU's whole-network plan — every activation in one ring of memory,
// each layer's output laid over the input segments it has finished reading — plus the offset
// solver, the executor that runs a plan and the shadow-state safety verifier.
//
//   PERFMEM_ASSIGN_OR_RETURN(auto graph, perfmem::vmcu::load_tflite("model.tflite"));
//   PERFMEM_ASSIGN_OR_RETURN(auto model, perfmem::vmcu::RingModel::create(std::move(graph)));
//   const perfmem::vmcu::RingPlan& plan = model.plan();       // ring_bytes, per-layer bases
//   PERFMEM_ASSIGN_OR_RETURN(auto report, model.verify(input)); // shadow state + bit-exact check
//   PERFMEM_ASSIGN_OR_RETURN(auto out, model.run(input));       // plain ring execution
//
// Layers. Each graph operator becomes one ring layer running a segment kernel
// (vmcu/segment_kernels.h). A PAD whose only reader is a VALID conv / depthwise conv and whose
// value is that layer's input zero point is folded into the layer (padding taps are skipped,
// which is the same arithmetic: (zero_point + input_offset) == 0). RESHAPE is an alias when its
// input dies there. Operators without a segment kernel (QUANTIZE, DEQUANTIZE, MEAN, TRANSPOSE,
// SOFTMAX, unfolded PAD) run as "staged" layers: the whole input is copied to a workspace, the
// operator's reference eval (its module in the operator table, on the layer's prepared
// parameters) runs there and the output is stored back, so the output may cover the input
// completely and the workspace (|in| + |out|, plus MEAN's int32 accumulators) is accounted for
// in the peak. Staged and tensor-level layers run from the plan like every other layer; no
// reference executor is involved (the verifier uses one only to compare outputs).
//
// Fusion. Three block shapes get a fused layer (vmcu/segment_fused.h) whose intermediates never
// enter the ring: the inverted bottleneck (1x1 expand? -> depthwise -> 1x1 project -> + input?),
// the residual block (conv -> conv -> + input or 1x1 conv of the input) and the stem block (a
// kxk conv, typically the strided stem, -> depthwise -> 1x1 project, the conv's output kept as
// a few rows). Each candidate is
// taken, in graph order, when the ring in use plus workspace while its operators run is lower
// fused than unfused (then the lower whole-network peak); ties stay unfused. Afterwards every
// fused block whose removal leaves the whole-network peak unchanged is unfused again (last block
// first), so recomputation is paid only where it buys memory. A bottleneck that still recomputes
// its expansion then keeps the expanded rows in a row cache instead where the peak grows by at
// most RingPlanOptions::row_cache_peak_growth (8 %), or is unfused where that fits and costs
// no more.
//
// Offset solver. For a layer, the minimal distance d_k between input k's base and the output base
// is found by running the layer's own kernel once with an access trace (every read / write range,
// in execution order) and sweeping it: d_k = max over writes of (write end - the lowest address of
// input k that any later access reads), clamped at 0. Because it follows the kernel's actual loop
// order it stays right when a kernel changes; the closed forms of the brief are its tests.
//
// Never worse than TFLite Micro, chosen per region. A segment-level plan can exceed the
// tensor-level one (staged operators and pooling workspaces sit on top of the ring, residuals
// widen it). The network is cut wherever exactly one tensor is live between two layers; each
// region between cuts runs either its segment-level layers (ring offsets = unwrapped address mod
// the arena) or its operators at tensor level (the greedy planner's offsets: planner.h, the same
// bytes TFLite Micro plans, one kTensorLevel layer per operator). Where two neighbouring regions
// differ, a kRelocate layer moves the one live tensor from where the first region left it to
// where the second expects it (an in-place rotation of the arena: no extra memory). A mixed plan
// needs max(largest segment region's ring, largest tensor region's arena) + the segment
// regions' largest workspace; the choice minimises it over the regions, so it is never above
// the whole segment-level plan (all regions segment) nor the greedy arena (all tensor level).
// The planner returns the smallest of the three (ties: segment, then tensor level), so a mixed
// plan appears only where it saves bytes. When an operator has no segment kernel at all, the
// whole network gets the tensor-level plan.
//
// Placement (pure function of the graph). Addresses are "unwrapped" integers that decrease as the
// network runs: the graph input starts at 0; a layer's output base is the lowest of
//   base(k) - d_k            for every ring input k that dies at this layer,
//   base(T) - |output|       for every other tensor T live across the layer (residuals, inputs
//                            still needed later, graph outputs),
// so an output never touches live data except the dying inputs, and only as far as the kernel
// allows. The ring size is the largest span (highest end - lowest base) of the tensors live at
// any layer; ring offset = unwrapped address mod ring size. Peak = ring + largest workspace.
//
// Verifier. Runs the plan in a ring of exactly ring_bytes, tracing every access, with a shadow
// owner per byte (unwritten / tensor t live / dead after its last read). Any read of a byte that
// does not hold the tensor being read (overwritten, or never written) fails with the layer, the
// tensor and the ring offset; the final output must equal the reference executor's bit for bit.
// Workspace accesses a kernel reports (VMCU_SEG_WORKSPACE: the fused bottleneck's stages and
// cache) must lie inside the workspace the plan gives the layer, and a read must find what the
// layer stored there (the cached intermediate byte it names, or a stage byte).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "perfmem/core/status.h"
#include "perfmem/vmcu/model.h"

namespace perfmem::vmcu {

// One access of a kernel, relative to the operand's own base (operand: 0 = output, 1 = input 0,
// 2 = input 1).
struct RingAccess {
  int32_t operand = 0;
  int32_t offset = 0;
  int32_t length = 0;
  bool is_write = false;
};

// The solver's sweep over a trace: minimal distance of input 0 and input 1 (0 when unread).
struct RingDistances {
  int64_t input[2] = {0, 0};
};
RingDistances solve_distances(std::span<const RingAccess> trace);

// kTensorLevel: an operator of a tensor-level plan; its reference kernel reads every input whole
// and writes its output whole, at arena offsets that never overlap while live, so it needs no
// workspace (a tensor-level layer is what TFLite Micro runs).
enum class RingKernel {
  kConv,
  kPointwise,
  kDepthwise,
  kFullyConnected,
  kAdd,
  kAveragePool,
  kMaxPool,
  kAlias,
  kQuantize,
  kStaged,
  kBottleneck,
  kResidualBlock,
  kStemBlock,
  kTensorLevel,
  kRelocate  // moves the one live tensor between regions: input 0 == output, two offsets
};
std::string_view ring_kernel_name(RingKernel kernel);

struct RingLayerParams;  // kernel parameters (src/ring_layer.h)

// One layer of a plan: a plain value (indices and sizes, no pointers). ring_offset holds where
// this layer finds its operands; in a mixed plan a relocated tensor has one offset before its
// kRelocate layer and another after it, so consumers read offsets from the layer, not the tensor.
struct RingLayer {
  std::vector<int> ops;  // graph operators this layer executes (a folded PAD first)
  RingKernel kernel = RingKernel::kStaged;
  std::vector<int> inputs;  // ring tensors read, as operands 1 and 2
  int output = -1;
  int64_t distance[2] = {0, 0};        // solved distance per input
  size_t workspace_bytes = 0;          // stage buffers outside the ring
  int params_index = -1;               // the layer's prepared kernel parameters, held by the RingModel
  int32_t ring_offset[3] = {0, 0, 0};  // ring offsets of the output, input 0 and input 1
};

// How the tensors of a plan are laid out: segment level (the ring, outputs over dying inputs),
// tensor level (TFLite Micro's greedy arena: whole tensors, never overlapping while live), or
// mixed (regions of each, joined by kRelocate layers).
enum class RingPlacement { kSegment, kTensor, kMixed };
std::string_view ring_placement_name(RingPlacement placement);

struct RingPlan {
  RingPlacement placement = RingPlacement::kSegment;
  std::vector<RingLayer> layers;
  std::vector<int64_t> base;  // unwrapped base per tensor where it is first written (valid where placed[t])
  std::vector<bool> placed;
  std::vector<int> first_layer, last_layer;  // layer indices where a ring tensor is written / last read
  size_t ring_bytes = 0;
  size_t workspace_bytes = 0;          // largest single-layer workspace
  size_t peak_bytes = 0;               // ring + workspace
  std::vector<size_t> span_per_layer;  // bytes of the ring in use while each layer runs

  // Ring offset of a placed tensor's byte 0 where it is first written (the graph input: where
  // the caller writes it).
  int32_t ring_offset(int tensor) const;
  // Ring offset of a tensor after the last layer: where the caller reads a graph output (the
  // destination of its last kRelocate layer, if any).
  int32_t final_offset(int tensor) const;
};

struct RingPlanOptions {
  bool fuse = true;  // consider fused inverted bottlenecks / residual blocks
  // After choosing, unfuse every block whose fusion does not lower the whole-network peak
  // (fused bottlenecks recompute their expansion; this keeps the peak and saves the time).
  bool unfuse_below_peak = true;
  // Fused bottlenecks recompute their expansion per depthwise tap (the least memory). Once fusion
  // is settled, each one in graph order takes the faster form whose segment-level peak stays
  // within (1 + row_cache_peak_growth) x the recomputing plan's peak: unfused where that needs no
  // more than a row cache, else a row cache (each expanded pixel computed once, the unfused
  // layers' MACs, kept while a depthwise window can still read it: about (kh - 1) x W x Cmid bytes
  // of workspace; vmcu/segment_fused.h). 0 keeps every recomputation (the paper's form).
  double row_cache_peak_growth = 0.08;
  // Take the tensor-level plan (TFLite Micro's greedy arena) whenever the segment-level plan
  // would need more memory, or has no kernel for an operator: the result never exceeds greedy.
  bool tensor_level_fallback = true;
  // Also consider mixed plans (per region, segment or tensor level; needs tensor_level_fallback).
  bool per_region_choice = true;
};

struct RingVerifyReport {
  size_t ring_bytes = 0;
  size_t checked_reads = 0;  // bytes whose owner was checked
  size_t checked_writes = 0;
  bool bit_exact = false;
};

class RingModel {
 public:
  // Validates the graph (the reference executor's prepare step), builds the layers, solves the
  // distances, places every tensor (segment or tensor level, whichever is smaller) and runs the
  // verifier once on a fixed probe input: a plan that fails it is returned as an internal error,
  // never as a plan. Models with exactly one input.
  static Result<RingModel> create(Graph graph, const RingPlanOptions& options = {});
  RingModel(RingModel&&) noexcept;
  RingModel& operator=(RingModel&&) noexcept;
  ~RingModel();

  const Graph& graph() const;
  const RingPlan& plan() const { return plan_; }
  // The kernel parameters of one of plan()'s layers (by its params_index), for code generators
  // that emit the plan as C (codegen.h); valid while the model lives.
  const RingLayerParams& layer_params(const RingLayer& layer) const;

  // Runs in a ring of plan().ring_bytes; returns the bytes of graph output 0.
  Result<std::vector<uint8_t>> run(std::span<const uint8_t> input);
  // Runs with the shadow-state check and compares with the reference executor.
  Result<RingVerifyReport> verify(std::span<const uint8_t> input);

 private:
  RingModel();
  friend Result<RingModel> create_ring_model_with_shrunk_distance(Graph, int, int64_t, const RingPlanOptions&);
  friend Result<RingModel> create_ring_model_with_shrunk_workspace(Graph, int, size_t, const RingPlanOptions&);
  static Result<RingModel> create_impl(Graph graph, const RingPlanOptions& options, int shrink_layer,
                                       int64_t shrink_bytes, size_t shrink_workspace_bytes);
  Result<std::vector<uint8_t>> execute(std::span<const uint8_t> input, bool shadow, RingVerifyReport* report);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  RingPlan plan_;
};

// The verified plan of `graph` as a value: RingModel::create(graph, options)->plan(). The same
// value drives RingModel::run / verify and `vmcu plan --planner vmcu [--json]`.
Result<RingPlan> plan_ring(Graph graph, const RingPlanOptions& options = {});

// For the verifier's tests only: create() with one segment-level layer's input-0 distance shrunk
// by `bytes` after solving, a deliberately unsafe plan that create()'s verifier must reject.
Result<RingModel> create_ring_model_with_shrunk_distance(Graph graph, int layer, int64_t bytes,
                                                         const RingPlanOptions& options = {});
// For the verifier's tests only: create() with one segment-level layer's workspace shrunk by
// `bytes` after solving (the plan's workspace and peak follow it), which create()'s verifier must
// reject when the layer's kernel uses the bytes taken away.
Result<RingModel> create_ring_model_with_shrunk_workspace(Graph graph, int layer, size_t bytes,
                                                          const RingPlanOptions& options = {});

// The same graph starting at the int8 tensor when its first operator only quantizes a float32
// graph input (as MCU deployments feed the camera's int8 pixels directly); otherwise unchanged.
// Used to compare planners on the int8 network alone.
Result<Graph> with_int8_input(Graph graph);

}  // namespace perfmem::vmcu
