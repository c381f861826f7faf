#include "template/builtins.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include "template/error.h"
#include "template/interpreter.h"
#include "tokenizer/unicode.h"

namespace umi::tmpl {

namespace {

// Python indexes strings by code point, not byte.
std::vector<std::string_view> code_points(const std::string& s) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = unicode::valid_sequence_length(s, i);
    if (n == 0) n = 1;
    out.push_back(std::string_view(s).substr(i, n));
    i += n;
  }
  return out;
}

bool is_py_space(std::string_view cp) {
  if (cp.size() == 1) return cp[0] == ' ' || (cp[0] >= '\t' && cp[0] <= '\r') || (cp[0] >= 0x1c && cp[0] <= 0x1f);
  return cp == "\xC2\x85" || cp == "\xC2\xA0" || cp == "\xE3\x80\x80" || cp == "\xE2\x80\xA8" || cp == "\xE2\x80\xA9" ||
         (cp.size() == 3 && cp[0] == '\xE2' && cp[1] == '\x80' && static_cast<uint8_t>(cp[2]) >= 0x80 &&
          static_cast<uint8_t>(cp[2]) <= 0x8A);
}

// str.strip family: `chars` absent means whitespace.
std::string strip(const std::string& s, const Value& chars, bool left, bool right) {
  auto cps = code_points(s);
  bool ws = chars.is_undefined() || chars.is_none();
  const std::string chars_text = ws ? std::string() : chars.str();  // the views below point into it
  std::vector<std::string_view> set = code_points(chars_text);
  auto drop = [&](std::string_view cp) { return ws ? is_py_space(cp) : std::find(set.begin(), set.end(), cp) != set.end(); };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && drop(cps[b])) ++b;
  if (right)
    while (e > b && drop(cps[e - 1])) --e;
  std::string out;
  for (size_t k = b; k < e; ++k) out.append(cps[k]);
  return out;
}

const Value& arg(const Args& a, size_t pos, const char* name) {
  static const Value undefined;
  for (const auto& [k, v] : a.keyword)
    if (k == name) return v;
  return pos < a.positional.size() ? a.positional[pos] : undefined;
}

std::string need_string(Interpreter& in, const Value& v, const char* what, int line) {
  if (!v.is_string()) in.fail(line, std::string(what) + " expects a string, got " + std::string(v.type_name()));
  return v.as_string();
}

List split(const std::string& s, const Value& sep, int64_t maxsplit) {
  List out;
  if (sep.is_undefined() || sep.is_none()) {
    auto cps = code_points(s);
    std::string cur;
    bool in_word = false;
    int64_t splits = 0;
    for (size_t k = 0; k < cps.size(); ++k) {
      if (is_py_space(cps[k]) && (maxsplit < 0 || splits < maxsplit)) {
        if (in_word) {
          out.push_back(Value(cur));
          cur.clear();
          in_word = false;
          ++splits;
        }
        continue;
      }
      if (!in_word && maxsplit >= 0 && splits >= maxsplit) {
        // The rest, with leading whitespace already skipped, is one piece.
        std::string rest;
        for (size_t j = k; j < cps.size(); ++j) rest.append(cps[j]);
        size_t end = rest.size();
        auto rcps = code_points(rest);
        size_t drop = 0;
        for (size_t j = rcps.size(); j > 0 && is_py_space(rcps[j - 1]); --j) drop += rcps[j - 1].size();
        out.push_back(Value(rest.substr(0, end - drop)));
        return out;
      }
      cur.append(cps[k]);
      in_word = true;
    }
    if (in_word) out.push_back(Value(cur));
    return out;
  }
  const std::string& d = sep.as_string();
  size_t start = 0;
  int64_t splits = 0;
  while (true) {
    size_t at = d.empty() ? std::string::npos : s.find(d, start);
    if (at == std::string::npos || (maxsplit >= 0 && splits >= maxsplit)) break;
    out.push_back(Value(s.substr(start, at - start)));
    start = at + d.size();
    ++splits;
  }
  out.push_back(Value(s.substr(start)));
  return out;
}

std::string replace(Interpreter& in, int line, const std::string& s, const std::string& from, const std::string& to,
                    int64_t count) {
  if (from.empty()) return s;
  std::string out;
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t at = s.find(from, start);
    if (at == std::string::npos) break;
    in.check_text(out.size() + (at - start) + to.size() + (s.size() - at - from.size()), line);
    out.append(s, start, at - start).append(to);
    start = at + from.size();
    ++done;
  }
  return out + s.substr(start);
}

std::string change_case(const std::string& s, int mode) {  // 0 lower, 1 upper, 2 capitalize, 3 title
  if (mode == 0) return unicode::lowercase(s);
  if (mode == 1) return unicode::uppercase(s);
  std::string out;
  bool word_start = true;
  for (size_t i = 0; i < s.size();) {
    size_t n;
    char32_t cp = unicode::decode_at(s, i, &n);
    std::string one(s.substr(i, n));
    bool up = mode == 2 ? i == 0 : word_start;
    out += up ? unicode::uppercase(one) : unicode::lowercase(one);
    word_start = !(cp >= 0x80 || std::isalnum(static_cast<int>(cp)));
    i += n;
  }
  return out;
}

bool run_test(Interpreter& in, const Value& test_name, const Value& v, const Args& rest, size_t first, int line) {
  Args a;
  a.positional.assign(rest.positional.begin() + static_cast<long>(std::min(first, rest.positional.size())), rest.positional.end());
  return apply_test(in, test_name.str(), v, a, line);
}

// select/reject/selectattr/rejectattr
Value filter_items(Interpreter& in, const Value& input, const Args& a, bool by_attr, bool keep, int line) {
  List out;
  size_t test_pos = by_attr ? 1 : 0;
  for (const Value& item : iterate(in, input, line)) {
    Value subject = by_attr ? get_attribute(in, item, a.positional.empty() ? "" : a.positional[0].str(), line) : item;
    bool ok = test_pos < a.positional.size() ? run_test(in, a.positional[test_pos], subject, a, test_pos + 1, line)
                                             : subject.truthy();
    if (ok == keep) out.push_back(item);
  }
  return Value(std::move(out));
}

}  // namespace

int64_t py_len(Interpreter& in, const Value& v, int line) {
  switch (v.kind()) {
    case Value::Kind::string: return static_cast<int64_t>(code_points(v.as_string()).size());
    case Value::Kind::list: return static_cast<int64_t>(v.as_list().size());
    case Value::Kind::dict: return static_cast<int64_t>(v.as_dict().items.size());
    case Value::Kind::undefined: return 0;
    default: in.fail(line, "object of type '" + std::string(v.type_name()) + "' has no len()");
  }
}

List iterate(Interpreter& in, const Value& v, int line) {
  switch (v.kind()) {
    case Value::Kind::list: return v.as_list();
    case Value::Kind::dict: {
      List keys;
      for (const auto& [k, _] : v.as_dict().items) keys.push_back(Value(k));
      return keys;
    }
    case Value::Kind::string: {
      List chars;
      for (std::string_view cp : code_points(v.as_string())) chars.push_back(Value(std::string(cp)));
      return chars;
    }
    case Value::Kind::undefined: return {};
    default: in.fail(line, "'" + std::string(v.type_name()) + "' object is not iterable");
  }
}

Value get_item(Interpreter& in, const Value& target, const Value& key, int line) {
  if (target.is_dict()) {
    if (!key.is_string()) return {};
    const Value* v = target.as_dict().find(key.as_string());
    return v ? *v : Value();
  }
  if (target.is_list() || target.is_string()) {
    if (key.kind() != Value::Kind::integer) in.fail(line, "indices must be integers");
    int64_t n = py_len(in, target, line);
    int64_t i = key.as_int() < 0 ? key.as_int() + n : key.as_int();
    if (i < 0 || i >= n) return {};
    if (target.is_list()) return target.as_list()[static_cast<size_t>(i)];
    return Value(std::string(code_points(target.as_string())[static_cast<size_t>(i)]));
  }
  return {};
}

Value slice(Interpreter& in, const Value& target, const Value& start, const Value& stop, const Value& step, int line) {
  if (!target.is_list() && !target.is_string()) in.fail(line, "cannot slice " + std::string(target.type_name()));
  auto as_index = [&](const Value& v) -> std::optional<int64_t> {
    if (v.is_undefined() || v.is_none()) return std::nullopt;
    if (v.kind() != Value::Kind::integer) in.fail(line, "slice indices must be integers");
    return v.as_int();
  };
  int64_t n = py_len(in, target, line);
  int64_t st = as_index(step).value_or(1);
  if (st == 0) in.fail(line, "slice step cannot be zero");
  auto clamp = [&](std::optional<int64_t> v, int64_t def) {
    if (!v) return def;
    int64_t x = *v < 0 ? *v + n : *v;
    if (st > 0) return std::clamp<int64_t>(x, 0, n);
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  int64_t b = clamp(as_index(start), st > 0 ? 0 : n - 1);
  int64_t e = clamp(as_index(stop), st > 0 ? n : -1);
  std::vector<int64_t> idx;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) idx.push_back(i);
  if (target.is_list()) {
    List out;
    for (int64_t i : idx) out.push_back(target.as_list()[static_cast<size_t>(i)]);
    return Value(std::move(out));
  }
  auto cps = code_points(target.as_string());
  std::string out;
  for (int64_t i : idx) out.append(cps[static_cast<size_t>(i)]);
  return Value(std::move(out));
}

Value get_attribute(Interpreter&, const Value& target, const std::string& name, int line) {
  if (target.is_dict()) {
    if (const Value* v = target.as_dict().find(name)) return *v;
    Value self = target;
    if (name == "items")
      return Value::function("items", [self](Interpreter&, Args&) {
        List out;
        for (const auto& [k, v] : self.as_dict().items) out.push_back(Value(List{Value(k), v}));
        return Value(std::move(out));
      });
    if (name == "keys")
      return Value::function("keys", [self](Interpreter&, Args&) {
        List out;
        for (const auto& [k, _] : self.as_dict().items) out.push_back(Value(k));
        return Value(std::move(out));
      });
    if (name == "values")
      return Value::function("values", [self](Interpreter&, Args&) {
        List out;
        for (const auto& [_, v] : self.as_dict().items) out.push_back(v);
        return Value(std::move(out));
      });
    if (name == "get")
      return Value::function("get", [self](Interpreter&, Args& a) {
        const Value& key = arg(a, 0, "key");
        const Value* v = key.is_string() ? self.as_dict().find(key.as_string()) : nullptr;
        if (v) return *v;
        const Value& def = arg(a, 1, "default");
        return def.is_undefined() ? Value::none() : def;
      });
    return {};
  }
  if (target.is_string()) {
    std::string s = target.as_string();
    auto method = [&](auto fn) { return Value::function(name, [s, fn, line](Interpreter& i, Args& a) { return fn(i, s, a, line); }); };
    if (name == "strip") return method([](Interpreter&, const std::string& t, Args& a, int) { return Value(strip(t, arg(a, 0, "chars"), true, true)); });
    if (name == "lstrip") return method([](Interpreter&, const std::string& t, Args& a, int) { return Value(strip(t, arg(a, 0, "chars"), true, false)); });
    if (name == "rstrip") return method([](Interpreter&, const std::string& t, Args& a, int) { return Value(strip(t, arg(a, 0, "chars"), false, true)); });
    if (name == "split")
      return method([](Interpreter&, const std::string& t, Args& a, int) {
        const Value& m = arg(a, 1, "maxsplit");
        return Value(split(t, arg(a, 0, "sep"), m.kind() == Value::Kind::integer ? m.as_int() : -1));
      });
    if (name == "startswith" || name == "endswith") {
      bool starts = name == "startswith";
      return Value::function(name, [s, starts](Interpreter& i, Args& a) {
        const Value& p = arg(a, 0, "prefix");
        List options = p.is_list() ? p.as_list() : List{p};
        for (const Value& o : options) {
          if (!o.is_string()) i.fail(0, "startswith/endswith expects strings");
          const std::string& x = o.as_string();
          if (x.size() <= s.size() && (starts ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0))
            return Value(true);
        }
        return Value(false);
      });
    }
    if (name == "upper") return method([](Interpreter&, const std::string& t, Args&, int) { return Value(change_case(t, 1)); });
    if (name == "lower") return method([](Interpreter&, const std::string& t, Args&, int) { return Value(change_case(t, 0)); });
    if (name == "capitalize") return method([](Interpreter&, const std::string& t, Args&, int) { return Value(change_case(t, 2)); });
    if (name == "title") return method([](Interpreter&, const std::string& t, Args&, int) { return Value(change_case(t, 3)); });
    if (name == "replace")
      return method([](Interpreter& i, const std::string& t, Args& a, int l) {
        const Value& c = arg(a, 2, "count");
        return Value(replace(i, l, t, need_string(i, arg(a, 0, "old"), "replace", l), need_string(i, arg(a, 1, "new"), "replace", l),
                             c.kind() == Value::Kind::integer ? c.as_int() : -1));
      });
    if (name == "find")
      return method([](Interpreter& i, const std::string& t, Args& a, int l) {
        size_t at = t.find(need_string(i, arg(a, 0, "sub"), "find", l));
        return Value(at == std::string::npos ? int64_t{-1} : static_cast<int64_t>(code_points(t.substr(0, at)).size()));
      });
    if (name == "count")
      return method([](Interpreter& i, const std::string& t, Args& a, int l) {
        std::string sub = need_string(i, arg(a, 0, "sub"), "count", l);
        int64_t n = 0;
        if (!sub.empty())
          for (size_t at = t.find(sub); at != std::string::npos; at = t.find(sub, at + sub.size())) ++n;
        return Value(n);
      });
    if (name == "join")
      return method([](Interpreter& i, const std::string& t, Args& a, int l) {
        std::string out;
        List items = iterate(i, arg(a, 0, "iterable"), l);
        for (size_t k = 0; k < items.size(); ++k) {
          std::string item = items[k].str();
          i.check_text(out.size() + (k ? t.size() : 0) + item.size(), l);
          out += (k ? t : "") + item;
        }
        return Value(std::move(out));
      });
    return {};
  }
  return {};
}

Value apply_filter(Interpreter& in, const std::string& name, const Value& v, Args& a, int line) {
  if (name == "trim") return Value(strip(v.str(), arg(a, 0, "chars"), true, true));
  if (name == "tojson") {
    const Value& indent = arg(a, 0, "indent");
    if (indent.kind() != Value::Kind::integer) return Value(v.to_json());
    // json.dumps treats a negative indent as 0 (newlines, no spaces).
    int64_t n = std::max<int64_t>(0, indent.as_int());
    if (n > 64) in.fail(line, "tojson indent " + std::to_string(n) + " is larger than 64");
    return Value(v.to_json(static_cast<int>(n)));
  }
  if (name == "length" || name == "count") return Value(py_len(in, v, line));
  if (name == "default" || name == "d") {
    bool boolean = arg(a, 1, "boolean").truthy();
    if (v.is_undefined() || (boolean && !v.truthy())) {
      const Value& def = arg(a, 0, "default_value");
      return def.is_undefined() ? Value(std::string()) : def;
    }
    return v;
  }
  if (name == "items") {
    if (v.is_undefined()) return Value(List{});
    if (!v.is_dict()) in.fail(line, "items filter expects a mapping");
    List out;
    for (const auto& [k, x] : v.as_dict().items) out.push_back(Value(List{Value(k), x}));
    return Value(std::move(out));
  }
  if (name == "join") {
    std::string sep = arg(a, 0, "d").is_undefined() ? "" : arg(a, 0, "d").str();
    const Value& attr = arg(a, 1, "attribute");
    std::string out;
    List items = iterate(in, v, line);
    for (size_t k = 0; k < items.size(); ++k) {
      Value item = attr.is_undefined() ? items[k] : get_attribute(in, items[k], attr.str(), line);
      std::string text = item.str();
      in.check_text(out.size() + (k ? sep.size() : 0) + text.size(), line);
      out += (k ? sep : "") + text;
    }
    return Value(std::move(out));
  }
  if (name == "upper") return Value(change_case(v.str(), 1));
  if (name == "lower") return Value(change_case(v.str(), 0));
  if (name == "capitalize") return Value(change_case(change_case(v.str(), 0), 2));
  if (name == "title") return Value(change_case(change_case(v.str(), 0), 3));
  if (name == "replace") {
    const Value& c = arg(a, 2, "count");
    return Value(replace(in, line, v.str(), arg(a, 0, "old").str(), arg(a, 1, "new").str(), c.kind() == Value::Kind::integer ? c.as_int() : -1));
  }
  if (name == "first" || name == "last") {
    List items = iterate(in, v, line);
    if (items.empty()) return {};
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return Value(iterate(in, v, line));
  if (name == "string") return Value(v.str());
  if (name == "safe" || name == "e" || name == "escape") {
    if (name == "safe") return v;
    std::string out;
    for (char c : v.str()) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&#34;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
      }
    }
    return Value(std::move(out));
  }
  if (name == "int") {
    if (v.kind() == Value::Kind::integer) return v;
    if (v.kind() == Value::Kind::floating) return Value(static_cast<int64_t>(std::trunc(v.as_float())));
    if (v.is_string()) {
      try {
        return Value(static_cast<int64_t>(std::stoll(strip(v.as_string(), Value(), true, true))));
      } catch (...) {
      }
    }
    const Value& def = arg(a, 0, "default");
    return def.is_undefined() ? Value(int64_t{0}) : def;
  }
  if (name == "float") {
    if (v.is_number()) return Value(v.as_float());
    if (v.is_string()) {
      try {
        return Value(std::stod(v.as_string()));
      } catch (...) {
      }
    }
    const Value& def = arg(a, 0, "default");
    return def.is_undefined() ? Value(0.0) : def;
  }
  if (name == "abs") {
    if (v.kind() == Value::Kind::integer) {
      if (v.as_int() == INT64_MIN) in.fail(line, "integer overflow in abs");
      return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
    }
    if (v.is_number()) return Value(std::fabs(v.as_float()));
    in.fail(line, "abs expects a number");
  }
  if (name == "round") {
    const Value& p = arg(a, 0, "precision");
    double scale = std::pow(10.0, p.kind() == Value::Kind::integer ? static_cast<double>(p.as_int()) : 0.0);
    return Value(std::round(v.as_float() * scale) / scale);
  }
  if (name == "select") return filter_items(in, v, a, false, true, line);
  if (name == "reject") return filter_items(in, v, a, false, false, line);
  if (name == "selectattr") return filter_items(in, v, a, true, true, line);
  if (name == "rejectattr") return filter_items(in, v, a, true, false, line);
  if (name == "map") {
    List out;
    const Value& attr = arg(a, 99, "attribute");
    for (const Value& item : iterate(in, v, line)) {
      if (!attr.is_undefined()) {
        Value x = get_attribute(in, item, attr.str(), line);
        if (x.is_undefined()) x = arg(a, 99, "default");
        out.push_back(x);
      } else {
        if (a.positional.empty()) in.fail(line, "map needs a filter name or attribute=");
        Args rest;
        rest.positional.assign(a.positional.begin() + 1, a.positional.end());
        out.push_back(apply_filter(in, a.positional[0].str(), item, rest, line));
      }
    }
    return Value(std::move(out));
  }
  if (name == "reverse") {
    if (v.is_string()) {
      auto cps = code_points(v.as_string());
      std::string out;
      for (auto it = cps.rbegin(); it != cps.rend(); ++it) out.append(*it);
      return Value(std::move(out));
    }
    List items = iterate(in, v, line);
    std::reverse(items.begin(), items.end());
    return Value(std::move(items));
  }
  if (name == "unique") {
    List out;
    for (const Value& item : iterate(in, v, line)) {
      bool seen = false;
      for (const Value& o : out) seen = seen || o.equals(item);
      if (!seen) out.push_back(item);
    }
    return Value(std::move(out));
  }
  if (name == "sort") {
    List items = iterate(in, v, line);
    bool reverse = arg(a, 0, "reverse").truthy();
    const Value& attr = arg(a, 2, "attribute");
    auto key = [&](const Value& x) { return attr.is_undefined() ? x : get_attribute(in, x, attr.str(), line); };
    std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
      Value kx = key(x), ky = key(y);
      bool less = (kx.is_number() && ky.is_number()) ? kx.as_float() < ky.as_float() : kx.str() < ky.str();
      return reverse ? (!less && !kx.equals(ky)) : less;
    });
    return Value(std::move(items));
  }
  if (name == "indent") {
    const Value& w = arg(a, 0, "width");
    std::string pad = w.is_string() ? w.as_string() : std::string(static_cast<size_t>(w.kind() == Value::Kind::integer ? std::max<int64_t>(0, std::min<int64_t>(w.as_int(), 256)) : 4), ' ');
    bool first = arg(a, 1, "first").truthy();
    bool blank = arg(a, 2, "blank").truthy();
    std::string s = v.str(), out;
    size_t start = 0;
    bool is_first = true;
    while (true) {
      size_t nl = s.find('\n', start);
      std::string line_text = s.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
      if ((!is_first || first) && (blank || !line_text.empty())) out += pad;
      in.check_text(out.size() + line_text.size(), line);
      out += line_text;
      if (nl == std::string::npos) break;
      out += '\n';
      start = nl + 1;
      is_first = false;
    }
    return Value(std::move(out));
  }
  if (name == "wordcount") return Value(static_cast<int64_t>(split(v.str(), Value(), -1).size()));
  if (name == "min" || name == "max") {
    List items = iterate(in, v, line);
    if (items.empty()) return {};
    Value best = items[0];
    for (const Value& x : items) {
      bool less = (x.is_number() && best.is_number()) ? x.as_float() < best.as_float() : x.str() < best.str();
      if (name == "min" ? less : (!less && !x.equals(best))) best = x;
    }
    return best;
  }
  if (name == "sum") {
    Value total(int64_t{0});
    for (const Value& x : iterate(in, v, line)) {
      if (!x.is_number()) in.fail(line, "sum expects numbers");
      total = (total.kind() == Value::Kind::integer && x.kind() == Value::Kind::integer) ? Value(total.as_int() + x.as_int())
                                                                                      : Value(total.as_float() + x.as_float());
    }
    return total;
  }
  in.fail(line, "unknown filter '" + name + "'");
}

bool apply_test(Interpreter& in, const std::string& name, const Value& v, Args& a, int line) {
  const Value& other = arg(a, 0, "other");
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.kind() == Value::Kind::boolean;
  if (name == "true") return v.kind() == Value::Kind::boolean && v.as_bool();
  if (name == "false") return v.kind() == Value::Kind::boolean && !v.as_bool();
  if (name == "integer") return v.kind() == Value::Kind::integer;
  if (name == "float") return v.kind() == Value::Kind::floating;
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string();
  if (name == "sequence") return v.is_list() || v.is_string() || v.is_dict();
  if (name == "callable") return v.kind() == Value::Kind::function;
  if (name == "equalto" || name == "eq" || name == "==" || name == "sameas") return v.equals(other);
  if (name == "ne" || name == "!=") return !v.equals(other);
  if (name == "lt" || name == "gt" || name == "le" || name == "ge" || name == "lessthan" || name == "greaterthan") {
    if (!(v.is_number() && other.is_number()) && !(v.is_string() && other.is_string())) in.fail(line, "cannot compare");
    int c = v.is_number() ? (v.as_float() < other.as_float() ? -1 : v.as_float() > other.as_float() ? 1 : 0)
                          : v.as_string().compare(other.as_string());
    if (name == "lt" || name == "lessthan") return c < 0;
    if (name == "gt" || name == "greaterthan") return c > 0;
    if (name == "le") return c <= 0;
    return c >= 0;
  }
  if (name == "in") {
    if (other.is_string()) return v.is_string() && other.as_string().find(v.as_string()) != std::string::npos;
    for (const Value& x : iterate(in, other, line))
      if (x.equals(v)) return true;
    return false;
  }
  if (name == "divisibleby") {
    if (v.kind() != Value::Kind::integer || other.kind() != Value::Kind::integer || other.as_int() == 0)
      in.fail(line, "divisibleby expects non-zero integers");
    return v.as_int() % other.as_int() == 0;
  }
  if (name == "odd" || name == "even") {
    if (v.kind() != Value::Kind::integer) in.fail(line, name + " expects an integer");
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "lower") return v.is_string() && change_case(v.as_string(), 0) == v.as_string();
  if (name == "upper") return v.is_string() && change_case(v.as_string(), 1) == v.as_string();
  in.fail(line, "unknown test '" + name + "'");
}

void add_globals(std::unordered_map<std::string, Value>& frame) {
  frame["range"] = Value::function("range", [](Interpreter& in, Args& a) {
    int64_t start = 0, stop = 0, step = 1;
    auto num = [&](size_t i) {
      if (a.positional[i].kind() != Value::Kind::integer) in.fail(0, "range expects integers");
      return a.positional[i].as_int();
    };
    if (a.positional.size() == 1) stop = num(0);
    else if (a.positional.size() >= 2) start = num(0), stop = num(1);
    if (a.positional.size() >= 3) step = num(2);
    if (step == 0) in.fail(0, "range step cannot be zero");
    List out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (out.size() >= in.limits().max_range) in.fail(0, "range is too long");
      out.push_back(Value(i));
    }
    return Value(std::move(out));
  });
  frame["namespace"] = Value::function("namespace", [](Interpreter& in, Args& a) {
    auto d = std::make_shared<Dict>();
    d->is_namespace = true;
    in.track_namespace(d);
    for (const Value& init : a.positional)
      if (init.is_dict())
        for (const auto& [k, v] : init.as_dict().items) d->set(k, v);
    for (auto& [k, v] : a.keyword) d->set(k, v);
    return Value(d);
  });
  frame["dict"] = Value::function("dict", [](Interpreter&, Args& a) {
    auto d = std::make_shared<Dict>();
    for (auto& [k, v] : a.keyword) d->set(k, v);
    return Value(d);
  });
  frame["raise_exception"] = Value::function("raise_exception", [](Interpreter&, Args& a) -> Value {
    throw TemplateError(a.positional.empty() ? std::string("raise_exception() called") : a.positional[0].str());
  });
  frame["strftime_now"] = Value::function("strftime_now", [](Interpreter& in, Args& a) {
    std::string fmt = a.positional.empty() ? std::string("%Y-%m-%d") : a.positional[0].str();
    if (fmt.size() > 256) in.fail(0, "strftime format too long");
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[512];
    size_t n = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
    return Value(std::string(buf, n));
  });
}

}  // namespace umi::tmpl
