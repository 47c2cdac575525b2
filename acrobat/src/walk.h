// Pre-order traversal of expressions (internal helper of the analyses).
#pragma once

#include "perfmem/acrobat/ast.h"

namespace perfmem::acrobat {

template <typename F>
void walk(Expr& e, F&& f) {
  f(e);
  for (auto& a : e.args) walk(*a, f);
  for (auto& arm : e.arms) walk(*arm.body, f);
}

template <typename F>
void walk_program(Program& p, F&& f) {
  for (auto& fn : p.fns) walk(*fn.body, f);
}

// True when `e` reads frame slot `slot`.
inline bool reads_slot(const Expr& e, int slot) {
  if (e.kind == ExprKind::kVar && e.slot == slot) return true;
  for (const auto& a : e.args)
    if (reads_slot(*a, slot)) return true;
  for (const auto& arm : e.arms)
    if (reads_slot(*arm.body, slot)) return true;
  return false;
}

// Ops that produce a view (no kernel): lookups read a parameter row, fills are constants.
inline bool is_view_op(OpKind op) { return op == OpKind::kLookup || op == OpKind::kFill; }

}  // namespace perfmem::acrobat
