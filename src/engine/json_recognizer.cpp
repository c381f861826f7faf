#include "engine/json_recognizer.h"

#include <cstring>

namespace umi {

namespace {
constexpr const char* kLiterals[3] = {"true", "false", "null"};
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
}  // namespace

bool JsonRecognizer::feed(std::string_view s) {
  for (char c : s)
    if (!feed(c)) return false;
  return true;
}

bool JsonRecognizer::feed(char c) {
  switch (at_) {
    case At::string:
      if (c == '"') {
        if (key_) at_ = At::colon, whitespace_ = 0;
        else end_value();
        return true;
      }
      if (c == '\\') at_ = At::escape;
      return static_cast<unsigned char>(c) >= 0x20;
    case At::escape:
      if (c == 'u') {
        at_ = At::hex, sub_ = 4;
        return true;
      }
      at_ = At::string;
      return std::strchr("\"\\/bfnrt", c) != nullptr && c != '\0';
    case At::hex:
      if (!is_hex(c)) return false;
      if (--sub_ == 0) at_ = At::string;
      return true;
    case At::number:
      return number(c);
    case At::literal:
      if (c != kLiterals[lit_][sub_]) return false;
      if (kLiterals[lit_][++sub_] == '\0') end_value();
      return true;
    case At::done:
      return false;
    default:
      return structural(c);
  }
}

// The states between tokens of the grammar: whitespace, then what may come.
bool JsonRecognizer::structural(char c) {
  if (is_json_space(c)) return json_whitespace(whitespace_rule_, whitespace_, c);
  whitespace_ = 0;
  switch (at_) {
    case At::start:
      return (any_top_ || c == '{') && begin_value(c);
    case At::value:
      return begin_value(c);
    case At::first_value:
      return c == ']' ? close(c) : begin_value(c);
    case At::first_key:
      if (c == '}') return close(c);
      [[fallthrough]];
    case At::key:
      if (c != '"') return false;
      at_ = At::string, key_ = true;
      return true;
    case At::colon:
      if (c != ':') return false;
      at_ = At::value;
      return true;
    case At::after_value:
      if (c == ',') {
        at_ = objects_ >> (depth_ - 1) & 1 ? At::key : At::value;
        return true;
      }
      return close(c);
    default:
      return false;
  }
}

// tight: run is 1 after a space, 2 + the indent after a newline.
bool json_whitespace(JsonWhitespace rule, uint8_t& run, char c) {
  if (rule == JsonWhitespace::rfc) return is_json_space(c) && ++run <= JsonRecognizer::kMaxWhitespace;
  constexpr uint8_t kAfterSpace = 1, kAfterNewline = 2;
  if (run == 0) {
    run = c == ' ' ? kAfterSpace : c == '\n' ? kAfterNewline : 0;
    return run != 0;
  }
  if (run == kAfterSpace || (c != ' ' && c != '\t') || run - kAfterNewline >= JsonRecognizer::kMaxIndent) return false;
  ++run;
  return true;
}

bool JsonRecognizer::begin_value(char c) {
  switch (c) {
    case '{':
    case '[':
      if (depth_ == kMaxDepth) return false;
      if (c == '{') objects_ |= uint64_t{1} << depth_;
      else objects_ &= ~(uint64_t{1} << depth_);
      ++depth_;
      at_ = c == '{' ? At::first_key : At::first_value;
      return true;
    case '"':
      at_ = At::string, key_ = false;
      return true;
    case 't':
    case 'f':
    case 'n':
      at_ = At::literal, lit_ = c == 't' ? 0 : c == 'f' ? 1 : 2, sub_ = 1;
      return true;
    case '-':
      at_ = At::number, sub_ = minus;
      return true;
    default:
      if (!is_digit(c)) return false;
      at_ = At::number, sub_ = c == '0' ? zero : integer;
      return true;
  }
}

// `c` closes the innermost container if it is that container's bracket.
bool JsonRecognizer::close(char c) {
  if (depth_ == 0) return false;
  const bool object = objects_ >> (depth_ - 1) & 1;
  if (c != (object ? '}' : ']')) return false;
  --depth_;
  at_ = depth_ == 0 ? At::done : At::after_value;
  return true;
}

// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?; a byte that cannot extend
// a number that may end here ends it and is read as what follows a value.
bool JsonRecognizer::number(char c) {
  const bool digit = is_digit(c), e = c == 'e' || c == 'E';
  switch (sub_) {
    case minus:
      if (!digit) return false;
      sub_ = c == '0' ? zero : integer;
      return true;
    case zero:
    case integer:
      if (digit && sub_ == integer) return true;
      if (c == '.') return sub_ = point, true;
      if (e) return sub_ = exponent, true;
      break;
    case point:
      return digit && (sub_ = fraction, true);
    case fraction:
      if (digit) return true;
      if (e) return sub_ = exponent, true;
      break;
    case exponent:
      if (c == '+' || c == '-') return sub_ = exponent_sign, true;
      [[fallthrough]];
    case exponent_sign:
      return digit && (sub_ = exponent_digits, true);
    case exponent_digits:
      if (digit) return true;
      break;
    default:
      return false;
  }
  end_value();  // the number ended before c; at the top level nothing may follow it
  return at_ != At::done && structural(c);
}

bool JsonRecognizer::top_number_may_end() const {
  return in_top_number() && (sub_ == zero || sub_ == integer || sub_ == fraction || sub_ == exponent_digits);
}

}  // namespace umi
