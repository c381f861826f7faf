#include "template/interpreter.h"

#include <cctype>
#include <charconv>
#include <cmath>

#include "template/builtins.h"
#include "template/error.h"

namespace umi::tmpl {

Interpreter::Interpreter(Limits limits) : limits_(limits) {}

void Interpreter::fail(int line, const std::string& why) const {
  throw TemplateError("template line " + std::to_string(line) + ": " + why);
}

void Interpreter::check_text(size_t bytes, int line) const {
  if (bytes > limits_.max_output) fail(line, "string longer than " + std::to_string(limits_.max_output) + " bytes");
}

void Interpreter::step(int line) {
  if (++steps_ > limits_.max_steps)
    fail(line, "rendering took more than " + std::to_string(limits_.max_steps) + " steps");
}

void Interpreter::emit(std::string& out, std::string_view text) {
  if (out.size() + text.size() > limits_.max_output)
    throw TemplateError("rendered text is larger than " + std::to_string(limits_.max_output) + " bytes");
  out.append(text);
}

std::string Interpreter::render(const Template& tpl, const std::vector<std::pair<std::string, Value>>& context) {
  frames_.clear();
  frames_.emplace_back();
  add_globals(frames_.back());
  frames_.emplace_back();
  for (const auto& [k, v] : context) frames_.back()[k] = v;
  steps_ = 0;
  call_depth_ = 0;
  struct BreakCycles {
    Interpreter& in;
    ~BreakCycles() {
      for (auto& ns : in.namespaces_) ns->items.clear();
      in.namespaces_.clear();
      in.frames_.clear();
    }
  } break_cycles{*this};
  std::string out;
  exec(tpl.body, out);  // a break/continue outside a loop just ends the body, as Jinja's loopcontrols do
  return out;
}

Value Interpreter::lookup(const std::string& name) const {
  for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
    auto f = it->find(name);
    if (f != it->end()) return f->second;
  }
  return {};
}

void Interpreter::assign(const std::string& name, Value v) { frames_.back()[name] = std::move(v); }

Interpreter::Flow Interpreter::exec(const Body& body, std::string& out) {
  for (const StmtPtr& s : body) {
    Flow f = exec_stmt(*s, out);
    if (f != Flow::normal) return f;
  }
  return Flow::normal;
}

Interpreter::Flow Interpreter::exec_stmt(const Stmt& s, std::string& out) {
  step(s.line);
  switch (s.kind) {
    case Stmt::Kind::text: emit(out, s.text); return Flow::normal;
    case Stmt::Kind::output: emit(out, eval(*s.expr).str()); return Flow::normal;
    case Stmt::Kind::if_:
      for (const auto& [cond, body] : s.branches)
        if (eval(*cond).truthy()) return exec(body, out);
      return exec(s.else_body, out);
    case Stmt::Kind::for_: exec_for(s, out); return Flow::normal;
    case Stmt::Kind::set: {
      Value v = eval(*s.expr);
      if (s.targets.size() == 1) {
        assign(s.targets[0], std::move(v));
      } else {
        Value ns = lookup(s.targets[0]);
        if (!ns.is_dict() || !ns.as_dict().is_namespace)
          fail(s.line, "cannot assign attribute '" + s.targets[1] + "' of " + std::string(ns.type_name()) +
                           " (only namespace() objects take attributes)");
        ns.as_dict().set(s.targets[1], std::move(v));
      }
      return Flow::normal;
    }
    case Stmt::Kind::set_block: {
      std::string captured;
      exec(s.body, captured);
      emit(captured, "");  // size already bounded while capturing
      assign(s.targets[0], Value(std::move(captured)));
      return Flow::normal;
    }
    case Stmt::Kind::macro: define_macro(s); return Flow::normal;
    case Stmt::Kind::break_: return Flow::break_;
    case Stmt::Kind::continue_: return Flow::continue_;
    case Stmt::Kind::block: return exec(s.body, out);
  }
  return Flow::normal;
}

void Interpreter::exec_for(const Stmt& s, std::string& out) {
  List items = iterate(*this, eval(*s.expr), s.line);
  // Bind the loop variable(s) for one item in the current (loop) frame.
  auto bind = [&](const Value& item) {
    if (s.targets.size() == 1) {
      assign(s.targets[0], item);
      return;
    }
    List parts = iterate(*this, item, s.line);
    if (parts.size() != s.targets.size())
      fail(s.line, "cannot unpack " + std::to_string(parts.size()) + " values into " + std::to_string(s.targets.size()));
    for (size_t k = 0; k < parts.size(); ++k) assign(s.targets[k], parts[k]);
  };
  if (s.filter) {  // `for x in xs if cond`: the loop counters see only the kept items
    List kept;
    frames_.emplace_back();
    for (const Value& item : items) {
      step(s.line);
      bind(item);
      if (eval(*s.filter).truthy()) kept.push_back(item);
    }
    frames_.pop_back();
    items = std::move(kept);
  }
  if (items.empty()) {
    exec(s.else_body, out);
    return;
  }
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    step(s.line);
    frames_.emplace_back();
    auto loop = std::make_shared<Dict>();
    loop->items = {{"index", Value(i + 1)},
                   {"index0", Value(i)},
                   {"revindex", Value(n - i)},
                   {"revindex0", Value(n - i - 1)},
                   {"first", Value(i == 0)},
                   {"last", Value(i == n - 1)},
                   {"length", Value(n)},
                   {"previtem", i > 0 ? items[static_cast<size_t>(i - 1)] : Value()},
                   {"nextitem", i + 1 < n ? items[static_cast<size_t>(i + 1)] : Value()}};
    assign("loop", Value(loop));
    bind(items[static_cast<size_t>(i)]);
    Flow f = exec(s.body, out);
    frames_.pop_back();
    if (f == Flow::break_) break;
  }
}

void Interpreter::define_macro(const Stmt& s) {
  const Stmt* m = &s;
  assign(s.targets[0], Value::function(s.targets[0], [m](Interpreter& in, Args& args) -> Value {
    if (++in.call_depth_ > in.limits_.max_call_depth) in.fail(m->line, "macros nested too deeply");
    // A macro sees the globals and the template's variables, not its caller's locals.
    std::vector<Frame> saved;
    saved.swap(in.frames_);
    in.frames_.push_back(saved[0]);
    in.frames_.push_back(saved[1]);
    in.frames_.emplace_back();
    struct Restore {
      Interpreter& in;
      std::vector<Frame>& saved;
      ~Restore() {
        in.frames_.swap(saved);
        --in.call_depth_;
      }
    } restore{in, saved};
    if (args.positional.size() > m->params.size())
      in.fail(m->line, "macro '" + m->targets[0] + "' takes " + std::to_string(m->params.size()) + " arguments");
    for (size_t k = 0; k < m->params.size(); ++k) {
      const auto& [pname, pdefault] = m->params[k];
      Value v;
      if (k < args.positional.size()) v = args.positional[k];
      else if (pdefault) v = in.eval(*pdefault);
      for (auto& [kw, kv] : args.keyword)
        if (kw == pname) v = kv;
      in.assign(pname, v);
    }
    std::string out;
    in.exec(m->body, out);
    return Value(std::move(out));
  }));
}

Value Interpreter::eval(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::literal: return e.literal;
    case Expr::Kind::name: return lookup(e.name);
    case Expr::Kind::list:
    case Expr::Kind::tuple: {
      List l;
      for (const ExprPtr& c : e.children) l.push_back(eval(*c));
      return Value(std::move(l));
    }
    case Expr::Kind::dict: {
      auto d = std::make_shared<Dict>();
      for (size_t k = 0; k + 1 < e.children.size(); k += 2) {
        Value key = eval(*e.children[k]);
        if (!key.is_string()) fail(e.line, "dict keys must be strings");
        d->set(key.as_string(), eval(*e.children[k + 1]));
      }
      return Value(d);
    }
    case Expr::Kind::attr: {
      Value target = eval(*e.children[0]);
      if (target.is_undefined()) fail(e.line, "'" + e.name + "' of an undefined value");
      if (!e.name.empty() && std::isdigit(static_cast<unsigned char>(e.name[0]))) {  // x.0 is x[0]
        int64_t index = 0;
        auto [p, ec] = std::from_chars(e.name.data(), e.name.data() + e.name.size(), index);
        if (ec != std::errc() || p != e.name.data() + e.name.size()) return {};
        return get_item(*this, target, Value(index), e.line);
      }
      return get_attribute(*this, target, e.name, e.line);
    }
    case Expr::Kind::index: {
      Value target = eval(*e.children[0]);
      if (target.is_undefined()) fail(e.line, "subscript of an undefined value");
      return get_item(*this, target, eval(*e.children[1]), e.line);
    }
    case Expr::Kind::slice: {
      Value target = eval(*e.children[0]);
      Value parts[3];
      for (int k = 0; k < 3; ++k)
        if (e.children[static_cast<size_t>(k) + 1]) parts[k] = eval(*e.children[static_cast<size_t>(k) + 1]);
      return slice(*this, target, parts[0], parts[1], parts[2], e.line);
    }
    case Expr::Kind::call: {
      Value callee = eval(*e.children[0]);
      if (callee.kind() != Value::Kind::function)
        fail(e.line, std::string(callee.is_undefined() ? "undefined" : callee.type_name()) + " is not callable");
      Args args;
      for (size_t k = 1; k < e.children.size(); ++k) args.positional.push_back(eval(*e.children[k]));
      for (const auto& [k, v] : e.kwargs) args.keyword.emplace_back(k, eval(*v));
      step(e.line);
      return callee.call(*this, args);
    }
    case Expr::Kind::filter:
    case Expr::Kind::test: {
      Value input = eval(*e.children[0]);
      Args args;
      for (size_t k = 1; k < e.children.size(); ++k) args.positional.push_back(eval(*e.children[k]));
      for (const auto& [k, v] : e.kwargs) args.keyword.emplace_back(k, eval(*v));
      if (e.kind == Expr::Kind::filter) return apply_filter(*this, e.name, input, args, e.line);
      return Value(apply_test(*this, e.name, input, args, e.line) != e.negated);
    }
    case Expr::Kind::neg:
    case Expr::Kind::pos: {
      Value v = eval(*e.children[0]);
      if (!v.is_number()) fail(e.line, "bad operand type for unary " + std::string(e.kind == Expr::Kind::neg ? "-" : "+") + ": " + std::string(v.type_name()));
      if (e.kind == Expr::Kind::pos) return v;
      if (v.kind() == Value::Kind::integer && v.as_int() == INT64_MIN) fail(e.line, "integer overflow in unary -");
      return v.kind() == Value::Kind::integer ? Value(-v.as_int()) : Value(-v.as_float());
    }
    case Expr::Kind::not_: return Value(!eval(*e.children[0]).truthy());
    case Expr::Kind::and_: {
      Value l = eval(*e.children[0]);
      return l.truthy() ? eval(*e.children[1]) : l;
    }
    case Expr::Kind::or_: {
      Value l = eval(*e.children[0]);
      return l.truthy() ? l : eval(*e.children[1]);
    }
    case Expr::Kind::binary: return eval_binary(e);
    case Expr::Kind::conditional:
      if (eval(*e.children[0]).truthy()) return eval(*e.children[1]);
      return e.children.size() > 2 ? eval(*e.children[2]) : Value();
  }
  return {};
}

Value Interpreter::eval_binary(const Expr& e) {
  const std::string& op = e.name;
  Value l = eval(*e.children[0]);
  Value r = eval(*e.children[1]);
  auto type_error = [&]() -> Value {
    fail(e.line, "unsupported operand types for " + op + ": '" + std::string(l.type_name()) + "' and '" +
                     std::string(r.type_name()) + "'");
  };
  if (op == "==") return Value(l.equals(r));
  if (op == "!=") return Value(!l.equals(r));
  if (op == "~") {
    std::string a = l.str(), b = r.str();
    check_text(a.size() + b.size(), e.line);
    return Value(a + b);
  }
  if (op == "in" || op == "not in") {
    bool found = false;
    if (r.is_string()) {
      if (!l.is_string()) fail(e.line, "'in <string>' requires a string on the left");
      found = r.as_string().find(l.as_string()) != std::string::npos;
    } else if (r.is_list()) {
      for (const Value& v : r.as_list()) found = found || v.equals(l);
    } else if (r.is_dict()) {
      found = l.is_string() && r.as_dict().find(l.as_string()) != nullptr;
    } else if (!r.is_undefined()) {
      fail(e.line, "argument of type '" + std::string(r.type_name()) + "' is not iterable");
    }
    return Value(op == "in" ? found : !found);
  }
  if (op == "<" || op == ">" || op == "<=" || op == ">=") {
    int c;
    if (l.is_number() && r.is_number()) c = l.as_float() < r.as_float() ? -1 : l.as_float() > r.as_float() ? 1 : 0;
    else if (l.is_string() && r.is_string()) c = l.as_string().compare(r.as_string());
    else return type_error();
    if (op == "<") return Value(c < 0);
    if (op == ">") return Value(c > 0);
    if (op == "<=") return Value(c <= 0);
    return Value(c >= 0);
  }
  bool ints = l.kind() == Value::Kind::integer && r.kind() == Value::Kind::integer;
  // Python's integers do not overflow; ours are 64-bit, so overflow is an error.
  auto checked = [&](auto builtin) -> Value {
    int64_t v = 0;
    if (builtin(l.as_int(), r.as_int(), &v)) fail(e.line, "integer overflow in " + op);
    return Value(v);
  };
  if (op == "+") {
    if (ints) return checked([](int64_t a, int64_t b, int64_t* o) { return __builtin_add_overflow(a, b, o); });
    if (l.is_number() && r.is_number()) return Value(l.as_float() + r.as_float());
    if (l.is_string() && r.is_string()) {
      check_text(l.as_string().size() + r.as_string().size(), e.line);
      return Value(l.as_string() + r.as_string());
    }
    if (l.is_list() && r.is_list()) {
      if (l.as_list().size() + r.as_list().size() > limits_.max_range) fail(e.line, "list too long");
      List out = l.as_list();
      out.insert(out.end(), r.as_list().begin(), r.as_list().end());
      return Value(std::move(out));
    }
    return type_error();
  }
  if (op == "-") {
    if (ints) return checked([](int64_t a, int64_t b, int64_t* o) { return __builtin_sub_overflow(a, b, o); });
    if (l.is_number() && r.is_number()) return Value(l.as_float() - r.as_float());
    return type_error();
  }
  if (op == "*") {
    if (ints) return checked([](int64_t a, int64_t b, int64_t* o) { return __builtin_mul_overflow(a, b, o); });
    if (l.is_number() && r.is_number()) return Value(l.as_float() * r.as_float());
    const Value& seq = l.kind() == Value::Kind::integer ? r : l;
    const Value& count = l.kind() == Value::Kind::integer ? l : r;
    if (count.kind() == Value::Kind::integer && (seq.is_string() || seq.is_list())) {
      int64_t n = std::max<int64_t>(0, count.as_int());
      size_t unit = seq.is_string() ? seq.as_string().size() : seq.as_list().size();
      if (unit && static_cast<size_t>(n) > limits_.max_range / unit) fail(e.line, "repetition too large");
      if (seq.is_string()) {
        std::string out;
        for (int64_t k = 0; k < n; ++k) out += seq.as_string();
        return Value(std::move(out));
      }
      List out;
      for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq.as_list().begin(), seq.as_list().end());
      return Value(std::move(out));
    }
    return type_error();
  }
  if (op == "/" || op == "//" || op == "%") {
    if (!l.is_number() || !r.is_number()) return type_error();
    if (r.as_float() == 0) fail(e.line, "division by zero");
    if (op == "/") return Value(l.as_float() / r.as_float());
    if (ints) {
      int64_t a = l.as_int(), b = r.as_int();
      if (a == INT64_MIN && b == -1) fail(e.line, "integer overflow in " + op);
      int64_t q = a / b, m = a % b;
      if (m != 0 && ((m < 0) != (b < 0))) {
        --q;
        m += b;
      }
      return op == "//" ? Value(q) : Value(m);
    }
    double a = l.as_float(), b = r.as_float();
    double q = std::floor(a / b);
    return op == "//" ? Value(q) : Value(a - q * b);
  }
  if (op == "**") {
    if (ints && r.as_int() >= 0) {
      int64_t base = l.as_int(), n = r.as_int();
      if (base == 0) return Value(int64_t{n == 0 ? 1 : 0});
      if (base == 1) return Value(int64_t{1});
      if (base == -1) return Value(int64_t{n % 2 == 0 ? 1 : -1});
      int64_t result = 1;  // |base| >= 2: overflows within 63 steps
      for (int64_t k = 0; k < n; ++k)
        if (__builtin_mul_overflow(result, base, &result)) fail(e.line, "integer overflow in **");
      return Value(result);
    }
    if (l.is_number() && r.is_number()) return Value(std::pow(l.as_float(), r.as_float()));
    return type_error();
  }
  fail(e.line, "unknown operator " + op);
}

}  // namespace umi::tmpl
