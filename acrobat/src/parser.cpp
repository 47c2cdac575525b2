// Lexer and recursive-descent parser for .acr files (grammar in docs/acrobat-language.md).
#include <cctype>
#include <cstdlib>
#include <stdexcept>

#include "perfmem/acrobat/ast.h"

namespace perfmem::acrobat {

std::string format_pos(const std::string& file, SrcPos pos) {
  return file + ":" + std::to_string(pos.line) + ":" + std::to_string(pos.col);
}

namespace {

// What the lexer found where no token starts. A byte outside printable ASCII (a control code,
// or part of a UTF-8 character: programs are ASCII outside comments) is named by its value, so
// the message never carries a raw, possibly invalid, byte to the terminal.
std::string unexpected_character(char c) {
  const auto byte = static_cast<unsigned char>(c);
  if (byte >= 0x20 && byte < 0x7f) return std::string("character '") + c + "'";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text = "byte 0x";
  text += kHex[byte >> 4];
  text += kHex[byte & 15];
  return text + (byte >= 0x80 ? " (programs are ASCII outside comments)" : "");
}

// The prelude: the input types the data readers produce.
constexpr const char* kPrelude = "type Tree = Leaf(Int) | Node(Int, Tree, Tree)\n";

enum class Tok { kIdent, kInt, kFloat, kString, kSym, kEnd };

struct Token {
  Tok kind = Tok::kEnd;
  std::string text;
  SrcPos pos;
};

struct ParseError {
  SrcPos pos;
  std::string expected;
  std::string found;
};

std::string describe(const Token& t) {
  switch (t.kind) {
    case Tok::kEnd: return "end of file";
    case Tok::kString: return "string \"" + t.text + "\"";
    default: return "'" + t.text + "'";
  }
}

std::vector<Token> lex(const std::string& src) {
  std::vector<Token> out;
  int line = 1, col = 1;
  size_t i = 0;
  auto advance = [&](size_t n) {
    for (size_t k = 0; k < n; ++k, ++i) {
      if (src[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
  };
  static const char* kSyms[] = {"->", "=>", "<=", ">=", "==", "!=", "&&", "||", "(", ")", "[", "]", "{", "}",
                                ",",  ";",  ":",  "=",  "+",  "-",  "*",  "/",  "%", "<", ">", "|", "!", "_"};
  while (i < src.size()) {
    char c = src[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      advance(1);
      continue;
    }
    if (c == '#' || (c == '/' && i + 1 < src.size() && src[i + 1] == '/')) {
      while (i < src.size() && src[i] != '\n') advance(1);
      continue;
    }
    Token t;
    t.pos = {line, col};
    if (std::isalpha(static_cast<unsigned char>(c)) ||
        (c == '_' && i + 1 < src.size() &&
         (std::isalnum(static_cast<unsigned char>(src[i + 1])) || src[i + 1] == '_'))) {
      size_t j = i;
      while (j < src.size() && (std::isalnum(static_cast<unsigned char>(src[j])) || src[j] == '_')) ++j;
      t.kind = Tok::kIdent;
      t.text = src.substr(i, j - i);
      advance(j - i);
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < src.size() && std::isdigit(static_cast<unsigned char>(src[j]))) ++j;
      t.kind = Tok::kInt;
      if (j < src.size() && src[j] == '.') {
        ++j;
        while (j < src.size() && std::isdigit(static_cast<unsigned char>(src[j]))) ++j;
        t.kind = Tok::kFloat;
      }
      if (j < src.size() && (src[j] == 'e' || src[j] == 'E')) {
        size_t k = j + 1;
        if (k < src.size() && (src[k] == '-' || src[k] == '+')) ++k;
        if (k < src.size() && std::isdigit(static_cast<unsigned char>(src[k]))) {
          while (k < src.size() && std::isdigit(static_cast<unsigned char>(src[k]))) ++k;
          j = k;
          t.kind = Tok::kFloat;
        }
      }
      t.text = src.substr(i, j - i);
      advance(j - i);
    } else if (c == '"') {
      size_t j = i + 1;
      while (j < src.size() && src[j] != '"' && src[j] != '\n') ++j;
      if (j >= src.size() || src[j] != '"') throw ParseError{t.pos, "a closing '\"'", "end of line"};
      t.kind = Tok::kString;
      t.text = src.substr(i + 1, j - i - 1);
      advance(j - i + 1);
    } else {
      bool matched = false;
      for (const char* s : kSyms) {
        size_t n = std::char_traits<char>::length(s);
        if (src.compare(i, n, s) == 0) {
          t.kind = Tok::kSym;
          t.text = s;
          advance(n);
          matched = true;
          break;
        }
      }
      if (!matched) throw ParseError{t.pos, "a token", unexpected_character(c)};
    }
    out.push_back(std::move(t));
  }
  Token end;
  end.kind = Tok::kEnd;
  end.pos = {line, col};
  out.push_back(end);
  return out;
}

bool is_keyword(const std::string& s) {
  static const char* kw[] = {"type", "const", "param", "def",  "let",   "in",   "if",   "then",
                             "else", "match", "phase", "true", "false", "hash", "load", "glorot"};
  for (const char* k : kw)
    if (s == k) return true;
  return false;
}

class Parser {
 public:
  Parser(std::vector<Token> toks, Program& prog, const std::string& file)
      : toks_(std::move(toks)), prog_(prog), file_(file) {}

  void parse_all() {
    while (peek().kind != Tok::kEnd) {
      const Token& t = peek();
      if (is_ident("type"))
        parse_type_decl();
      else if (is_ident("const"))
        parse_const();
      else if (is_ident("param"))
        parse_param();
      else if (is_ident("def"))
        parse_def();
      else
        throw ParseError{t.pos, "a declaration (type, const, param or def)", describe(t)};
      if (is_sym(";")) next();
    }
  }

 private:
  const Token& peek(size_t k = 0) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  const Token& next() {
    const Token& t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }
  bool is_sym(const char* s, size_t k = 0) const { return peek(k).kind == Tok::kSym && peek(k).text == s; }
  bool is_ident(const char* s) const { return peek().kind == Tok::kIdent && peek().text == s; }
  void expect_sym(const char* s) {
    if (!is_sym(s)) throw ParseError{peek().pos, std::string("'") + s + "'", describe(peek())};
    next();
  }
  void expect_kw(const char* s) {
    if (!is_ident(s)) throw ParseError{peek().pos, std::string("'") + s + "'", describe(peek())};
    next();
  }
  std::string expect_name(const char* what) {
    const Token& t = peek();
    if (t.kind != Tok::kIdent || is_keyword(t.text)) throw ParseError{t.pos, what, describe(t)};
    next();
    return t.text;
  }

  void parse_type_decl() {
    AdtDecl adt;
    adt.pos = next().pos;
    adt.file = file_;
    adt.name = expect_name("a type name");
    expect_sym("=");
    do {
      CtorDecl c;
      c.pos = peek().pos;
      c.name = expect_name("a constructor name");
      if (!std::isupper(static_cast<unsigned char>(c.name[0])))
        throw ParseError{c.pos, "a constructor name starting with an upper-case letter", "'" + c.name + "'"};
      if (is_sym("(")) {
        next();
        c.fields.push_back(parse_type());
        while (is_sym(",")) {
          next();
          c.fields.push_back(parse_type());
        }
        expect_sym(")");
      }
      adt.ctors.push_back(std::move(c));
      if (!is_sym("|")) break;
      next();
    } while (true);
    prog_.adts.push_back(std::move(adt));
  }

  void parse_const() {
    ConstDecl c;
    c.pos = next().pos;
    c.name = expect_name("a constant name");
    expect_sym("=");
    c.value = parse_expr();
    prog_.consts.push_back(std::move(c));
  }

  double parse_number() {
    bool neg = false;
    if (is_sym("-")) {
      next();
      neg = true;
    }
    const Token& t = peek();
    if (t.kind != Tok::kInt && t.kind != Tok::kFloat) throw ParseError{t.pos, "a number", describe(t)};
    next();
    double v = std::strtod(t.text.c_str(), nullptr);
    return neg ? -v : v;
  }

  void parse_param() {
    ParamDecl p;
    p.pos = next().pos;
    p.name = expect_name("a parameter name");
    expect_sym(":");
    p.type = parse_type();
    expect_sym("=");
    if (is_ident("hash")) {
      next();
      expect_sym("(");
      const Token& t = peek();
      if (t.kind != Tok::kInt) throw ParseError{t.pos, "an integer tensor id", describe(t)};
      p.init.tid = std::strtoll(next().text.c_str(), nullptr, 10);
      expect_sym(",");
      if (is_ident("glorot")) {
        next();
        p.init.glorot = true;
      } else
        p.init.scale = parse_number();
      expect_sym(")");
    } else if (is_ident("load")) {
      next();
      expect_sym("(");
      const Token& t = peek();
      if (t.kind != Tok::kString) throw ParseError{t.pos, "a tensor name in quotes", describe(t)};
      p.init.kind = ParamInit::kLoad;
      p.init.tensor_name = next().text;
      expect_sym(")");
    } else {
      throw ParseError{peek().pos, "an initialiser: hash(ID, SCALE|glorot) or load(\"NAME\")", describe(peek())};
    }
    prog_.params.push_back(std::move(p));
  }

  void parse_def() {
    FnDecl f;
    f.pos = next().pos;
    f.file = file_;
    f.name = expect_name("a function name");
    expect_sym("(");
    if (!is_sym(")")) {
      do {
        FnParam p;
        p.pos = peek().pos;
        p.name = expect_name("a parameter name");
        expect_sym(":");
        p.type = parse_type();
        f.params.push_back(std::move(p));
        if (!is_sym(",")) break;
        next();
      } while (true);
    }
    expect_sym(")");
    expect_sym("->");
    f.ret = parse_type();
    expect_sym("=");
    f.body = parse_expr();
    prog_.fns.push_back(std::move(f));
  }

  TypeP parse_type() {
    const Token& t = peek();
    struct Guard {
      int& d;
      ~Guard() { --d; }
    } guard{++nesting_};
    if (nesting_ > kMaxNesting)
      throw ParseError{t.pos, "types nested at most " + std::to_string(kMaxNesting) + " deep", "deeper nesting"};
    auto ty = std::make_shared<Type>();
    ty->pos = t.pos;
    if (is_sym("(")) {
      next();
      ty->kind = TypeKind::kTuple;
      ty->elems.push_back(parse_type());
      while (is_sym(",")) {
        next();
        ty->elems.push_back(parse_type());
      }
      expect_sym(")");
      if (ty->elems.size() < 2) throw ParseError{t.pos, "a tuple type with at least two elements", "one element"};
      return ty;
    }
    if (t.kind != Tok::kIdent) throw ParseError{t.pos, "a type", describe(t)};
    next();
    if (t.text == "Int")
      ty->kind = TypeKind::kInt;
    else if (t.text == "Bool")
      ty->kind = TypeKind::kBool;
    else if (t.text == "Float")
      ty->kind = TypeKind::kFloat;
    else if (t.text == "Tensor") {
      ty->kind = TypeKind::kTensor;
      expect_sym("[");
      ty->dim_exprs.push_back(std::shared_ptr<Expr>(parse_expr().release()));
      while (is_sym(",")) {
        next();
        ty->dim_exprs.push_back(std::shared_ptr<Expr>(parse_expr().release()));
      }
      expect_sym("]");
    } else if (t.text == "List") {
      ty->kind = TypeKind::kList;
      expect_sym("[");
      ty->elems.push_back(parse_type());
      expect_sym("]");
    } else if (is_keyword(t.text)) {
      throw ParseError{t.pos, "a type", describe(t)};
    } else {
      ty->kind = TypeKind::kAdt;
      ty->adt_name = t.text;
    }
    return ty;
  }

  Pattern parse_pattern() {
    Pattern p;
    p.pos = peek().pos;
    if (is_sym("_")) {
      next();
      p.kind = Pattern::kWild;
      return p;
    }
    if (is_sym("(")) {
      next();
      p.kind = Pattern::kTuple;
      p.elems.push_back(parse_pattern());
      while (is_sym(",")) {
        next();
        p.elems.push_back(parse_pattern());
      }
      expect_sym(")");
      if (p.elems.size() < 2) throw ParseError{p.pos, "a tuple pattern with at least two elements", "one element"};
      return p;
    }
    p.kind = Pattern::kVar;
    p.name = expect_name("a variable name, '_' or a tuple pattern");
    return p;
  }

  ExprP make(ExprKind k, SrcPos pos) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->pos = pos;
    return e;
  }

  // Nesting is bounded so that hostile input cannot exhaust the stack of the recursive
  // parser, checker and analyses.
  static constexpr int kMaxNesting = 1000;

  ExprP parse_expr() {
    struct Guard {
      int& d;
      ~Guard() { --d; }
    } guard{++nesting_};
    if (nesting_ > kMaxNesting)
      throw ParseError{peek().pos, "expressions nested at most " + std::to_string(kMaxNesting) + " deep",
                       "deeper nesting"};
    return parse_expr_inner();
  }

  ExprP parse_expr_inner() {
    const Token& t = peek();
    if (is_ident("let")) {
      next();
      auto e = make(ExprKind::kLet, t.pos);
      e->pat = parse_pattern();
      expect_sym("=");
      e->args.push_back(parse_expr());
      expect_kw("in");
      e->args.push_back(parse_expr());
      return e;
    }
    if (is_ident("if")) {
      next();
      auto e = make(ExprKind::kIf, t.pos);
      e->args.push_back(parse_expr());
      expect_kw("then");
      e->args.push_back(parse_expr());
      expect_kw("else");
      e->args.push_back(parse_expr());
      return e;
    }
    if (is_ident("match")) {
      next();
      auto e = make(ExprKind::kMatch, t.pos);
      e->args.push_back(parse_expr());
      expect_sym("{");
      while (!is_sym("}")) {
        MatchArm arm;
        arm.pos = peek().pos;
        arm.ctor = expect_name("a constructor in a match arm");
        if (is_sym("(")) {
          next();
          do {
            if (is_sym("_")) {
              next();
              arm.binders.push_back("_");
            } else
              arm.binders.push_back(expect_name("a variable name or '_'"));
            if (!is_sym(",")) break;
            next();
          } while (true);
          expect_sym(")");
        }
        expect_sym("=>");
        arm.body = parse_expr();
        e->arms.push_back(std::move(arm));
        if (is_sym(","))
          next();
        else if (!is_sym("}"))
          throw ParseError{peek().pos, "',' or '}' after a match arm", describe(peek())};
      }
      next();
      if (e->arms.empty()) throw ParseError{t.pos, "at least one match arm", "none"};
      return e;
    }
    if (is_ident("phase")) {
      next();
      auto e = make(ExprKind::kPhase, t.pos);
      e->args.push_back(parse_expr());
      return e;
    }
    return parse_binary(0);
  }

  static int precedence(const Token& t, BinOp* op) {
    if (t.kind != Tok::kSym) return -1;
    static const struct {
      const char* s;
      BinOp op;
      int prec;
    } table[] = {{"||", BinOp::kOr, 1}, {"&&", BinOp::kAnd, 2}, {"==", BinOp::kEq, 3}, {"!=", BinOp::kNe, 3},
                 {"<", BinOp::kLt, 4},  {"<=", BinOp::kLe, 4},  {">", BinOp::kGt, 4},  {">=", BinOp::kGe, 4},
                 {"+", BinOp::kAdd, 5}, {"-", BinOp::kSub, 5},  {"*", BinOp::kMul, 6}, {"/", BinOp::kDiv, 6},
                 {"%", BinOp::kMod, 6}};
    for (const auto& r : table)
      if (t.text == r.s) {
        *op = r.op;
        return r.prec;
      }
    return -1;
  }

  ExprP parse_binary(int min_prec) {
    int chain = 0;
    struct Restore {
      int& d;
      int& c;
      ~Restore() { d -= c; }
    } restore{nesting_, chain};
    ExprP lhs = parse_unary();
    while (true) {
      BinOp op;
      int prec = precedence(peek(), &op);
      if (prec < 0 || prec < min_prec) break;
      SrcPos pos = next().pos;
      // Each operator in a chain nests the tree one level deeper.
      if (++nesting_ > kMaxNesting)
        throw ParseError{pos, "expressions nested at most " + std::to_string(kMaxNesting) + " deep", "deeper nesting"};
      ++chain;
      ExprP rhs = parse_binary(prec + 1);
      auto e = make(ExprKind::kBinary, pos);
      e->bin = op;
      e->args.push_back(std::move(lhs));
      e->args.push_back(std::move(rhs));
      lhs = std::move(e);
    }
    return lhs;
  }

  ExprP parse_unary() {
    if (is_sym("-") || is_sym("!")) {
      const Token& t = next();
      struct Guard {
        int& d;
        ~Guard() { --d; }
      } guard{++nesting_};
      if (nesting_ > kMaxNesting)
        throw ParseError{t.pos, "expressions nested at most " + std::to_string(kMaxNesting) + " deep",
                         "deeper nesting"};
      auto e = make(ExprKind::kUnary, t.pos);
      e->name = t.text;
      e->args.push_back(parse_unary());
      return e;
    }
    return parse_primary();
  }

  ExprP parse_primary() {
    const Token& t = peek();
    if (t.kind == Tok::kInt) {
      next();
      auto e = make(ExprKind::kIntLit, t.pos);
      errno = 0;
      e->ival = std::strtoll(t.text.c_str(), nullptr, 10);
      if (errno == ERANGE) throw ParseError{t.pos, "an integer that fits in 64 bits", t.text};
      return e;
    }
    if (t.kind == Tok::kFloat) {
      next();
      auto e = make(ExprKind::kFloatLit, t.pos);
      e->fval = std::strtod(t.text.c_str(), nullptr);
      return e;
    }
    if (is_ident("true") || is_ident("false")) {
      next();
      auto e = make(ExprKind::kBoolLit, t.pos);
      e->ival = t.text == "true";
      return e;
    }
    if (is_sym("(")) {
      next();
      ExprP first = parse_expr();
      if (is_sym(")")) {
        next();
        return first;
      }
      auto e = make(ExprKind::kTuple, t.pos);
      e->args.push_back(std::move(first));
      while (is_sym(",")) {
        next();
        e->args.push_back(parse_expr());
      }
      expect_sym(")");
      return e;
    }
    if (t.kind == Tok::kIdent && !is_keyword(t.text)) {
      next();
      bool upper = std::isupper(static_cast<unsigned char>(t.text[0]));
      if (is_sym("(")) {
        next();
        auto e = make(upper ? ExprKind::kCtor : ExprKind::kCall, t.pos);
        e->name = t.text;
        if (!is_sym(")")) {
          e->args.push_back(parse_expr());
          while (is_sym(",")) {
            next();
            e->args.push_back(parse_expr());
          }
        }
        expect_sym(")");
        return e;
      }
      // A bare name is resolved by the checker: variable, constant, parameter, or a
      // constructor without fields.
      auto e = make(ExprKind::kVar, t.pos);
      e->name = t.text;
      return e;
    }
    throw ParseError{t.pos, "an expression", describe(t)};
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int nesting_ = 0;
  Program& prog_;
  std::string file_;
};

Status parse_into(Program& prog, const std::string& file, const std::string& source) {
  try {
    Parser p(lex(source), prog, file);
    p.parse_all();
  } catch (const ParseError& e) { return input_error(format_pos(file, e.pos), "syntax", e.expected, e.found); }
  return Status::Ok();
}

}  // namespace

Result<Program> parse_program(const std::string& file, const std::string& source) {
  Program prog;
  prog.file = file;
  PERFMEM_RETURN_IF_ERROR(parse_into(prog, "<prelude>", kPrelude));
  prog.tree_adt = 0;
  PERFMEM_RETURN_IF_ERROR(parse_into(prog, file, source));
  return prog;
}

}  // namespace perfmem::acrobat
