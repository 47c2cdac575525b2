// Static depth analysis (contract in analysis_static_depth.h).
#include "perfmem/acrobat/analysis_static_depth.h"

#include <algorithm>
#include <unordered_map>

#include "walk.h"

namespace perfmem::acrobat {
namespace {

constexpr int kUnknown = -3;
constexpr int kParam = -1;
constexpr int kDynamic = 1 << 30;

struct AV {
  int v = kUnknown;
  std::vector<AV> elems;  // tuples, element-wise
};

AV scalar(int v) { return AV{v, {}}; }

// Least upper bound; returns true in *changed when `into` grew.
void join_into(AV& into, const AV& other, bool* changed) {
  if (other.v == kUnknown && other.elems.empty()) return;
  if (into.v == kUnknown && into.elems.empty()) {
    into = other;
    *changed = true;
    return;
  }
  if (!into.elems.empty() && into.elems.size() == other.elems.size()) {
    for (size_t i = 0; i < into.elems.size(); ++i) join_into(into.elems[i], other.elems[i], changed);
    return;
  }
  int v = std::max(into.v, other.v);
  if (!other.elems.empty() || !into.elems.empty()) v = kDynamic;
  if (v != into.v || !into.elems.empty()) {
    into = scalar(v);
    *changed = true;
  }
}

class StaticDepth {
 public:
  explicit StaticDepth(Program& p) : p_(p) {
    params_.resize(p.fns.size());
    rets_.resize(p.fns.size());
    for (size_t f = 0; f < p.fns.size(); ++f) params_[f].resize(p.fns[f].params.size());
    params_[p.main_fn][0] = scalar(kParam);  // the instance: data, never a tensor
  }

  void run() {
    for (int iter = 0; iter < 1000; ++iter) {
      changed_ = false;
      for (size_t f = 0; f < p_.fns.size(); ++f) {
        // Parameters not yet reached by any call stay unknown: ops over unknown values are
        // not recorded until a later iteration knows them (functions never called keep
        // dynamic depths, which the runtime never uses).
        std::vector<AV> env(p_.fns[f].num_slots);
        for (size_t i = 0; i < params_[f].size(); ++i) env[i] = params_[f][i];
        AV r = eval(*p_.fns[f].body, env);
        join_into(rets_[f], r, &changed_);
      }
      if (!changed_) break;
    }
    p_.max_static_depth = -1;
    walk_program(p_, [&](Expr& e) {
      if (e.kind == ExprKind::kLet && e.group >= 0) {
        e.static_depth = -1;
        auto it = site_.find(&e);
        if (p_.groups[e.group].is_static && it != site_.end() && it->second >= 0 && it->second <= kMaxStaticDepth) {
          e.static_depth = it->second;
          p_.max_static_depth = std::max(p_.max_static_depth, it->second);
        }
        return;
      }
      if (e.kind != ExprKind::kOp) return;
      e.static_depth = -1;
      if (is_view_op(e.op)) return;
      auto it = site_.find(&e);
      if (it != site_.end() && it->second >= 0 && it->second <= kMaxStaticDepth) {
        e.static_depth = it->second;
        p_.max_static_depth = std::max(p_.max_static_depth, it->second);
      }
    });
  }

 private:
  void bind(const Pattern& pat, const AV& v, std::vector<AV>& env) {
    switch (pat.kind) {
      case Pattern::kWild: return;
      case Pattern::kVar: env[pat.slot] = v; return;
      case Pattern::kTuple:
        for (size_t i = 0; i < pat.elems.size(); ++i)
          bind(pat.elems[i], i < v.elems.size() ? v.elems[i] : scalar(v.v == kUnknown ? kUnknown : kDynamic), env);
        return;
    }
  }

  AV eval(Expr& e, std::vector<AV>& env) {
    switch (e.kind) {
      case ExprKind::kIntLit:
      case ExprKind::kBoolLit:
      case ExprKind::kFloatLit:
      case ExprKind::kGlobal: return scalar(kParam);
      case ExprKind::kVar: return env[e.slot];
      case ExprKind::kOp: {
        std::vector<AV> args;
        for (auto& a : e.args) args.push_back(eval(*a, env));
        if (is_view_op(e.op)) return scalar(kParam);
        int d = kParam;
        bool unknown = false;
        for (const AV& a : args) {
          if (a.v == kUnknown) unknown = true;
          d = std::max(d, a.elems.empty() ? a.v : kDynamic);
        }
        if (unknown && d != kDynamic) return scalar(kUnknown);
        int result = d == kDynamic ? kDynamic : d + 1;
        if (result > kMaxStaticDepth) result = kDynamic;
        auto [it, inserted] = site_.emplace(&e, result);
        if (!inserted && result > it->second) it->second = result;
        return scalar(it->second);
      }
      case ExprKind::kCall: {
        for (size_t i = 0; i < e.args.size(); ++i) {
          AV a = eval(*e.args[i], env);
          join_into(params_[e.callee][i], a, &changed_);
        }
        return rets_[e.callee];
      }
      case ExprKind::kMap: {
        eval(*e.args[1], env);
        join_into(params_[e.callee][0], scalar(kDynamic), &changed_);
        return scalar(kDynamic);
      }
      case ExprKind::kFoldl: {
        AV init = eval(*e.args[1], env);
        eval(*e.args[2], env);
        join_into(params_[e.callee][0], init, &changed_);
        join_into(params_[e.callee][0], rets_[e.callee], &changed_);
        join_into(params_[e.callee][1], scalar(kDynamic), &changed_);
        AV r = init;
        bool ignored = false;
        join_into(r, rets_[e.callee], &ignored);
        return r;
      }
      case ExprKind::kTuple: {
        AV t;
        t.v = kParam;
        for (auto& a : e.args) t.elems.push_back(eval(*a, env));
        return t;
      }
      case ExprKind::kLet: {
        if (e.group >= 0) {
          // A fused group is one node: depth 1 + its inputs' (static groups), else dynamic.
          const FusedGroup& g = p_.groups[e.group];
          int d = kParam;
          bool unknown = false;
          for (size_t i = 0; i < g.input_slots.size(); ++i) {
            if (g.input_slots[i] < 0) continue;
            const AV& a = env[g.input_slots[i]];
            if (a.v == kUnknown && a.elems.empty()) unknown = true;
            d = std::max(d, a.elems.empty() ? a.v : kDynamic);
          }
          int result = kDynamic;
          if (g.is_static && d != kDynamic) result = unknown ? kUnknown : d + 1;
          if (result != kUnknown && result > kMaxStaticDepth) result = kDynamic;
          if (result != kUnknown) {
            auto [it, inserted] = site_.emplace(&e, result);
            if (!inserted && result > it->second) it->second = result;
            result = it->second;
          }
          for (int slot : g.output_slots) env[slot] = scalar(result);
          return eval(*const_cast<Expr*>(g.last_let)->args[1], env);
        }
        AV rhs = eval(*e.args[0], env);
        bind(e.pat, rhs, env);
        return eval(*e.args[1], env);
      }
      case ExprKind::kIf: {
        eval(*e.args[0], env);
        AV r = eval(*e.args[1], env);
        bool ignored = false;
        join_into(r, eval(*e.args[2], env), &ignored);
        return r;
      }
      case ExprKind::kMatch: {
        eval(*e.args[0], env);
        AV r;
        for (auto& arm : e.arms) {
          for (int s : arm.slots)
            if (s >= 0) env[s] = scalar(kDynamic);
          bool ignored = false;
          join_into(r, eval(*arm.body, env), &ignored);
        }
        return r;
      }
      default:
        // Constructors, lists, scalars, phase: operands are analysed, the result is data.
        if (e.kind == ExprKind::kPhase) return eval(*e.args[0], env);
        for (auto& a : e.args) eval(*a, env);
        return scalar(e.kind == ExprKind::kCtor || e.kind == ExprKind::kReverse ? kDynamic : kParam);
    }
  }

  Program& p_;
  std::vector<std::vector<AV>> params_;
  std::vector<AV> rets_;
  std::unordered_map<const Expr*, int> site_;
  bool changed_ = false;
};

}  // namespace

void analyze_static_depth(Program& program) { StaticDepth(program).run(); }

}  // namespace perfmem::acrobat
