// The syntax tree of a parsed template.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "template/value.h"

namespace umi::tmpl {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    literal, name, list, dict, tuple,       // constants and containers
    attr, index, slice, call,               // postfix
    filter, test,                           // x | f(args), x is t(args)
    neg, pos, not_, and_, or_, binary,      // operators
    conditional,                            // a if c else b
  };
  Kind kind;
  int line = 0;
  Value literal;
  std::string name;  // name, attribute, filter/test name, binary operator
  bool negated = false;  // `is not`
  std::vector<ExprPtr> children;  // operands; for dict: key, value, key, value...
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind { text, output, if_, for_, set, set_block, macro, break_, continue_, block };
  Kind kind;
  int line = 0;
  std::string text;                          // text
  ExprPtr expr;                              // output; set value; for iterable
  std::vector<std::pair<ExprPtr, Body>> branches;  // if/elif conditions and bodies
  Body body, else_body;                      // for/if else/set_block/macro/block
  std::vector<std::string> targets;          // for a, b in ...; set x / set ns.attr (as "ns", "attr")
  ExprPtr filter;                            // for ... if filter
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro parameters and defaults
};

struct Template {
  Body body;
};

}  // namespace umi::tmpl
