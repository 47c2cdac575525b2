// The runtime: parameters, inputs, interpreter, scheduler and executor put together for one
// minibatch at a time (design in runtime.h; each part in its own file).
#include "perfmem/acrobat/runtime.h"

#include <chrono>
#include <ctime>
#include <new>

#include "executor.h"
#include "inputs.h"
#include "interpreter.h"
#include "parameters.h"
#include "perfmem/core/stats.h"

namespace perfmem::acrobat {

CompileOptions compile_options_for(Scheduler s, std::map<std::string, int64_t> overrides) {
  CompileOptions o;
  o.overrides = std::move(overrides);
  bool acrobat = s == Scheduler::kAcrobat;
  o.static_depth = acrobat;
  o.ghost_ops = acrobat;
  o.coarsening = acrobat;
  o.stacked_products = acrobat;
  return o;
}

const std::vector<Ablation>& acrobat_ablations() {
  static const std::vector<Ablation> all{
      {"coarsening", [](CompileOptions& c, RuntimeOptions&) { c.coarsening = false; }},
      {"static depth", [](CompileOptions& c, RuntimeOptions&) { c.static_depth = false; }},
      {"inline depth", [](CompileOptions&, RuntimeOptions& r) { r.inline_depth = false; }},
      {"gather fusion", [](CompileOptions&, RuntimeOptions& r) { r.gather_fusion = false; }},
      {"ghost ops", [](CompileOptions& c, RuntimeOptions&) { c.ghost_ops = false; }},
      {"phases", [](CompileOptions& c, RuntimeOptions&) { c.phases = false; }},
      {"stacked products", [](CompileOptions& c, RuntimeOptions&) { c.stacked_products = false; }},
  };
  return all;
}

namespace {

double cpu_now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

struct Runtime::Impl {
  const Program* prog = nullptr;
  RuntimeOptions opt;
  std::vector<std::vector<float>> param_storage;  // parameters, then constant tensors
  std::vector<int64_t> kernel_ops;                // tensor ops per node of each kernel (group: its instructions)
  BlockArena input_arena{1 << 20};                // inputs: kept until the next set_inputs
  std::vector<Value> inputs;
  std::unique_ptr<Interpreter> interpreter;
  std::unique_ptr<Executor> executor;
  // Per minibatch (capacity reused).
  Recording recording;
  Schedule schedule;
  std::vector<uint32_t> results;
};

Runtime::~Runtime() = default;

const Program& Runtime::program() const { return *impl_->prog; }
size_t Runtime::num_inputs() const { return impl_->inputs.size(); }

Result<std::unique_ptr<Runtime>> Runtime::create(const Program& program, RuntimeOptions options) {
  std::unique_ptr<Runtime> rt(new Runtime());
  rt->impl_ = std::make_unique<Impl>();
  Impl& m = *rt->impl_;
  m.prog = &program;
  m.opt = options;
  PERFMEM_RETURN_IF_ERROR(load_parameters(program, options.params_file, &m.param_storage));
  std::vector<float*> persistent;
  for (auto& s : m.param_storage) persistent.push_back(s.data());
  m.recording.set_persistent(persistent);
  for (const auto& k : program.kernels)
    m.kernel_ops.push_back(k.group >= 0 ? static_cast<int64_t>(program.groups[k.group].instrs.size()) : 1);
  PERFMEM_ASSIGN_OR_RETURN(m.interpreter, Interpreter::create(program, options));
  m.executor = std::make_unique<Executor>(program, options);
  return rt;
}

Status Runtime::set_inputs(const std::vector<Instance>& data) {
  Impl& m = *impl_;
  m.inputs.clear();
  m.input_arena.reset();
  const Type& t = *m.prog->fns[m.prog->main_fn].params[0].type;
  for (size_t i = 0; i < data.size(); ++i) {
    PERFMEM_ASSIGN_OR_RETURN(Value v, convert_instance(*m.prog, data[i], t, i, m.input_arena));
    m.inputs.push_back(v);
  }
  return Status::Ok();
}

Status Runtime::run_minibatch(size_t begin, size_t end, std::vector<float>* outputs, RunStats* stats) {
  Impl& m = *impl_;
  if (begin > end || end > m.inputs.size())
    return input_error("minibatch", "instances [" + std::to_string(begin) + ", " + std::to_string(end) + ")",
                       "a range inside the " + std::to_string(m.inputs.size()) + " inputs");
  RunStats local;
  double t0 = now_ms();
  double cpu0 = cpu_now_ms();
  m.executor->reset();
  // Schedules and executes the nodes recorded since the last call: once at the end, and in
  // every round where the program's instances wait for tensor values.
  double flush_ms = 0;
  auto flush = [&]() -> Status {
    double f0 = now_ms();
    if (m.opt.scheduler == Scheduler::kAcrobat && !m.opt.inline_depth)
      schedule_acrobat_dataflow_depth(m.recording, m.prog->kernels.size(), m.prog->num_phases, &m.schedule);
    else
      schedule(m.opt.scheduler, m.recording, m.prog->kernels, m.prog->num_phases, &m.schedule);
    if (!m.opt.gather_fusion) m.schedule.gather_copy = true;
    double f1 = now_ms();
    local.schedule_ms += f1 - f0;
    try {
      m.executor->run(m.recording, m.schedule, &local);
    } catch (const MemoryLimitError& e) {
      return Status(StatusCode::kOutOfMemory, m.prog->file + ": instances [" + std::to_string(begin) + ", " +
                                                  std::to_string(end) + "): " + e.message);
    } catch (const std::bad_alloc&) {
      return Status(StatusCode::kOutOfMemory, m.prog->file + ": instances [" + std::to_string(begin) + ", " +
                                                  std::to_string(end) +
                                                  "): the minibatch needs more memory than the machine can give");
    }
    m.recording.executed_nodes = m.recording.nodes.size();
    flush_ms += now_ms() - f0;
    return Status::Ok();
  };
  PERFMEM_RETURN_IF_ERROR(
      m.interpreter->record(m.inputs, begin, end, &m.recording, &m.results, flush, &local.value_rounds));
  local.record_ms = now_ms() - t0 - flush_ms;
  local.ops_recorded = static_cast<int64_t>(m.recording.nodes.size());
  for (const RecordedNode& nd : m.recording.nodes) local.tensor_ops += m.kernel_ops[nd.kernel];
  local.max_depth = m.recording.max_depth;
  PERFMEM_RETURN_IF_ERROR(flush());
  int64_t out_size = m.prog->fns[m.prog->main_fn].ret->dims[0];
  for (uint32_t t : m.results) {
    const float* d = m.recording.tensors[t].data;
    PERFMEM_CHECK(d != nullptr, "main's result was never computed");
    outputs->insert(outputs->end(), d, d + out_size);
  }
  local.total_ms = now_ms() - t0;
  local.cpu_ms = cpu_now_ms() - cpu0;
  if (stats) *stats = local;
  return Status::Ok();
}

void RunStatsSeries::add(const RunStats& s) {
  total_.push_back(s.total_ms);
  cpu_.push_back(s.cpu_ms);
  record_.push_back(s.record_ms);
  schedule_.push_back(s.schedule_ms);
  kernel_.push_back(s.kernel_ms);
  ops_.push_back(static_cast<double>(s.ops_recorded));
  tensor_ops_.push_back(static_cast<double>(s.tensor_ops));
  launches_.push_back(static_cast<double>(s.kernels_launched));
  flops_.push_back(static_cast<double>(s.product_flops));
  rounds_.push_back(static_cast<double>(s.value_rounds));
}

RunStatsMedians RunStatsSeries::medians() const {
  RunStatsMedians m;
  m.minibatches = total_.size();
  m.latency = summarize(total_);
  m.cpu_ms = percentile(cpu_, 50);
  m.record_ms = percentile(record_, 50);
  m.schedule_ms = percentile(schedule_, 50);
  m.kernel_ms = percentile(kernel_, 50);
  m.ops_recorded = percentile(ops_, 50);
  m.tensor_ops = percentile(tensor_ops_, 50);
  m.kernels_launched = percentile(launches_, 50);
  m.product_flops = percentile(flops_, 50);
  m.value_rounds = percentile(rounds_, 50);
  return m;
}

}  // namespace perfmem::acrobat
