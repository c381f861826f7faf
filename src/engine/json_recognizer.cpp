#include "engine/json_recognizer.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace umi {

namespace {
constexpr const char* kLiterals[3] = {"true", "false", "null"};
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
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
        at_ = key_ ? At::colon : At::after_value;
        whitespace_ = 0;
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
      if (kLiterals[lit_][++sub_] == '\0') at_ = At::after_value, whitespace_ = 0;
      return true;
    case At::done:
      return false;
    default:
      return structural(c);
  }
}

// The states between tokens of the grammar: whitespace, then what may come.
bool JsonRecognizer::structural(char c) {
  if (is_space(c)) return space(c);
  whitespace_ = 0;
  switch (at_) {
    case At::start:
      return c == '{' && begin_value(c);
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

bool JsonRecognizer::space(char c) {
  if (rfc_whitespace_) return ++whitespace_ <= kMaxWhitespace;
  constexpr uint8_t kAfterSpace = 1, kAfterNewline = 2;
  if (whitespace_ == 0) {
    whitespace_ = c == ' ' ? kAfterSpace : c == '\n' ? kAfterNewline : 0;
    return whitespace_ != 0;
  }
  if (whitespace_ == kAfterSpace || c == '\n' || c == '\r' || whitespace_ - kAfterNewline >= kMaxIndent) return false;
  ++whitespace_;
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
  at_ = At::after_value;  // the number ended before c
  return structural(c);
}

JsonVocabulary::JsonVocabulary(std::vector<std::string> token_bytes) : bytes(std::move(token_bytes)), plain(bytes.size()) {
  for (size_t id = 0; id < bytes.size(); ++id) {
    bool p = !bytes[id].empty();
    for (char c : bytes[id]) p &= c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20;
    plain[id] = p;
    if (!bytes[id].empty()) order.push_back(static_cast<int32_t>(id));
    longest = std::max(longest, bytes[id].size());
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return bytes[static_cast<size_t>(a)] < bytes[static_cast<size_t>(b)]; });
  shared.resize(order.size());
  for (size_t i = 1; i < order.size(); ++i) {
    const std::string &a = bytes[static_cast<size_t>(order[i - 1])], &b = bytes[static_cast<size_t>(order[i])];
    shared[i] = static_cast<uint32_t>(std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first - a.begin());
  }
}

namespace {
// Refuses every token, then lets through those the walk in byte order
// accepts (JsonVocabulary): at[d] is the state after the first d bytes of the
// current token; `valid` how many of those states belong to it.
int64_t mask_outside_strings(const JsonRecognizer& json, const JsonVocabulary& v, std::span<float> logits) {
  const float refused = -std::numeric_limits<float>::infinity();
  std::vector<JsonRecognizer> at(v.longest + 1);
  at[0] = json;
  std::vector<uint8_t> ok(logits.size());
  int64_t left = 0;
  size_t valid = 0;
  for (size_t i = 0; i < v.order.size();) {
    const std::string& b = v.bytes[static_cast<size_t>(v.order[i])];
    size_t d = std::min<size_t>(i == 0 ? 0 : v.shared[i], valid);
    for (; d < b.size(); ++d) {
      at[d + 1] = at[d];
      if (!at[d + 1].feed(b[d])) break;
    }
    if (d == b.size()) {  // all of it
      const auto id = static_cast<size_t>(v.order[i]);
      if (id < ok.size()) ok[id] = 1, ++left;
      valid = d;
      ++i;
      continue;
    }
    // b[0..d] is refused: so is every token that starts with it, the run from i on.
    const std::string_view prefix(b.data(), d + 1);
    const auto next = std::partition_point(v.order.begin() + static_cast<std::ptrdiff_t>(i), v.order.end(), [&](int32_t id) {
      return std::string_view(v.bytes[static_cast<size_t>(id)]).starts_with(prefix);
    });
    i = static_cast<size_t>(next - v.order.begin());
    valid = d;
  }
  for (size_t id = 0; id < logits.size(); ++id)
    if (!ok[id]) logits[id] = refused;
  return left;
}
}  // namespace

int64_t mask_to_json(const JsonRecognizer& json, const JsonVocabulary& vocabulary, std::span<float> logits) {
  if (!json.in_string()) return mask_outside_strings(json, vocabulary, logits);
  const size_t known = std::min(logits.size(), vocabulary.bytes.size());
  int64_t left = 0;
  for (size_t id = 0; id < logits.size(); ++id) {
    const bool ok = id < known && (vocabulary.plain[id] || (!vocabulary.bytes[id].empty() && json.accepts(vocabulary.bytes[id])));
    if (ok) ++left;
    else logits[id] = -std::numeric_limits<float>::infinity();
  }
  return left;
}

}  // namespace umi
