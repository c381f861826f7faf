#include "template/parser.h"

#include <cerrno>
#include <cstdlib>

#include "template/error.h"
#include "template/lexer.h"

namespace umi::tmpl {

namespace {

constexpr int kMaxDepth = 200;  // nesting of expressions and blocks

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Template run() {
    Template tpl;
    std::string end = parse_body(tpl.body, {});
    if (!end.empty()) fail("unexpected {% " + end + " %}");
    return tpl;
  }

 private:
  // ---- statements -----------------------------------------------------------
  // Parses until a block tag whose keyword is in `stops` (returned, with the
  // cursor after the keyword) or the end of input (returns "").
  std::string parse_body(Body& body, std::initializer_list<std::string_view> stops) {
    Depth guard(this);
    while (true) {
      const Token& tok = peek();
      if (tok.kind == Token::Kind::end) {
        if (stops.size()) fail("missing {% " + std::string(*stops.begin()) + " %}");
        return "";
      }
      if (tok.kind == Token::Kind::text) {
        auto s = node(Stmt::Kind::text);
        s->text = next().text;
        body.push_back(std::move(s));
        continue;
      }
      if (tok.kind == Token::Kind::var_begin) {
        next();
        auto s = node(Stmt::Kind::output);
        s->expr = parse_expr();
        expect(Token::Kind::var_end, "}}");
        body.push_back(std::move(s));
        continue;
      }
      expect(Token::Kind::block_begin, "{%");
      std::string kw = expect_name();
      for (std::string_view stop : stops)
        if (kw == stop) return kw;
      body.push_back(parse_statement(kw));
    }
  }

  StmtPtr parse_statement(const std::string& kw) {
    if (kw == "if") return parse_if();
    if (kw == "for") return parse_for();
    if (kw == "set") return parse_set();
    if (kw == "macro") return parse_macro();
    if (kw == "break" || kw == "continue") {
      auto s = node(kw == "break" ? Stmt::Kind::break_ : Stmt::Kind::continue_);
      end_tag();
      return s;
    }
    if (kw == "generation") {  // transformers' assistant-mask marker: renders its body
      auto s = node(Stmt::Kind::block);
      end_tag();
      parse_body(s->body, {"endgeneration"});
      end_tag();
      return s;
    }
    fail("unknown or unsupported tag {% " + kw + " %}");
  }

  StmtPtr parse_if() {
    auto s = node(Stmt::Kind::if_);
    ExprPtr cond = parse_expr();
    end_tag();
    while (true) {
      Body body;
      std::string end = parse_body(body, {"elif", "else", "endif"});
      s->branches.emplace_back(std::move(cond), std::move(body));
      if (end == "elif") {
        cond = parse_expr();
        end_tag();
        continue;
      }
      if (end == "else") {
        end_tag();
        parse_body(s->else_body, {"endif"});
      }
      end_tag();
      return s;
    }
  }

  StmtPtr parse_for() {
    auto s = node(Stmt::Kind::for_);
    s->targets.push_back(expect_name());
    while (is_op(",")) {
      next();
      s->targets.push_back(expect_name());
    }
    if (expect_name() != "in") fail("expected 'in' in for loop");
    s->expr = parse_expr(/*allow_conditional=*/false);
    if (peek().kind == Token::Kind::name && peek().text == "if") {
      next();
      s->filter = parse_expr(false);
    }
    if (peek().kind == Token::Kind::name && peek().text == "recursive") fail("recursive loops are not supported");
    end_tag();
    std::string end = parse_body(s->body, {"else", "endfor"});
    if (end == "else") {
      end_tag();
      parse_body(s->else_body, {"endfor"});
    }
    end_tag();
    return s;
  }

  StmtPtr parse_set() {
    std::string target = expect_name();
    std::vector<std::string> targets{target};
    if (is_op(".")) {
      next();
      targets.push_back(expect_name());
    }
    if (is_op("=")) {
      next();
      auto s = node(Stmt::Kind::set);
      s->targets = std::move(targets);
      s->expr = parse_expr();
      end_tag();
      return s;
    }
    if (targets.size() != 1) fail("block set needs a plain name");
    auto s = node(Stmt::Kind::set_block);
    s->targets = std::move(targets);
    end_tag();
    parse_body(s->body, {"endset"});
    end_tag();
    return s;
  }

  StmtPtr parse_macro() {
    auto s = node(Stmt::Kind::macro);
    s->targets.push_back(expect_name());
    expect_op("(");
    while (!is_op(")")) {
      std::string param = expect_name();
      ExprPtr def;
      if (is_op("=")) {
        next();
        def = parse_expr();
      }
      s->params.emplace_back(param, std::move(def));
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
    end_tag();
    parse_body(s->body, {"endmacro"});
    end_tag();
    return s;
  }

  // ---- expressions (lowest precedence first) ---------------------------------
  ExprPtr parse_expr(bool allow_conditional = true) {
    Depth guard(this);
    ExprPtr e = parse_or();
    while (allow_conditional && peek().kind == Token::Kind::name && peek().text == "if") {
      next();
      auto c = expr(Expr::Kind::conditional);
      c->children.push_back(parse_or());  // condition
      c->children.push_back(std::move(e));  // then
      if (peek().kind == Token::Kind::name && peek().text == "else") {
        next();
        c->children.push_back(parse_expr());
      }
      e = std::move(c);
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr l = parse_and();
    while (is_name("or")) {
      next();
      l = binary(Expr::Kind::or_, "or", std::move(l), parse_and());
    }
    return l;
  }

  ExprPtr parse_and() {
    ExprPtr l = parse_not();
    while (is_name("and")) {
      next();
      l = binary(Expr::Kind::and_, "and", std::move(l), parse_not());
    }
    return l;
  }

  ExprPtr parse_not() {
    Depth guard(this);
    if (is_name("not")) {
      next();
      auto n = expr(Expr::Kind::not_);
      n->children.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    ExprPtr l = parse_math1();
    while (true) {
      std::string op;
      if (peek().kind == Token::Kind::op &&
          (peek().text == "==" || peek().text == "!=" || peek().text == "<" || peek().text == ">" ||
           peek().text == "<=" || peek().text == ">="))
        op = next().text;
      else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && peek(1).kind == Token::Kind::name && peek(1).text == "in") {
        next();
        next();
        op = "not in";
      } else {
        return l;
      }
      l = binary(Expr::Kind::binary, op, std::move(l), parse_math1());
    }
  }

  ExprPtr parse_math1() {
    ExprPtr l = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = next().text;
      l = binary(Expr::Kind::binary, op, std::move(l), parse_concat());
    }
    return l;
  }

  ExprPtr parse_concat() {
    ExprPtr l = parse_math2();
    while (is_op("~")) {
      next();
      l = binary(Expr::Kind::binary, "~", std::move(l), parse_math2());
    }
    return l;
  }

  ExprPtr parse_math2() {
    ExprPtr l = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      std::string op = next().text;
      l = binary(Expr::Kind::binary, op, std::move(l), parse_pow());
    }
    return l;
  }

  ExprPtr parse_pow() {
    ExprPtr l = parse_unary(true);
    while (is_op("**")) {
      next();
      l = binary(Expr::Kind::binary, "**", std::move(l), parse_unary(true));
    }
    return l;
  }

  ExprPtr parse_unary(bool with_filter) {
    Depth guard(this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      bool neg = next().text == "-";
      e = expr(neg ? Expr::Kind::neg : Expr::Kind::pos);
      e->children.push_back(parse_unary(false));
    } else {
      e = parse_postfix(parse_primary());
    }
    return with_filter ? parse_filters(std::move(e)) : std::move(e);
  }

  ExprPtr parse_primary() {
    const Token& tok = peek();
    switch (tok.kind) {
      case Token::Kind::name: {
        std::string n = next().text;
        if (n == "true" || n == "True") return literal(Value(true));
        if (n == "false" || n == "False") return literal(Value(false));
        if (n == "none" || n == "None") return literal(Value::none());
        auto e = expr(Expr::Kind::name);
        e->name = n;
        return e;
      }
      case Token::Kind::string: {
        std::string s = next().text;
        while (peek().kind == Token::Kind::string) s += next().text;  // adjacent literals join
        return literal(Value(std::move(s)));
      }
      case Token::Kind::integer: {
        std::string s = next().text;
        errno = 0;
        long long v = std::strtoll(s.c_str(), nullptr, 10);
        if (errno == ERANGE) return literal(Value(std::strtod(s.c_str(), nullptr)));
        return literal(Value(static_cast<int64_t>(v)));
      }
      case Token::Kind::floating: return literal(Value(std::strtod(next().text.c_str(), nullptr)));
      case Token::Kind::op:
        if (tok.text == "(") {
          next();
          if (is_op(")")) {
            next();
            return expr(Expr::Kind::tuple);
          }
          ExprPtr first = parse_expr();
          if (is_op(",")) {
            auto t = expr(Expr::Kind::tuple);
            t->children.push_back(std::move(first));
            while (is_op(",")) {
              next();
              if (is_op(")")) break;
              t->children.push_back(parse_expr());
            }
            expect_op(")");
            return t;
          }
          expect_op(")");
          return first;
        }
        if (tok.text == "[") {
          next();
          auto l = expr(Expr::Kind::list);
          while (!is_op("]")) {
            l->children.push_back(parse_expr());
            if (!is_op(",")) break;
            next();
          }
          expect_op("]");
          return l;
        }
        if (tok.text == "{") {
          next();
          auto d = expr(Expr::Kind::dict);
          while (!is_op("}")) {
            d->children.push_back(parse_expr());
            expect_op(":");
            d->children.push_back(parse_expr());
            if (!is_op(",")) break;
            next();
          }
          expect_op("}");
          return d;
        }
        break;
      default: break;
    }
    fail("unexpected '" + tok.text + "' in expression");
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        next();
        auto a = expr(Expr::Kind::attr);
        if (peek().kind == Token::Kind::integer) a->name = next().text;  // x.0: index
        else a->name = expect_name();
        a->children.push_back(std::move(e));
        e = std::move(a);
      } else if (is_op("[")) {
        next();
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr target) {
    ExprPtr parts[3];
    int colons = 0;
    while (!is_op("]")) {
      if (is_op(":")) {
        next();
        if (++colons > 2) fail("too many ':' in slice");
        continue;
      }
      if (parts[colons]) fail("malformed subscript");
      parts[colons] = parse_expr();
    }
    expect_op("]");
    if (colons == 0) {
      if (!parts[0]) fail("empty subscript");
      auto i = expr(Expr::Kind::index);
      i->children.push_back(std::move(target));
      i->children.push_back(std::move(parts[0]));
      return i;
    }
    auto s = expr(Expr::Kind::slice);
    s->children.push_back(std::move(target));
    for (auto& p : parts) s->children.push_back(std::move(p));  // null where omitted
    return s;
  }

  void parse_args(Expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().kind == Token::Kind::name && peek(1).kind == Token::Kind::op && peek(1).text == "=") {
        std::string key = next().text;
        next();
        call.kwargs.emplace_back(key, parse_expr());
      } else {
        if (!call.kwargs.empty()) fail("positional argument after keyword argument");
        call.children.push_back(parse_expr());
      }
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = expr(Expr::Kind::call);
    c->children.push_back(std::move(callee));
    parse_args(*c);
    return c;
  }

  ExprPtr parse_filters(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        next();
        auto f = expr(Expr::Kind::filter);
        f->name = expect_name();
        while (is_op(".")) {  // dotted filter names are not a thing, but be precise in the error
          fail("unexpected '.' after filter name");
        }
        f->children.push_back(std::move(e));
        if (is_op("(")) parse_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        next();
        auto t = expr(Expr::Kind::test);
        if (is_name("not")) {
          next();
          t->negated = true;
        }
        t->name = expect_name();
        t->children.push_back(std::move(e));
        if (is_op("(")) {
          parse_args(*t);
        } else if (starts_primary()) {
          t->children.push_back(parse_unary(false));  // `is divisibleby 3`, `is equalto x`
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  bool starts_primary() const {
    const Token& t = peek();
    if (t.kind == Token::Kind::string || t.kind == Token::Kind::integer || t.kind == Token::Kind::floating) return true;
    if (t.kind == Token::Kind::name)
      return t.text != "and" && t.text != "or" && t.text != "else" && t.text != "if" && t.text != "in" &&
             t.text != "is" && t.text != "not";
    return t.kind == Token::Kind::op && (t.text == "[" || t.text == "{");
  }

  // ---- helpers ---------------------------------------------------------------
  struct Depth {
    explicit Depth(Parser* p) : p_(p) {
      if (++p_->depth_ > kMaxDepth) p_->fail("template nested too deeply");
    }
    ~Depth() { --p_->depth_; }
    Parser* p_;
  };

  const Token& peek(size_t ahead = 0) const { return t_[std::min(i_ + ahead, t_.size() - 1)]; }
  const Token& next() {
    const Token& t = t_[i_];
    if (i_ + 1 < t_.size()) ++i_;
    return t;
  }
  bool is_op(std::string_view op) const { return peek().kind == Token::Kind::op && peek().text == op; }
  bool is_name(std::string_view n) const { return peek().kind == Token::Kind::name && peek().text == n; }
  void expect(Token::Kind k, std::string_view what) {
    if (peek().kind != k) fail("expected " + std::string(what) + " but found '" + peek().text + "'");
    next();
  }
  void expect_op(std::string_view op) {
    if (!is_op(op)) fail("expected '" + std::string(op) + "' but found '" + peek().text + "'");
    next();
  }
  std::string expect_name() {
    if (peek().kind != Token::Kind::name) fail("expected a name but found '" + peek().text + "'");
    return next().text;
  }
  void end_tag() { expect(Token::Kind::block_end, "%}"); }
  StmtPtr node(Stmt::Kind k) {
    auto s = std::make_unique<Stmt>();
    s->kind = k;
    s->line = peek().line;
    return s;
  }
  ExprPtr expr(Expr::Kind k) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = peek().line;
    return e;
  }
  ExprPtr literal(Value v) {
    auto e = expr(Expr::Kind::literal);
    e->literal = std::move(v);
    return e;
  }
  ExprPtr binary(Expr::Kind k, std::string op, ExprPtr l, ExprPtr r) {
    auto e = expr(k);
    e->name = std::move(op);
    e->children.push_back(std::move(l));
    e->children.push_back(std::move(r));
    return e;
  }
  [[noreturn]] void fail(const std::string& why) const {
    throw TemplateError("template line " + std::to_string(peek().line) + ": " + why);
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

Template parse(std::string_view source) { return Parser(lex(source)).run(); }

}  // namespace umi::tmpl
