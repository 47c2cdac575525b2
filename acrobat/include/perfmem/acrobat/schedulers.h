// Schedulers: pure functions from a Recording to batches. They decide which recorded nodes
// run together and in which order, and run nothing; the executor runs the batches.
//
//   Schedule s;
//   schedule(Scheduler::kAcrobat, recording, program.kernels, program.num_phases, &s);
//   for (const Batch& b : s.batches) run(b.kernel, s.order.data() + b.begin, b.count);
//
// Every schedule holds each node not yet executed (Recording::executed_nodes on) exactly once,
// and a node's producers are executed nodes or in earlier batches.
//  * none:         one batch per node, in recording order (the unbatched reference).
//  * acrobat:      counting sort of the nodes into buckets (phase, depth), then by kernel
//                  inside a bucket: O(nodes + buckets), no hashing, no graph. Relies on the
//                  interpreter's depths (every operand at a smaller depth or an earlier phase).
//  * dynet-agenda: DyNet's method on the same nodes: signatures hashed from operator, shapes
//                  and parameter operands; successor lists; repeatedly the signature with the
//                  most ready nodes (ties: the signature seen first) runs as one batch.
//  * dynet-depth:  the same signatures, batched at equal dataflow depth.
// The DyNet schedules also ask for operands to be gathered by copy (Schedule::gather_copy).
// For the benchmark's ablation of inline depth computation, schedule_acrobat_dataflow_depth
// buckets the same way but ignores the recorded depths: it first computes each node's
// dataflow depth within its phase from the operand edges (a pass over the graph, as a
// runtime without inline depths must).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "perfmem/acrobat/ast.h"
#include "perfmem/acrobat/recording.h"
#include "perfmem/core/status.h"

namespace perfmem::acrobat {

enum class Scheduler { kNone, kAcrobat, kDynetAgenda, kDynetDepth };

Result<Scheduler> parse_scheduler(const std::string& name);
const char* scheduler_name(Scheduler s);
inline constexpr Scheduler kAllSchedulers[] = {Scheduler::kNone, Scheduler::kAcrobat, Scheduler::kDynetAgenda,
                                               Scheduler::kDynetDepth};

// One launch: the nodes order[begin, begin + count), all of kernel `kernel`.
struct Batch {
  int32_t kernel;
  uint32_t begin, count;
};

struct Schedule {
  std::vector<uint32_t> order;  // node ids, batch after batch
  std::vector<Batch> batches;
  bool gather_copy = false;  // copy scattered operands into one block first (DyNet)
  // Working memory of the schedulers, kept so that a warm schedule allocates nothing.
  std::vector<uint32_t> work_a, work_b, work_c;
  std::vector<int> work_d;
};

// DyNet-style node signature: operator, shapes, parameter operands; a product whose first
// operand is not a parameter also hashes that operand's tensor id (DyNet's MatrixMultiply
// batches only products sharing their first operand).
uint64_t dynet_signature(const Recording& rec, const RecordedNode& node, const std::vector<KernelSig>& kernels);

void schedule_none(const Recording& rec, Schedule* out);
void schedule_acrobat(const Recording& rec, size_t num_kernels, int num_phases, Schedule* out);
void schedule_acrobat_dataflow_depth(const Recording& rec, size_t num_kernels, int num_phases, Schedule* out);
void schedule_dynet_agenda(const Recording& rec, const std::vector<KernelSig>& kernels, Schedule* out);
void schedule_dynet_depth(const Recording& rec, const std::vector<KernelSig>& kernels, Schedule* out);
void schedule(Scheduler s, const Recording& rec, const std::vector<KernelSig>& kernels, int num_phases, Schedule* out);

}  // namespace perfmem::acrobat
