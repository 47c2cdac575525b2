// Parse, typecheck and run the analyses in their dependency order.
#include "perfmem/acrobat/analysis_coarsening.h"
#include "perfmem/acrobat/analysis_ghost_ops.h"
#include "perfmem/acrobat/analysis_param_reuse.h"
#include "perfmem/acrobat/analysis_phases.h"
#include "perfmem/acrobat/analysis_static_depth.h"
#include "perfmem/acrobat/ast.h"
#include "walk.h"

namespace perfmem::acrobat {

namespace {

// matmul(W, concat(X1, ..., Xm)) with W a model parameter and every Xi a matrix becomes
// matmul(W, X1, ..., Xm): the product reads the parts where they are (W's column block i times
// Xi, summed; kernels.h), so the stacked copy concat would make is never written or read.
// MV-RNN's W_M [A; B] is this shape. Vectors keep their concat: their product gathers its
// rows anyway.
void stack_concats_into_products(Program& program) {
  walk_program(program, [](Expr& e) {
    if (e.kind != ExprKind::kOp || e.op != OpKind::kMatMul || e.args.size() != 2) return;
    const Expr& weight = *e.args[0];
    Expr& stacked = *e.args[1];
    if (weight.kind != ExprKind::kGlobal || weight.global_is_const) return;
    if (stacked.kind != ExprKind::kOp || stacked.op != OpKind::kConcat) return;
    for (const auto& part : stacked.args)
      if (part->type->kind != TypeKind::kTensor || part->type->dims.size() != 2) return;
    std::vector<ExprP> parts = std::move(stacked.args);
    e.args.pop_back();
    for (auto& part : parts) e.args.push_back(std::move(part));
  });
}

}  // namespace

Result<std::unique_ptr<Program>> compile_program(const std::string& file, const std::string& source,
                                                 const CompileOptions& options) {
  PERFMEM_ASSIGN_OR_RETURN(Program parsed, parse_program(file, source));
  auto program = std::make_unique<Program>(std::move(parsed));
  PERFMEM_RETURN_IF_ERROR(typecheck(*program, options.overrides));
  const FnDecl& main = program->fns[program->main_fn];
  if (main.ret->kind != TypeKind::kTensor || main.ret->dims.size() != 1)
    return input_error(format_pos(main.file, main.pos), "function main",
                       "main to return a vector (the instance's output, e.g. Tensor[16])", type_name(*main.ret, {}));
  if (options.stacked_products) stack_concats_into_products(*program);
  PERFMEM_RETURN_IF_ERROR(analyze_phases(*program));
  if (!options.phases) drop_phases(*program);
  if (options.static_depth) analyze_static_depth(*program);
  analyze_param_reuse(*program, true);
  if (options.coarsening) {
    analyze_coarsening(*program);
    // Depths again, now counting each fused group as one node.
    if (options.static_depth) analyze_static_depth(*program);
  }
  if (options.ghost_ops) analyze_ghost_ops(*program);
  return program;
}

}  // namespace perfmem::acrobat
