// JSON mode (OpenAI's response_format {"type": "json_object"}): the output is
// one JSON object. A byte-at-a-time recognizer of RFC 8259 text whose top
// level is an object (json_mask.h keeps a sampler to the tokens that can
// continue it). With JsonTop::any it reads any one value: the parts of a
// document that a JSON schema leaves free (schema_recognizer.h).
//
// The recognizer is a pushdown automaton in 16 bytes: the open containers are
// one bit each (object or array) in a 64-bit word, so checking a token is a
// copy of the state and a walk over the token's bytes, with no allocation
// (the mask's walk: json_mask.h).
//
// Limits that keep a model from running away where JSON itself has none
// (a model in JSON mode that cannot end tends to emit whitespace forever):
// nesting deeper than 64 is refused, and whitespace between tokens is, by
// default, what llama.cpp's JSON grammar allows: none, one space, or a
// newline and up to 20 spaces or tabs of indent (JsonWhitespace::tight).
// JsonWhitespace::rfc takes any of RFC 8259's four whitespace bytes, up to
// 64 in a row. Bytes of 0x80 and above are taken as they come inside strings
// (the tokenizer's decoder owns UTF-8); control characters are refused
// there, as RFC 8259 says.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace umi {

enum class JsonWhitespace : uint8_t { tight, rfc };
// What the text is: one object (JSON mode), or any one value (a part of a
// document that json_schema.h's recognizer leaves unconstrained).
enum class JsonTop : uint8_t { object, any };

// The whitespace rule, a byte at a time: `run` counts what the rule needs of
// the whitespace since the last token (0 after a token). False when `c`
// cannot come next.
bool json_whitespace(JsonWhitespace rule, uint8_t& run, char c);
// One of RFC 8259's four whitespace bytes.
inline bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

class JsonRecognizer {
 public:
  static constexpr int kMaxDepth = 64, kMaxWhitespace = 64, kMaxIndent = 20;

  explicit JsonRecognizer(JsonWhitespace whitespace = JsonWhitespace::tight, JsonTop top = JsonTop::object)
      : whitespace_rule_(whitespace), any_top_(top == JsonTop::any) {}

  // Advances by one byte; false (and the state unspecified) when `c` cannot
  // come next.
  bool feed(char c);
  // Every byte of `s` in turn; false as soon as one cannot come next.
  bool feed(std::string_view s);
  // Whether `s` could come next (the state is not changed).
  bool accepts(std::string_view s) const {
    JsonRecognizer copy = *this;
    return copy.feed(s);
  }
  // The top-level value is complete: nothing may follow. A number at the
  // top level (JsonTop::any) is never done: a digit could always follow.
  bool done() const { return at_ == At::done; }
  // Inside a string, not in an escape: any byte but '"', '\\' and control bytes keeps it so.
  bool in_string() const { return at_ == At::string; }
  // Inside a number at the top level (JsonTop::any); and one that could end
  // here (not after '-', '.', 'e' or its sign).
  bool in_top_number() const { return at_ == At::number && depth_ == 0; }
  // Inside a string at the top level (JsonTop::any); just after its '\\'.
  bool in_top_string() const { return at_ == At::string && depth_ == 0; }
  bool in_top_escape() const { return at_ == At::escape && depth_ == 0; }
  bool top_number_may_end() const;

 private:
  enum class At : uint8_t {
    start,        // before the top-level object
    value,        // a value must come
    first_value,  // after '[': a value or ']'
    first_key,    // after '{': a key or '}'
    key,          // after ',' in an object: a key
    colon,        // after a key
    after_value,  // ',' or the container's close
    string,
    escape,  // after '\' in a string
    hex,     // in \uXXXX: sub_ digits left
    number,  // sub_: a Number state
    literal, // sub_: position in kLiterals[lit_]
    done,
  };
  enum Number : uint8_t { minus, zero, integer, point, fraction, exponent, exponent_sign, exponent_digits };

  bool begin_value(char c);
  void end_value() { at_ = depth_ == 0 ? At::done : At::after_value, whitespace_ = 0; }
  bool close(char c);
  bool number(char c);
  bool structural(char c);

  uint64_t objects_ = 0;  // bit d: container d (0 the outermost) is an object, not an array
  uint8_t depth_ = 0;
  At at_ = At::start;
  uint8_t sub_ = 0;
  uint8_t lit_ = 0;
  uint8_t whitespace_ = 0;  // json_whitespace's run
  bool key_ = false;        // the string being read is an object's key
  JsonWhitespace whitespace_rule_;
  bool any_top_;
};

}  // namespace umi
