// Reads an output a byte at a time against a compiled JSON schema
// (json_schema.h), as JsonRecognizer does for JSON mode: feed says whether a
// byte can come next, done whether the value is complete.
//
// The state is a stack of frames, one for each object, array or literal being
// written, whose nodes the schema describes, and below them one
// JsonRecognizer for a value the schema leaves free (a string of any text, a
// number, an object of any members). The stack is bounded (kMaxFrames) and
// copies take only its used part: the mask copies a state for each prefix it
// walks (json_mask.h).
//
// Every prefix it accepts can be completed: the candidates of a key or of an
// enum are narrowed a byte at a time and never to none, and an object may not
// take a ',' when no property is left to write.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/json_recognizer.h"
#include "engine/json_schema.h"

namespace umi {

class SchemaRecognizer {
 public:
  static constexpr int kMaxFrames = 32;

  // `schema` must outlive the recognizer and its copies (a pointer keeps copies cheap).
  explicit SchemaRecognizer(const JsonSchema& schema, JsonWhitespace whitespace = JsonWhitespace::tight);
  SchemaRecognizer(const SchemaRecognizer& o) { *this = o; }
  SchemaRecognizer& operator=(const SchemaRecognizer& o);

  bool feed(char c);
  bool feed(std::string_view s);
  bool accepts(std::string_view s) const {
    SchemaRecognizer copy = *this;
    return copy.feed(s);
  }
  bool done() const { return done_; }
  // Inside a string the schema leaves free: any byte but '"', '\\' and
  // control bytes keeps it so (the mask lets such tokens through unwalked).
  bool in_string() const;

 private:
  enum class At : uint8_t {
    scalar,      // a free value or a literal: value_ or candidates_ hold the state
    first_key,   // after '{': a key or '}'
    key,         // after ',': a key
    in_key,      // in a key: candidates_
    colon,       // after a key
    value,       // after ':'
    after_value, // ',' or '}'
    first_item,  // after '[': an item or ']'
    item,        // after ','
    after_item,  // ',' or ']'
  };
  struct Frame {  // no initializers: a copy of the recognizer writes only the frames in use
    uint16_t node;
    At at;
    uint8_t next;    // an object's next property: every one before it is written or skipped
    uint32_t items;  // an array's items so far; a string's characters
  };

  bool step(char c);
  bool begin(uint32_t node, char c);
  bool scalar(const JsonSchema::Node& n, char c);
  bool string_length(uint32_t& length, const JsonSchema::Node& n, char c) const;
  struct Number {  // a bounded number as far as it is written, without its exponent (refused)
    uint64_t digits_value = 0;  // every digit so far, as one integer
    uint8_t digits = 0;
    int8_t fraction = -1;  // digits after the point; -1: no point
    bool negative = false;
  };
  bool bound_number(const JsonSchema::Node& n, char c, bool first);
  static bool reachable(const JsonSchema::Node& n, const Number& s);
  static bool within(const JsonSchema::Node& n, const Number& s);
  bool match(const std::vector<std::string>& texts, char c, bool& complete);
  bool complete_only(const std::vector<std::string>& texts) const;
  bool object(Frame& f, const JsonSchema::Node& n, char c);
  bool array(Frame& f, const JsonSchema::Node& n, char c);
  bool space(char c) { return json_whitespace(whitespace_rule_, whitespace_, c); }
  void pop();

  const JsonSchema* schema_;
  JsonRecognizer value_;     // the innermost free value
  uint64_t candidates_ = 0;  // the innermost key or literal: the texts still matching
  uint16_t matched_ = 0;     // and how many of their bytes are written
  Number number_;            // the innermost bounded number
  uint8_t depth_ = 0;
  uint8_t whitespace_ = 0;   // json_whitespace's run between structural bytes
  JsonWhitespace whitespace_rule_;
  bool done_ = false;
  std::array<Frame, kMaxFrames> frames_;
};

}  // namespace umi
