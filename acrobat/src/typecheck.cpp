// Name resolution, constant folding of shapes, and type checking of .acr programs.
#include <functional>
#include <set>
#include <unordered_map>

#include "perfmem/acrobat/ast.h"
#include "perfmem/acrobat/int_arith.h"

namespace perfmem::acrobat {

TypeP make_type(TypeKind kind) {
  auto t = std::make_shared<Type>();
  t->kind = kind;
  return t;
}
TypeP make_tensor_type(std::vector<int64_t> dims) {
  auto t = std::make_shared<Type>();
  t->kind = TypeKind::kTensor;
  t->dims = std::move(dims);
  return t;
}
TypeP make_tuple_type(std::vector<TypeP> elems) {
  auto t = std::make_shared<Type>();
  t->kind = TypeKind::kTuple;
  t->elems = std::move(elems);
  return t;
}
TypeP make_list_type(TypeP elem) {
  auto t = std::make_shared<Type>();
  t->kind = TypeKind::kList;
  t->elems.push_back(std::move(elem));
  return t;
}

bool same_type(const Type& a, const Type& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case TypeKind::kTensor: return a.dims == b.dims;
    case TypeKind::kAdt: return a.adt == b.adt;
    case TypeKind::kTuple:
    case TypeKind::kList:
      if (a.elems.size() != b.elems.size()) return false;
      for (size_t i = 0; i < a.elems.size(); ++i)
        if (!same_type(*a.elems[i], *b.elems[i])) return false;
      return true;
    default: return true;
  }
}

std::string type_name(const Type& t, const std::vector<std::string>& adt_names) {
  switch (t.kind) {
    case TypeKind::kInt: return "Int";
    case TypeKind::kBool: return "Bool";
    case TypeKind::kFloat: return "Float";
    case TypeKind::kTensor: {
      std::string s = "Tensor[";
      for (size_t i = 0; i < t.dims.size(); ++i) s += (i ? ", " : "") + std::to_string(t.dims[i]);
      return s + "]";
    }
    case TypeKind::kTuple: {
      std::string s = "(";
      for (size_t i = 0; i < t.elems.size(); ++i) s += (i ? ", " : "") + type_name(*t.elems[i], adt_names);
      return s + ")";
    }
    case TypeKind::kList: return "List[" + type_name(*t.elems[0], adt_names) + "]";
    case TypeKind::kAdt:
      return t.adt >= 0 && t.adt < static_cast<int>(adt_names.size()) ? adt_names[t.adt] : t.adt_name;
  }
  return "?";
}

const char* op_name(OpKind op) {
  switch (op) {
    case OpKind::kMatMul: return "matmul";
    case OpKind::kDense: return "dense";
    case OpKind::kAdd: return "add";
    case OpKind::kSub: return "sub";
    case OpKind::kMul: return "mul";
    case OpKind::kSigmoid: return "sigmoid";
    case OpKind::kTanh: return "tanh";
    case OpKind::kRelu: return "relu";
    case OpKind::kConcat: return "concat";
    case OpKind::kSlice: return "slice";
    case OpKind::kSum: return "sum";
    case OpKind::kSoftmax: return "softmax";
    case OpKind::kArgmax: return "argmax";
    case OpKind::kMax: return "max";
    case OpKind::kLookup: return "lookup";
    case OpKind::kFill: return "fill";
  }
  return "?";
}

namespace {

struct CheckError {
  SrcPos pos;
  std::string expected;
  std::string found;
};

struct OpInfo {
  const char* name;
  OpKind op;
  int min_args, max_args;
};
const OpInfo kOps[] = {
    {"matmul", OpKind::kMatMul, 2, 2}, {"dense", OpKind::kDense, 3, 3},   {"add", OpKind::kAdd, 2, 2},
    {"sub", OpKind::kSub, 2, 2},       {"mul", OpKind::kMul, 2, 2},       {"sigmoid", OpKind::kSigmoid, 1, 1},
    {"tanh", OpKind::kTanh, 1, 1},     {"relu", OpKind::kRelu, 1, 1},     {"concat", OpKind::kConcat, 2, 16},
    {"slice", OpKind::kSlice, 3, 3},   {"sum", OpKind::kSum, 1, 1},       {"softmax", OpKind::kSoftmax, 1, 1},
    {"argmax", OpKind::kArgmax, 1, 1}, {"lookup", OpKind::kLookup, 2, 2}, {"zeros", OpKind::kFill, 1, 1},
    {"fill", OpKind::kFill, 2, 2},     {"max", OpKind::kMax, 1, 1}};

// Built-ins that are not tensor operators (no function may take these names).
bool is_builtin_name(const std::string& name) {
  return name == "map" || name == "foldl" || name == "reverse" || name == "length" || name == "item" || name == "index";
}

class Checker {
 public:
  Checker(Program& p, const std::map<std::string, int64_t>& overrides) : p_(p), overrides_(overrides) {}

  Status run() {
    int_t_ = make_type(TypeKind::kInt);
    float_t_ = make_type(TypeKind::kFloat);
    bool_t_ = make_type(TypeKind::kBool);
    try {
      declare_adts();
      resolve_consts();
      resolve_adt_fields();  // after the constants: fields may be tensors of constant shapes
      resolve_params();
      declare_fns();
      for (size_t i = 0; i < p_.fns.size(); ++i) check_fn(static_cast<int>(i));
    } catch (const CheckError& e) { return input_error(format_pos(file_, e.pos), where_, e.expected, e.found); }
    return Status::Ok();
  }

 private:
  [[noreturn]] void fail(SrcPos pos, std::string expected, std::string found = {}) {
    throw CheckError{pos, std::move(expected), std::move(found)};
  }
  std::string tn(const TypeP& t) const { return type_name(*t, adt_names_); }

  void declare_adts() {
    for (size_t a = 0; a < p_.adts.size(); ++a) {
      const AdtDecl& adt = p_.adts[a];
      file_ = adt.file;
      where_ = "type " + adt.name;
      if (adt_index_.count(adt.name) || adt.name == "Int" || adt.name == "Bool" || adt.name == "Float")
        fail(adt.pos, "a new type name", "'" + adt.name + "' declared twice");
      adt_index_[adt.name] = static_cast<int>(a);
      adt_names_.push_back(adt.name);
      for (size_t c = 0; c < adt.ctors.size(); ++c) {
        const std::string& n = adt.ctors[c].name;
        if (ctor_index_.count(n) || n == "Nil" || n == "Cons")
          fail(adt.ctors[c].pos, "a new constructor name", "'" + n + "' declared twice");
        ctor_index_[n] = {static_cast<int>(a), static_cast<int>(c)};
      }
    }
  }

  void resolve_adt_fields() {
    for (auto& adt : p_.adts) {
      file_ = adt.file;
      where_ = "type " + adt.name;
      for (auto& c : adt.ctors)
        for (auto& f : c.fields) f = resolve_type(f);
    }
  }

  int64_t eval_const(const Expr& e) {
    switch (e.kind) {
      case ExprKind::kIntLit: return e.ival;
      case ExprKind::kVar: {
        auto it = const_value_.find(e.name);
        if (it == const_value_.end())
          fail(e.pos, "a constant integer expression", "'" + e.name + "', which is not a constant");
        return it->second;
      }
      case ExprKind::kUnary:
        if (e.name == "-") {
          IntResult r = checked_negate(eval_const(*e.args[0]));
          if (r.error) fail(e.pos, r.error);
          return r.value;
        }
        break;
      case ExprKind::kBinary: {
        if (e.bin != BinOp::kAdd && e.bin != BinOp::kSub && e.bin != BinOp::kMul && e.bin != BinOp::kDiv &&
            e.bin != BinOp::kMod)
          break;
        int64_t a = eval_const(*e.args[0]), b = eval_const(*e.args[1]);
        if (b == 0 && (e.bin == BinOp::kDiv || e.bin == BinOp::kMod)) fail(e.args[1]->pos, "a non-zero divisor", "0");
        IntResult r = checked_binary(e.bin, a, b);
        if (r.error) fail(e.pos, r.error);
        return r.value;
      }
      default: break;
    }
    fail(e.pos, "a constant integer expression (literals, constants, + - * / %)");
  }

  void resolve_consts() {
    file_ = p_.file;
    std::set<std::string> used;
    for (auto& c : p_.consts) {
      where_ = "const " + c.name;
      if (const_value_.count(c.name)) fail(c.pos, "a new constant name", "'" + c.name + "' declared twice");
      auto it = overrides_.find(c.name);
      c.resolved = it != overrides_.end() ? it->second : eval_const(*c.value);
      if (it != overrides_.end()) used.insert(c.name);
      const_value_[c.name] = c.resolved;
    }
    for (const auto& [name, v] : overrides_) {
      if (!used.count(name)) {
        where_ = "constant override";
        fail({1, 1}, "a constant declared in the program", "'" + name + "'");
      }
    }
  }

  TypeP resolve_type(const TypeP& t) {
    auto r = std::make_shared<Type>(*t);
    switch (t->kind) {
      case TypeKind::kTensor:
        r->dims.clear();
        if (t->dim_exprs.size() > 3)
          fail(t->pos, "a tensor of rank 1, 2 or 3", "rank " + std::to_string(t->dim_exprs.size()));
        for (const auto& d : t->dim_exprs) {
          int64_t v = eval_const(*d);
          if (v <= 0) fail(d->pos, "a positive dimension", std::to_string(v));
          if (v > (int64_t{1} << 24)) fail(d->pos, "a dimension of at most 16777216", std::to_string(v));
          r->dims.push_back(v);
        }
        check_size(t->pos, r->dims);
        break;
      case TypeKind::kTuple:
      case TypeKind::kList:
        for (auto& e : r->elems) e = resolve_type(e);
        break;
      case TypeKind::kAdt: {
        auto it = adt_index_.find(t->adt_name);
        if (it == adt_index_.end()) fail(t->pos, "a known type", "'" + t->adt_name + "'");
        r->adt = it->second;
        break;
      }
      default: break;
    }
    return r;
  }

  void resolve_params() {
    file_ = p_.file;
    for (size_t i = 0; i < p_.params.size(); ++i) {
      auto& prm = p_.params[i];
      where_ = "param " + prm.name;
      if (param_index_.count(prm.name) || const_value_.count(prm.name))
        fail(prm.pos, "a new parameter name", "'" + prm.name + "' declared twice");
      prm.type = resolve_type(prm.type);
      if (prm.type->kind != TypeKind::kTensor) fail(prm.type->pos, "a Tensor type for a parameter", tn(prm.type));
      if (prm.init.glorot && prm.type->dims.size() < 2)
        fail(prm.pos, "a matrix (or stack of matrices) for glorot scaling", tn(prm.type));
      param_index_[prm.name] = static_cast<int>(i);
    }
  }

  void declare_fns() {
    for (size_t i = 0; i < p_.fns.size(); ++i) {
      auto& f = p_.fns[i];
      file_ = f.file;
      where_ = "function " + f.name;
      if (fn_index_.count(f.name)) fail(f.pos, "a new function name", "'" + f.name + "' declared twice");
      for (const auto& o : kOps)
        if (f.name == o.name) fail(f.pos, "a function name that is not a built-in operator", "'" + f.name + "'");
      if (is_builtin_name(f.name)) fail(f.pos, "a function name that is not a built-in", "'" + f.name + "'");
      fn_index_[f.name] = static_cast<int>(i);
      for (auto& prm : f.params) prm.type = resolve_type(prm.type);
      f.ret = resolve_type(f.ret);
    }
    auto it = fn_index_.find("main");
    if (it == fn_index_.end()) {
      file_ = p_.file;
      where_ = "program";
      fail({1, 1}, "a function 'main' taking the instance");
    }
    p_.main_fn = it->second;
    const auto& m = p_.fns[p_.main_fn];
    file_ = m.file;
    where_ = "function main";
    if (m.params.size() != 1)
      fail(m.pos, "main to take exactly one parameter (the instance)", std::to_string(m.params.size()) + " parameters");
  }

  struct Scope {
    std::vector<std::pair<std::string, std::pair<int, TypeP>>> vars;
  };

  const std::pair<int, TypeP>* lookup_local(const std::string& name) const {
    for (auto it = locals_.rbegin(); it != locals_.rend(); ++it)
      if (it->first == name) return &it->second;
    return nullptr;
  }

  int bind(const std::string& name, TypeP t) {
    int slot = next_slot_++;
    locals_.push_back({name, {slot, std::move(t)}});
    return slot;
  }

  void bind_pattern(Pattern& pat, const TypeP& t) {
    switch (pat.kind) {
      case Pattern::kWild: return;
      case Pattern::kVar: pat.slot = bind(pat.name, t); return;
      case Pattern::kTuple:
        if (t->kind != TypeKind::kTuple || t->elems.size() != pat.elems.size())
          fail(pat.pos, "a value matching a " + std::to_string(pat.elems.size()) + "-tuple pattern", tn(t));
        for (size_t i = 0; i < pat.elems.size(); ++i) bind_pattern(pat.elems[i], t->elems[i]);
        return;
    }
  }

  void check_fn(int index) {
    auto& f = p_.fns[index];
    file_ = f.file;
    where_ = "function " + f.name;
    current_fn_ = index;
    locals_.clear();
    next_slot_ = 0;
    for (auto& prm : f.params) {
      for (const auto& [n, v] : locals_)
        if (n == prm.name) fail(prm.pos, "distinct parameter names", "'" + prm.name + "' twice");
      bind(prm.name, prm.type);
    }
    TypeP body = check(*f.body);
    if (!same_type(*body, *f.ret)) fail(f.body->pos, "a body of the declared return type " + tn(f.ret), tn(body));
    f.num_slots = next_slot_;
  }

  TypeP expect_tensor(const Expr& e) {
    if (e.type->kind != TypeKind::kTensor) fail(e.pos, "a tensor", tn(e.type));
    return e.type;
  }

  int64_t const_arg(const Expr& e, const char* what) {
    if (e.kind == ExprKind::kVar && lookup_local(e.name))
      fail(e.pos, std::string("a constant ") + what + " (shapes are static)", "the variable '" + e.name + "'");
    return eval_const(e);
  }

  // A tensor of `dims` may exist: its element count (computed without wrapping) is at most
  // kMaxTensorElements, so the runtime's size arithmetic cannot overflow either.
  void check_size(SrcPos pos, const std::vector<int64_t>& dims) {
    if (checked_numel(dims) < 0) {
      std::string shape;
      for (size_t i = 0; i < dims.size(); ++i) shape += (i ? ", " : "") + std::to_string(dims[i]);
      fail(pos, "a tensor of at most " + std::to_string(kMaxTensorElements) + " elements", "Tensor[" + shape + "]");
    }
  }

  TypeP check_op(Expr& e, const OpInfo& info) {
    TypeP t = check_op_shape(e, info);
    check_size(e.pos, t->dims);
    return t;
  }

  TypeP check_op_shape(Expr& e, const OpInfo& info) {
    e.kind = ExprKind::kOp;
    e.op = info.op;
    int n = static_cast<int>(e.args.size());
    if (n < info.min_args || n > info.max_args)
      fail(e.pos,
           std::string(info.name) + " with " + std::to_string(info.min_args) +
               (info.max_args != info.min_args ? "+" : "") + " arguments",
           std::to_string(n) + " arguments");
    auto shape_str = [&](const Expr& a) { return tn(a.type); };
    switch (info.op) {
      case OpKind::kFill: {
        int64_t size = const_arg(*e.args[0], "size");
        if (size <= 0) fail(e.args[0]->pos, "a positive size", std::to_string(size));
        double value = 0;
        if (n == 2) {
          const Expr& v = *e.args[1];
          if (v.kind == ExprKind::kFloatLit || v.kind == ExprKind::kIntLit)
            value = v.kind == ExprKind::kFloatLit ? v.fval : double(v.ival);
          else if (v.kind == ExprKind::kUnary && v.name == "-" &&
                   (v.args[0]->kind == ExprKind::kFloatLit || v.args[0]->kind == ExprKind::kIntLit))
            value = -(v.args[0]->kind == ExprKind::kFloatLit ? v.args[0]->fval : double(v.args[0]->ival));
          else
            fail(v.pos, "a number literal as the fill value");
        }
        e.op_ints = {size};
        e.args.clear();
        int id = -1;
        for (size_t i = 0; i < p_.constant_tensors.size(); ++i)
          if (p_.constant_tensors[i].size == size && p_.constant_tensors[i].value == value) id = static_cast<int>(i);
        if (id < 0) {
          id = static_cast<int>(p_.constant_tensors.size());
          p_.constant_tensors.push_back({size, value});
        }
        e.constant_tensor = id;
        return make_tensor_type({size});
      }
      case OpKind::kSlice: {
        TypeP x = check(*e.args[0]);
        expect_tensor(*e.args[0]);
        int64_t start = const_arg(*e.args[1], "slice start");
        int64_t len = const_arg(*e.args[2], "slice length");
        if (x->dims.size() > 2) fail(e.pos, "a vector or matrix to slice", tn(x));
        if (start < 0 || len <= 0 || len > x->dims[0] - start)  // no start + len: it can overflow
          fail(e.args[1]->pos, "0 <= start, 0 < length, start + length <= " + std::to_string(x->dims[0]),
               "start " + std::to_string(start) + ", length " + std::to_string(len));
        e.op_ints = {start, len};
        e.args.resize(1);
        std::vector<int64_t> dims = x->dims;
        dims[0] = len;
        return make_tensor_type(dims);
      }
      case OpKind::kLookup: {
        Expr& table = *e.args[0];
        if (table.kind != ExprKind::kVar || lookup_local(table.name) || !param_index_.count(table.name))
          fail(table.pos, "a parameter name as the lookup table");
        check(table);
        TypeP idx = check(*e.args[1]);
        if (idx->kind != TypeKind::kInt) fail(e.args[1]->pos, "an Int index", tn(idx));
        const auto& d = table.type->dims;
        if (d.size() < 2) fail(table.pos, "a table of rank 2 or 3", tn(table.type));
        e.op_ints = {static_cast<int64_t>(d.size())};
        return make_tensor_type(std::vector<int64_t>(d.begin() + 1, d.end()));
      }
      default: break;
    }
    for (auto& a : e.args) {
      check(*a);
      expect_tensor(*a);
    }
    const auto& a0 = e.args[0]->type->dims;
    switch (info.op) {
      case OpKind::kMatMul:
      case OpKind::kDense: {
        const auto& a1 = e.args[1]->type->dims;
        if (a0.size() != 2)
          fail(e.args[0]->pos, "a matrix as the first operand of " + std::string(info.name), shape_str(*e.args[0]));
        if (a1.size() > 2 || a1[0] != a0[1])
          fail(e.args[1]->pos, "a vector or matrix with " + std::to_string(a0[1]) + " rows", shape_str(*e.args[1]));
        if (info.op == OpKind::kDense) {
          if (a1.size() != 1) fail(e.args[1]->pos, "a vector", shape_str(*e.args[1]));
          if (!same_type(*e.args[2]->type, *make_tensor_type({a0[0]})))
            fail(e.args[2]->pos, "a bias " + tn(make_tensor_type({a0[0]})), shape_str(*e.args[2]));
          return make_tensor_type({a0[0]});
        }
        if (a1.size() == 1) return make_tensor_type({a0[0]});
        return make_tensor_type({a0[0], a1[1]});
      }
      case OpKind::kAdd:
      case OpKind::kSub:
      case OpKind::kMul:
        if (!same_type(*e.args[0]->type, *e.args[1]->type))
          fail(e.args[1]->pos, "an operand of the same shape " + shape_str(*e.args[0]), shape_str(*e.args[1]));
        return e.args[0]->type;
      case OpKind::kSigmoid:
      case OpKind::kTanh:
      case OpKind::kRelu:
      case OpKind::kSoftmax: return e.args[0]->type;
      case OpKind::kSum:
      case OpKind::kMax: return make_tensor_type({1});
      case OpKind::kArgmax:
        if (a0.size() != 1) fail(e.args[0]->pos, "a vector", shape_str(*e.args[0]));
        return make_tensor_type({1});
      case OpKind::kConcat: {
        std::vector<int64_t> dims = a0;
        if (dims.size() > 2) fail(e.args[0]->pos, "a vector or matrix", shape_str(*e.args[0]));
        for (size_t i = 1; i < e.args.size(); ++i) {
          const auto& d = e.args[i]->type->dims;
          if (d.size() != dims.size() || (d.size() == 2 && d[1] != dims[1]))
            fail(e.args[i]->pos, "an operand with the same rank and columns as " + shape_str(*e.args[0]),
                 shape_str(*e.args[i]));
          dims[0] += d[0];
        }
        return make_tensor_type(dims);
      }
      default: break;
    }
    fail(e.pos, "a known operator");
  }

  void check_fn_ref(Expr& f_expr, int* callee) {
    if (f_expr.kind != ExprKind::kVar || lookup_local(f_expr.name) || !fn_index_.count(f_expr.name))
      fail(f_expr.pos, "a function name", f_expr.kind == ExprKind::kVar ? "'" + f_expr.name + "'" : "an expression");
    *callee = fn_index_.at(f_expr.name);
  }

  TypeP check(Expr& e) {
    e.type = check_inner(e);
    return e.type;
  }

  TypeP check_inner(Expr& e) {
    switch (e.kind) {
      case ExprKind::kIntLit: return int_t_;
      case ExprKind::kBoolLit: return bool_t_;
      case ExprKind::kFloatLit: return float_t_;
      case ExprKind::kVar: {
        if (const auto* local = lookup_local(e.name)) {
          e.slot = local->first;
          return local->second;
        }
        if (auto it = const_value_.find(e.name); it != const_value_.end()) {
          e.kind = ExprKind::kGlobal;
          e.global_is_const = true;
          e.ival = it->second;
          return int_t_;
        }
        if (auto it = param_index_.find(e.name); it != param_index_.end()) {
          e.kind = ExprKind::kGlobal;
          e.global = it->second;
          return p_.params[it->second].type;
        }
        if (ctor_index_.count(e.name) || e.name == "Nil" || e.name == "Cons") {
          e.kind = ExprKind::kCtor;
          return check_inner(e);
        }
        if (fn_index_.count(e.name))
          fail(e.pos, "a value (functions are passed only to map and foldl)", "the function '" + e.name + "'");
        fail(e.pos, "a known variable, constant or parameter", "'" + e.name + "'");
      }
      case ExprKind::kCall: {
        for (const auto& o : kOps)
          if (e.name == o.name) return check_op(e, o);
        if (e.name == "map" || e.name == "foldl") {
          bool is_map = e.name == "map";
          size_t want = is_map ? 2 : 3;
          if (e.args.size() != want)
            fail(e.pos, e.name + " with " + std::to_string(want) + " arguments",
                 std::to_string(e.args.size()) + " arguments");
          check_fn_ref(*e.args[0], &e.callee);
          const FnDecl& f = p_.fns[e.callee];
          e.kind = is_map ? ExprKind::kMap : ExprKind::kFoldl;
          TypeP list = check(*e.args.back());
          if (list->kind != TypeKind::kList) fail(e.args.back()->pos, "a list", tn(list));
          if (is_map) {
            if (f.params.size() != 1 || !same_type(*f.params[0].type, *list->elems[0]))
              fail(e.args[0]->pos, "a function taking one " + tn(list->elems[0]), "'" + f.name + "'");
            return make_list_type(f.ret);
          }
          TypeP init = check(*e.args[1]);
          if (f.params.size() != 2 || !same_type(*f.params[0].type, *init) ||
              !same_type(*f.params[1].type, *list->elems[0]) || !same_type(*f.ret, *init))
            fail(e.args[0]->pos, "a function (" + tn(init) + ", " + tn(list->elems[0]) + ") -> " + tn(init),
                 "'" + f.name + "'");
          return init;
        }
        if (e.name == "item" || e.name == "index") {
          if (e.args.size() != 1)
            fail(e.pos, e.name + " with 1 argument", std::to_string(e.args.size()) + " arguments");
          check(*e.args[0]);
          expect_one_element(*e.args[0], e.name.c_str());
          e.kind = ExprKind::kTensorValue;
          p_.reads_tensor_values = true;
          return e.name == "item" ? float_t_ : int_t_;
        }
        if (e.name == "reverse" || e.name == "length") {
          if (e.args.size() != 1)
            fail(e.pos, e.name + " with 1 argument", std::to_string(e.args.size()) + " arguments");
          TypeP list = check(*e.args[0]);
          if (list->kind != TypeKind::kList) fail(e.args[0]->pos, "a list", tn(list));
          e.kind = e.name == "reverse" ? ExprKind::kReverse : ExprKind::kLength;
          return e.kind == ExprKind::kReverse ? list : int_t_;
        }
        auto it = fn_index_.find(e.name);
        if (it == fn_index_.end()) fail(e.pos, "a known function or operator", "'" + e.name + "'");
        e.callee = it->second;
        if (e.callee == p_.main_fn) fail(e.pos, "a call to a function other than main");
        const FnDecl& f = p_.fns[e.callee];
        if (f.params.size() != e.args.size())
          fail(e.pos, std::to_string(f.params.size()) + " arguments for '" + f.name + "'",
               std::to_string(e.args.size()));
        for (size_t i = 0; i < e.args.size(); ++i) {
          TypeP t = check(*e.args[i]);
          if (!same_type(*t, *f.params[i].type))
            fail(e.args[i]->pos, tn(f.params[i].type) + " for parameter '" + f.params[i].name + "'", tn(t));
        }
        return f.ret;
      }
      case ExprKind::kCtor: {
        if (e.name == "Cons") {
          if (e.args.size() != 2) fail(e.pos, "Cons(head, tail)", std::to_string(e.args.size()) + " arguments");
          TypeP h = check(*e.args[0]);
          TypeP t = check(*e.args[1]);
          if (t->kind != TypeKind::kList || !same_type(*t->elems[0], *h))
            fail(e.args[1]->pos, "a List[" + tn(h) + "]", tn(t));
          e.adt = -1;
          e.ctor_index = 1;
          return t;
        }
        if (e.name == "Nil")
          fail(e.pos, "a constructor with a known type (lists are built by the input, map and Cons)", "Nil");
        auto it = ctor_index_.find(e.name);
        if (it == ctor_index_.end()) fail(e.pos, "a known constructor", "'" + e.name + "'");
        e.adt = it->second.first;
        e.ctor_index = it->second.second;
        const CtorDecl& c = p_.adts[e.adt].ctors[e.ctor_index];
        if (c.fields.size() != e.args.size())
          fail(e.pos, std::to_string(c.fields.size()) + " fields for " + c.name, std::to_string(e.args.size()));
        for (size_t i = 0; i < e.args.size(); ++i) {
          TypeP t = check(*e.args[i]);
          if (!same_type(*t, *c.fields[i])) fail(e.args[i]->pos, tn(c.fields[i]), tn(t));
        }
        auto t = std::make_shared<Type>();
        t->kind = TypeKind::kAdt;
        t->adt = e.adt;
        return t;
      }
      case ExprKind::kTuple: {
        std::vector<TypeP> elems;
        for (auto& a : e.args) elems.push_back(check(*a));
        return make_tuple_type(std::move(elems));
      }
      case ExprKind::kLet: {
        TypeP rhs = check(*e.args[0]);
        size_t mark = locals_.size();
        bind_pattern(e.pat, rhs);
        TypeP body = check(*e.args[1]);
        locals_.resize(mark);
        return body;
      }
      case ExprKind::kIf: {
        TypeP c = check(*e.args[0]);
        if (c->kind != TypeKind::kBool) fail(e.args[0]->pos, "a Bool condition", tn(c));
        TypeP a = check(*e.args[1]);
        TypeP b = check(*e.args[2]);
        if (!same_type(*a, *b)) fail(e.args[2]->pos, "an else branch of type " + tn(a), tn(b));
        return a;
      }
      case ExprKind::kMatch: return check_match(e);
      case ExprKind::kPhase: {
        if (current_fn_ != p_.main_fn) fail(e.pos, "'phase' only in main");
        return check(*e.args[0]);
      }
      case ExprKind::kBinary: {
        TypeP a = check(*e.args[0]);
        TypeP b = check(*e.args[1]);
        if (is_comparison(e.bin) && (is_number_like(*a) || is_number_like(*b)) &&
            (a->kind == TypeKind::kFloat || b->kind == TypeKind::kFloat || a->kind == TypeKind::kTensor ||
             b->kind == TypeKind::kTensor)) {
          // A comparison that involves a Float or a tensor's value: both sides as Floats.
          for (auto& operand : e.args) {
            Expr& x = *operand;
            if (x.type->kind == TypeKind::kTensor) {
              expect_one_element(x, "a comparison");
              operand = read_as_float(std::move(operand));
            } else if (x.type->kind != TypeKind::kFloat && x.type->kind != TypeKind::kInt) {
              fail(x.pos, "an Int, a Float or a Tensor[1] to compare with a Float", tn(x.type));
            }
          }
          return bool_t_;
        }
        switch (e.bin) {
          case BinOp::kAnd:
          case BinOp::kOr:
            if (a->kind != TypeKind::kBool) fail(e.args[0]->pos, "a Bool", tn(a));
            if (b->kind != TypeKind::kBool) fail(e.args[1]->pos, "a Bool", tn(b));
            return bool_t_;
          case BinOp::kEq:
          case BinOp::kNe:
            if (a->kind != TypeKind::kInt && a->kind != TypeKind::kBool) fail(e.args[0]->pos, "an Int or Bool", tn(a));
            if (!same_type(*a, *b)) fail(e.args[1]->pos, tn(a), tn(b));
            return bool_t_;
          default:
            if (a->kind != TypeKind::kInt) fail(e.args[0]->pos, "an Int (use add/sub/mul for tensors)", tn(a));
            if (b->kind != TypeKind::kInt) fail(e.args[1]->pos, "an Int", tn(b));
            return (e.bin == BinOp::kLt || e.bin == BinOp::kLe || e.bin == BinOp::kGt || e.bin == BinOp::kGe) ? bool_t_
                                                                                                              : int_t_;
        }
      }
      case ExprKind::kUnary: {
        TypeP a = check(*e.args[0]);
        if (e.name == "-" && a->kind != TypeKind::kInt && a->kind != TypeKind::kFloat)
          fail(e.args[0]->pos, "an Int or a Float", tn(a));
        if (e.name == "!" && a->kind != TypeKind::kBool) fail(e.args[0]->pos, "a Bool", tn(a));
        return a;
      }
      default: break;
    }
    fail(e.pos, "an expression");
  }

  static bool is_comparison(BinOp op) {
    return op == BinOp::kLt || op == BinOp::kLe || op == BinOp::kGt || op == BinOp::kGe || op == BinOp::kEq ||
           op == BinOp::kNe;
  }
  static bool is_number_like(const Type& t) {
    return t.kind == TypeKind::kInt || t.kind == TypeKind::kFloat || t.kind == TypeKind::kTensor;
  }

  // Reading a tensor's value needs exactly one element (sum, max, argmax, a [1] slice...).
  void expect_one_element(const Expr& x, const char* what) {
    if (x.type->kind != TypeKind::kTensor || x.type->dims.size() != 1 || x.type->dims[0] != 1)
      fail(x.pos, std::string("a Tensor[1] for ") + what + " (its value is read)", tn(x.type));
  }

  // Wraps a checked Tensor[1] expression into item(...): its value as a Float.
  ExprP read_as_float(ExprP x) {
    auto r = std::make_unique<Expr>();
    r->kind = ExprKind::kTensorValue;
    r->pos = x->pos;
    r->name = "item";
    r->type = float_t_;
    r->args.push_back(std::move(x));
    p_.reads_tensor_values = true;
    return r;
  }

  TypeP check_match(Expr& e) {
    TypeP s = check(*e.args[0]);
    std::vector<std::string> ctor_names;
    std::vector<std::vector<TypeP>> fields;
    if (s->kind == TypeKind::kAdt) {
      e.adt = s->adt;
      for (const auto& c : p_.adts[s->adt].ctors) {
        ctor_names.push_back(c.name);
        fields.push_back(c.fields);
      }
    } else if (s->kind == TypeKind::kList) {
      e.adt = -1;
      ctor_names = {"Nil", "Cons"};
      fields = {{}, {s->elems[0], s}};
    } else {
      fail(e.args[0]->pos, "a value of a declared type or a list to match on", tn(s));
    }
    std::vector<bool> seen(ctor_names.size(), false);
    TypeP result;
    for (auto& arm : e.arms) {
      int ci = -1;
      for (size_t i = 0; i < ctor_names.size(); ++i)
        if (ctor_names[i] == arm.ctor) ci = static_cast<int>(i);
      if (ci < 0) fail(arm.pos, "a constructor of " + tn(s), "'" + arm.ctor + "'");
      if (seen[ci]) fail(arm.pos, "each constructor matched once", "'" + arm.ctor + "' again");
      seen[ci] = true;
      arm.ctor_index = ci;
      if (arm.binders.size() != fields[ci].size())
        fail(arm.pos, std::to_string(fields[ci].size()) + " fields for " + arm.ctor,
             std::to_string(arm.binders.size()));
      size_t mark = locals_.size();
      arm.slots.clear();
      for (size_t i = 0; i < arm.binders.size(); ++i)
        arm.slots.push_back(arm.binders[i] == "_" ? -1 : bind(arm.binders[i], fields[ci][i]));
      TypeP t = check(*arm.body);
      locals_.resize(mark);
      if (!result)
        result = t;
      else if (!same_type(*result, *t))
        fail(arm.body->pos, "an arm of type " + tn(result), tn(t));
    }
    for (size_t i = 0; i < seen.size(); ++i)
      if (!seen[i]) fail(e.pos, "an arm for every constructor", "no arm for '" + ctor_names[i] + "'");
    return result;
  }

  Program& p_;
  const std::map<std::string, int64_t>& overrides_;
  TypeP int_t_, bool_t_, float_t_;
  std::string file_, where_;
  std::unordered_map<std::string, int> adt_index_, param_index_, fn_index_;
  std::vector<std::string> adt_names_;
  std::unordered_map<std::string, std::pair<int, int>> ctor_index_;
  std::unordered_map<std::string, int64_t> const_value_;
  std::vector<std::pair<std::string, std::pair<int, TypeP>>> locals_;
  int next_slot_ = 0;
  int current_fn_ = -1;
};

}  // namespace

Status typecheck(Program& program, const std::map<std::string, int64_t>& overrides) {
  return Checker(program, overrides).run();
}

}  // namespace perfmem::acrobat
