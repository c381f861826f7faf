// Structured outputs (OpenAI's response_format {"type": "json_schema"}): the
// output is one JSON value that a JSON Schema accepts. compile_json_schema
// turns the schema into a small graph of nodes; SchemaRecognizer
// (schema_recognizer.h) reads the output against it a byte at a time, and
// json_mask.h keeps the sampler to the tokens that can continue it.
//
// The rule: every output the recognizer accepts is valid against the schema,
// though not every valid document can be produced. So an object with
// "properties" holds only those, in the schema's order, the required ones
// always (OpenAI's strict mode; whatever "additionalProperties" says is then
// met), and "integer" is written without a fraction or exponent. A keyword
// that constrains a value in a way the recognizer cannot keep to is an error
// that names it, never ignored. Supported:
// - type (object, array, string, number, integer, boolean, null, or a list);
// - properties, required; additionalProperties as a schema without
//   properties (a map: any keys, each value of that schema);
// - items, minItems, maxItems; minLength, maxLength (in characters; such a
//   string is written without \u escapes, so that each character is one);
// - minimum, maximum, exclusiveMinimum, exclusiveMaximum (such a number is
//   written without an exponent and with at most 15 digits, so that each
//   prefix's possible values are known exactly);
// - enum and const, written as compact JSON ("a", 1, null, {"k":[1]});
// - anyOf / oneOf whose alternatives begin with different bytes, such as
//   Pydantic's Optional[X] (anyOf [X, {"type": "null"}]), plain types merged
//   first (anyOf [integer, number] is a number); allOf of one schema;
// - $ref to a pointer within the schema ("#", "#/$defs/Node"), recursion too;
// - annotations, ignored: title, description, default, examples, format (an
//   annotation by default in JSON Schema 2020-12), and keywords JSON Schema
//   does not define, as the specification says.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

namespace umi {

struct JsonSchema {
  static constexpr size_t kMaxCandidates = 64;  // properties of an object, values of an enum
  static constexpr size_t kMaxNodes = 4096;
  static constexpr size_t kMaxText = 4096;  // bytes of a key or of an enum's value

  enum class Kind : uint8_t {
    value,     // one of `types`, taken as JSON comes (a string of any text, an object of any members)
    object,    // `properties`, in order; or, with `map`, any keys, each value of `items`
    array,     // of `items`
    literals,  // one of `texts`
    any_of,    // one of `alternatives`, told apart by their first byte
  };
  // Kind::value's types.
  enum Type : uint8_t { string = 1, number = 2, integer = 4, boolean = 8, null = 16, object = 32, array = 64 };

  struct Property {
    uint32_t node = 0;
    bool required = false;
  };

  struct Node {
    Kind kind = Kind::value;
    uint8_t types = 0;
    std::vector<Property> properties;
    // keys_after[i]: the properties whose key may come after property i - 1
    // (i = 0: first): each up to and including the next required one.
    std::vector<uint64_t> keys_after;
    bool map = false;
    uint32_t items = 0;
    uint32_t min_items = 0, max_items = UINT32_MAX;
    uint32_t min_length = 0, max_length = UINT32_MAX;  // value: a string's characters
    bool limits_length() const { return min_length > 0 || max_length < UINT32_MAX; }
    // value: a number's bounds.
    double minimum = -std::numeric_limits<double>::infinity(), maximum = std::numeric_limits<double>::infinity();
    bool exclusive_minimum = false, exclusive_maximum = false;
    // The integers within the bounds: [first, last] (infinite when unbounded).
    std::pair<double, double> integer_bounds() const;
    bool bounded() const { return minimum > -std::numeric_limits<double>::infinity() || maximum < std::numeric_limits<double>::infinity(); }
    // literals: each value as compact JSON text, sorted; object: each
    // property's key as JSON text, quotes included ("\"name\""), in order.
    std::vector<std::string> texts;
    std::vector<uint32_t> alternatives;
    std::array<uint64_t, 4> first{};  // bit b: the node's text may begin with byte b

    bool may_begin(char c) const {
      const auto b = static_cast<unsigned char>(c);
      return first[b >> 6] >> (b & 63) & 1;
    }
    // No required property from `next` on: the object may close.
    bool may_close(size_t next) const;
  };

  std::vector<Node> nodes;
  uint32_t root = 0;
};

// Throws InputError("JSON schema: <pointer>: <reason>") for a schema that is
// not one, or that asks for what the recognizer cannot keep to.
std::shared_ptr<const JsonSchema> compile_json_schema(const nlohmann::ordered_json& schema);

}  // namespace umi
