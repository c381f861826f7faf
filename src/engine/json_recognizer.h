// JSON mode (OpenAI's response_format {"type": "json_object"}): the output is
// one JSON object. A byte-at-a-time recognizer of RFC 8259 text whose top
// level is an object, and the mask that keeps a sampler to the tokens that
// can continue it.
//
// The recognizer is a pushdown automaton in 16 bytes: the open containers are
// one bit each (object or array) in a 64-bit word, so checking a token is a
// copy of the state and a walk over the token's bytes, with no allocation
// (the mask's walk: JsonVocabulary below).
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
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace umi {

enum class JsonWhitespace : uint8_t { tight, rfc };

class JsonRecognizer {
 public:
  static constexpr int kMaxDepth = 64, kMaxWhitespace = 64, kMaxIndent = 20;

  explicit JsonRecognizer(JsonWhitespace whitespace = JsonWhitespace::tight) : rfc_whitespace_(whitespace == JsonWhitespace::rfc) {}

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
  // The top-level object is closed: nothing may follow.
  bool done() const { return at_ == At::done; }
  // Inside a string, not in an escape: any byte but '"', '\\' and control bytes keeps it so.
  bool in_string() const { return at_ == At::string; }

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
  bool close(char c);
  bool number(char c);
  bool structural(char c);
  bool space(char c);

  uint64_t objects_ = 0;  // bit d: container d (0 the outermost) is an object, not an array
  uint8_t depth_ = 0;
  At at_ = At::start;
  uint8_t sub_ = 0;
  uint8_t lit_ = 0;
  uint8_t whitespace_ = 0;  // whitespace bytes in a row (tight: 1 after a space, 2 + the indent after a newline)
  bool key_ = false;        // the string being read is an object's key
  bool rfc_whitespace_;
};

// A vocabulary as the mask reads it. bytes[id]: what token id adds to the
// text (token_bytes.h: empty for control tokens, EOS and end of turn among
// them). Walking every token every step cost Llama 3's 128K vocabulary
// 1.8-2.3 ms a step outside strings (development VM), and more inside; so:
// - inside a string, plain tokens (most of them) pass unwalked: a string
//   always takes them;
// - elsewhere the tokens are walked in byte order, as a trie would be: each
//   shared prefix once, and a prefix the recognizer refuses skips every
//   token that starts with it (a binary search), so a step costs about the
//   accepted tokens' bytes and one check per refused prefix.
struct JsonVocabulary {
  explicit JsonVocabulary(std::vector<std::string> token_bytes);
  std::vector<std::string> bytes;
  std::vector<uint8_t> plain;    // no '"', '\\' or control byte
  std::vector<int32_t> order;    // the non-empty tokens' ids, their bytes sorted
  std::vector<uint32_t> shared;  // [i]: bytes order[i] shares with order[i - 1] at its start
  size_t longest = 0;
};

// Sets the logit of every token that cannot continue `json` to -infinity:
// ids past the vocabulary (a model's padded one) and empty tokens too.
// Returns how many tokens are left.
int64_t mask_to_json(const JsonRecognizer& json, const JsonVocabulary& vocabulary, std::span<float> logits);

}  // namespace umi
