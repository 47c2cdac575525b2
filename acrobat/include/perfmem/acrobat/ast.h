// The .acr language: syntax tree, types, and the annotations the checker and analyses add.
//
//   auto program = perfmem::acrobat::parse_program("treelstm.acr", source_text);
//   if (!program) { std::cerr << program.status().to_string(); }
//   auto status = perfmem::acrobat::typecheck(*program, {{"H", 256}});   // fills the annotations
//
// One Program holds the prelude (type Tree, built-in List) and the user's declarations. The
// syntax tree is also what the runtime interprets, so every node carries its resolved meaning
// (variable slot, callee, constructor, tensor shape) once `typecheck` has succeeded.
// Invariant after a successful typecheck: every Expr has a non-null `type`, every Var a valid
// `slot`, every Call a valid `callee`, every Ctor/Match a valid `adt`.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "perfmem/core/status.h"

namespace perfmem::acrobat {

struct SrcPos {
  int line = 0;
  int col = 0;
};

// "file.acr:3:14"
std::string format_pos(const std::string& file, SrcPos pos);

enum class TypeKind { kInt, kBool, kFloat, kTensor, kTuple, kList, kAdt };

struct Expr;
using ExprP = std::unique_ptr<Expr>;

struct Type;
using TypeP = std::shared_ptr<const Type>;

struct Type {
  TypeKind kind = TypeKind::kInt;
  std::vector<int64_t> dims;  // tensor shape (resolved)
  std::vector<TypeP> elems;   // tuple elements, or the list element type
  int adt = -1;               // index into Program::adts
  std::string adt_name;       // as written, until resolved
  // Tensor dimension expressions as written (resolved into `dims` by the checker).
  std::vector<std::shared_ptr<Expr>> dim_exprs;
  SrcPos pos;
};

TypeP make_type(TypeKind kind);
TypeP make_tensor_type(std::vector<int64_t> dims);
TypeP make_tuple_type(std::vector<TypeP> elems);
TypeP make_list_type(TypeP elem);
bool same_type(const Type& a, const Type& b);
std::string type_name(const Type& t, const std::vector<std::string>& adt_names);

// Tensor operators (each becomes a batched kernel, or part of a coarsened group).
enum class OpKind {
  kMatMul,
  kDense,
  kAdd,
  kSub,
  kMul,
  kSigmoid,
  kTanh,
  kRelu,
  kConcat,
  kSlice,
  kSum,
  kSoftmax,
  kArgmax,
  kMax,
  kLookup,
  kFill
};
const char* op_name(OpKind op);

enum class ExprKind {
  kIntLit,
  kFloatLit,
  kBoolLit,
  kVar,
  kGlobal,
  kCall,
  kCtor,
  kTuple,
  kLet,
  kIf,
  kMatch,
  kPhase,
  kBinary,
  kUnary,
  kOp,
  kMap,
  kFoldl,
  kReverse,
  kLength,
  // item(t) / index(t), and a Tensor[1] operand of a comparison: the value of a one-element
  // tensor as a Float (item) or an Int (index). The instance waits until the tensor is
  // computed (the runtime executes every pending op of the minibatch, batched, meanwhile).
  kTensorValue
};

enum class BinOp { kAdd, kSub, kMul, kDiv, kMod, kLt, kLe, kGt, kGe, kEq, kNe, kAnd, kOr };

struct Pattern {
  enum Kind { kVar, kWild, kTuple } kind = kVar;
  std::string name;
  int slot = -1;
  std::vector<Pattern> elems;
  SrcPos pos;
};

struct MatchArm {
  std::string ctor;
  std::vector<std::string> binders;  // "_" ignores a field
  std::vector<int> slots;            // -1 for "_"
  ExprP body;
  SrcPos pos;
  int ctor_index = -1;
  int ghost = 0;  // ghost-op padding after this arm (analysis_ghost_ops)
};

struct Expr {
  ExprKind kind = ExprKind::kIntLit;
  SrcPos pos;
  std::string name;  // variable, function, constructor, global or builtin name
  int64_t ival = 0;
  double fval = 0;
  BinOp bin = BinOp::kAdd;
  std::vector<ExprP> args;  // call/ctor/tuple/op arguments; if: cond, then, else; let: rhs, body
  Pattern pat;              // let
  std::vector<MatchArm> arms;

  // --- filled by typecheck ---
  TypeP type;
  int slot = -1;        // kVar
  int callee = -1;      // kCall / kMap / kFoldl: function index
  int adt = -1;         // kCtor: adt index; kMatch: scrutinee adt (-1 for lists)
  int ctor_index = -1;  // kCtor
  int global = -1;      // kGlobal: parameter index, or constant when `global_is_const`
  bool global_is_const = false;
  OpKind op = OpKind::kAdd;
  std::vector<int64_t> op_ints;  // slice start/len, fill size; lookup: table rank
  int constant_tensor = -1;      // kFill: index into Program::constant_tensors

  // --- filled by analyses ---
  int static_depth = -1;               // analysis_static_depth: >= 0 when the op's depth is a constant
  std::vector<int> shared;             // analysis_param_reuse: per argument, the parameter/constant
                                       // tensor id when it is always the same model parameter, else -1
  int kernel = -1;                     // interned kernel signature (op, shapes, shared parameters)
  int ghost_then = 0, ghost_else = 0;  // analysis_ghost_ops (kIf)
  int group = -1;                      // analysis_coarsening: kLet that starts a fused group (its
                                       // static_depth is the group's, for a static group)
};

struct CtorDecl {
  std::string name;
  std::vector<TypeP> fields;
  SrcPos pos;
};

struct AdtDecl {
  std::string name;
  std::vector<CtorDecl> ctors;
  SrcPos pos;
  std::string file;
};

struct ConstDecl {
  std::string name;
  ExprP value;
  int64_t resolved = 0;
  SrcPos pos;
};

// How a parameter is initialised.
struct ParamInit {
  enum Kind { kHash, kLoad } kind = kHash;
  int64_t tid = 0;
  bool glorot = false;  // scale = sqrt(6 / (rows + cols)) over the last two dimensions
  double scale = 1.0;
  std::string tensor_name;  // kLoad: name in the safetensors file given at run time
};

struct ParamDecl {
  std::string name;
  TypeP type;  // a tensor type
  ParamInit init;
  SrcPos pos;
};

struct FnParam {
  std::string name;
  TypeP type;
  SrcPos pos;
};

struct FnDecl {
  std::string name;
  std::vector<FnParam> params;
  TypeP ret;
  ExprP body;
  SrcPos pos;
  std::string file;
  int num_slots = 0;  // filled by typecheck: frame size
};

// A constant tensor (zeros/fill) shared by every instance, like a parameter.
struct ConstantTensor {
  int64_t size = 0;
  double value = 0;
};

// A batched kernel: one operator with fixed shapes and fixed shared parameters, or one fused
// group. Nodes batch together exactly when their kernel ids are equal.
struct KernelSig {
  OpKind op = OpKind::kAdd;
  int group = -1;  // >= 0: a fused group (op is then unused)
  std::vector<std::vector<int64_t>> arg_dims;
  std::vector<int> shared_param;  // per argument: parameter/constant tensor id, or -1
  std::vector<int64_t> ints;      // slice start/len
  std::vector<int64_t> out_dims;
  std::string key;  // interning key
};

// A fused group of straight-line tensor ops (analysis_coarsening).
struct GroupInstr {
  KernelSig sig;          // the operator, its shapes and shared parameters
  std::vector<int> regs;  // argument registers
  int out = -1;           // result register
  // Product by the same parameter as the next instruction, on independent operands: both
  // run as ONE sgemm over twice the rows (e.g. U_f h_left and U_f h_right).
  bool paired_with_next = false;
};
struct FusedGroup {
  std::vector<int> input_slots;  // per input: the frame slot read, or -1 for a parameter
  std::vector<int> input_regs;   // per input: its register
  int num_regs = 0;
  std::vector<int64_t> reg_size;  // elements per register
  std::vector<int> reg_param;     // parameter/constant tensor id of a shared input, else -1
  std::vector<GroupInstr> instrs;
  std::vector<int> output_regs;    // registers kept as outputs
  std::vector<int> output_slots;   // frame slots receiving the outputs
  const Expr* last_let = nullptr;  // evaluation continues with this let's body
  bool is_static = false;          // all ops have static depths: the group gets one too
  std::string where;               // function name, for reports
};

struct Program {
  std::vector<std::string> files;  // for error messages: prelude and the user's file
  std::vector<AdtDecl> adts;
  std::vector<ConstDecl> consts;
  std::vector<ParamDecl> params;
  std::vector<FnDecl> fns;
  std::vector<ConstantTensor> constant_tensors;
  std::vector<FusedGroup> groups;
  std::vector<KernelSig> kernels;
  int main_fn = -1;
  int tree_adt = -1;          // the prelude's Tree type
  int num_phases = 1;         // filled by analysis_phases
  int max_static_depth = -1;  // filled by analysis_static_depth
  // Filled by typecheck: some expression reads a tensor's value (kTensorValue), so the
  // runtime runs each instance as a fiber that can wait for values (runtime.h).
  bool reads_tensor_values = false;
  std::string file;  // the user's file name
};

// Parses `source` (named `file` in errors) after the prelude. Errors name file:line:col.
Result<Program> parse_program(const std::string& file, const std::string& source);

// Resolves names, constants (with `overrides`, e.g. {"H", 512}) and shapes; checks types.
Status typecheck(Program& program, const std::map<std::string, int64_t>& overrides = {});

// Parse + typecheck + all analyses, as used by the CLI and runtime.
struct CompileOptions {
  std::map<std::string, int64_t> overrides;
  bool static_depth = true;
  bool ghost_ops = true;
  bool coarsening = true;
  // false: `phase` annotations are checked, then dropped (one phase; the depth counter is
  // never reset), for the benchmark's ablation. Results are unchanged.
  bool phases = true;
  // false: matmul(W, concat(X1, ..., Xm)) of a parameter W and matrices Xi keeps its concat
  // (the copy of the stacked operand) instead of reading the parts in place. Results agree to
  // rounding (the sum over W's columns splits at the parts).
  bool stacked_products = true;
};
Result<std::unique_ptr<Program>> compile_program(const std::string& file, const std::string& source,
                                                 const CompileOptions& options);

}  // namespace perfmem::acrobat
