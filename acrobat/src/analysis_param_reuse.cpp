// Parameter-reuse analysis and kernel signatures (contract in analysis_param_reuse.h).
#include "perfmem/acrobat/analysis_param_reuse.h"

#include <unordered_map>

#include "walk.h"

namespace perfmem::acrobat {
namespace {

constexpr int kUnknown = -3;
constexpr int kNotParam = -2;

int join(int a, int b) {
  if (a == kUnknown) return b;
  if (b == kUnknown) return a;
  return a == b ? a : kNotParam;
}

class ParamReuse {
 public:
  explicit ParamReuse(Program& p) : p_(p), params_(p.fns.size()) {
    for (size_t f = 0; f < p.fns.size(); ++f) params_[f].assign(p.fns[f].params.size(), kUnknown);
    params_[p.main_fn][0] = kNotParam;
  }

  void run() {
    for (int iter = 0; iter < 1000; ++iter) {
      changed_ = false;
      for (size_t f = 0; f < p_.fns.size(); ++f) {
        std::vector<int> env(p_.fns[f].num_slots, kNotParam);
        for (size_t i = 0; i < params_[f].size(); ++i) env[i] = params_[f][i] == kUnknown ? kNotParam : params_[f][i];
        final_pass_ = false;
        eval(*p_.fns[f].body, env);
      }
      if (!changed_) break;
    }
    for (size_t f = 0; f < p_.fns.size(); ++f) {
      std::vector<int> env(p_.fns[f].num_slots, kNotParam);
      for (size_t i = 0; i < params_[f].size(); ++i) env[i] = params_[f][i] == kUnknown ? kNotParam : params_[f][i];
      final_pass_ = true;
      eval(*p_.fns[f].body, env);
    }
  }

 private:
  void update_param(int fn, size_t i, int v) {
    int j = join(params_[fn][i], v);
    if (j != params_[fn][i]) {
      params_[fn][i] = j;
      changed_ = true;
    }
  }

  int eval(Expr& e, std::vector<int>& env) {
    switch (e.kind) {
      case ExprKind::kGlobal: return e.global_is_const ? kNotParam : e.global;
      case ExprKind::kVar: return env[e.slot];
      case ExprKind::kOp: {
        std::vector<int> args;
        for (auto& a : e.args) args.push_back(eval(*a, env));
        if (final_pass_) {
          auto& site = site_[&e];
          if (site.empty()) site.assign(args.size(), kUnknown);
          for (size_t i = 0; i < args.size(); ++i) site[i] = join(site[i], args[i]);
        }
        if (e.op == OpKind::kFill) return static_cast<int>(p_.params.size()) + e.constant_tensor;
        return kNotParam;
      }
      case ExprKind::kCall:
        for (size_t i = 0; i < e.args.size(); ++i) update_param(e.callee, i, eval(*e.args[i], env));
        return kNotParam;
      case ExprKind::kMap:
        eval(*e.args[1], env);
        update_param(e.callee, 0, kNotParam);
        return kNotParam;
      case ExprKind::kFoldl:
        eval(*e.args[1], env);
        eval(*e.args[2], env);
        update_param(e.callee, 0, kNotParam);
        update_param(e.callee, 1, kNotParam);
        return kNotParam;
      case ExprKind::kLet: {
        int v = eval(*e.args[0], env);
        if (e.pat.kind == Pattern::kVar)
          env[e.pat.slot] = v;
        else {
          std::vector<const Pattern*> stack{&e.pat};
          while (!stack.empty()) {
            const Pattern* p = stack.back();
            stack.pop_back();
            if (p->kind == Pattern::kVar) env[p->slot] = kNotParam;
            for (const auto& q : p->elems) stack.push_back(&q);
          }
        }
        return eval(*e.args[1], env);
      }
      case ExprKind::kMatch:
        eval(*e.args[0], env);
        for (auto& arm : e.arms) {
          for (int s : arm.slots)
            if (s >= 0) env[s] = kNotParam;
          eval(*arm.body, env);
        }
        return kNotParam;
      case ExprKind::kIf: {
        eval(*e.args[0], env);
        return join(eval(*e.args[1], env), eval(*e.args[2], env));
      }
      case ExprKind::kPhase: return eval(*e.args[0], env);
      default:
        for (auto& a : e.args) eval(*a, env);
        return kNotParam;
    }
  }

 public:
  std::unordered_map<const Expr*, std::vector<int>> site_;

 private:
  Program& p_;
  std::vector<std::vector<int>> params_;
  bool changed_ = false;
  bool final_pass_ = false;
};

}  // namespace

void analyze_param_reuse(Program& program, bool enabled) {
  ParamReuse pr(program);
  if (enabled) pr.run();
  std::unordered_map<std::string, int> interned;
  for (const auto& k : program.kernels) interned[k.key] = static_cast<int>(&k - program.kernels.data());
  walk_program(program, [&](Expr& e) {
    if (e.kind != ExprKind::kOp) return;
    e.shared.assign(e.args.size(), -1);
    auto it = pr.site_.find(&e);
    if (enabled && it != pr.site_.end())
      for (size_t i = 0; i < e.args.size(); ++i) e.shared[i] = it->second[i] >= 0 ? it->second[i] : -1;
    // The lookup table is always the named parameter; its index is a scalar.
    if (e.op == OpKind::kLookup) e.shared[0] = e.args[0]->global;
    KernelSig sig;
    sig.op = e.op;
    sig.key = op_name(e.op);
    for (size_t i = 0; i < e.args.size(); ++i) {
      const Expr& a = *e.args[i];
      sig.arg_dims.push_back(a.type->kind == TypeKind::kTensor ? a.type->dims : std::vector<int64_t>{});
      sig.shared_param.push_back(e.shared[i]);
      sig.key.append("|");
      for (int64_t d : sig.arg_dims.back()) sig.key.append(std::to_string(d)).append("x");
      sig.key.append("s").append(std::to_string(e.shared[i]));
    }
    sig.ints = e.op_ints;
    for (int64_t v : e.op_ints) sig.key.append("|i").append(std::to_string(v));
    sig.out_dims = e.type->dims;
    auto [pos, inserted] = interned.emplace(sig.key, static_cast<int>(program.kernels.size()));
    if (inserted) program.kernels.push_back(std::move(sig));
    e.kernel = pos->second;
  });
}

}  // namespace perfmem::acrobat
