// Parse, typecheck and run the analyses in their dependency order.
#include "perfmem/acrobat/analysis_coarsening.h"
#include "perfmem/acrobat/analysis_ghost_ops.h"
#include "perfmem/acrobat/analysis_param_reuse.h"
#include "perfmem/acrobat/analysis_phases.h"
#include "perfmem/acrobat/analysis_static_depth.h"
#include "perfmem/acrobat/ast.h"

namespace perfmem::acrobat {

Result<std::unique_ptr<Program>> compile_program(const std::string& file, const std::string& source,
                                                 const CompileOptions& options) {
  PERFMEM_ASSIGN_OR_RETURN(Program parsed, parse_program(file, source));
  auto program = std::make_unique<Program>(std::move(parsed));
  PERFMEM_RETURN_IF_ERROR(typecheck(*program, options.overrides));
  const FnDecl& main = program->fns[program->main_fn];
  if (main.ret->kind != TypeKind::kTensor || main.ret->dims.size() != 1)
    return input_error(format_pos(main.file, main.pos), "function main",
                       "main to return a vector (the instance's output, e.g. Tensor[16])", type_name(*main.ret, {}));
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
