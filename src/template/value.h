// Values of the template language: Python-like (None, bool, int, float, str,
// list, dict, callables) plus Jinja's Undefined. Lists and dicts are shared by
// reference, as in Python; dicts keep insertion order (JSON objects from
// requests must render in the order they were written).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace umi::tmpl {

class Value;
class Interpreter;
using List = std::vector<Value>;
struct Dict;
struct ValueWriter;  // value.cpp: bounded text output
struct Args {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};
using Function = std::function<Value(Interpreter&, Args&)>;

class Value {
 public:
  enum class Kind { undefined, none, boolean, integer, floating, string, list, dict, function };

  Value() = default;  // undefined
  static Value none();
  Value(bool b);
  Value(int64_t i);
  Value(int i) : Value(static_cast<int64_t>(i)) {}
  Value(double f);
  Value(std::string s);
  Value(const char* s) : Value(std::string(s)) {}
  Value(List l);
  Value(std::shared_ptr<Dict> d);
  static Value function(std::string name, Function fn);
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::undefined; }
  bool is_none() const { return kind_ == Kind::none; }
  bool is_string() const { return kind_ == Kind::string; }
  bool is_number() const { return kind_ == Kind::integer || kind_ == Kind::floating; }
  bool is_list() const { return kind_ == Kind::list; }
  bool is_dict() const { return kind_ == Kind::dict; }

  bool truthy() const;
  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }
  double as_float() const { return kind_ == Kind::integer ? static_cast<double>(i_) : f_; }
  // Checked: the wrong kind throws TemplateError (a template can pass any
  // value anywhere; a missed type check must not become undefined behaviour).
  const std::string& as_string() const;
  List& as_list() const;
  Dict& as_dict() const;
  const std::string& function_name() const;
  Value call(Interpreter& in, Args& args) const;

  // Python's str(): what {{ x }} prints.
  std::string str() const;
  // Python's repr(): strings quoted, as inside a printed list.
  std::string repr() const;
  // json.dumps(x, ensure_ascii=False, indent=indent) with Python's separators.
  // All three throw TemplateError past 16 MiB of text or 256 levels of nesting
  // (a value can double in size per statement, and a namespace can hold itself).
  std::string to_json(int indent = -1) const;
  bool equals(const Value& other) const;
  std::string_view type_name() const;

 private:
  void write_repr(ValueWriter& w, int depth) const;
  void write_json(ValueWriter& w, int indent, int depth) const;
  bool equals(const Value& other, int depth) const;

  Kind kind_ = Kind::undefined;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0;
  std::shared_ptr<const std::string> s_;
  std::shared_ptr<List> l_;
  std::shared_ptr<Dict> d_;
  std::shared_ptr<std::pair<std::string, Function>> fn_;
};

struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // attributes may be assigned: {% set ns.x = ... %}
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);
};

Value make_dict(std::vector<std::pair<std::string, Value>> items = {});

// Python's repr of a float: the shortest string that reads back the same.
std::string python_float_repr(double v);

}  // namespace umi::tmpl
