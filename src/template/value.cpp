#include "template/value.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "template/error.h"

namespace umi::tmpl {

Value Value::none() {
  Value v;
  v.kind_ = Kind::none;
  return v;
}
Value::Value(bool b) : kind_(Kind::boolean), b_(b) {}
Value::Value(int64_t i) : kind_(Kind::integer), i_(i) {}
Value::Value(double f) : kind_(Kind::floating), f_(f) {}
Value::Value(std::string s) : kind_(Kind::string), s_(std::make_shared<const std::string>(std::move(s))) {}
Value::Value(List l) : kind_(Kind::list), l_(std::make_shared<List>(std::move(l))) {}
Value::Value(std::shared_ptr<Dict> d) : kind_(Kind::dict), d_(std::move(d)) {}

Value Value::function(std::string name, Function fn) {
  Value v;
  v.kind_ = Kind::function;
  v.fn_ = std::make_shared<std::pair<std::string, Function>>(std::move(name), std::move(fn));
  return v;
}

const std::string& Value::function_name() const { return fn_->first; }

const std::string& Value::as_string() const {
  if (kind_ != Kind::string) throw TemplateError("expected a string, got " + std::string(type_name()));
  return *s_;
}
List& Value::as_list() const {
  if (kind_ != Kind::list) throw TemplateError("expected a list, got " + std::string(type_name()));
  return *l_;
}
Dict& Value::as_dict() const {
  if (kind_ != Kind::dict) throw TemplateError("expected a dict, got " + std::string(type_name()));
  return *d_;
}
Value Value::call(Interpreter& in, Args& args) const { return fn_->second(in, args); }

Value make_dict(std::vector<std::pair<std::string, Value>> items) {
  auto d = std::make_shared<Dict>();
  d->items = std::move(items);
  return Value(d);
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return none();
    case nlohmann::json::value_t::boolean: return Value(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return Value(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      return u > static_cast<uint64_t>(INT64_MAX) ? Value(static_cast<double>(u)) : Value(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float: return Value(j.get<double>());
    case nlohmann::json::value_t::string: return Value(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      List l;
      l.reserve(j.size());
      for (const auto& e : j) l.push_back(from_json(e));
      return Value(std::move(l));
    }
    case nlohmann::json::value_t::object: {
      auto d = std::make_shared<Dict>();
      for (auto it = j.begin(); it != j.end(); ++it) d->items.emplace_back(it.key(), from_json(it.value()));
      return Value(d);
    }
    default: return none();
  }
}

const Value* Dict::find(std::string_view key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void Dict::set(const std::string& key, Value v) {
  for (auto& [k, old] : items)
    if (k == key) {
      old = std::move(v);
      return;
    }
  items.emplace_back(key, std::move(v));
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::undefined: case Kind::none: return false;
    case Kind::boolean: return b_;
    case Kind::integer: return i_ != 0;
    case Kind::floating: return f_ != 0;
    case Kind::string: return !s_->empty();
    case Kind::list: return !l_->empty();
    case Kind::dict: return !d_->items.empty();
    case Kind::function: return true;
  }
  return false;
}

std::string python_float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[40];
  int digits = 1;
  for (; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*e", digits - 1, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  // buf: [-]d.ddde[+-]XX
  std::string s(buf);
  bool neg = s[0] == '-';
  if (neg) s.erase(0, 1);
  size_t e = s.find('e');
  int exp = std::atoi(s.c_str() + e + 1);
  std::string mant;
  for (size_t k = 0; k < e; ++k)
    if (s[k] != '.') mant += s[k];
  std::string out;
  if (exp >= -4 && exp < 16) {  // where Python's repr switches to exponent form
    if (exp >= 0) {
      if (static_cast<int>(mant.size()) <= exp + 1) out = mant + std::string(static_cast<size_t>(exp + 1) - mant.size(), '0') + ".0";
      else out = mant.substr(0, static_cast<size_t>(exp + 1)) + "." + mant.substr(static_cast<size_t>(exp + 1));
    } else {
      out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + mant;
    }
  }
  if (out.empty()) {
    out = mant.substr(0, 1);
    if (mant.size() > 1) out += "." + mant.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    out += eb;
  }
  return neg ? "-" + out : out;
}

namespace {
std::string python_str_repr(const std::string& s) {
  bool has_single = s.find('\'') != std::string::npos, has_double = s.find('"') != std::string::npos;
  char q = has_single && !has_double ? '"' : '\'';
  std::string out(1, q);
  for (unsigned char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c == static_cast<unsigned char>(q)) {
          out += '\\';
          out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
          char b[8];
          std::snprintf(b, sizeof b, "\\x%02x", c);
          out += b;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + q;
}

void json_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          out += b;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}
}  // namespace

namespace {
// Values form a DAG (a list may hold the same list twice, so size can double at
// every step) and a namespace may even hold itself; printing or comparing one
// must stay bounded in bytes, depth and time whatever the template did.
constexpr size_t kMaxSerializedBytes = 16u << 20;
constexpr int kMaxNesting = 256;

void check_depth(int depth) {
  if (depth > kMaxNesting)
    throw TemplateError("value nested more than " + std::to_string(kMaxNesting) + " levels deep");
}

}  // namespace

struct ValueWriter {
  std::string out;
  void put(std::string_view text) {
    if (out.size() + text.size() > kMaxSerializedBytes)
      throw TemplateError("printed value is larger than " + std::to_string(kMaxSerializedBytes) + " bytes");
    out += text;
  }
};

std::string Value::str() const {
  switch (kind_) {
    case Kind::undefined: return "";
    case Kind::none: return "None";
    case Kind::boolean: return b_ ? "True" : "False";
    case Kind::integer: return std::to_string(i_);
    case Kind::floating: return python_float_repr(f_);
    case Kind::string: return *s_;
    case Kind::list: case Kind::dict: return repr();
    case Kind::function: return "<function " + fn_->first + ">";
  }
  return "";
}

std::string Value::repr() const {
  ValueWriter w;
  write_repr(w, 0);
  return std::move(w.out);
}

void Value::write_repr(ValueWriter& w, int depth) const {
  check_depth(depth);
  switch (kind_) {
    case Kind::string: w.put(python_str_repr(*s_)); return;
    case Kind::list:
      w.put("[");
      for (size_t i = 0; i < l_->size(); ++i) {
        if (i) w.put(", ");
        (*l_)[i].write_repr(w, depth + 1);
      }
      w.put("]");
      return;
    case Kind::dict:
      w.put("{");
      for (size_t i = 0; i < d_->items.size(); ++i) {
        if (i) w.put(", ");
        w.put(python_str_repr(d_->items[i].first));
        w.put(": ");
        d_->items[i].second.write_repr(w, depth + 1);
      }
      w.put("}");
      return;
    default: w.put(str());
  }
}

std::string Value::to_json(int indent) const {
  if (indent > 64) throw TemplateError("tojson indent " + std::to_string(indent) + " is larger than 64");
  ValueWriter w;
  write_json(w, indent, 0);
  return std::move(w.out);
}

void Value::write_json(ValueWriter& w, int indent, int depth) const {
  check_depth(depth);
  auto newline = [&](int level) {
    if (indent < 0) return;
    w.put("\n");
    for (int i = 0; i < indent * level; ++i) w.put(" ");
  };
  switch (kind_) {
    case Kind::undefined: case Kind::none: w.put("null"); return;
    case Kind::boolean: w.put(b_ ? "true" : "false"); return;
    case Kind::integer: w.put(std::to_string(i_)); return;
    case Kind::floating:
      if (std::isnan(f_)) w.put("NaN");
      else if (std::isinf(f_)) w.put(f_ > 0 ? "Infinity" : "-Infinity");
      else w.put(python_float_repr(f_));
      return;
    case Kind::string: {
      std::string s;
      json_string(s, *s_);
      w.put(s);
      return;
    }
    case Kind::list:
      if (l_->empty()) return w.put("[]");
      w.put("[");
      for (size_t i = 0; i < l_->size(); ++i) {
        if (i) w.put(indent >= 0 ? "," : ", ");
        newline(depth + 1);
        (*l_)[i].write_json(w, indent, depth + 1);
      }
      newline(depth);
      w.put("]");
      return;
    case Kind::dict:
      if (d_->items.empty()) return w.put("{}");
      w.put("{");
      for (size_t i = 0; i < d_->items.size(); ++i) {
        if (i) w.put(indent >= 0 ? "," : ", ");
        newline(depth + 1);
        std::string key;
        json_string(key, d_->items[i].first);
        w.put(key);
        w.put(": ");
        d_->items[i].second.write_json(w, indent, depth + 1);
      }
      newline(depth);
      w.put("}");
      return;
    case Kind::function: throw TemplateError("Object of type function is not JSON serializable");
  }
}

bool Value::equals(const Value& o) const { return equals(o, 0); }

bool Value::equals(const Value& o, int depth) const {
  check_depth(depth);
  if (is_number() && o.is_number()) {
    if (kind_ == Kind::integer && o.kind_ == Kind::integer) return i_ == o.i_;
    return as_float() == o.as_float();
  }
  if (kind_ == Kind::boolean && o.is_number()) return Value(static_cast<int64_t>(b_)).equals(o, depth);
  if (o.kind_ == Kind::boolean && is_number()) return o.equals(*this, depth);
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case Kind::undefined: case Kind::none: return true;
    case Kind::boolean: return b_ == o.b_;
    case Kind::string: return *s_ == *o.s_;
    // Identity first, as Python's containers do: a shared sub-list is compared
    // once, not once per path to it.
    case Kind::list:
      if (l_ == o.l_) return true;
      if (l_->size() != o.l_->size()) return false;
      for (size_t i = 0; i < l_->size(); ++i)
        if (!(*l_)[i].equals((*o.l_)[i], depth + 1)) return false;
      return true;
    case Kind::dict:
      if (d_ == o.d_) return true;
      if (d_->items.size() != o.d_->items.size()) return false;
      for (const auto& [k, v] : d_->items) {
        const Value* w = o.d_->find(k);
        if (!w || !v.equals(*w, depth + 1)) return false;
      }
      return true;
    case Kind::function: return fn_ == o.fn_;
    default: return false;
  }
}

std::string_view Value::type_name() const {
  switch (kind_) {
    case Kind::undefined: return "undefined";
    case Kind::none: return "NoneType";
    case Kind::boolean: return "bool";
    case Kind::integer: return "int";
    case Kind::floating: return "float";
    case Kind::string: return "str";
    case Kind::list: return "list";
    case Kind::dict: return "dict";
    case Kind::function: return "function";
  }
  return "?";
}

}  // namespace umi::tmpl
