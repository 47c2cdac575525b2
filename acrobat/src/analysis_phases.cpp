// Program phases (contract in analysis_phases.h).
#include "perfmem/acrobat/analysis_phases.h"

#include "walk.h"

namespace perfmem::acrobat {

Status analyze_phases(Program& program) {
  // Mark the allowed positions: main's spine.
  std::vector<const Expr*> allowed;
  Expr* e = program.fns[program.main_fn].body.get();
  int next_phase = 1;
  while (e) {
    if (e->kind == ExprKind::kPhase) {
      allowed.push_back(e);
      e->ival = next_phase++;
      e = e->args[0].get();
    } else if (e->kind == ExprKind::kLet) {
      e = e->args[1].get();
    } else {
      e = nullptr;
    }
  }
  Status status;
  for (auto& fn : program.fns) {
    walk(*fn.body, [&](Expr& x) {
      if (x.kind != ExprKind::kPhase || !status.ok()) return;
      bool ok = false;
      for (const Expr* a : allowed) ok = ok || a == &x;
      if (!ok)
        status = input_error(format_pos(fn.file, x.pos), "function " + fn.name,
                             "'phase' only on main's spine (its body, or the body of a let there)",
                             "'phase' nested inside another expression");
    });
  }
  program.num_phases = next_phase;
  return status;
}

void drop_phases(Program& program) {
  // The annotations sit only on main's spine (analyze_phases): follow it, unwrapping each.
  ExprP* e = &program.fns[program.main_fn].body;
  while (*e) {
    if ((*e)->kind == ExprKind::kPhase) {
      ExprP body = std::move((*e)->args[0]);
      *e = std::move(body);
    } else if ((*e)->kind == ExprKind::kLet) {
      e = &(*e)->args[1];
    } else {
      break;
    }
  }
  program.num_phases = 1;
}

}  // namespace perfmem::acrobat
