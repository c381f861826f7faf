// Renders a parsed template: Jinja semantics as transformers uses them
// (default Undefined, loop scoping, namespace(), macros, break/continue), in a
// sandbox: no I/O, and bounded steps, output size and call depth, so a
// hostile template is an error, never a hang or a crash.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "template/ast.h"
#include "template/value.h"

namespace umi::tmpl {

struct Limits {
  int64_t max_steps = 2'000'000;       // statements, loop iterations and calls
  size_t max_output = 16u << 20;       // bytes of rendered text
  int max_call_depth = 64;             // macro recursion
  size_t max_range = 1'000'000;        // elements of range() and of repeated strings/lists
};

class Interpreter {
 public:
  explicit Interpreter(Limits limits = {});
  // `context`: the template's variables (messages, tools, bos_token...).
  std::string render(const Template& tpl, const std::vector<std::pair<std::string, Value>>& context);

  void step(int line);  // counts work; throws past the limit
  const Limits& limits() const { return limits_; }
  [[noreturn]] void fail(int line, const std::string& why) const;
  // Every string a template builds is at most max_output bytes; builders check
  // before they grow (join, replace, indent, ~), so memory stays bounded.
  void check_text(size_t bytes, int line) const;
  // namespace() objects are the one mutable value, so the one way to build a
  // reference cycle ({% set ns.me = ns %}); render() empties each one it made
  // when it ends, so no cycle outlives a render (nor leaks).
  void track_namespace(std::shared_ptr<Dict> ns) { namespaces_.push_back(std::move(ns)); }

 private:
  enum class Flow { normal, break_, continue_ };
  Flow exec(const Body& body, std::string& out);
  Flow exec_stmt(const Stmt& s, std::string& out);
  void exec_for(const Stmt& s, std::string& out);
  void define_macro(const Stmt& s);
  Value eval(const Expr& e);
  Value eval_binary(const Expr& e);
  Value lookup(const std::string& name) const;
  void assign(const std::string& name, Value v);
  void emit(std::string& out, std::string_view text);

  using Frame = std::unordered_map<std::string, Value>;
  std::vector<Frame> frames_;  // [0] globals, [1] the template's variables, then loops and macros
  Limits limits_;
  std::vector<std::shared_ptr<Dict>> namespaces_;
  int64_t steps_ = 0;
  int call_depth_ = 0;
};

}  // namespace umi::tmpl
