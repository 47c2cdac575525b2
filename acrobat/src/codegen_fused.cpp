// Generated batched kernels for the fused runs of a program's groups (design in codegen_fused.h).
#include "codegen_fused.h"

#include <map>
#include <string>
#include <vector>

#include "executor.h"

namespace perfmem::acrobat {
namespace {

// prefix followed by the decimal digits of v. (Written out: GCC 12 warns, wrongly, about
// `"x" + std::to_string(v)` under -O3 -Wrestrict.)
std::string num(const char* prefix, int64_t v) {
  std::string s(prefix);
  s += std::to_string(v);
  return s;
}

std::string reg(int r) { return num("r", r); }

// One element of instruction `in` from its operands' expressions; the same float operations
// as kernels.cpp's loops, one per instruction, so the results are bit-identical when neither
// file contracts a * b + c into a fused multiply-add (both build with -ffp-contract=off).
std::string element_expr(const GroupInstr& in, const std::vector<std::string>& a) {
  switch (in.sig.op) {
    case OpKind::kAdd: return a[0] + " + " + a[1];
    case OpKind::kSub: return a[0] + " - " + a[1];
    case OpKind::kMul: return a[0] + " * " + a[1];
    case OpKind::kSigmoid: return "perfmem::fast_sigmoid(" + a[0] + ")";
    case OpKind::kTanh: return "perfmem::fast_tanh(" + a[0] + ")";
    case OpKind::kRelu: return a[0] + " > 0 ? " + a[0] + " : 0.0f";
    default: return "";
  }
}

// The run [step.begin, step.end) of group `gi`, split into segments: maximal stretches of
// elementwise instructions of one output size whose operands are either computed earlier in
// the segment (kept in a local variable) or already in memory. An operand that is a view
// (slice) into a register the segment itself writes would be read before it is written, so it
// starts a new segment. Each segment is one loop over the elements, in a function of its own
// whose pointers are __restrict (every register has its own memory; views only read), so the
// compiler vectorises it.
class RunEmitter {
 public:
  RunEmitter(int group_index, const FusedGroup& g, const GroupPlan& plan, const GroupStep& step, std::string name)
      : group_index_(group_index), g_(g), plan_(plan), step_(step), name_(std::move(name)) {}

  std::string emit() {
    split_segments();
    std::string helpers, body;
    // Pointers of every register the run touches, for one instance, in instruction order
    // (a view needs its source's pointer first).
    std::vector<char> has_ptr(size_t(g_.num_regs), 0);
    auto need_ptr = [&](int r) {
      if (has_ptr[size_t(r)]) return;
      has_ptr[size_t(r)] = 1;
      if (plan_.local[size_t(r)])
        body += "    [[maybe_unused]] float* " + reg(r) + num(" = local + ", plan_.local_off[size_t(r)]) + ";\n";
      else
        body += "    [[maybe_unused]] float* " + reg(r) + num(" = regs[", r) + "][b];\n";
    };
    for (size_t k = step_.begin; k < step_.end; ++k) {
      const GroupInstr& in = g_.instrs[k];
      for (int r : in.regs) need_ptr(r);
      if (in.sig.op == OpKind::kSlice) {
        const int64_t row = in.sig.arg_dims[0].size() == 2 ? in.sig.arg_dims[0][1] : 1;
        has_ptr[size_t(in.out)] = 1;
        body += "    [[maybe_unused]] float* " + reg(in.out) + " = " + reg(in.regs[0]) +
                num(" + ", in.sig.ints[0] * row) + ";\n";
        if (!plan_.local[size_t(in.out)]) body += num("    regs[", in.out) + "][b] = " + reg(in.out) + ";\n";
      } else if (stored_[size_t(in.out)]) {
        need_ptr(in.out);
      }
    }
    for (size_t s = 0; s < segments_.size(); ++s) {
      std::string fn = name_ + num("_seg", s);
      auto [helper, call] = emit_segment(segments_[s], fn);
      helpers += helper;
      body += "    " + call;
    }
    std::string out = helpers;
    out += num("// Group ", group_index_) + " (" + g_.where + "), instructions [" + std::to_string(step_.begin) +
           num(", ", step_.end) + ").\n";
    out += "void " + name_ + "(int64_t b0, int64_t b1, float** const* regs, float* local) {\n";
    out += "  (void)regs;\n  (void)local;\n";
    out += "  for (int64_t b = b0; b < b1; ++b) {\n" + body + "  }\n}\n\n";
    return out;
  }

 private:
  struct Segment {
    int64_t size = 0;
    std::vector<size_t> instrs;
  };

  // Register r viewed by slices resolves to the register holding the memory.
  int base_of(int r) const {
    auto it = view_source_.find(r);
    return it == view_source_.end() ? r : base_of(it->second);
  }

  void split_segments() {
    std::vector<int> seg_of(size_t(g_.num_regs), -1);  // segment that computes a register
    for (size_t k = step_.begin; k < step_.end; ++k) {
      const GroupInstr& in = g_.instrs[k];
      if (in.sig.op == OpKind::kSlice) {
        view_source_[in.out] = in.regs[0];
        continue;
      }
      const int64_t size = g_.reg_size[size_t(in.out)];
      bool joins = !segments_.empty() && segments_.back().size == size;
      const int current = int(segments_.size()) - 1;
      for (int r : in.regs)
        if (view_source_.count(r) && seg_of[size_t(base_of(r))] == current) joins = false;
      if (!joins) segments_.push_back({size, {}});
      segments_.back().instrs.push_back(k);
      seg_of[size_t(in.out)] = int(segments_.size()) - 1;
    }
    // A register goes to memory unless it is local to the run and read only as an operand
    // of later instructions of its own segment.
    stored_.assign(size_t(g_.num_regs), 0);
    for (size_t k = step_.begin; k < step_.end; ++k) {
      const GroupInstr& in = g_.instrs[k];
      if (in.sig.op != OpKind::kSlice && !plan_.local[size_t(in.out)]) stored_[size_t(in.out)] = 1;
      for (int r : in.regs) {
        const int base = base_of(r);
        if (seg_of[size_t(base)] < 0) continue;  // computed outside the run
        const bool view = base != r;
        const bool other_segment = in.sig.op == OpKind::kSlice || seg_of[size_t(base)] != seg_of[size_t(in.out)];
        if (view || other_segment) stored_[size_t(base)] = 1;
      }
    }
  }

  // The segment's loop as a function, and the per-instance call of it.
  std::pair<std::string, std::string> emit_segment(const Segment& seg, const std::string& fn) {
    std::vector<int> inputs, outputs;
    std::map<int, char> defined;  // computed in this segment
    std::string loop;
    for (size_t k : seg.instrs) {
      const GroupInstr& in = g_.instrs[k];
      std::vector<std::string> a;
      for (int r : in.regs) {
        if (defined.count(r)) {
          a.push_back(num("t", r));
          continue;
        }
        size_t i = 0;
        while (i < inputs.size() && inputs[i] != r) ++i;
        if (i == inputs.size()) inputs.push_back(r);
        a.push_back(num("x", i) + "[j]");
      }
      // Unused when nothing reads the result (dead code in the program: computed, as interpreted).
      loop += num("    [[maybe_unused]] const float t", in.out) + " = " + element_expr(in, a) + ";\n";
      defined[in.out] = 1;
      if (stored_[size_t(in.out)]) {
        loop += num("    y", outputs.size()) + num("[j] = t", in.out) + ";\n";
        outputs.push_back(in.out);
      }
    }
    std::string params, args;
    for (size_t i = 0; i < inputs.size(); ++i) {
      params += std::string(params.empty() ? "" : ", ") + num("const float* __restrict x", i);
      args += std::string(args.empty() ? "" : ", ") + reg(inputs[i]);
    }
    for (size_t i = 0; i < outputs.size(); ++i) {
      params += std::string(params.empty() ? "" : ", ") + num("float* __restrict y", i);
      args += std::string(args.empty() ? "" : ", ") + reg(outputs[i]);
    }
    std::string helper = "PERFMEM_ACROBAT_AOT_CLONES static void " + fn + "(" + params + ") {\n";
    helper += num("  for (int64_t j = 0; j < ", seg.size) + "; ++j) {\n" + loop + "  }\n}\n\n";
    return {helper, fn + "(" + args + ");\n"};
  }

  int group_index_;
  const FusedGroup& g_;
  const GroupPlan& plan_;
  const GroupStep& step_;
  std::string name_;
  std::map<int, int> view_source_;  // slice output -> its operand
  std::vector<Segment> segments_;
  std::vector<char> stored_;  // per register: written to memory by the run
};

}  // namespace

std::string emit_fused_runs(const Program& p, const std::string& table) {
  std::string out =
      "// Fused runs of elementwise instructions as batched kernels specialised to their shapes\n"
      "// (RuntimeOptions::aot_fused_runs): one loop over the elements per instance and segment.\n";
  std::string entries;
  for (size_t gi = 0; gi < p.groups.size(); ++gi) {
    const FusedGroup& g = p.groups[gi];
    const GroupPlan plan = plan_group(g, /*fuse=*/true);
    for (size_t k = 0; k < plan.steps.size(); ++k) {
      const GroupStep& step = plan.steps[k];
      if (!step.fused) continue;
      const std::string name = num("fused_g", gi) + num("_s", k);
      out += RunEmitter(int(gi), g, plan, step, name).emit();
      entries += num("    {", gi) + num(", ", step.begin) + num(", ", step.end) + ", &" + name + "},\n";
    }
  }
  if (entries.empty())
    out += "constexpr const AotFusedRun* " + table + " = nullptr;\nconstexpr size_t " + table + "_count = 0;\n\n";
  else
    out += "constexpr AotFusedRun " + table + "[] = {\n" + entries + "};\nconstexpr size_t " + table +
           "_count = sizeof(" + table + ") / sizeof(" + table + "[0]);\n\n";
  return out;
}

}  // namespace perfmem::acrobat
