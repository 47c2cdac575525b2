// The interpreter and recorder (design in interpreter.h).
#include "interpreter.h"

#include <pthread.h>
#include <sys/mman.h>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <new>

#include "perfmem/acrobat/int_arith.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define PERFMEM_FIBER_ASAN 1
#endif

namespace perfmem::acrobat {
namespace {

// Run-time failure inside the interpreter (bad index, recursion too deep): unwinds to
// record, which turns it into a Status.
struct EvalError {
  std::string message;
  bool retry_on_big_stack = false;  // the inline attempt ran out of its shallow call budget
};

// Recursion this shallow runs on the caller's stack; deeper programs are run again from the
// start on the worker thread's large stack (recording is a pure function of the inputs).
constexpr int kInlineCallDepth = 200;

constexpr int kMaxArgs = 64;

// A fiber's C stack: enough for kFiberCallDepth nested calls of the interpreter (about 2 KiB
// each in an optimised build, more with sanitizers), reserved and touched only as deep as used.
constexpr size_t kFiberStackBytes = size_t{32} << 20;

// Floats travel in Value::i as their bits.
int64_t float_bits(double d) { return std::bit_cast<int64_t>(d); }
double bits_float(int64_t i) { return std::bit_cast<double>(i); }

// Tells AddressSanitizer which stack the thread runs on across a context switch.
void asan_start_switch([[maybe_unused]] void** fake_stack, [[maybe_unused]] const void* bottom,
                       [[maybe_unused]] size_t size) {
#ifdef PERFMEM_FIBER_ASAN
  __sanitizer_start_switch_fiber(fake_stack, bottom, size);
#endif
}
void asan_finish_switch([[maybe_unused]] void* fake_stack, [[maybe_unused]] const void** old_bottom,
                        [[maybe_unused]] size_t* old_size) {
#ifdef PERFMEM_FIBER_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, old_bottom, old_size);
#endif
}

// Switching between the minibatch loop and a fiber. On x86-64 a few instructions save the
// callee-saved registers and the FPU/SSE control words on the current stack and load another
// stack pointer (no system call; glibc's swapcontext also saves the signal mask, two system
// calls per switch). Elsewhere: ucontext.
#if defined(__x86_64__)
// perfmem_acrobat_fiber_switch(from, to): *from = the current context's stack pointer, then
// resume the context saved at `to`. perfmem_acrobat_fiber_start: a new fiber's first return
// address; calls r13(r12) and never returns.
asm(R"(
        .text
        .p2align 4
        .globl perfmem_acrobat_fiber_switch
        .hidden perfmem_acrobat_fiber_switch
        .type perfmem_acrobat_fiber_switch, @function
perfmem_acrobat_fiber_switch:
        pushq %rbp
        pushq %rbx
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        subq $16, %rsp
        stmxcsr 8(%rsp)
        fnstcw (%rsp)
        movq %rsp, (%rdi)
        movq %rsi, %rsp
        fldcw (%rsp)
        ldmxcsr 8(%rsp)
        addq $16, %rsp
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %rbx
        popq %rbp
        ret
        .size perfmem_acrobat_fiber_switch, .-perfmem_acrobat_fiber_switch

        .p2align 4
        .globl perfmem_acrobat_fiber_start
        .hidden perfmem_acrobat_fiber_start
        .type perfmem_acrobat_fiber_start, @function
perfmem_acrobat_fiber_start:
        movq %r12, %rdi
        callq *%r13
        ud2
        .size perfmem_acrobat_fiber_start, .-perfmem_acrobat_fiber_start
)");
extern "C" void perfmem_acrobat_fiber_switch(void** from, void* to);
extern "C" void perfmem_acrobat_fiber_start();

struct FiberContext {
  void* sp = nullptr;
};

// A context that starts by calling entry(arg) on [stack, stack + bytes). entry never returns.
void context_start(FiberContext* c, char* stack, size_t bytes, void (*entry)(void*), void* arg) {
#ifdef PERFMEM_FIBER_ASAN
  // A reused stack still carries the poisoned redzones of the frames that never returned
  // (the last fiber's switch); clear them, as AddressSanitizer's swapcontext does.
  __asan_unpoison_memory_region(stack, bytes);
#endif
  // The frame perfmem_acrobat_fiber_switch restores: control words, r15..r12, rbx, rbp, and
  // the return address; after that `ret` the stack pointer is 16-byte aligned for the call.
  auto top = reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t{15};
  auto* frame = reinterpret_cast<uint64_t*>(top - 88);
  frame[0] = 0x037F;                             // x87 control word: the default
  frame[1] = 0x1F80;                             // MXCSR: the default (round to nearest, exceptions masked)
  frame[2] = frame[3] = 0;                       // r15, r14
  frame[4] = reinterpret_cast<uint64_t>(entry);  // r13
  frame[5] = reinterpret_cast<uint64_t>(arg);    // r12
  frame[6] = frame[7] = 0;                       // rbx, rbp
  frame[8] = reinterpret_cast<uint64_t>(&perfmem_acrobat_fiber_start);
  c->sp = frame;
}

void context_switch(FiberContext* from, FiberContext* to) { perfmem_acrobat_fiber_switch(&from->sp, to->sp); }
#else
struct FiberContext {
  ucontext_t uc{};
};

void ucontext_entry(unsigned entry_hi, unsigned entry_lo, unsigned arg_hi, unsigned arg_lo) {
  auto entry = reinterpret_cast<void (*)(void*)>((static_cast<uintptr_t>(entry_hi) << 32) | entry_lo);
  entry(reinterpret_cast<void*>((static_cast<uintptr_t>(arg_hi) << 32) | arg_lo));
}

void context_start(FiberContext* c, char* stack, size_t bytes, void (*entry)(void*), void* arg) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack;
  c->uc.uc_stack.ss_size = bytes;
  c->uc.uc_link = nullptr;
  const auto e = reinterpret_cast<uintptr_t>(entry), a = reinterpret_cast<uintptr_t>(arg);
  makecontext(&c->uc, reinterpret_cast<void (*)()>(&ucontext_entry), 4, static_cast<unsigned>(e >> 32),
              static_cast<unsigned>(e), static_cast<unsigned>(a >> 32), static_cast<unsigned>(a));
}

void context_switch(FiberContext* from, FiberContext* to) { swapcontext(&from->uc, &to->uc); }
#endif

}  // namespace

// One instance's execution context: its C stack (with a guard page below it), its call
// frames and, while it is switched out, its interpreter state. A fiber left waiting when the
// minibatch stops on an error is simply restarted later: the interpreter keeps no owning
// objects on its stack across a wait.
struct Fiber {
  enum class State { kIdle, kWaiting, kDone };
  ~Fiber() {
    if (region) munmap(region, region_bytes);
  }
  FiberContext context;
  void* region = nullptr;  // guard page, stack, frames
  size_t region_bytes = 0;
  char* stack = nullptr;
  size_t stack_bytes = 0;
  Value* frames = nullptr;
  size_t frames_cap = 0;
  void* fake_stack = nullptr;  // AddressSanitizer's bookkeeping while switched out
  State state = State::kIdle;
  // Saved interpreter state of the instance.
  size_t instance = 0, frame_top = 0;
  int depth = 0, phase = 0, call_depth = 0;
  Value input;
  uint32_t* result = nullptr;
};

// The interpreter recurses with the program (a tree of height 10000 is 10000 nested calls),
// so deep minibatches run on a worker thread with a 1 GiB stack (reserved, touched only as
// deep as used). The thread is created on first need and handed one job per minibatch.
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
    started_ = pthread_create(
                   &thread_, &attr,
                   [](void* self) -> void* {
                     static_cast<BigStackWorker*>(self)->loop();
                     return nullptr;
                   },
                   this) == 0;
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

void Interpreter::FreeValues::operator()(Value* p) const { std::free(p); }

Interpreter::Interpreter(const Program& program, const RuntimeOptions& options)
    : prog_(program), opt_(options), worker_(std::make_unique<BigStackWorker>()) {}

Interpreter::~Interpreter() = default;

Result<std::unique_ptr<Interpreter>> Interpreter::create(const Program& program, const RuntimeOptions& options) {
  std::unique_ptr<Interpreter> in(new Interpreter(program, options));
  in->st_.host = in.get();
  in->aot_main_ = options.aot_main;
  in->st_.dynet = options.scheduler == Scheduler::kDynetAgenda || options.scheduler == Scheduler::kDynetDepth;
  in->acrobat_ = options.scheduler == Scheduler::kAcrobat;
  in->st_.static_base = program.max_static_depth + 1;
  in->obj_arena_.set_limit(options.max_minibatch_bytes);
  for (const auto& p : program.params) {
    const auto& d = p.type->dims;
    int64_t row = 1;
    for (size_t i = 1; i < d.size(); ++i) row *= d[i];
    in->param_row_.push_back(row);
  }
  // Enough frame slots for max_call_depth nested calls of the largest function.
  int max_slots = 2;
  for (const auto& f : program.fns) max_slots = std::max(max_slots, f.num_slots);
  in->frames_cap_ = static_cast<size_t>(std::min<int64_t>(int64_t{options.max_call_depth + 16} * max_slots, 1 << 24));
  in->frames_.reset(static_cast<Value*>(std::calloc(in->frames_cap_, sizeof(Value))));
  if (!in->frames_) return Status(StatusCode::kOutOfMemory, "acrobat: cannot reserve the interpreter's call frames");
  return in;
}

Status Interpreter::record(const std::vector<Value>& inputs, size_t begin, size_t end, Recording* rec,
                           std::vector<uint32_t>* results, const std::function<Status()>& flush, int64_t* rounds) {
  st_.rec = rec;
  st_.round = 0;
  if (rounds) *rounds = 0;
  if (prog_.reads_tensor_values) {
    PERFMEM_CHECK(flush != nullptr, "a program that reads tensor values needs a flush");
    return record_fibers(inputs, begin, end, results, flush, rounds);
  }
  fibers_mode_ = false;
  frame_base_ = frames_.get();
  frame_cap_ = frames_cap_;
  std::string error;
  bool retry = false, out_of_memory = false;
  std::function<void()> interpret = [&] {
    obj_arena_.reset();
    rec->clear();
    results->clear();
    retry = false;
    error.clear();
    try {
      for (size_t i = begin; i < end; ++i) {
        uint32_t r = 0;
        run_instance(i, inputs[i], &r);
        results->push_back(r);
      }
    } catch (const EvalError& e) {
      retry = e.retry_on_big_stack;
      error = e.message;
    } catch (const MemoryLimitError& e) {  // the interpreter's objects
      error = e.message;
      out_of_memory = true;
    } catch (const std::bad_alloc&) {
      error = "the minibatch needs more memory than the machine can give";
      out_of_memory = true;
    }
  };
  st_.call_limit = std::min(kInlineCallDepth, opt_.max_call_depth);
  interpret();
  if (retry) {
    st_.call_limit = opt_.max_call_depth;
    worker_->run(interpret);
  }
  if (error.empty()) return Status::Ok();
  if (!out_of_memory) return Status(StatusCode::kInvalidInput, error);
  return Status(StatusCode::kOutOfMemory,
                prog_.file + ": instances [" + std::to_string(begin) + ", " + std::to_string(end) + "): " + error);
}

// Every frame is one call (pending while its arguments are evaluated, then running), so
// counting frames bounds the recursion: frames_cap_ >= max_call_depth * largest frame.
Value* Interpreter::push_frame(int n, const std::string& fn) {
  if (++st_.call_depth > st_.call_limit) too_deep(fn.c_str());
  if (frame_top_ + n > frame_cap_)
    throw EvalError{"instance " + std::to_string(st_.instance) + ": recursion too deep (" + std::to_string(frame_cap_) +
                    " frame slots used)"};
  Value* f = frame_base_ + frame_top_;
  frame_top_ += n;
  return f;
}

void Interpreter::pop_frame(size_t mark) {
  frame_top_ = mark;
  --st_.call_depth;
}

void Interpreter::too_deep(const char* fn) const {
  if (fibers_mode_)
    throw EvalError{"instance " + std::to_string(st_.instance) + ": recursion deeper than " +
                    std::to_string(st_.call_limit) + " calls (in " + fn +
                    "; the limit of a program that reads tensor values)"};
  if (st_.call_limit < opt_.max_call_depth) throw EvalError{"", true};
  throw EvalError{"instance " + std::to_string(st_.instance) + ": recursion deeper than " +
                  std::to_string(opt_.max_call_depth) + " calls (in " + fn + ")"};
}

void Interpreter::fail(const char* where, const std::string& what) const {
  throw EvalError{std::string(where) + ": instance " + std::to_string(st_.instance) + ": " + what};
}

void Interpreter::fail_at(const Expr& e, const std::string& what) { fail(format_pos(prog_.file, e.pos).c_str(), what); }

Obj* Interpreter::new_obj(int tag, int n) {
  auto* o = static_cast<Obj*>(obj_arena_.alloc(sizeof(Obj) + sizeof(Value) * std::max(0, n - 1)));
  o->tag = tag;
  o->n = n;
  return o;
}

Value Interpreter::call(int fn, Value* frame) { return eval(*prog_.fns[fn].body, frame); }

// Evaluates the arguments of a call into a fresh frame, in parallel (same start depth).
Value Interpreter::eval_call(int fn, const Expr& e, Value* fr) {
  const FnDecl& f = prog_.fns[fn];
  size_t mark = frame_top_;
  Value* callee = push_frame(std::max(f.num_slots, 1), f.name);
  ParallelDepth par = parallel_fork(st_);
  for (size_t i = 0; i < e.args.size(); ++i) {
    parallel_enter(st_, par);
    callee[i] = eval(*e.args[i], fr);
    parallel_leave(st_, par);
  }
  st_.depth = par.end;
  Value r = call(fn, callee);
  pop_frame(mark);
  return r;
}

void Interpreter::bind(const Pattern& p, Value v, Value* fr) {
  switch (p.kind) {
    case Pattern::kWild: return;
    case Pattern::kVar: fr[p.slot] = v; return;
    case Pattern::kTuple:
      for (size_t i = 0; i < p.elems.size(); ++i) bind(p.elems[i], v.o->f[i], fr);
      return;
  }
}

Value Interpreter::eval(const Expr& e, Value* fr) {
  switch (e.kind) {
    case ExprKind::kIntLit:
    case ExprKind::kBoolLit: return {e.ival, nullptr};
    case ExprKind::kFloatLit: return {float_bits(e.fval), nullptr};
    case ExprKind::kTensorValue: return eval_tensor_value(e, fr);
    case ExprKind::kGlobal: return {e.global_is_const ? e.ival : e.global, nullptr};
    case ExprKind::kVar: return fr[e.slot];
    case ExprKind::kBinary: {
      if (e.bin == BinOp::kAnd) return {eval(*e.args[0], fr).i && eval(*e.args[1], fr).i, nullptr};
      if (e.bin == BinOp::kOr) return {eval(*e.args[0], fr).i || eval(*e.args[1], fr).i, nullptr};
      ParallelDepth par = parallel_fork(st_);
      parallel_enter(st_, par);
      int64_t a = eval(*e.args[0], fr).i;
      parallel_leave(st_, par);
      parallel_enter(st_, par);
      int64_t b = eval(*e.args[1], fr).i;
      parallel_leave(st_, par);
      st_.depth = par.end;
      const Type& ta = *e.args[0]->type;
      const Type& tb = *e.args[1]->type;
      if (ta.kind == TypeKind::kFloat || tb.kind == TypeKind::kFloat) {
        double x = ta.kind == TypeKind::kFloat ? bits_float(a) : double(a);
        double y = tb.kind == TypeKind::kFloat ? bits_float(b) : double(b);
        switch (e.bin) {
          case BinOp::kLt: return {x < y, nullptr};
          case BinOp::kLe: return {x <= y, nullptr};
          case BinOp::kGt: return {x > y, nullptr};
          case BinOp::kGe: return {x >= y, nullptr};
          case BinOp::kEq: return {x == y, nullptr};
          case BinOp::kNe: return {x != y, nullptr};
          default: fail_at(e, "a comparison of Floats");
        }
      }
      IntResult r = checked_binary(e.bin, a, b);
      if (r.error) fail_at(e, std::string("expected ") + r.error);
      return {r.value, nullptr};
    }
    case ExprKind::kUnary: {
      int64_t a = eval(*e.args[0], fr).i;
      if (e.name != "-") return {!a, nullptr};
      if (e.type->kind == TypeKind::kFloat) return {float_bits(-bits_float(a)), nullptr};
      IntResult r = checked_negate(a);
      if (r.error) fail_at(e, std::string("expected ") + r.error);
      return {r.value, nullptr};
    }
    case ExprKind::kTuple:
    case ExprKind::kCtor: {
      int n = static_cast<int>(e.args.size());
      Obj* o = new_obj(e.kind == ExprKind::kTuple ? 0 : e.ctor_index, n);
      ParallelDepth par = parallel_fork(st_);
      for (int i = 0; i < n; ++i) {
        parallel_enter(st_, par);
        o->f[i] = eval(*e.args[i], fr);
        parallel_leave(st_, par);
      }
      st_.depth = par.end;
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
      st_.depth += c ? e.ghost_then : e.ghost_else;
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
        st_.depth += arm.ghost;
        return v;
      }
      fail_at(e, "no match arm for the value");
    }
    case ExprKind::kPhase:
      st_.phase = static_cast<int>(e.ival);
      st_.depth = st_.static_base;
      return eval(*e.args[0], fr);
    case ExprKind::kCall: return eval_call(e.callee, e, fr);
    case ExprKind::kMap: {
      Value list = eval(*e.args[1], fr);
      const FnDecl& f = prog_.fns[e.callee];
      ParallelDepth par = parallel_fork(st_);
      Obj* head = nullptr;
      Obj** tail = &head;
      for (Obj* c = list.o; c; c = c->f[1].o) {
        parallel_enter(st_, par);
        size_t mark = frame_top_;
        Value* callee = push_frame(std::max(f.num_slots, 1), f.name);
        callee[0] = c->f[0];
        Value r = call(e.callee, callee);
        pop_frame(mark);
        parallel_leave(st_, par);
        Obj* cell = new_obj(1, 2);
        cell->f[0] = r;
        cell->f[1] = {0, nullptr};
        *tail = cell;
        tail = &cell->f[1].o;
      }
      st_.depth = par.end;
      return {0, head};
    }
    case ExprKind::kFoldl: {
      Value acc = eval(*e.args[1], fr);
      Value list = eval(*e.args[2], fr);
      const FnDecl& f = prog_.fns[e.callee];
      for (Obj* c = list.o; c; c = c->f[1].o) {
        size_t mark = frame_top_;
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

Value Interpreter::eval_op(const Expr& e, Value* fr) {
  Recording& rec = *st_.rec;
  if (e.op == OpKind::kFill) return {static_cast<int64_t>(prog_.params.size()) + e.constant_tensor, nullptr};
  if (e.op == OpKind::kLookup) {
    int pid = e.args[0]->global;
    int64_t rows = prog_.params[pid].type->dims[0];
    int64_t idx = eval(*e.args[1], fr).i;
    if (idx < 0 || idx >= rows)
      fail_at(e, "lookup index " + std::to_string(idx) + " outside [0, " + std::to_string(rows) + ")");
    uint32_t view = rec.add_tensor(rec.tensors[pid].data + idx * param_row_[pid], -1);
    if (!st_.dynet) return {view, nullptr};
    // DyNet copies the looked-up row into the graph.
    uint32_t la[2] = {static_cast<uint32_t>(pid), view};
    return {rec.add_node(e.kernel, 0, st_.phase, la, 2, 1), nullptr};
  }
  int n = static_cast<int>(e.args.size());
  uint32_t a[kMaxArgs];
  ParallelDepth par = parallel_fork(st_);
  for (int i = 0; i < n; ++i) {
    parallel_enter(st_, par);
    a[i] = static_cast<uint32_t>(eval(*e.args[i], fr).i);
    parallel_leave(st_, par);
  }
  st_.depth = par.end;
  int d = (acrobat_ && e.static_depth >= 0) ? e.static_depth : st_.depth++;
  return {rec.add_node(e.kernel, d, st_.phase, a, n, 1), nullptr};
}

Value Interpreter::eval_group(const Expr& let, Value* fr) {
  const FusedGroup& g = prog_.groups[let.group];
  uint32_t a[kMaxArgs];
  int n = static_cast<int>(g.input_slots.size());
  PERFMEM_CHECK(n <= kMaxArgs, "fused group with too many inputs");
  for (int i = 0; i < n; ++i)
    a[i] = g.input_slots[i] >= 0 ? static_cast<uint32_t>(fr[g.input_slots[i]].i)
                                 : static_cast<uint32_t>(g.reg_param[g.input_regs[i]]);
  int d = (acrobat_ && let.static_depth >= 0) ? let.static_depth : st_.depth++;
  uint32_t out = st_.rec->add_node(let.kernel, d, st_.phase, a, n, static_cast<int>(g.output_regs.size()));
  for (size_t j = 0; j < g.output_slots.size(); ++j) fr[g.output_slots[j]] = {static_cast<int64_t>(out + j), nullptr};
  return eval(*g.last_let->args[1], fr);
}

// item(t) / index(t): the value of a one-element tensor. Waits (the instance's fiber yields)
// until the tensor has been computed; after a round every recorded node has executed.
int64_t Interpreter::tensor_value(uint32_t tensor, bool as_index, const char* where) {
  if (st_.rec->tensors[tensor].data == nullptr) wait_for_value();
  const float* data = st_.rec->tensors[tensor].data;
  PERFMEM_CHECK(data != nullptr, "a tensor read after a round was not computed");
  double v = data[0];
  if (!as_index) return float_bits(v);
  if (!std::isfinite(v) || v < -9.0e18 || v > 9.0e18)
    fail(where, "expected a finite tensor value within the Int range for index, found " + std::to_string(v));
  return static_cast<int64_t>(v);
}

Value Interpreter::eval_tensor_value(const Expr& e, Value* fr) {
  uint32_t id = static_cast<uint32_t>(eval(*e.args[0], fr).i);
  return {tensor_value(id, e.name == "index", format_pos(prog_.file, e.pos).c_str()), nullptr};
}

[[noreturn]] void aot_fail(const AotState& s, const char* where, const std::string& what) {
  static_cast<const Interpreter*>(s.host)->fail(where, what);
}
[[noreturn]] void aot_too_deep(const AotState& s, const char* fn) {
  static_cast<const Interpreter*>(s.host)->too_deep(fn);
}
Obj* aot_new_obj(AotState& s, int tag, int n) { return static_cast<Interpreter*>(s.host)->new_obj(tag, n); }
int64_t aot_tensor_value(AotState& s, uint32_t tensor, bool as_index, const char* where) {
  return static_cast<Interpreter*>(s.host)->tensor_value(tensor, as_index, where);
}

void Interpreter::save_state(Fiber& f) const {
  f.frame_top = frame_top_;
  f.depth = st_.depth;
  f.phase = st_.phase;
  f.call_depth = st_.call_depth;
  f.instance = st_.instance;
}

void Interpreter::load_state(const Fiber& f) {
  frame_base_ = f.frames;
  frame_cap_ = f.frames_cap;
  frame_top_ = f.frame_top;
  st_.depth = f.depth;
  st_.phase = f.phase;
  st_.call_depth = f.call_depth;
  st_.instance = f.instance;
}

// Reserves one fiber per instance: [guard page][C stack][call frames], touched only as used.
Status Interpreter::prepare_fibers(size_t count) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  int max_slots = 2;
  for (const auto& f : prog_.fns) max_slots = std::max(max_slots, f.num_slots);
  const size_t frames_cap = static_cast<size_t>(st_.call_limit + 16) * static_cast<size_t>(max_slots);
  const size_t frame_bytes = (frames_cap * sizeof(Value) + page - 1) / page * page;
  while (fibers_.size() < count) {
    auto f = std::make_unique<Fiber>();
    f->region_bytes = page + kFiberStackBytes + frame_bytes;
    void* region =
        mmap(nullptr, f->region_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED)
      return Status(StatusCode::kOutOfMemory, prog_.file + ": cannot reserve the stacks of " + std::to_string(count) +
                                                  " instances (a program that reads tensor values runs each "
                                                  "instance on its own stack)");
    f->region = region;
    mprotect(region, page, PROT_NONE);  // overflowing the stack faults instead of corrupting memory
    f->stack = static_cast<char*>(region) + page;
    f->stack_bytes = kFiberStackBytes;
    f->frames = reinterpret_cast<Value*>(f->stack + kFiberStackBytes);
    f->frames_cap = frames_cap;
    fibers_.push_back(std::move(f));
  }
  return Status::Ok();
}

void Interpreter::run_instance(size_t instance, const Value& input, uint32_t* result) {
  const FnDecl& main = prog_.fns[prog_.main_fn];
  st_.instance = instance;
  frame_top_ = 0;
  st_.call_depth = 0;
  st_.phase = 0;
  st_.depth = st_.static_base;
  Value* fr = push_frame(std::max(main.num_slots, 1), main.name);
  fr[0] = input;
  *result = static_cast<uint32_t>(aot_main_ ? aot_main_(st_, input).i : call(prog_.main_fn, fr).i);
}

void Interpreter::fiber_entry(void* self) { static_cast<Interpreter*>(self)->fiber_body(); }

void Interpreter::fiber_body() {
  asan_finish_switch(nullptr, &loop_stack_bottom_, &loop_stack_size_);
  Fiber& f = *current_;
  try {
    run_instance(f.instance, f.input, f.result);
  } catch (const EvalError& e) { fiber_error_ = e.message; } catch (const MemoryLimitError& e) {
    fiber_error_ = e.message;
    fiber_out_of_memory_ = true;
  } catch (const std::bad_alloc&) {
    fiber_error_ = "the minibatch needs more memory than the machine can give";
    fiber_out_of_memory_ = true;
  }
  f.state = Fiber::State::kDone;
  asan_start_switch(nullptr, loop_stack_bottom_, loop_stack_size_);  // this stack is done
  // Never resumed. (No noreturn call after it: the compiler would then treat fiber_body as
  // noreturn, and AddressSanitizer would handle that before the switch to this stack is
  // announced. Returning would reach the start routine's trap.)
  context_switch(&f.context, static_cast<FiberContext*>(loop_context_));
}

void Interpreter::resume(Fiber& f) {
  current_ = &f;
  load_state(f);
  asan_start_switch(&f.fake_stack, f.stack, f.stack_bytes);
  context_switch(static_cast<FiberContext*>(loop_context_), &f.context);
  asan_finish_switch(nullptr, nullptr, nullptr);
  save_state(f);
  current_ = nullptr;
}

void Interpreter::wait_for_value() {
  PERFMEM_CHECK(current_ != nullptr, "waiting for a tensor value outside a fiber");
  Fiber& f = *current_;
  f.state = Fiber::State::kWaiting;
  asan_start_switch(&f.fake_stack, loop_stack_bottom_, loop_stack_size_);
  context_switch(&f.context, static_cast<FiberContext*>(loop_context_));
  asan_finish_switch(f.fake_stack, &loop_stack_bottom_, &loop_stack_size_);
  // A new round: everything recorded before has executed, so depths start over (see header).
  st_.depth = st_.static_base;
}

Status Interpreter::record_fibers(const std::vector<Value>& inputs, size_t begin, size_t end,
                                  std::vector<uint32_t>* results, const std::function<Status()>& flush,
                                  int64_t* rounds) {
  fibers_mode_ = true;
  st_.call_limit = std::min(kFiberCallDepth, opt_.max_call_depth);
  obj_arena_.reset();
  st_.rec->clear();
  const size_t count = end - begin;
  results->assign(count, 0);
  PERFMEM_RETURN_IF_ERROR(prepare_fibers(count));
  FiberContext loop_context;
  loop_context_ = &loop_context;
  fiber_error_.clear();
  fiber_out_of_memory_ = false;
  for (size_t k = 0; k < count; ++k) {
    Fiber& f = *fibers_[k];
    context_start(&f.context, f.stack, f.stack_bytes, &Interpreter::fiber_entry, this);
    f.state = Fiber::State::kIdle;
    f.instance = begin + k;
    f.input = inputs[begin + k];
    f.result = &(*results)[k];
    f.frame_top = 0;
    f.depth = st_.static_base;
    f.phase = 0;
    f.call_depth = 0;
  }
  while (true) {
    bool waiting = false;
    for (size_t k = 0; k < count; ++k) {
      Fiber& f = *fibers_[k];
      if (f.state == Fiber::State::kDone) continue;
      resume(f);
      if (!fiber_error_.empty()) {
        loop_context_ = nullptr;
        if (!fiber_out_of_memory_) return Status(StatusCode::kInvalidInput, fiber_error_);
        return Status(StatusCode::kOutOfMemory, prog_.file + ": instances [" + std::to_string(begin) + ", " +
                                                    std::to_string(end) + "): " + fiber_error_);
      }
      waiting = waiting || f.state == Fiber::State::kWaiting;
    }
    if (!waiting) break;
    PERFMEM_RETURN_IF_ERROR(flush());
    ++st_.round;
    if (rounds) ++*rounds;
  }
  loop_context_ = nullptr;
  return Status::Ok();
}

}  // namespace perfmem::acrobat
