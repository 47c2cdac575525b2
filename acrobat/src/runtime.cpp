// Interpreter, recorder and the four schedulers (design in runtime.h).
#include "perfmem/acrobat/runtime.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <condition_variable>
#include <functional>
#include <limits>
#include <new>
#include <mutex>
#include <unordered_map>

#include "perfmem/acrobat/int_arith.h"
#include "perfmem/acrobat/kernels.h"
#include "perfmem/core/safetensors.h"
#include "perfmem/core/stats.h"

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

CompileOptions compile_options_for(Scheduler s, std::map<std::string, int64_t> overrides) {
  CompileOptions o;
  o.overrides = std::move(overrides);
  bool acrobat = s == Scheduler::kAcrobat;
  o.static_depth = acrobat;
  o.ghost_ops = acrobat;
  o.coarsening = acrobat;
  return o;
}

namespace {

// Run-time failure inside the interpreter (bad index, recursion too deep): unwinds to
// run_minibatch, which turns it into a Status.
struct EvalError {
  std::string message;
  bool retry_on_big_stack = false;  // the inline attempt ran out of its shallow call budget
};

// Recursion this shallow runs on the caller's stack; deeper programs are run again from the
// start on the worker thread's large stack (recording is a pure function of the inputs).
constexpr int kInlineCallDepth = 200;

struct Obj;
struct Value {
  int64_t i = 0;     // Int, Bool, or tensor id
  Obj* o = nullptr;  // tuple, constructor or list cell (nullptr = Nil)
};
struct Obj {
  int32_t tag;
  int32_t n;
  Value f[1];
};

// A minibatch would need more memory than RuntimeOptions::max_minibatch_bytes allows.
struct MemoryLimitError {
  std::string message;
};

// Bump allocator in fixed-size blocks; reset keeps the blocks. Pointers stay valid until
// reset (blocks never move). At most `limit` bytes are handed out between resets; a request
// beyond that throws MemoryLimitError before anything is allocated.
class BlockArena {
 public:
  explicit BlockArena(size_t block_bytes) : block_bytes_(block_bytes) {}
  void set_limit(int64_t limit) { limit_ = limit; }

  // count * elem_bytes bytes (at least one element), the product checked for overflow.
  void* alloc_array(int64_t count, int64_t elem_bytes) {
    int64_t bytes = 0;
    if (count < 0 || __builtin_mul_overflow(std::max<int64_t>(count, 1), elem_bytes, &bytes) ||
        bytes > limit_ - handed_out_)
      throw MemoryLimitError{"the minibatch needs more than the memory limit of " + std::to_string(limit_) +
                             " bytes (a block of " + std::to_string(count) + " x " + std::to_string(elem_bytes) +
                             " bytes after " + std::to_string(handed_out_) + " bytes)"};
    return alloc(static_cast<size_t>(bytes));
  }
  float* alloc_floats(int64_t count) { return static_cast<float*>(alloc_array(count, sizeof(float))); }

  void* alloc(size_t bytes) {
    if (bytes > static_cast<size_t>(limit_ - handed_out_))
      throw MemoryLimitError{"the minibatch needs more than the memory limit of " + std::to_string(limit_) + " bytes"};
    bytes = (bytes + 63) & ~size_t{63};
    handed_out_ += static_cast<int64_t>(bytes);
    if (cur_ < blocks_.size() && used_ + bytes <= sizes_[cur_]) {
      void* p = blocks_[cur_].get() + used_;
      used_ += bytes;
      return p;
    }
    // Next block that fits (blocks are reused after reset).
    while (++cur_ < blocks_.size()) {
      if (bytes <= sizes_[cur_]) {
        used_ = bytes;
        return blocks_[cur_].get();
      }
    }
    size_t size = std::max(block_bytes_, bytes);
    blocks_.emplace_back(static_cast<char*>(::operator new[](size, std::align_val_t{64})));
    sizes_.push_back(size);
    cur_ = blocks_.size() - 1;
    used_ = bytes;
    return blocks_[cur_].get();
  }
  void reset() {
    cur_ = 0;
    used_ = 0;
    handed_out_ = 0;
  }

 private:
  struct Free {
    void operator()(char* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  size_t block_bytes_;
  std::vector<std::unique_ptr<char[], Free>> blocks_;
  std::vector<size_t> sizes_;
  size_t cur_ = 0, used_ = 0;
  int64_t limit_ = std::numeric_limits<int64_t>::max() / 2;
  int64_t handed_out_ = 0;
};

struct TensorRec {
  float* data = nullptr;  // null until the producing node has executed
  int32_t node = -1;      // producing node, -1 for parameters, constants and views
};

struct Node {
  int32_t kernel;
  int32_t depth;
  int32_t phase;
  uint32_t arg_begin;
  uint16_t nargs;
  uint16_t nouts;
  uint32_t out;  // first output tensor id
};

constexpr int kMaxArgs = 64;

double cpu_now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) * 1e-6;
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int64_t numel(const std::vector<int64_t>& d) {
  int64_t n = 1;
  for (int64_t x : d) n *= x;
  return n;
}

}  // namespace

// The interpreter recurses with the program (a tree of height 10000 is 10000 nested calls),
// so it runs on a worker thread with a 1 GiB stack (reserved, touched only as deep as used).
// The thread is created once per runtime and handed one job per minibatch.
class BigStackWorker {
 public:
  ~BigStackWorker() {
    if (!started_) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    pthread_join(thread_, nullptr);
  }

  void run(const std::function<void()>& job) {
    if (!started_ && !start()) {
      job();  // no thread: fall back to the caller's stack
      return;
    }
    std::unique_lock<std::mutex> lock(mu_);
    job_ = &job;
    cv_.notify_all();
    cv_.wait(lock, [&] { return job_ == nullptr; });
  }

 private:
  bool start() {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, size_t{1} << 30);
    started_ = pthread_create(&thread_, &attr, [](void* self) -> void* {
                 static_cast<BigStackWorker*>(self)->loop();
                 return nullptr;
               }, this) == 0;
    pthread_attr_destroy(&attr);
    return started_;
  }
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stop_ || job_ != nullptr; });
      if (stop_) return;
      (*job_)();
      job_ = nullptr;
      cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  const std::function<void()>* job_ = nullptr;
  bool stop_ = false, started_ = false;
  pthread_t thread_{};
};

struct Runtime::Impl {
  BigStackWorker worker;
  const Program* prog = nullptr;
  RuntimeOptions opt;
  bool dynet = false, acrobat = false, eager = false;
  int static_base = 0;  // first dynamic depth of a phase (= max static depth + 1)

  std::vector<std::vector<float>> param_storage;
  size_t num_persistent_tensors = 0;
  std::vector<int64_t> kernel_out_size;
  std::vector<int64_t> kernel_ops;  // tensor ops per node of each kernel (group: its instructions)
  std::vector<int64_t> param_row;  // elements per lookup row, per parameter

  // Inputs (persistent).
  BlockArena input_arena{1 << 20};
  std::vector<Value> inputs;

  // Per minibatch.
  BlockArena obj_arena{1 << 20};
  BlockArena float_arena{16 << 20};
  std::vector<TensorRec> tensors;
  std::vector<Node> nodes;
  std::vector<uint32_t> args;
  // Call frames: one zero-filled reservation (calloc: pages are touched only as deep as the
  // recursion goes), never reallocated, since frames are addressed by pointer.
  struct FreeValues {
    void operator()(Value* p) const { std::free(p); }
  };
  std::unique_ptr<Value, FreeValues> frames;
  size_t frames_cap = 0;
  size_t frame_top = 0;
  int depth = 0, phase = 0, call_depth = 0, call_limit = 0;
  size_t instance = 0;

  kernels::Scratch scratch;
  std::vector<float*> ptr_buf;  // operand pointer arrays (never written through for inputs)
  std::vector<float*> out_buf;
  RunStats* stats = nullptr;

  // ---------------------------------------------------------------- tensors & recording
  uint32_t new_tensor(float* data, int32_t node) {
    tensors.push_back({data, node});
    return static_cast<uint32_t>(tensors.size() - 1);
  }

  uint32_t record(int kernel, int node_depth, const uint32_t* a, int nargs, int nouts) {
    Node n;
    n.kernel = kernel;
    n.depth = node_depth;
    n.phase = phase;
    n.arg_begin = static_cast<uint32_t>(args.size());
    n.nargs = static_cast<uint16_t>(nargs);
    n.nouts = static_cast<uint16_t>(nouts);
    int32_t id = static_cast<int32_t>(nodes.size());
    n.out = static_cast<uint32_t>(tensors.size());
    args.insert(args.end(), a, a + nargs);
    for (int k = 0; k < nouts; ++k) tensors.push_back({nullptr, id});
    nodes.push_back(n);
    stats->tensor_ops += kernel_ops[kernel];
    if (eager) {
      double t0 = now_ms();
      uint32_t only = static_cast<uint32_t>(id);
      execute(kernel, &only, 1, false);
      stats->kernel_ms += now_ms() - t0;
      stats->kernels_launched++;
    }
    return n.out;
  }

  // ---------------------------------------------------------------- interpreter
  // Every frame is one call (pending while its arguments are evaluated, then running), so
  // counting frames bounds the recursion: frames_cap >= max_call_depth * largest frame.
  Value* push_frame(int n, const std::string& fn) {
    if (++call_depth > call_limit) {
      if (call_limit < opt.max_call_depth) throw EvalError{"", true};
      throw EvalError{"instance " + std::to_string(instance) + ": recursion deeper than " +
                      std::to_string(opt.max_call_depth) + " calls (in " + fn + ")"};
    }
    if (frame_top + n > frames_cap)
      throw EvalError{"instance " + std::to_string(instance) + ": recursion too deep (" +
                      std::to_string(frames_cap) + " frame slots used)"};
    Value* f = frames.get() + frame_top;
    frame_top += n;
    return f;
  }

  [[noreturn]] void fail_at(const Expr& e, const std::string& what) {
    throw EvalError{format_pos(prog->file, e.pos) + ": instance " + std::to_string(instance) + ": " + what};
  }

  Obj* new_obj(int tag, int n) {
    auto* o = static_cast<Obj*>(obj_arena.alloc(sizeof(Obj) + sizeof(Value) * std::max(0, n - 1)));
    o->tag = tag;
    o->n = n;
    return o;
  }

  Value call(int fn, Value* frame) { return eval(*prog->fns[fn].body, frame); }

  void pop_frame(size_t mark) {
    frame_top = mark;
    --call_depth;
  }

  // Evaluates the arguments of a call into a fresh frame, in parallel (same start depth).
  Value eval_call(int fn, const Expr& e, Value* fr) {
    const FnDecl& f = prog->fns[fn];
    size_t mark = frame_top;
    Value* callee = push_frame(std::max(f.num_slots, 1), f.name);
    int start = depth, end = depth;
    for (size_t i = 0; i < e.args.size(); ++i) {
      depth = start;
      callee[i] = eval(*e.args[i], fr);
      end = std::max(end, depth);
    }
    depth = end;
    Value r = call(fn, callee);
    pop_frame(mark);
    return r;
  }

  void bind(const Pattern& p, Value v, Value* fr) {
    switch (p.kind) {
      case Pattern::kWild: return;
      case Pattern::kVar: fr[p.slot] = v; return;
      case Pattern::kTuple:
        for (size_t i = 0; i < p.elems.size(); ++i) bind(p.elems[i], v.o->f[i], fr);
        return;
    }
  }

  Value eval(const Expr& e, Value* fr) {
    switch (e.kind) {
      case ExprKind::kIntLit:
      case ExprKind::kBoolLit: return {e.ival, nullptr};
      case ExprKind::kGlobal: return {e.global_is_const ? e.ival : e.global, nullptr};
      case ExprKind::kVar: return fr[e.slot];
      case ExprKind::kBinary: {
        if (e.bin == BinOp::kAnd) return {eval(*e.args[0], fr).i && eval(*e.args[1], fr).i, nullptr};
        if (e.bin == BinOp::kOr) return {eval(*e.args[0], fr).i || eval(*e.args[1], fr).i, nullptr};
        int start = depth;
        int64_t a = eval(*e.args[0], fr).i;
        int mid = depth;
        depth = start;
        int64_t b = eval(*e.args[1], fr).i;
        depth = std::max(depth, mid);
        IntResult r = checked_binary(e.bin, a, b);
        if (r.error) fail_at(e, std::string("expected ") + r.error);
        return {r.value, nullptr};
      }
      case ExprKind::kUnary: {
        int64_t a = eval(*e.args[0], fr).i;
        if (e.name != "-") return {!a, nullptr};
        IntResult r = checked_negate(a);
        if (r.error) fail_at(e, std::string("expected ") + r.error);
        return {r.value, nullptr};
      }
      case ExprKind::kTuple:
      case ExprKind::kCtor: {
        int n = static_cast<int>(e.args.size());
        Obj* o = new_obj(e.kind == ExprKind::kTuple ? 0 : e.ctor_index, n);
        int start = depth, end = depth;
        for (int i = 0; i < n; ++i) {
          depth = start;
          o->f[i] = eval(*e.args[i], fr);
          end = std::max(end, depth);
        }
        depth = end;
        return {0, o};
      }
      case ExprKind::kLet: {
        if (e.group >= 0) return eval_group(e, fr);
        Value v = eval(*e.args[0], fr);
        bind(e.pat, v, fr);
        return eval(*e.args[1], fr);
      }
      case ExprKind::kIf: {
        bool c = eval(*e.args[0], fr).i != 0;
        Value v = eval(*e.args[c ? 1 : 2], fr);
        depth += c ? e.ghost_then : e.ghost_else;
        return v;
      }
      case ExprKind::kMatch: {
        Value s = eval(*e.args[0], fr);
        int tag = e.adt < 0 ? (s.o ? 1 : 0) : s.o->tag;
        for (const auto& arm : e.arms) {
          if (arm.ctor_index != tag) continue;
          for (size_t i = 0; i < arm.slots.size(); ++i)
            if (arm.slots[i] >= 0) fr[arm.slots[i]] = s.o->f[i];
          Value v = eval(*arm.body, fr);
          depth += arm.ghost;
          return v;
        }
        fail_at(e, "no match arm for the value");
      }
      case ExprKind::kPhase:
        phase = static_cast<int>(e.ival);
        depth = static_base;
        return eval(*e.args[0], fr);
      case ExprKind::kCall: return eval_call(e.callee, e, fr);
      case ExprKind::kMap: {
        Value list = eval(*e.args[1], fr);
        const FnDecl& f = prog->fns[e.callee];
        int start = depth, end = depth;
        Obj* head = nullptr;
        Obj** tail = &head;
        for (Obj* c = list.o; c; c = c->f[1].o) {
          depth = start;
          size_t mark = frame_top;
          Value* callee = push_frame(std::max(f.num_slots, 1), f.name);
          callee[0] = c->f[0];
          Value r = call(e.callee, callee);
          pop_frame(mark);
          end = std::max(end, depth);
          Obj* cell = new_obj(1, 2);
          cell->f[0] = r;
          cell->f[1] = {0, nullptr};
          *tail = cell;
          tail = &cell->f[1].o;
        }
        depth = end;
        return {0, head};
      }
      case ExprKind::kFoldl: {
        Value acc = eval(*e.args[1], fr);
        Value list = eval(*e.args[2], fr);
        const FnDecl& f = prog->fns[e.callee];
        for (Obj* c = list.o; c; c = c->f[1].o) {
          size_t mark = frame_top;
          Value* callee = push_frame(std::max(f.num_slots, 2), f.name);
          callee[0] = acc;
          callee[1] = c->f[0];
          acc = call(e.callee, callee);
          pop_frame(mark);
        }
        return acc;
      }
      case ExprKind::kReverse: {
        Value list = eval(*e.args[0], fr);
        Obj* out = nullptr;
        for (Obj* c = list.o; c; c = c->f[1].o) {
          Obj* cell = new_obj(1, 2);
          cell->f[0] = c->f[0];
          cell->f[1] = {0, out};
          out = cell;
        }
        return {0, out};
      }
      case ExprKind::kLength: {
        Value list = eval(*e.args[0], fr);
        int64_t n = 0;
        for (Obj* c = list.o; c; c = c->f[1].o) ++n;
        return {n, nullptr};
      }
      case ExprKind::kOp: return eval_op(e, fr);
      default: break;
    }
    fail_at(e, "unsupported expression");
  }

  Value eval_op(const Expr& e, Value* fr) {
    if (e.op == OpKind::kFill)
      return {static_cast<int64_t>(prog->params.size()) + e.constant_tensor, nullptr};
    if (e.op == OpKind::kLookup) {
      int pid = e.args[0]->global;
      int64_t rows = prog->params[pid].type->dims[0];
      int64_t idx = eval(*e.args[1], fr).i;
      if (idx < 0 || idx >= rows)
        fail_at(e, "lookup index " + std::to_string(idx) + " outside [0, " + std::to_string(rows) + ")");
      uint32_t view = new_tensor(tensors[pid].data + idx * param_row[pid], -1);
      if (!dynet) return {view, nullptr};
      // DyNet copies the looked-up row into the graph.
      uint32_t la[2] = {static_cast<uint32_t>(pid), view};
      return {record(e.kernel, 0, la, 2, 1), nullptr};
    }
    int n = static_cast<int>(e.args.size());
    uint32_t a[kMaxArgs];
    int start = depth, end = depth;
    for (int i = 0; i < n; ++i) {
      depth = start;
      a[i] = static_cast<uint32_t>(eval(*e.args[i], fr).i);
      end = std::max(end, depth);
    }
    depth = end;
    int d;
    if (acrobat && e.static_depth >= 0) {
      d = e.static_depth;
    } else {
      d = depth++;
    }
    stats->max_depth = std::max<int64_t>(stats->max_depth, d);
    return {record(e.kernel, d, a, n, 1), nullptr};
  }

  Value eval_group(const Expr& let, Value* fr) {
    const FusedGroup& g = prog->groups[let.group];
    uint32_t a[kMaxArgs];
    int n = static_cast<int>(g.input_slots.size());
    PERFMEM_CHECK(n <= kMaxArgs, "fused group with too many inputs");
    for (int i = 0; i < n; ++i)
      a[i] = g.input_slots[i] >= 0 ? static_cast<uint32_t>(fr[g.input_slots[i]].i)
                                   : static_cast<uint32_t>(g.reg_param[g.input_regs[i]]);
    int d = (acrobat && let.static_depth >= 0) ? let.static_depth : depth++;
    stats->max_depth = std::max<int64_t>(stats->max_depth, d);
    uint32_t out = record(let.kernel, d, a, n, static_cast<int>(g.output_regs.size()));
    for (size_t j = 0; j < g.output_slots.size(); ++j) fr[g.output_slots[j]] = {static_cast<int64_t>(out + j), nullptr};
    return eval(*g.last_let->args[1], fr);
  }

  // ---------------------------------------------------------------- execution of a batch
  const float* const* arg_ptrs(const uint32_t* batch, int n, int i, bool shared, bool gather_copy, int64_t size) {
    size_t base = ptr_buf.size();
    ptr_buf.resize(base + n);
    float** p = ptr_buf.data() + base;
    for (int b = 0; b < n; ++b) {
      const Node& nd = nodes[batch[b]];
      const TensorRec& t = tensors[args[nd.arg_begin + i]];
      if (opt.verify) {
        PERFMEM_CHECK(t.data != nullptr, "schedule check: operand used before it was computed");
        if (shared) PERFMEM_CHECK(args[nd.arg_begin + i] == args[nodes[batch[0]].arg_begin + i],
                                  "schedule check: a shared parameter differs across a batch");
      }
      p[b] = t.data;
    }
    if (gather_copy && !shared && n > 1 && size > 0) {
      bool adjacent = true;
      for (int b = 1; b < n && adjacent; ++b) adjacent = p[b] == p[0] + b * size;
      if (!adjacent) {
        float* block = float_arena.alloc_floats(int64_t{n} * size);
        for (int b = 0; b < n; ++b) {
          std::memcpy(block + b * size, p[b], sizeof(float) * size);
          p[b] = block + b * size;
        }
      }
    }
    return p;
  }

  void run_kernel(const KernelSig& sig, int n, const float* const* const* a, float* const* out) {
    double t0 = opt.profile ? now_ms() : 0;
    if (opt.reference_kernels) kernels::run_reference(sig, n, a, out);
    else kernels::run_batched(sig, n, a, out, scratch);
    if (opt.profile) {
      std::string key = op_name(sig.op);
      if ((sig.op == OpKind::kMatMul || sig.op == OpKind::kDense) && sig.shared_param[0] < 0) key += "(per-instance)";
      stats->kernel_ms_by_op[key] += now_ms() - t0;
    }
  }

  void execute(int kernel, const uint32_t* batch, int n, bool gather_copy) {
    const KernelSig& sig = prog->kernels[kernel];
    ptr_buf.clear();
    out_buf.clear();
    if (sig.group >= 0) return execute_group(sig.group, batch, n);
    int nargs = static_cast<int>(sig.arg_dims.size());
    // Pointer arrays are taken by index: ptr_buf may grow while they are built.
    size_t offs[kMaxArgs];
    for (int i = 0; i < nargs; ++i) {
      offs[i] = ptr_buf.size();
      // A lookup is itself the copy of its rows: nothing to gather first.
      arg_ptrs(batch, n, i, sig.shared_param[i] >= 0, gather_copy && sig.op != OpKind::kLookup,
               numel(sig.arg_dims[i]));
    }
    const float* const* a[kMaxArgs];
    for (int i = 0; i < nargs; ++i) a[i] = ptr_buf.data() + offs[i];
    if (sig.op == OpKind::kSlice) {  // a view: the output points into the operand
      int64_t row = sig.arg_dims[0].size() == 2 ? sig.arg_dims[0][1] : 1;
      for (int b = 0; b < n; ++b) tensors[nodes[batch[b]].out].data = const_cast<float*>(a[0][b]) + sig.ints[0] * row;
      return;
    }
    int64_t size = kernel_out_size[kernel];
    float* block = float_arena.alloc_floats(int64_t{n} * size);
    out_buf.resize(n);
    for (int b = 0; b < n; ++b) {
      out_buf[b] = block + b * size;
      tensors[nodes[batch[b]].out].data = out_buf[b];
    }
    run_kernel(sig, n, a, out_buf.data());
  }

  // How a fused group executes: its instructions split into steps. A step is either one
  // instruction over a whole tile (products: one GEMM per tile) or a run of consecutive
  // elementwise instructions and slices, executed instance by instance so that the
  // instance's intermediates stay in L1 (one pass over the tile instead of one per
  // instruction). Registers defined and used only inside one run ("local") live in a
  // per-instance buffer reused by every instance and never reach memory.
  struct GroupStep {
    size_t begin, end;  // instructions [begin, end)
    bool fused;
  };
  struct GroupPlan {
    bool built = false;
    std::vector<GroupStep> steps;
    std::vector<char> local;        // per register
    std::vector<int64_t> local_off; // per local register (not slices): offset in the buffer
    int64_t local_size = 0;
  };

  void build_plan(const FusedGroup& g, GroupPlan& plan) {
    plan.built = true;
    bool fuse = !opt.reference_kernels;
    size_t count = g.instrs.size();
    std::vector<int> run_of(count, -1);
    for (size_t k = 0; k < count;) {
      const GroupInstr& in = g.instrs[k];
      bool movable = fuse && !in.paired_with_next &&
                     (kernels::is_elementwise(in.sig.op) || in.sig.op == OpKind::kSlice);
      if (!movable) {
        plan.steps.push_back({k, k + 1, false});
        k += in.paired_with_next ? 2 : 1;
        continue;
      }
      size_t end = k;
      while (end < count && !g.instrs[end].paired_with_next &&
             (kernels::is_elementwise(g.instrs[end].sig.op) || g.instrs[end].sig.op == OpKind::kSlice))
        ++end;
      for (size_t j = k; j < end; ++j) run_of[j] = static_cast<int>(plan.steps.size());
      plan.steps.push_back({k, end, true});
      k = end;
    }
    // A register is local when a fused run defines it and nothing outside that run reads it.
    std::vector<int> def_run(g.num_regs, -1);
    for (size_t k = 0; k < count; ++k) def_run[g.instrs[k].out] = run_of[k];
    plan.local.assign(g.num_regs, 0);
    for (int r = 0; r < g.num_regs; ++r) plan.local[r] = def_run[r] >= 0;
    for (int r : g.output_regs) plan.local[r] = 0;
    for (size_t k = 0; k < count; ++k)
      for (int r : g.instrs[k].regs)
        if (def_run[r] >= 0 && run_of[k] != def_run[r]) plan.local[r] = 0;
    plan.local_off.assign(g.num_regs, 0);
    for (const GroupInstr& in : g.instrs)
      if (plan.local[in.out] && in.sig.op != OpKind::kSlice) {
        plan.local_off[in.out] = plan.local_size;
        plan.local_size += (g.reg_size[in.out] + 15) / 16 * 16;  // 64-byte aligned rows
      }
  }

  // A fused group runs step by step over tiles of instances (see GroupStep): same-op calls
  // stay batched, products by a parameter stay one GEMM per tile, and the tile's
  // intermediates stay in cache. Non-local intermediates live in one scratch block reused by
  // every tile; outputs get contiguous arena blocks for the whole batch. Slices are views
  // (pointer offsets), never copies.
  void execute_group(int group, const uint32_t* batch, int n) {
    const FusedGroup& g = prog->groups[group];
    if (group_plans_.size() < prog->groups.size()) group_plans_.resize(prog->groups.size());
    GroupPlan& plan = group_plans_[group];
    if (!plan.built) build_plan(g, plan);
    const int64_t tile_bytes = std::max<int64_t>(1, opt.group_tile_bytes);
    group_reg_off_.assign(g.num_regs, 0);
    group_kind_.assign(g.num_regs, 0);  // 0 internal, 1 input, 2 output
    for (int r : g.output_regs) group_kind_[r] = 2;
    for (size_t i = 0; i < g.input_regs.size(); ++i) {
      int r = g.input_regs[i];
      group_kind_[r] = 1;
      group_reg_off_[r] = ptr_buf.size();
      arg_ptrs(batch, n, static_cast<int>(i), g.reg_param[r] >= 0, false, g.reg_size[r]);
    }
    // Internal registers that need tile storage: not local, not a slice (a view).
    std::vector<char>& stored = group_stored_;
    stored.assign(g.num_regs, 0);
    for (const GroupInstr& in : g.instrs)
      stored[in.out] = group_kind_[in.out] == 0 && !plan.local[in.out] && in.sig.op != OpKind::kSlice;
    int64_t internal_per_instance = 0;
    for (int r = 0; r < g.num_regs; ++r)
      if (stored[r]) internal_per_instance += g.reg_size[r];
    // Products keep at least group_min_tile_rows rows per call (RuntimeOptions).
    bool has_product = false;
    for (const GroupInstr& in : g.instrs) has_product |= in.sig.op == OpKind::kMatMul || in.sig.op == OpKind::kDense;
    int64_t min_tile = std::max(1, has_product ? opt.group_min_tile_rows : std::min(32, opt.group_min_tile_rows));
    int tile = n;
    if (internal_per_instance * 4 * n > tile_bytes)
      tile = static_cast<int>(std::clamp<int64_t>(tile_bytes / std::max<int64_t>(1, internal_per_instance * 4), std::min<int64_t>(min_tile, n), n));
    float* scratch_block = float_arena.alloc_floats(internal_per_instance * tile);
    // In instruction order, so the results of a paired product are adjacent in memory.
    for (const GroupInstr& instr : g.instrs) {
      int r = instr.out;
      if (group_kind_[r] == 1) continue;
      group_reg_off_[r] = ptr_buf.size();
      if (group_kind_[r] == 0) {
        ptr_buf.resize(ptr_buf.size() + tile);
        if (stored[r]) {
          for (int b = 0; b < tile; ++b) ptr_buf[group_reg_off_[r] + b] = scratch_block + b * g.reg_size[r];
          scratch_block += g.reg_size[r] * tile;
        }
      } else {
        float* block = float_arena.alloc_floats(g.reg_size[r] * n);
        ptr_buf.resize(ptr_buf.size() + n);
        for (int b = 0; b < n; ++b) ptr_buf[group_reg_off_[r] + b] = block + b * g.reg_size[r];
      }
    }
    if (local_buf_.size() < static_cast<size_t>(plan.local_size) + 16) local_buf_.resize(plan.local_size + 16);
    float* local_base = local_buf_.data();
    local_base += ((64 - reinterpret_cast<uintptr_t>(local_base) % 64) % 64) / sizeof(float);
    for (int t0 = 0; t0 < n; t0 += tile) {
      int count = std::min(tile, n - t0);
      // Register r's pointers for this tile: internal registers restart at 0 every tile.
      auto regs_at = [&](int r) { return ptr_buf.data() + group_reg_off_[r] + (group_kind_[r] == 0 ? 0 : t0); };
      for (const GroupStep& step : plan.steps) {
        const GroupInstr& in = g.instrs[step.begin];
        if (step.fused) {
          run_fused(g, plan, step, count, regs_at, local_base);
          continue;
        }
        if (in.paired_with_next) {
          // One GEMM over both instructions' rows: concatenated pointer arrays.
          const GroupInstr& next = g.instrs[step.begin + 1];
          pair_in_.clear();
          pair_out_.clear();
          for (const GroupInstr* x : {&in, &next}) {
            float* const* src = regs_at(x->regs[1]);
            float* const* dst = regs_at(x->out);
            pair_in_.insert(pair_in_.end(), src, src + count);
            pair_out_.insert(pair_out_.end(), dst, dst + count);
          }
          const float* const* a[kMaxArgs];
          for (size_t i = 0; i < in.regs.size(); ++i) a[i] = regs_at(in.regs[i]);
          // Shared operands read [0] only; the per-instance operand gets the joint array.
          a[1] = pair_in_.data();
          run_kernel(in.sig, 2 * count, a, pair_out_.data());
          continue;
        }
        if (in.sig.op == OpKind::kSlice) {
          int64_t row = in.sig.arg_dims[0].size() == 2 ? in.sig.arg_dims[0][1] : 1;
          float* const* src = regs_at(in.regs[0]);
          float** dst = regs_at(in.out);
          for (int b = 0; b < count; ++b) dst[b] = src[g.reg_param[in.regs[0]] >= 0 ? 0 : b] + in.sig.ints[0] * row;
          continue;
        }
        const float* const* a[kMaxArgs];
        for (size_t i = 0; i < in.regs.size(); ++i) a[i] = regs_at(in.regs[i]);
        run_kernel(in.sig, count, a, regs_at(in.out));
      }
    }
    for (size_t j = 0; j < g.output_regs.size(); ++j)
      for (int b = 0; b < n; ++b) tensors[nodes[batch[b]].out + j].data = ptr_buf[group_reg_off_[g.output_regs[j]] + b];
  }

  // One fused run over `count` instances of a tile, instance by instance.
  template <class RegsAt>
  void run_fused(const FusedGroup& g, const GroupPlan& plan, const GroupStep& step, int count,
                 const RegsAt& regs_at, float* local_base) {
    double t0 = opt.profile ? now_ms() : 0;
    std::vector<float*>& cur = fused_cur_;  // this instance's local registers
    cur.assign(g.num_regs, nullptr);
    for (int r = 0; r < g.num_regs; ++r)
      if (plan.local[r]) cur[r] = local_base + plan.local_off[r];
    for (int b = 0; b < count; ++b) {
      for (size_t k = step.begin; k < step.end; ++k) {
        const GroupInstr& in = g.instrs[k];
        const float* operands[kMaxArgs];
        for (size_t i = 0; i < in.regs.size(); ++i) {
          int r = in.regs[i];
          operands[i] = plan.local[r] ? cur[r] : regs_at(r)[b];
        }
        float* out;
        if (in.sig.op == OpKind::kSlice) {
          int64_t row = in.sig.arg_dims[0].size() == 2 ? in.sig.arg_dims[0][1] : 1;
          out = const_cast<float*>(operands[0]) + in.sig.ints[0] * row;
          if (plan.local[in.out]) cur[in.out] = out;
          else regs_at(in.out)[b] = out;
          continue;
        }
        out = plan.local[in.out] ? cur[in.out] : regs_at(in.out)[b];
        kernels::run_elementwise(in.sig, operands, out);
      }
    }
    if (opt.profile) stats->kernel_ms_by_op["elementwise (fused)"] += now_ms() - t0;
  }
  std::vector<GroupPlan> group_plans_;
  std::vector<char> group_stored_;
  std::vector<float> local_buf_;
  std::vector<float*> fused_cur_;
  std::vector<size_t> group_reg_off_;
  std::vector<int> group_kind_;
  std::vector<float*> pair_in_, pair_out_;

  // ---------------------------------------------------------------- schedulers
  void schedule_acrobat() {
    double t0 = now_ms();
    size_t count = nodes.size();
    int max_d = 0;
    for (const Node& nd : nodes) max_d = std::max(max_d, nd.depth);
    size_t per_phase = static_cast<size_t>(max_d) + 1;
    size_t buckets = per_phase * prog->num_phases;
    std::vector<uint32_t>& start = bucket_start_;
    start.assign(buckets + 1, 0);
    for (const Node& nd : nodes) start[nd.phase * per_phase + nd.depth + 1]++;
    for (size_t b = 0; b < buckets; ++b) start[b + 1] += start[b];
    order_.resize(count);
    cursor_.assign(start.begin(), start.end() - 1);
    for (size_t i = 0; i < count; ++i) {
      const Node& nd = nodes[i];
      order_[cursor_[nd.phase * per_phase + nd.depth]++] = static_cast<uint32_t>(i);
    }
    // Inside a bucket: group by kernel with a counting pass over the kernels it touches.
    kernel_count_.assign(prog->kernels.size(), 0);
    sorted_.resize(count);
    batches_.clear();
    for (size_t b = 0; b < buckets; ++b) {
      uint32_t lo = start[b], hi = start[b + 1];
      if (lo == hi) continue;
      touched_.clear();
      for (uint32_t i = lo; i < hi; ++i) {
        int k = nodes[order_[i]].kernel;
        if (kernel_count_[k]++ == 0) touched_.push_back(k);
      }
      uint32_t pos = lo;
      for (int k : touched_) {
        uint32_t c = kernel_count_[k];
        batches_.push_back({k, pos, c});
        kernel_count_[k] = pos;  // reuse as the write cursor
        pos += c;
      }
      for (uint32_t i = lo; i < hi; ++i) {
        uint32_t id = order_[i];
        sorted_[kernel_count_[nodes[id].kernel]++] = id;
      }
      for (int k : touched_) kernel_count_[k] = 0;
    }
    stats->schedule_ms += now_ms() - t0;
    double t1 = now_ms();
    for (const auto& bt : batches_) execute(bt.kernel, sorted_.data() + bt.begin, static_cast<int>(bt.count), false);
    stats->kernel_ms += now_ms() - t1;
    stats->kernels_launched += static_cast<int64_t>(batches_.size());
  }

  // DyNet-style signature: hashed from the node's operator, shapes and parameter operands.
  uint64_t signature(const Node& nd) {
    const KernelSig& sig = prog->kernels[nd.kernel];
    uint64_t h = 1469598103934665603ull;
    auto mix = [&](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    mix(static_cast<uint64_t>(sig.op));
    for (int64_t d : sig.out_dims) mix(static_cast<uint64_t>(d));
    for (int i = 0; i < nd.nargs; ++i) {
      if (sig.shared_param[i] >= 0) mix(0x1000000ull + args[nd.arg_begin + i]);
      else for (int64_t d : sig.arg_dims[i]) mix(static_cast<uint64_t>(d));
    }
    // DyNet's MatrixMultiply batches a product only when the first operand is the same node
    // (a parameter); a product by a computed matrix (MV-RNN's B a) never batches.
    if ((sig.op == OpKind::kMatMul || sig.op == OpKind::kDense) && sig.shared_param[0] < 0)
      mix(0x2000000000ull + args[nd.arg_begin]);
    for (int64_t v : sig.ints) mix(static_cast<uint64_t>(v));
    return h;
  }

  void schedule_dynet(bool by_depth) {
    double t0 = now_ms();
    size_t count = nodes.size();
    std::unordered_map<uint64_t, int> sig_ids;
    std::vector<int> sig(count);
    std::vector<int> sig_kernel;
    for (size_t i = 0; i < count; ++i) {
      auto [it, inserted] = sig_ids.emplace(signature(nodes[i]), static_cast<int>(sig_ids.size()));
      if (inserted) sig_kernel.push_back(nodes[i].kernel);
      sig[i] = it->second;
    }
    double sched = now_ms() - t0;
    double kern = 0;
    int64_t launches = 0;
    auto run = [&](std::vector<uint32_t>& batch, int s) {
      double k0 = now_ms();
      execute(sig_kernel[s], batch.data(), static_cast<int>(batch.size()), true);
      kern += now_ms() - k0;
      ++launches;
    };
    if (by_depth) {
      double s0 = now_ms();
      std::vector<int> dep(count, 0);
      for (size_t i = 0; i < count; ++i) {
        int d = 0;
        const Node& nd = nodes[i];
        for (int a = 0; a < nd.nargs; ++a) {
          int32_t p = tensors[args[nd.arg_begin + a]].node;
          if (p >= 0) d = std::max(d, dep[p] + 1);
        }
        dep[i] = d;
      }
      std::unordered_map<uint64_t, size_t> group_of;
      std::vector<std::pair<std::pair<int, int>, std::vector<uint32_t>>> groups;
      for (size_t i = 0; i < count; ++i) {
        uint64_t key = (static_cast<uint64_t>(dep[i]) << 32) | static_cast<uint32_t>(sig[i]);
        auto [it, inserted] = group_of.emplace(key, groups.size());
        if (inserted) groups.push_back({{dep[i], sig[i]}, {}});
        groups[it->second].second.push_back(static_cast<uint32_t>(i));
      }
      std::stable_sort(groups.begin(), groups.end(), [](const auto& x, const auto& y) { return x.first.first < y.first.first; });
      sched += now_ms() - s0;
      for (auto& g : groups) run(g.second, g.first.second);
    } else {
      double s0 = now_ms();
      std::vector<int> indeg(count, 0);
      std::vector<uint32_t> succ_start(count + 1, 0), succ;
      for (size_t i = 0; i < count; ++i) {
        const Node& nd = nodes[i];
        for (int a = 0; a < nd.nargs; ++a) {
          int32_t p = tensors[args[nd.arg_begin + a]].node;
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
        const Node& nd = nodes[i];
        for (int a = 0; a < nd.nargs; ++a) {
          int32_t p = tensors[args[nd.arg_begin + a]].node;
          if (p >= 0) succ[fill[p]++] = static_cast<uint32_t>(i);
        }
      }
      std::vector<std::vector<uint32_t>> ready(sig_ids.size());
      for (size_t i = 0; i < count; ++i)
        if (indeg[i] == 0) ready[sig[i]].push_back(static_cast<uint32_t>(i));
      sched += now_ms() - s0;
      std::vector<uint32_t> batch;
      while (true) {
        double s1 = now_ms();
        int best = -1;
        for (size_t s = 0; s < ready.size(); ++s)
          if (!ready[s].empty() && (best < 0 || ready[s].size() > ready[best].size())) best = static_cast<int>(s);
        if (best < 0) {
          sched += now_ms() - s1;
          break;
        }
        batch.swap(ready[best]);
        ready[best].clear();
        sched += now_ms() - s1;
        run(batch, best);
        double s2 = now_ms();
        for (uint32_t id : batch)
          for (uint32_t k = succ_start[id]; k < succ_start[id + 1]; ++k)
            if (--indeg[succ[k]] == 0) ready[sig[succ[k]]].push_back(succ[k]);
        sched += now_ms() - s2;
      }
    }
    stats->schedule_ms += sched;
    stats->kernel_ms += kern;
    stats->kernels_launched += launches;
  }

  struct Batch {
    int kernel;
    uint32_t begin, count;
  };
  std::vector<uint32_t> bucket_start_, order_, cursor_, sorted_, kernel_count_;
  std::vector<int> touched_;
  std::vector<Batch> batches_;

  // ---------------------------------------------------------------- inputs
  Result<Value> convert(const Instance& inst, const Type& t, size_t index) {
    auto mismatch = [&](const std::string& what) {
      return input_error("instance " + std::to_string(index), "main's parameter",
                         type_name(t, {}) + " (the program's input type)", what);
    };
    if (t.kind == TypeKind::kAdt && t.adt == prog->tree_adt) {
      if (inst.kind != Instance::kTree) return mismatch("a sequence");
      if (inst.nodes.empty()) return mismatch("an empty tree");
      std::vector<Obj*> made(inst.nodes.size(), nullptr);
      for (size_t i = 0; i < inst.nodes.size(); ++i) {
        const TreeNode& nd = inst.nodes[i];
        bool leaf = nd.left < 0;
        if (!leaf && (nd.right < 0 || nd.left >= static_cast<int32_t>(i) || nd.right >= static_cast<int32_t>(i)))
          return mismatch("a tree whose children do not precede their parent");
        auto* o = static_cast<Obj*>(input_arena.alloc(sizeof(Obj) + sizeof(Value) * 2));
        o->tag = leaf ? 0 : 1;
        o->n = leaf ? 1 : 3;
        o->f[0] = {nd.word, nullptr};
        if (!leaf) {
          o->f[1] = {0, made[nd.left]};
          o->f[2] = {0, made[nd.right]};
        }
        made[i] = o;
      }
      return Value{0, made.back()};
    }
    auto make_list = [&](const std::vector<int32_t>& w) {
      Obj* head = nullptr;
      for (size_t k = w.size(); k-- > 0;) {
        auto* c = static_cast<Obj*>(input_arena.alloc(sizeof(Obj) + sizeof(Value)));
        c->tag = 1;
        c->n = 2;
        c->f[0] = {w[k], nullptr};
        c->f[1] = {0, head};
        head = c;
      }
      return head;
    };
    if (t.kind == TypeKind::kList && t.elems[0]->kind == TypeKind::kInt) {
      if (inst.kind != Instance::kSequence) return mismatch(inst.kind == Instance::kTree ? "a tree" : "nested sentences");
      return Value{0, make_list(inst.words)};
    }
    if (t.kind == TypeKind::kList && t.elems[0]->kind == TypeKind::kList && t.elems[0]->elems[0]->kind == TypeKind::kInt) {
      if (inst.kind != Instance::kNested) return mismatch(inst.kind == Instance::kTree ? "a tree" : "a flat sentence");
      Obj* head = nullptr;
      for (size_t k = inst.sentences.size(); k-- > 0;) {
        auto* c = static_cast<Obj*>(input_arena.alloc(sizeof(Obj) + sizeof(Value)));
        c->tag = 1;
        c->n = 2;
        c->f[0] = {0, make_list(inst.sentences[k])};
        c->f[1] = {0, head};
        head = c;
      }
      return Value{0, head};
    }
    return input_error(prog->file, "function main", "a parameter of type Tree, List[Int] or List[List[Int]]",
                       type_name(t, {}));
  }
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
  m.dynet = options.scheduler == Scheduler::kDynetAgenda || options.scheduler == Scheduler::kDynetDepth;
  m.acrobat = options.scheduler == Scheduler::kAcrobat;
  m.eager = options.scheduler == Scheduler::kNone;
  m.static_base = program.max_static_depth + 1;
  m.obj_arena.set_limit(options.max_minibatch_bytes);
  m.float_arena.set_limit(options.max_minibatch_bytes);
  // Refuse absurd sizes (e.g. --set H=10000000) with an error rather than a failed allocation.
  int64_t total_elements = 0;
  for (const auto& p : program.params) total_elements += numel(p.type->dims);
  for (const auto& c : program.constant_tensors) total_elements += c.size;
  constexpr int64_t kMaxParameterElements = int64_t{1} << 31;  // 8 GiB of float32
  if (total_elements > kMaxParameterElements)
    return Status(StatusCode::kOutOfMemory,
                  program.file + ": parameters need " + std::to_string(total_elements) +
                      " floats, more than the limit of " + std::to_string(kMaxParameterElements));
  std::unique_ptr<SafetensorsFile> weights;
  for (const auto& p : program.params) {
    int64_t size = numel(p.type->dims);
    std::vector<float> data;
    try {
      data.resize(static_cast<size_t>(size));
    } catch (const std::bad_alloc&) {
      return Status(StatusCode::kOutOfMemory, format_pos(program.file, p.pos) + ": param " + p.name + ": cannot allocate " +
                                                  std::to_string(size) + " floats");
    }
    if (p.init.kind == ParamInit::kHash) {
      double scale = p.init.scale;
      if (p.init.glorot) {
        size_t r = p.type->dims.size();
        scale = std::sqrt(6.0 / double(p.type->dims[r - 2] + p.type->dims[r - 1]));
      }
      for (int64_t k = 0; k < size; ++k) data[k] = hashed_parameter(p.init.tid, k, scale);
    } else {
      if (options.params_file.empty())
        return input_error(format_pos(program.file, p.pos), "param " + p.name,
                           "a parameters file (--params FILE.safetensors) for load(\"" + p.init.tensor_name + "\")");
      if (!weights) {
        PERFMEM_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(options.params_file));
        weights = std::make_unique<SafetensorsFile>(std::move(f));
      }
      const TensorInfo* info = weights->find(p.init.tensor_name);
      if (!info) return input_error(options.params_file, "tensor \"" + p.init.tensor_name + "\"", "the tensor to be present (param " + p.name + ")", "it missing");
      if (info->dtype != DType::kF32 || info->shape != p.type->dims)
        return input_error(options.params_file, "tensor \"" + p.init.tensor_name + "\"",
                           "F32 " + type_name(*p.type, {}), "another dtype or shape");
      PERFMEM_RETURN_IF_ERROR(weights->read(*info, data.data(), info->nbytes()));
    }
    m.param_storage.push_back(std::move(data));
  }
  for (const auto& c : program.constant_tensors)
    m.param_storage.emplace_back(static_cast<size_t>(c.size), static_cast<float>(c.value));
  for (auto& s : m.param_storage) m.tensors.push_back({s.data(), -1});
  m.num_persistent_tensors = m.tensors.size();
  for (const auto& p : program.params) {
    const auto& d = p.type->dims;
    m.param_row.push_back(d.size() >= 2 ? numel(d) / d[0] : 1);
  }
  for (const auto& k : program.kernels) {
    m.kernel_out_size.push_back(k.group >= 0 ? 0 : numel(k.out_dims));
    m.kernel_ops.push_back(k.group >= 0 ? static_cast<int64_t>(program.groups[k.group].instrs.size()) : 1);
  }
  // Enough frame slots for max_call_depth nested calls of the largest function.
  int max_slots = 2;
  for (const auto& f : program.fns) max_slots = std::max(max_slots, f.num_slots);
  m.frames_cap = static_cast<size_t>(std::min<int64_t>(int64_t{options.max_call_depth + 16} * max_slots, 1 << 24));
  m.frames.reset(static_cast<Value*>(std::calloc(m.frames_cap, sizeof(Value))));
  if (!m.frames) return Status(StatusCode::kOutOfMemory, "acrobat: cannot reserve the interpreter's call frames");
  return rt;
}

Status Runtime::set_inputs(const std::vector<Instance>& data) {
  Impl& m = *impl_;
  m.inputs.clear();
  m.input_arena.reset();
  const Type& t = *m.prog->fns[m.prog->main_fn].params[0].type;
  for (size_t i = 0; i < data.size(); ++i) {
    PERFMEM_ASSIGN_OR_RETURN(Value v, m.convert(data[i], t, i));
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
  m.stats = &local;
  double t0 = now_ms();
  double cpu0 = cpu_now_ms();
  std::vector<uint32_t> results;
  results.reserve(end - begin);
  const FnDecl& main = m.prog->fns[m.prog->main_fn];
  std::string error;
  bool retry = false, out_of_memory = false;
  std::function<void()> interpret = [&] {
    local = RunStats();
    m.obj_arena.reset();
    m.float_arena.reset();
    m.tensors.resize(m.num_persistent_tensors);
    m.nodes.clear();
    m.args.clear();
    results.clear();
    retry = false;
    try {
      for (size_t i = begin; i < end; ++i) {
        m.instance = i;
        m.frame_top = 0;
        m.call_depth = 0;
        m.phase = 0;
        m.depth = m.static_base;
        Value* fr = m.push_frame(std::max(main.num_slots, 1), main.name);
        fr[0] = m.inputs[i];
        Value r = m.call(m.prog->main_fn, fr);
        results.push_back(static_cast<uint32_t>(r.i));
      }
    } catch (const EvalError& e) {
      retry = e.retry_on_big_stack;
      error = e.message;
    } catch (const MemoryLimitError& e) {  // eager execution, or the interpreter's objects
      error = e.message;
      out_of_memory = true;
    } catch (const std::bad_alloc&) {
      error = "the minibatch needs more memory than the machine can give";
      out_of_memory = true;
    }
  };
  m.call_limit = std::min(kInlineCallDepth, m.opt.max_call_depth);
  interpret();
  if (retry) {
    m.call_limit = m.opt.max_call_depth;
    m.worker.run(interpret);
  }
  if (!error.empty() && !out_of_memory) return Status(StatusCode::kInvalidInput, error);
  if (!error.empty())
    return Status(StatusCode::kOutOfMemory, m.prog->file + ": instances [" + std::to_string(begin) + ", " +
                                                std::to_string(end) + "): " + error);
  local.record_ms = now_ms() - t0;
  if (m.eager) local.record_ms -= local.kernel_ms;
  local.ops_recorded = static_cast<int64_t>(m.nodes.size());
  try {
    switch (m.opt.scheduler) {
      case Scheduler::kNone: break;
      case Scheduler::kAcrobat: m.schedule_acrobat(); break;
      case Scheduler::kDynetAgenda: m.schedule_dynet(false); break;
      case Scheduler::kDynetDepth: m.schedule_dynet(true); break;
    }
  } catch (const MemoryLimitError& e) {
    return Status(StatusCode::kOutOfMemory, m.prog->file + ": instances [" + std::to_string(begin) + ", " +
                                                std::to_string(end) + "): " + e.message);
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kOutOfMemory, m.prog->file + ": instances [" + std::to_string(begin) + ", " +
                                                std::to_string(end) + "): the minibatch needs more memory than the machine can give");
  }
  int64_t out_size = main.ret->dims[0];
  for (uint32_t t : results) {
    const float* d = m.tensors[t].data;
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
  return m;
}

}  // namespace perfmem::acrobat
