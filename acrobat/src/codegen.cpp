// Ahead-of-time compilation of .acr programs to C++ (design in aot.h).
//
// Every .acr function becomes one C++ function over Values; each frame slot a local. Each
// expression is emitted as statements that leave its value in a fresh local, in the order the
// interpreter evaluates it, so the generated code records the same nodes, with the same
// operands, depths and phases. Depth bookkeeping is emitted only where it can change a depth:
// elements of a parallel construct that record nothing, call nothing and wait for nothing
// leave the depth counter alone, so they are evaluated without it.
#include <bit>
#include <cctype>
#include <cstdio>
#include <limits>
#include <sstream>

#include "perfmem/acrobat/aot.h"
#include "codegen_fused.h"
#include "perfmem/acrobat/runtime.h"
#include "walk.h"

namespace perfmem::acrobat {
namespace {

// FNV-1a over 64-bit words.
class Fingerprint {
 public:
  void add(int64_t v) {
    for (int i = 0; i < 8; ++i) {
      h_ ^= static_cast<uint64_t>(v >> (8 * i)) & 0xff;
      h_ *= 1099511628211ull;
    }
  }
  void add(const std::string& s) {
    add(static_cast<int64_t>(s.size()));
    for (char c : s) add(static_cast<int64_t>(static_cast<unsigned char>(c)));
  }
  template <typename T>
  void add_all(const std::vector<T>& v) {
    add(static_cast<int64_t>(v.size()));
    for (const auto& x : v) add(static_cast<int64_t>(x));
  }
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 14695981039346656037ull;
};

void fingerprint_expr(const Expr& e, Fingerprint& fp) {
  fp.add(static_cast<int64_t>(e.kind));
  fp.add(e.slot);
  fp.add(e.callee);
  fp.add(e.kernel);
  fp.add(e.static_depth);
  fp.add(e.group);
  fp.add(e.ghost_then);
  fp.add(e.ghost_else);
  fp.add(e.constant_tensor);
  fp.add(e.ival);
  for (const auto& a : e.args) fingerprint_expr(*a, fp);
  for (const auto& arm : e.arms) {
    fp.add(arm.ctor_index);
    fp.add(arm.ghost);
    fp.add_all(arm.slots);
    fingerprint_expr(*arm.body, fp);
  }
}

// prefix + n, built by appending (GCC 12 reports a false -Wrestrict for "s" + std::to_string).
std::string numbered(const char* prefix, int64_t n) {
  std::string out = prefix;
  out += std::to_string(n);
  return out;
}

// A C++ string literal for arbitrary text.
std::string c_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n\"\n    \"";
    } else if (c < 0x20 || c >= 0x7f || c == '?') {  // '?' avoids trigraph-like sequences
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\%03o", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string int_literal(int64_t v) {
  if (v == std::numeric_limits<int64_t>::min()) return "(-INT64_C(9223372036854775807) - 1)";
  return "INT64_C(" + std::to_string(v) + ")";
}

const char* binop_name(BinOp op) {
  switch (op) {
    case BinOp::kAdd: return "kAdd";
    case BinOp::kSub: return "kSub";
    case BinOp::kMul: return "kMul";
    case BinOp::kDiv: return "kDiv";
    case BinOp::kMod: return "kMod";
    case BinOp::kLt: return "kLt";
    case BinOp::kLe: return "kLe";
    case BinOp::kGt: return "kGt";
    case BinOp::kGe: return "kGe";
    case BinOp::kEq: return "kEq";
    case BinOp::kNe: return "kNe";
    case BinOp::kAnd: return "kAnd";
    case BinOp::kOr: return "kOr";
  }
  return "kAdd";
}

const char* compare_operator(BinOp op) {
  switch (op) {
    case BinOp::kLt: return "<";
    case BinOp::kLe: return "<=";
    case BinOp::kGt: return ">";
    case BinOp::kGe: return ">=";
    case BinOp::kEq: return "==";
    case BinOp::kNe: return "!=";
    default: return nullptr;
  }
}

// True when evaluating `e` cannot move the instance's depth counter or wait for a value: it
// records no op (lookups and fills record none that take a depth), calls nothing and has no
// ghost steps, phases or fused groups.
bool depth_neutral(const Expr& e) {
  switch (e.kind) {
    case ExprKind::kCall:
    case ExprKind::kMap:
    case ExprKind::kFoldl:
    case ExprKind::kPhase:
    case ExprKind::kTensorValue:
    case ExprKind::kMatch:
    case ExprKind::kIf: return false;
    case ExprKind::kOp:
      if (!is_view_op(e.op)) return false;
      break;
    case ExprKind::kLet:
      if (e.group >= 0) return false;
      break;
    default: break;
  }
  for (const auto& a : e.args)
    if (!depth_neutral(*a)) return false;
  return true;
}

bool is_structure(const Type& t) {
  return t.kind == TypeKind::kAdt || t.kind == TypeKind::kList || t.kind == TypeKind::kTuple;
}

class Emitter {
 public:
  Emitter(const Program& p, bool analysed) : p_(p), analysed_(analysed) {}

  std::string function_name(int fn) const { return numbered("f", fn) + "_" + p_.fns[fn].name; }

  std::string signature(int fn) const {
    const FnDecl& f = p_.fns[fn];
    std::string s = "Value " + function_name(fn) + "([[maybe_unused]] AotState& st";
    for (size_t i = 0; i < f.params.size(); ++i) s += ", [[maybe_unused]] Value s" + std::to_string(i);
    return s + ")";
  }

  std::string function(int fn) {
    const FnDecl& f = p_.fns[fn];
    body_.str("");
    temps_ = 0;
    indent_ = 1;
    std::string head = "// " + f.name + " (" + format_pos(f.file, f.pos) + ")\n" + signature(fn) + " {\n";
    for (int s = static_cast<int>(f.params.size()); s < f.num_slots; ++s)
      head += "  [[maybe_unused]] Value s" + std::to_string(s) + "{};\n";
    std::string r = expr(*f.body);
    line("return " + r + ";");
    return head + body_.str() + "}\n";
  }

 private:
  void line(const std::string& s) { body_ << std::string(2 * static_cast<size_t>(indent_), ' ') << s << "\n"; }
  std::string fresh() { return numbered("v", temps_++); }
  std::string pos(const Expr& e) const { return c_string(format_pos(p_.file, e.pos)); }
  // Declares a fresh local holding `init`; returns its name.
  std::string local(const std::string& init) {
    std::string v = fresh();
    line("[[maybe_unused]] Value " + v + " = " + init + ";");
    return v;
  }
  std::string local_empty() {
    std::string v = fresh();
    line("[[maybe_unused]] Value " + v + "{};");
    return v;
  }
  static std::string value_of_int(const std::string& i) { return "Value{" + i + ", nullptr}"; }

  // Evaluates the elements of a parallel construct; `each(i)` emits element i and returns its
  // local. Depth bookkeeping only when some element may move the depth.
  template <typename Each>
  std::vector<std::string> parallel(const std::vector<const Expr*>& elems, Each&& each) {
    bool any = false;
    for (const Expr* e : elems) any = any || !depth_neutral(*e);
    std::vector<std::string> out;
    if (!any) {
      for (size_t i = 0; i < elems.size(); ++i) out.push_back(each(i));
      return out;
    }
    std::string par = numbered("p", temps_++);
    line("ParallelDepth " + par + " = parallel_fork(st);");
    for (size_t i = 0; i < elems.size(); ++i) {
      if (depth_neutral(*elems[i])) {
        out.push_back(each(i));
        continue;
      }
      line("parallel_enter(st, " + par + ");");
      out.push_back(each(i));
      line("parallel_leave(st, " + par + ");");
    }
    line("st.depth = " + par + ".end;");
    return out;
  }

  std::vector<std::string> parallel_args(const Expr& e) {
    std::vector<const Expr*> elems;
    for (const auto& a : e.args) elems.push_back(a.get());
    return parallel(elems, [&](size_t i) { return expr(*e.args[i]); });
  }

  // The depth of an op or group: its static depth (acrobat) or the instance's counter.
  std::string depth_of(int static_depth) const {
    return (analysed_ && static_depth >= 0) ? std::to_string(static_depth) : "st.depth++";
  }

  void bind(const Pattern& pat, const std::string& v) {
    switch (pat.kind) {
      case Pattern::kWild: return;
      case Pattern::kVar: line(numbered("s", pat.slot) + " = " + v + ";"); return;
      case Pattern::kTuple:
        for (size_t i = 0; i < pat.elems.size(); ++i) bind(pat.elems[i], local(v + ".o->f[" + std::to_string(i) + "]"));
        return;
    }
  }

  std::string expr(const Expr& e) {
    switch (e.kind) {
      case ExprKind::kIntLit:
      case ExprKind::kBoolLit: return value_of_int(int_literal(e.ival));
      case ExprKind::kFloatLit: return value_of_int(int_literal(std::bit_cast<int64_t>(e.fval)));
      case ExprKind::kGlobal: return value_of_int(int_literal(e.global_is_const ? e.ival : e.global));
      case ExprKind::kVar: return local(numbered("s", e.slot));
      case ExprKind::kTensorValue: {
        std::string t = expr(*e.args[0]);
        return local(value_of_int("aot_tensor_value(st, static_cast<uint32_t>(" + t + ".i), " +
                                  (e.name == "index" ? "true" : "false") + ", " + pos(e) + ")"));
      }
      case ExprKind::kBinary: return binary(e);
      case ExprKind::kUnary: {
        std::string a = expr(*e.args[0]);
        if (e.name != "-") return local(value_of_int("!" + a + ".i"));
        if (e.type->kind == TypeKind::kFloat)
          return local(value_of_int("std::bit_cast<int64_t>(-std::bit_cast<double>(" + a + ".i))"));
        std::string r = numbered("r", temps_++);
        line("const IntResult " + r + " = checked_negate(" + a + ".i);");
        line("if (" + r + ".error) aot_fail(st, " + pos(e) + ", std::string(\"expected \") + " + r + ".error);");
        return local(value_of_int(r + ".value"));
      }
      case ExprKind::kTuple:
      case ExprKind::kCtor: {
        std::string o = numbered("o", temps_++);
        int n = static_cast<int>(e.args.size());
        line("Obj* " + o + " = aot_new_obj(st, " + std::to_string(e.kind == ExprKind::kTuple ? 0 : e.ctor_index) +
             ", " + std::to_string(n) + ");");
        auto fields = parallel_args(e);
        for (int i = 0; i < n; ++i) line(o + "->f[" + std::to_string(i) + "] = " + fields[i] + ";");
        return local("Value{0, " + o + "}");
      }
      case ExprKind::kLet: {
        if (e.group >= 0) return group(e);
        const Expr& rhs = *e.args[0];
        if (e.pat.kind == Pattern::kTuple && rhs.kind == ExprKind::kTuple && rhs.args.size() == e.pat.elems.size()) {
          // `let (a, b) = (x, y)`: the tuple is never seen, so it is not built. Its fields
          // are evaluated as a tuple's (in parallel) and bound directly.
          auto fields = parallel_args(rhs);
          for (size_t i = 0; i < fields.size(); ++i) bind(e.pat.elems[i], fields[i]);
          return expr(*e.args[1]);
        }
        std::string v = expr(*e.args[0]);
        bind(e.pat, v);
        return expr(*e.args[1]);
      }
      case ExprKind::kIf: {
        std::string c = expr(*e.args[0]);
        std::string r = local_empty();
        line("if (" + c + ".i != 0) {");
        branch(*e.args[1], r, e.ghost_then);
        line("} else {");
        branch(*e.args[2], r, e.ghost_else);
        line("}");
        return r;
      }
      case ExprKind::kMatch: return match(e);
      case ExprKind::kPhase:
        line("st.phase = " + std::to_string(e.ival) + ";");
        line("st.depth = st.static_base;");
        return expr(*e.args[0]);
      case ExprKind::kCall: {
        const FnDecl& f = p_.fns[e.callee];
        std::string r = local_empty();
        line("{");
        ++indent_;
        line("AotCall call(st, " + c_string(f.name) + ");");
        auto args = parallel_args(e);
        std::string call = function_name(e.callee) + "(st";
        for (const auto& a : args) call += ", " + a;
        line(r + " = " + call + ");");
        --indent_;
        line("}");
        return r;
      }
      case ExprKind::kMap: {
        std::string list = expr(*e.args[1]);
        const FnDecl& f = p_.fns[e.callee];
        std::string n = std::to_string(temps_++);
        line("ParallelDepth p" + n + " = parallel_fork(st);");
        line("Obj* head" + n + " = nullptr;");
        line("Obj** tail" + n + " = &head" + n + ";");
        line("for (Obj* c = " + list + ".o; c; c = c->f[1].o) {");
        ++indent_;
        line("parallel_enter(st, p" + n + ");");
        line("Value r;");
        line("{");
        line("  AotCall call(st, " + c_string(f.name) + ");");
        line("  r = " + function_name(e.callee) + "(st, c->f[0]);");
        line("}");
        line("parallel_leave(st, p" + n + ");");
        line("Obj* cell = aot_new_obj(st, 1, 2);");
        line("cell->f[0] = r;");
        line("cell->f[1] = Value{0, nullptr};");
        line("*tail" + n + " = cell;");
        line("tail" + n + " = &cell->f[1].o;");
        --indent_;
        line("}");
        line("st.depth = p" + n + ".end;");
        return local("Value{0, head" + n + "}");
      }
      case ExprKind::kFoldl: {
        std::string acc0 = expr(*e.args[1]);
        std::string list = expr(*e.args[2]);
        const FnDecl& f = p_.fns[e.callee];
        std::string acc = local(acc0);
        line("for (Obj* c = " + list + ".o; c; c = c->f[1].o) {");
        line("  AotCall call(st, " + c_string(f.name) + ");");
        line("  " + acc + " = " + function_name(e.callee) + "(st, " + acc + ", c->f[0]);");
        line("}");
        return acc;
      }
      case ExprKind::kReverse: {
        std::string list = expr(*e.args[0]);
        std::string out = local("Value{0, nullptr}");
        line("for (Obj* c = " + list + ".o; c; c = c->f[1].o) {");
        line("  Obj* cell = aot_new_obj(st, 1, 2);");
        line("  cell->f[0] = c->f[0];");
        line("  cell->f[1] = " + out + ";");
        line("  " + out + ".o = cell;");
        line("}");
        return out;
      }
      case ExprKind::kLength: {
        std::string list = expr(*e.args[0]);
        std::string n = local("Value{0, nullptr}");
        line("for (Obj* c = " + list + ".o; c; c = c->f[1].o) ++" + n + ".i;");
        return n;
      }
      case ExprKind::kOp: return op(e);
    }
    return value_of_int("0");
  }

  // One branch of an if: its value into `r`, then its ghost steps.
  void branch(const Expr& e, const std::string& r, int ghost) {
    ++indent_;
    std::string v = expr(e);
    line(r + " = " + v + ";");
    if (ghost != 0) line("st.depth += " + std::to_string(ghost) + ";");
    --indent_;
  }

  std::string binary(const Expr& e) {
    if (e.bin == BinOp::kAnd || e.bin == BinOp::kOr) {
      // Short-circuit: the right operand is evaluated only when it decides.
      std::string a = expr(*e.args[0]);
      std::string r = local(value_of_int(e.bin == BinOp::kAnd ? "0" : "1"));
      line(std::string("if (") + (e.bin == BinOp::kAnd ? "" : "!") + a + ".i) {");
      ++indent_;
      std::string b = expr(*e.args[1]);
      line(r + ".i = " + b + ".i != 0;");
      --indent_;
      line("}");
      return r;
    }
    auto ab = parallel_args(e);
    const Type& ta = *e.args[0]->type;
    const Type& tb = *e.args[1]->type;
    if (ta.kind == TypeKind::kFloat || tb.kind == TypeKind::kFloat) {
      auto as_double = [](const Type& t, const std::string& v) {
        return t.kind == TypeKind::kFloat ? "std::bit_cast<double>(" + v + ".i)" : "static_cast<double>(" + v + ".i)";
      };
      const char* cmp = compare_operator(e.bin);
      if (!cmp) {
        line("aot_fail(st, " + pos(e) + ", \"a comparison of Floats\");");
        return value_of_int("0");
      }
      return local(value_of_int(as_double(ta, ab[0]) + " " + cmp + " " + as_double(tb, ab[1])));
    }
    if (const char* cmp = compare_operator(e.bin)) return local(value_of_int(ab[0] + ".i " + cmp + " " + ab[1] + ".i"));
    std::string r = numbered("r", temps_++);
    line("const IntResult " + r + " = checked_binary(BinOp::" + binop_name(e.bin) + ", " + ab[0] + ".i, " + ab[1] +
         ".i);");
    line("if (" + r + ".error) aot_fail(st, " + pos(e) + ", std::string(\"expected \") + " + r + ".error);");
    return local(value_of_int(r + ".value"));
  }

  std::string match(const Expr& e) {
    std::string s = expr(*e.args[0]);
    std::string r = local_empty();
    std::string tag = numbered("tag", temps_++);
    line("const int " + tag + " = " + (e.adt < 0 ? s + ".o ? 1 : 0" : s + ".o->tag") + ";");
    std::string keyword = "if";
    for (const auto& arm : e.arms) {
      line(keyword + " (" + tag + " == " + std::to_string(arm.ctor_index) + ") {");
      ++indent_;
      for (size_t i = 0; i < arm.slots.size(); ++i)
        if (arm.slots[i] >= 0) line(numbered("s", arm.slots[i]) + " = " + s + ".o->f[" + std::to_string(i) + "];");
      // Inputs are cold by the time an instance runs (the last round's kernels evicted
      // them): start loading the constructor's sub-structures while the first is processed.
      for (size_t i = 0; i < arm.slots.size(); ++i)
        if (arm.slots[i] >= 0 && e.adt >= 0 && is_structure(*p_.adts[e.adt].ctors[arm.ctor_index].fields[i]))
          line("__builtin_prefetch(" + numbered("s", arm.slots[i]) + ".o);");
      --indent_;
      branch(*arm.body, r, arm.ghost);
      keyword = "} else if";
    }
    line(e.arms.empty() ? "{" : "} else {");
    line("  aot_fail(st, " + pos(e) + ", \"no match arm for the value\");");
    line("}");
    return r;
  }

  std::string op(const Expr& e) {
    if (e.op == OpKind::kFill)
      return value_of_int(std::to_string(static_cast<int64_t>(p_.params.size()) + e.constant_tensor));
    if (e.op == OpKind::kLookup) {
      int pid = e.args[0]->global;
      const auto& dims = p_.params[pid].type->dims;
      int64_t rows = dims[0], row = 1;
      for (size_t i = 1; i < dims.size(); ++i) row *= dims[i];
      std::string idx = expr(*e.args[1]);
      line("if (" + idx + ".i < 0 || " + idx + ".i >= " + int_literal(rows) + ")");
      line("  aot_fail(st, " + pos(e) + ", \"lookup index \" + std::to_string(" + idx + ".i) + \" outside [0, " +
           std::to_string(rows) + ")\");");
      std::string v = local(value_of_int("st.rec->add_tensor(st.rec->tensors[" + std::to_string(pid) + "].data + " +
                                         idx + ".i * " + int_literal(row) + ", -1)"));
      if (!analysed_) {  // DyNet's schedulers: the looked-up row is copied into the graph
        line("if (st.dynet) {");
        line("  const uint32_t la[2] = {" + std::to_string(pid) + "u, static_cast<uint32_t>(" + v + ".i)};");
        line("  " + v + ".i = st.rec->add_node(" + std::to_string(e.kernel) + ", 0, st.phase, la, 2, 1);");
        line("}");
      }
      return v;
    }
    auto args = parallel_args(e);
    std::string a = numbered("a", temps_++);
    std::string list;
    for (size_t i = 0; i < args.size(); ++i)
      list += (i ? ", " : "") + std::string("static_cast<uint32_t>(") + args[i] + ".i)";
    line("const uint32_t " + a + "[" + std::to_string(std::max<size_t>(args.size(), 1)) + "] = {" + list + "};");
    return local(value_of_int("st.rec->add_node(" + std::to_string(e.kernel) + ", " + depth_of(e.static_depth) +
                              ", st.phase, " + a + ", " + std::to_string(args.size()) + ", 1)"));
  }

  std::string group(const Expr& let) {
    const FusedGroup& g = p_.groups[let.group];
    std::string a = numbered("a", temps_++);
    std::string list;
    for (size_t i = 0; i < g.input_slots.size(); ++i) {
      list += i ? ", " : "";
      list += g.input_slots[i] >= 0 ? "static_cast<uint32_t>(s" + std::to_string(g.input_slots[i]) + ".i)"
                                    : std::to_string(g.reg_param[g.input_regs[i]]) + "u";
    }
    line("const uint32_t " + a + "[" + std::to_string(std::max<size_t>(g.input_slots.size(), 1)) + "] = {" + list +
         "};");
    std::string out = numbered("out", temps_++);
    // Unused when nothing reads the group's results (a dead chain; still recorded and run).
    line("[[maybe_unused]] const uint32_t " + out + " = st.rec->add_node(" + std::to_string(let.kernel) + ", " +
         depth_of(let.static_depth) + ", st.phase, " + a + ", " + std::to_string(g.input_slots.size()) + ", " +
         std::to_string(g.output_regs.size()) + ");");
    for (size_t j = 0; j < g.output_slots.size(); ++j)
      line(numbered("s", g.output_slots[j]) + " = Value{" + out + " + " + std::to_string(j) + ", nullptr};");
    return expr(*g.last_let->args[1]);
  }

  const Program& p_;
  bool analysed_;
  std::ostringstream body_;
  int temps_ = 0;
  int indent_ = 1;
};

// The variant's functions in namespace `ns`.
std::string emit_variant(const Program& p, bool analysed, const std::string& ns) {
  Emitter em(p, analysed);
  std::string out = "namespace " + ns + " {\n\n";
  for (size_t f = 0; f < p.fns.size(); ++f) out += em.signature(static_cast<int>(f)) + ";\n";
  out += "\n";
  for (size_t f = 0; f < p.fns.size(); ++f) out += em.function(static_cast<int>(f)) + "\n";
  out += emit_fused_runs(p, "kFusedRuns");
  return out + "}  // namespace " + ns + "\n\n";
}

bool is_identifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}

}  // namespace

uint64_t program_fingerprint(const Program& p) {
  Fingerprint fp;
  fp.add(static_cast<int64_t>(p.kernels.size()));
  for (const auto& k : p.kernels) fp.add(k.key);
  fp.add(static_cast<int64_t>(p.groups.size()));
  for (const auto& g : p.groups) {
    fp.add_all(g.input_slots);
    fp.add_all(g.input_regs);
    fp.add_all(g.reg_param);
    fp.add_all(g.output_regs);
    fp.add_all(g.output_slots);
    fp.add_all(g.reg_size);
    for (const GroupInstr& in : g.instrs) {  // the generated fused runs compute these
      fp.add(static_cast<int64_t>(in.sig.op));
      fp.add_all(in.sig.out_dims);
      fp.add_all(in.sig.ints);
      fp.add_all(in.regs);
      fp.add(in.out);
      fp.add(in.paired_with_next);
    }
  }
  fp.add(static_cast<int64_t>(p.params.size()));
  for (const auto& prm : p.params) fp.add_all(prm.type->dims);
  fp.add(static_cast<int64_t>(p.constant_tensors.size()));
  fp.add(p.num_phases);
  fp.add(p.max_static_depth);
  fp.add(p.main_fn);
  fp.add(p.reads_tensor_values);
  fp.add(static_cast<int64_t>(p.fns.size()));
  for (const auto& f : p.fns) {
    fp.add(f.name);
    fp.add(static_cast<int64_t>(f.params.size()));
    fp.add(f.num_slots);
    fingerprint_expr(*f.body, fp);
  }
  return fp.value();
}

Result<AotSources> generate_aot_cpp(const std::string& file, const std::string& source, const std::string& name,
                                    const std::map<std::string, int64_t>& overrides,
                                    const std::string& header_include) {
  if (!is_identifier(name)) return input_error("--name", "'" + name + "'", "a C identifier (letters, digits, _)");
  PERFMEM_ASSIGN_OR_RETURN(auto analysed,
                           compile_program(file, source, compile_options_for(Scheduler::kAcrobat, overrides)));
  PERFMEM_ASSIGN_OR_RETURN(auto plain, compile_program(file, source, compile_options_for(Scheduler::kNone, overrides)));
  for (const auto& [k, v] : overrides)
    if (!is_identifier(k)) return input_error("--set", "'" + k + "'", "a constant name");

  const std::string fn = "acrobat_model_" + name;
  AotSources out;
  out.header = "// Generated by `acrobat compile` from " + file +
               ". Do not edit.\n"
               "// The program compiled ahead of time; run it with perfmem::acrobat::load_aot_model (aot.h).\n"
               "#pragma once\n\n#include \"perfmem/acrobat/aot.h\"\n\n"
               "const perfmem::acrobat::AotModel& " +
               fn + "();\n";

  std::string cc = "// Generated by `acrobat compile` from " + file + ". Do not edit.\n";
  cc += header_include.empty() ? "#include \"perfmem/acrobat/aot.h\"\n" : "#include \"" + header_include + "\"\n";
  cc += "\n#include <bit>\n#include <cstdint>\n#include <string>\n\n#include \"perfmem/core/fast_math.h\"\n\n";
  // The fused runs' loops, cloned like kernels.cpp's and, like it, with no contraction into
  // fused multiply-adds (the AVX-512 clone could), whatever flags the file is built with.
  cc +=
      "#if defined(__GNUC__) && !defined(__clang__)\n#pragma GCC optimize(\"fp-contract=off\", "
      "\"no-trapping-math\")\n#endif\n";
  cc +=
      "#if defined(__x86_64__)\n#define PERFMEM_ACROBAT_AOT_CLONES __attribute__((target_clones(\"avx512f\", \"avx2\", "
      "\"default\")))\n#else\n#define PERFMEM_ACROBAT_AOT_CLONES\n#endif\n\n";
  cc += "namespace acrobat_aot_" + name + " {\nusing namespace perfmem::acrobat;\n\n";
  cc += emit_variant(*analysed, true, "analysed");
  cc += emit_variant(*plain, false, "plain");
  cc += "constexpr const char* kSource =\n    " + c_string(source) + ";\n\n";
  std::string ov_ref = "nullptr";
  if (!overrides.empty()) {
    cc += "constexpr AotOverride kOverrides[] = {\n";
    for (const auto& [k, v] : overrides) cc += "    {" + c_string(k) + ", " + int_literal(v) + "},\n";
    cc += "};\n\n";
    ov_ref = "kOverrides";
  }
  const Program& pa = *analysed;
  auto main_of = [&](const Program& p, const std::string& ns) {
    return ns + "::f" + std::to_string(p.main_fn) + "_" + p.fns[p.main_fn].name;
  };
  char fa[32], fpl[32];
  std::snprintf(fa, sizeof(fa), "0x%016llxull", static_cast<unsigned long long>(program_fingerprint(pa)));
  std::snprintf(fpl, sizeof(fpl), "0x%016llxull", static_cast<unsigned long long>(program_fingerprint(*plain)));
  cc += "}  // namespace acrobat_aot_" + name + "\n\n";
  cc += "const perfmem::acrobat::AotModel& " + fn + "() {\n";
  cc += "  using namespace acrobat_aot_" + name + ";\n";
  cc += "  static const AotModel model{" + c_string(name) + ", " + c_string(file) + ", kSource, " + ov_ref + ", " +
        std::to_string(overrides.size()) + ",\n                              {&" + main_of(pa, "analysed") + ", " + fa +
        ", analysed::kFusedRuns, analysed::kFusedRuns_count},\n                              {&" +
        main_of(*plain, "plain") + ", " + fpl + ", plain::kFusedRuns, plain::kFusedRuns_count}};\n";
  cc += "  return model;\n}\n";
  out.cc = std::move(cc);
  return out;
}

}  // namespace perfmem::acrobat
