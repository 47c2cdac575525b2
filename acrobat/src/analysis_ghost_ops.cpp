// Ghost-op insertion (contract in analysis_ghost_ops.h).
#include "perfmem/acrobat/analysis_ghost_ops.h"

#include <algorithm>

#include "walk.h"

namespace perfmem::acrobat {
namespace {

constexpr int kUnknownAdvance = -1;

int add(int a, int b) { return (a < 0 || b < 0) ? kUnknownAdvance : a + b; }
int max_known(int a, int b) { return (a < 0 || b < 0) ? kUnknownAdvance : std::max(a, b); }

class Ghost {
 public:
  explicit Ghost(const Program& p, bool write) : p_(p), write_(write), state_(p.fns.size(), 0), adv_(p.fns.size(), 0) {}

  int fn_advance(int f) {
    if (state_[f] == 1) return kUnknownAdvance;  // recursion: depends on the data
    if (state_[f] == 2) return adv_[f];
    state_[f] = 1;
    int a = advance(*p_.fns[f].body);
    state_[f] = 2;
    adv_[f] = a;
    return a;
  }

 private:
  int args_max(const Expr& e) {
    int m = 0;
    for (const auto& a : e.args) m = max_known(m, advance(*a));
    return m;
  }

  int advance(const Expr& e) {
    switch (e.kind) {
      case ExprKind::kLet:
        if (e.group >= 0) return add(e.static_depth >= 0 ? 0 : 1, advance(*p_.groups[e.group].last_let->args[1]));
        return add(advance(*e.args[0]), advance(*e.args[1]));
      case ExprKind::kOp: {
        int m = args_max(e);
        return (is_view_op(e.op) || e.static_depth >= 0) ? m : add(m, 1);
      }
      case ExprKind::kCall: return add(args_max(e), fn_advance(e.callee));
      case ExprKind::kMap:
      case ExprKind::kFoldl: {
        int m = 0;
        for (size_t i = 1; i < e.args.size(); ++i) m = max_known(m, advance(*e.args[i]));
        return fn_advance(e.callee) == 0 ? m : kUnknownAdvance;
      }
      case ExprKind::kPhase: advance(*e.args[0]); return kUnknownAdvance;
      case ExprKind::kIf: {
        int c = advance(*e.args[0]);
        int t = advance(*e.args[1]);
        int f = advance(*e.args[2]);
        if (t < 0 || f < 0) return kUnknownAdvance;
        int m = std::max(t, f);
        if (write_) {
          auto& me = const_cast<Expr&>(e);
          me.ghost_then = m - t;
          me.ghost_else = m - f;
        }
        return add(c, m);
      }
      case ExprKind::kMatch: {
        int c = advance(*e.args[0]);
        std::vector<int> arms;
        int m = 0;
        for (const auto& arm : e.arms) {
          arms.push_back(advance(*arm.body));
          m = max_known(m, arms.back());
        }
        if (m < 0) return kUnknownAdvance;
        if (write_)
          for (size_t i = 0; i < e.arms.size(); ++i) const_cast<MatchArm&>(e.arms[i]).ghost = m - arms[i];
        return add(c, m);
      }
      default: return args_max(e);
    }
  }

  const Program& p_;
  bool write_;
  std::vector<int> state_, adv_;
};

}  // namespace

void analyze_ghost_ops(Program& program) {
  Ghost g(program, true);
  for (size_t f = 0; f < program.fns.size(); ++f) g.fn_advance(static_cast<int>(f));
}

int function_depth_advance(const Program& program, int fn) {
  Ghost g(program, false);
  return g.fn_advance(fn);
}

}  // namespace perfmem::acrobat
