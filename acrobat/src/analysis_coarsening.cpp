// Grain-size coarsening (contract in analysis_coarsening.h).
#include "perfmem/acrobat/analysis_coarsening.h"

#include <unordered_map>

#include "walk.h"

namespace perfmem::acrobat {
namespace {

int64_t numel(const Type& t) {
  int64_t n = 1;
  for (int64_t d : t.dims) n *= d;
  return n;
}

constexpr size_t kMaxGroupInputs = 48;  // the runtime records at most 64 operands per node

bool is_leaf(const Expr& e) {
  return (e.kind == ExprKind::kVar && e.type->kind == TypeKind::kTensor) ||
         (e.kind == ExprKind::kGlobal && !e.global_is_const) || (e.kind == ExprKind::kOp && e.op == OpKind::kFill);
}

// Counts the ops of a groupable tree whose ops are all static (want_static) or all dynamic,
// or returns -1 when the tree cannot be fused.
int groupable_ops(const Expr& e, bool want_static) {
  if (e.kind != ExprKind::kOp || is_view_op(e.op) || (e.static_depth >= 0) != want_static) return -1;
  // A static product stays a node of its own: its kernel signature then matches the same
  // product at every other site (e.g. W x of leaves and of inner nodes), all at one static
  // depth, so they run as one GEMM instead of one per fused group.
  if (want_static && (e.op == OpKind::kMatMul || e.op == OpKind::kDense)) return -1;
  int n = 1;
  for (const auto& a : e.args) {
    if (is_leaf(*a)) continue;
    int k = groupable_ops(*a, want_static);
    if (k < 0) return -1;
    n += k;
  }
  return n;
}

bool startable(const Expr& e, bool want_static) {
  return e.kind == ExprKind::kLet && e.pat.kind != Pattern::kTuple && groupable_ops(*e.args[0], want_static) > 0;
}

class Coarsen {
 public:
  Coarsen(Program& p, const std::string& where) : p_(p), where_(where) {}

  void visit(Expr& e) {
    for (bool want_static : {false, true}) {
      if (!startable(e, want_static)) continue;
      std::vector<Expr*> run{&e};
      int ops = groupable_ops(*e.args[0], want_static);
      while (startable(*run.back()->args[1], want_static)) {
        run.push_back(run.back()->args[1].get());
        ops += groupable_ops(*run.back()->args[0], want_static);
      }
      if (ops >= 2 && build(run, want_static)) {
        visit(*run.back()->args[1]);
        return;
      }
    }
    for (auto& a : e.args) visit(*a);
    for (auto& arm : e.arms) visit(*arm.body);
  }

 private:
  int new_reg(FusedGroup& g, int64_t size, int param) {
    g.reg_size.push_back(size);
    g.reg_param.push_back(param);
    return g.num_regs++;
  }

  int compile(FusedGroup& g, const Expr& x) {
    if (x.kind == ExprKind::kVar) {
      if (auto it = bound_.find(x.slot); it != bound_.end()) return it->second;
      if (auto it = input_.find(x.slot); it != input_.end()) return it->second;
      int r = new_reg(g, numel(*x.type), -1);
      g.input_slots.push_back(x.slot);
      g.input_regs.push_back(r);
      input_[x.slot] = r;
      return r;
    }
    int tensor_id = x.kind == ExprKind::kGlobal ? x.global
                    : (x.kind == ExprKind::kOp && x.op == OpKind::kFill)
                        ? static_cast<int>(p_.params.size()) + x.constant_tensor
                        : -1;
    if (tensor_id >= 0) {
      if (auto it = param_.find(tensor_id); it != param_.end()) return it->second;
      int r = new_reg(g, numel(*x.type), tensor_id);
      g.input_slots.push_back(-1);
      g.input_regs.push_back(r);
      param_[tensor_id] = r;
      return r;
    }
    GroupInstr in;
    in.sig.op = x.op;
    in.sig.ints = x.op_ints;
    in.sig.out_dims = x.type->dims;
    in.sig.key = op_name(x.op);
    for (size_t i = 0; i < x.args.size(); ++i) {
      int r = compile(g, *x.args[i]);
      in.regs.push_back(r);
      in.sig.arg_dims.push_back(x.args[i]->type->dims);
      in.sig.shared_param.push_back(g.reg_param[r]);
    }
    in.out = new_reg(g, numel(*x.type), -1);
    g.instrs.push_back(std::move(in));
    return g.instrs.back().out;
  }

  // Builds the group; returns false (and changes nothing) when it would need more inputs
  // than a recorded node may have.
  bool build(const std::vector<Expr*>& run, bool is_static) {
    FusedGroup g;
    g.where = where_;
    g.is_static = is_static;
    bound_.clear();
    input_.clear();
    param_.clear();
    std::vector<std::pair<int, int>> lets;  // (slot, reg)
    for (Expr* let : run) {
      int r = compile(g, *let->args[0]);
      if (let->pat.kind == Pattern::kVar) {
        bound_[let->pat.slot] = r;
        lets.push_back({let->pat.slot, r});
      }
    }
    pair_products(g);
    const Expr& rest = *run.back()->args[1];
    for (const auto& [slot, reg] : lets) {
      if (reads_slot(rest, slot)) {
        g.output_regs.push_back(reg);
        g.output_slots.push_back(slot);
      }
    }
    if (g.input_slots.size() > kMaxGroupInputs) return false;
    g.last_let = run.back();
    int gid = static_cast<int>(p_.groups.size());
    KernelSig sig;
    sig.group = gid;
    sig.key = "group#" + std::to_string(gid);
    run.front()->group = gid;
    run.front()->kernel = static_cast<int>(p_.kernels.size());
    p_.kernels.push_back(std::move(sig));
    p_.groups.push_back(std::move(g));
    return true;
  }

  // Moves a product by a parameter next to an earlier product by the same parameter when
  // its operands are already available there, so the two run as one GEMM. Safe because
  // registers are single-assignment: nothing between the two positions reads the moved
  // instruction's result.
  static void pair_products(FusedGroup& g) {
    std::vector<int> defined_at(g.num_regs, -1);  // instruction index defining each register
    for (size_t i = 0; i < g.instrs.size(); ++i) defined_at[g.instrs[i].out] = static_cast<int>(i);
    auto pairable = [](const GroupInstr& a, const GroupInstr& b) {
      return (a.sig.op == OpKind::kMatMul || a.sig.op == OpKind::kDense) && a.sig.op == b.sig.op &&
             a.sig.shared_param[0] >= 0 && a.sig.shared_param == b.sig.shared_param &&
             a.sig.arg_dims == b.sig.arg_dims && a.sig.arg_dims[1].size() == 1;
    };
    for (size_t i = 0; i + 1 < g.instrs.size(); ++i) {
      if (g.instrs[i].paired_with_next || (i > 0 && g.instrs[i - 1].paired_with_next)) continue;
      for (size_t j = i + 1; j < g.instrs.size(); ++j) {
        if (!pairable(g.instrs[i], g.instrs[j])) continue;
        bool ready = true;
        for (int r : g.instrs[j].regs) ready = ready && defined_at[r] < static_cast<int>(i);
        if (!ready) continue;
        GroupInstr moved = std::move(g.instrs[j]);
        g.instrs.erase(g.instrs.begin() + static_cast<std::ptrdiff_t>(j));
        g.instrs.insert(g.instrs.begin() + static_cast<std::ptrdiff_t>(i) + 1, std::move(moved));
        g.instrs[i].paired_with_next = true;
        for (size_t k = 0; k < g.instrs.size(); ++k) defined_at[g.instrs[k].out] = static_cast<int>(k);
        break;
      }
    }
  }

  Program& p_;
  std::string where_;
  std::unordered_map<int, int> bound_, input_, param_;
};

}  // namespace

void analyze_coarsening(Program& program) {
  for (auto& fn : program.fns) Coarsen(program, fn.name).visit(*fn.body);
}

}  // namespace perfmem::acrobat
