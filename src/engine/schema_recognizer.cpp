#include "engine/schema_recognizer.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

namespace umi {

namespace {
using Kind = JsonSchema::Kind;
using Node = JsonSchema::Node;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr int kMaxDigits = 15;  // every value of so many decimal digits is a double exactly
constexpr double kPow10[kMaxDigits + 1] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
// A byte that can extend a number which could end here.
bool extends_number(char c) { return is_digit(c) || c == '.' || c == 'e' || c == 'E'; }
bool integer_only(const Node& n) { return (n.types & JsonSchema::integer) && !(n.types & JsonSchema::number); }
}  // namespace

SchemaRecognizer::SchemaRecognizer(const JsonSchema& schema, JsonWhitespace whitespace)
    : schema_(&schema), value_(whitespace, JsonTop::any), whitespace_rule_(whitespace) {}

SchemaRecognizer& SchemaRecognizer::operator=(const SchemaRecognizer& o) {
  schema_ = o.schema_;
  value_ = o.value_;
  candidates_ = o.candidates_;
  matched_ = o.matched_;
  number_ = o.number_;
  depth_ = o.depth_;
  whitespace_ = o.whitespace_;
  whitespace_rule_ = o.whitespace_rule_;
  done_ = o.done_;
  std::copy_n(o.frames_.begin(), depth_, frames_.begin());  // the rest is unused
  return *this;
}

bool SchemaRecognizer::feed(std::string_view s) {
  for (char c : s)
    if (!feed(c)) return false;
  return true;
}

bool SchemaRecognizer::in_string() const {
  if (depth_ == 0) return false;
  const Frame& f = frames_[depth_ - 1];
  const Node& n = schema_->nodes[f.node];
  if (f.at == At::scalar) return n.kind == Kind::value && !n.limits_length() && value_.in_string();
  return f.at == At::in_key && n.map && value_.in_string();
}

bool SchemaRecognizer::feed(char c) {
  if (done_) return false;
  if (depth_ == 0) {  // before the value: whitespace as JSON mode takes it, then the root
    if (is_json_space(c)) return space(c);
    whitespace_ = 0;
    return begin(schema_->root, c);
  }
  // A byte that ends a number or a literal is read again by the frame below.
  while (depth_ > 0) {
    Frame& f = frames_[depth_ - 1];
    const Node& n = schema_->nodes[f.node];
    const uint8_t before = depth_;
    bool took = false;
    switch (n.kind) {
      case Kind::value:
      case Kind::literals:
        took = scalar(n, c);
        break;
      case Kind::object:
        return object(f, n, c);
      case Kind::array:
        return array(f, n, c);
      case Kind::any_of:
        return false;  // begin() gives an alternative the frame
    }
    if (took || depth_ == before) return took;
  }
  return false;  // the value ended before c: nothing may follow it
}

// A free value (value_) or a literal (candidates_). Pops the frame when the
// value is complete; when it ended before `c`, pops and returns false, and the
// caller gives `c` to the frame below.
bool SchemaRecognizer::scalar(const Node& n, char c) {
  if (n.kind == Kind::value) {
    if (value_.top_number_may_end() && !extends_number(c)) {
      if (n.bounded() && !within(n, number_)) return false;  // it may not end here: `c` is refused
      return pop(), false;
    }
    if (integer_only(n) && value_.in_top_number() && (c == '.' || c == 'e' || c == 'E')) return false;
    if (n.bounded() && value_.in_top_number() && !bound_number(n, c, false)) return false;
    if (n.limits_length() && !string_length(frames_[depth_ - 1].items, n, c)) return false;
    if (!value_.feed(c)) return false;
    if (value_.done()) pop();
    return true;
  }
  bool complete = false;
  if (!match(n.texts, c, complete)) {
    if (complete) pop();  // a number literal ("1" of [1, 12]) ended before c
    return false;
  }
  if (complete_only(n.texts)) pop();
  return true;
}

// minLength / maxLength: `length` counts the string's characters so far. A
// character begins at a byte that does not continue UTF-8 (an escape at its
// '\\'); \u escapes are refused, as a surrogate pair would be two escapes
// for one character.
bool SchemaRecognizer::string_length(uint32_t& length, const Node& n, char c) const {
  if (value_.in_top_escape()) return c != 'u';
  if (!value_.in_top_string()) return true;
  if (c == '"') return length >= n.min_length;
  if ((static_cast<unsigned char>(c) & 0xc0) == 0x80) return true;
  if (length >= n.max_length) return false;
  ++length;
  return true;
}

// minimum / maximum: `c`, a byte of a number, is taken only if the number can
// still end within the bounds. A prefix's possible values are intervals (12:
// 12 to 13, 120 to 130, ...; 12.3: 12.3 to 12.4), exact in doubles while
// there are at most 15 digits, so more are refused, and so are exponents.
bool SchemaRecognizer::bound_number(const Node& n, char c, bool first) {
  Number s = first ? Number{} : number_;
  if (c == '-' && first) {
    s.negative = true;
  } else if (is_digit(c)) {
    if (s.digits == kMaxDigits) return false;
    s.digits_value = s.digits_value * 10 + static_cast<uint64_t>(c - '0');
    ++s.digits;
    if (s.fraction >= 0) ++s.fraction;
  } else if (c == '.') {
    s.fraction = 0;
  } else {
    return false;  // an exponent
  }
  if (!reachable(n, s)) return false;
  number_ = s;
  return true;
}

namespace {
// Whether values from a to b (magnitudes; a included, b as b_closed says) of
// a number with this sign meet the node's bounds.
bool meets(const Node& n, bool negative, double a, double b, bool b_closed, bool integer) {
  double lo = a, hi = b;
  bool lo_closed = true, hi_closed = b_closed;
  if (negative) lo = -b, hi = -a, lo_closed = b_closed, hi_closed = true;
  if (integer) {
    const auto [first, last] = n.integer_bounds();
    const double lo_i = lo_closed ? std::ceil(lo) : std::floor(lo) + 1, hi_i = hi_closed ? std::floor(hi) : std::ceil(hi) - 1;
    return std::max(lo_i, first) <= std::min(hi_i, last);
  }
  double low = lo, high = hi;
  bool low_closed = lo_closed, high_closed = hi_closed;
  if (n.minimum > lo || (n.minimum == lo && n.exclusive_minimum)) low = n.minimum, low_closed = !n.exclusive_minimum;
  if (n.maximum < hi || (n.maximum == hi && n.exclusive_maximum)) high = n.maximum, high_closed = !n.exclusive_maximum;
  return low < high || (low == high && low_closed && high_closed);
}
}  // namespace

bool SchemaRecognizer::reachable(const Node& n, const Number& s) {
  const bool integer = integer_only(n);
  const double inf = std::numeric_limits<double>::infinity();
  if (s.digits == 0) return meets(n, s.negative, 0, inf, false, integer);  // "-": any magnitude
  if (s.fraction >= 0) {  // more fraction digits move it up to the next step of its last one
    if (s.digits == kMaxDigits) return s.fraction > 0 && within(n, s);
    const double step = kPow10[s.fraction];
    return meets(n, s.negative, static_cast<double>(s.digits_value) / step, static_cast<double>(s.digits_value + 1) / step, false,
                 integer);
  }
  if (s.digits_value == 0) return meets(n, s.negative, 0, integer ? 0 : 1, integer, integer);  // "0" takes no more digits
  for (int j = 0; s.digits + j <= kMaxDigits; ++j) {  // j more integer digits, then perhaps a fraction
    const double a = static_cast<double>(s.digits_value) * kPow10[j], b = static_cast<double>(s.digits_value + 1) * kPow10[j];
    const bool fraction = !integer && s.digits + j < kMaxDigits;
    if (meets(n, s.negative, a, fraction ? b : b - 1, !fraction, integer)) return true;
  }
  return false;
}

// The number written so far, ended here, is within the bounds.
bool SchemaRecognizer::within(const Node& n, const Number& s) {
  if (s.digits == 0 || s.fraction == 0) return false;
  const double v = static_cast<double>(s.digits_value) / kPow10[std::max<int>(s.fraction, 0)];
  return meets(n, s.negative, v, v, true, integer_only(n));
}

// Narrows candidates_ to the texts that go on with `c`. False when none does;
// `complete` then says whether one of them ended before `c`.
bool SchemaRecognizer::match(const std::vector<std::string>& texts, char c, bool& complete) {
  uint64_t next = 0;
  complete = false;
  for (uint64_t m = candidates_; m != 0; m &= m - 1) {
    const std::string& t = texts[static_cast<size_t>(std::countr_zero(m))];
    if (t.size() == matched_) complete = true;
    else if (t[matched_] == c) next |= m & (~m + 1);
  }
  if (next == 0) return false;
  candidates_ = next;
  ++matched_;
  return true;
}

// Every text still matching is written out: no byte can extend it.
bool SchemaRecognizer::complete_only(const std::vector<std::string>& texts) const {
  for (uint64_t m = candidates_; m != 0; m &= m - 1)
    if (texts[static_cast<size_t>(std::countr_zero(m))].size() != matched_) return false;
  return true;
}

bool SchemaRecognizer::object(Frame& f, const Node& n, char c) {
  if (f.at == At::in_key && n.map) {  // any key: a string read as JSON reads it
    if (!value_.feed(c)) return false;
    if (value_.done()) f.at = At::colon, whitespace_ = 0;
    return true;
  }
  if (f.at == At::in_key) {
    bool complete = false;
    if (!match(n.texts, c, complete)) return false;
    if (complete_only(n.texts)) {  // keys end with their quote: one candidate is left
      f.next = static_cast<uint8_t>(std::countr_zero(candidates_) + 1);
      f.at = At::colon;
      whitespace_ = 0;
    }
    return true;
  }
  if (is_json_space(c)) return space(c);
  whitespace_ = 0;
  switch (f.at) {
    case At::first_key:
      if (c == '}') return n.may_close(0) && (pop(), true);
      [[fallthrough]];
    case At::key: {
      if (c != '"') return false;
      f.at = At::in_key;
      if (n.map) {
        value_ = JsonRecognizer(whitespace_rule_, JsonTop::any);
        return value_.feed(c);
      }
      candidates_ = n.keys_after[f.next];
      matched_ = 0;
      bool complete = false;
      return match(n.texts, c, complete);
    }
    case At::colon:
      if (c != ':') return false;
      f.at = At::value;
      return true;
    case At::value:
      f.at = At::after_value;
      return begin(n.map ? n.items : n.properties[f.next - 1u].node, c);
    case At::after_value:
      if (c == ',') {
        if (!n.map && f.next >= n.properties.size()) return false;  // no property is left to write
        f.at = At::key;
        return true;
      }
      return c == '}' && n.may_close(f.next) && (pop(), true);
    default:
      return false;
  }
}

bool SchemaRecognizer::array(Frame& f, const Node& n, char c) {
  if (is_json_space(c)) return space(c);
  whitespace_ = 0;
  switch (f.at) {
    case At::first_item:
      if (c == ']') return n.min_items == 0 && (pop(), true);
      if (n.max_items == 0) return false;
      [[fallthrough]];
    case At::item:
      ++f.items;
      f.at = At::after_item;
      return begin(n.items, c);
    case At::after_item:
      if (c == ',') {
        if (f.items >= n.max_items) return false;
        f.at = At::item;
        return true;
      }
      return c == ']' && f.items >= n.min_items && (pop(), true);
    default:
      return false;
  }
}

// A value of `node` starting with `c`: a frame for it.
bool SchemaRecognizer::begin(uint32_t node, char c) {
  const Node& n = schema_->nodes[node];
  if (!n.may_begin(c)) return false;
  if (n.kind == Kind::any_of) {  // the alternatives' first bytes differ (compile_json_schema)
    for (uint32_t a : n.alternatives)
      if (schema_->nodes[a].may_begin(c)) return begin(a, c);
    return false;
  }
  if (depth_ == kMaxFrames) return false;
  frames_[depth_++] = Frame{static_cast<uint16_t>(node), At::scalar, 0, 0};
  whitespace_ = 0;
  switch (n.kind) {
    case Kind::value:
      value_ = JsonRecognizer(whitespace_rule_, JsonTop::any);
      if (n.bounded() && (c == '-' || is_digit(c)) && !bound_number(n, c, true)) return false;
      return value_.feed(c);  // no one byte makes a whole value
    case Kind::literals: {
      candidates_ = n.texts.size() == 64 ? ~uint64_t{0} : (uint64_t{1} << n.texts.size()) - 1;
      matched_ = 0;
      bool complete = false;
      if (!match(n.texts, c, complete)) return false;
      if (complete_only(n.texts)) pop();  // a one-digit number
      return true;
    }
    case Kind::object:
      frames_[depth_ - 1].at = At::first_key;
      return true;
    case Kind::array:
      frames_[depth_ - 1].at = At::first_item;
      return true;
    default:
      return false;
  }
}

void SchemaRecognizer::pop() {
  if (--depth_ == 0) done_ = true;
  whitespace_ = 0;
}

}  // namespace umi
