// The schema recognizer: hand-picked documents both ways; every prefix of
// valid documents accepted, never a dead end; and random one-byte edits of
// random valid documents judged as a parser and a plain validator of the same
// schema judge them.
#include "engine/schema_recognizer.h"

#include <gtest/gtest.h>

#include <cctype>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>

namespace umi {
namespace {

using ojson = nlohmann::ordered_json;

struct Compiled {
  explicit Compiled(std::string_view text) : json(ojson::parse(text)), schema(compile_json_schema(json)) {}
  bool complete(std::string_view doc, JsonWhitespace ws = JsonWhitespace::tight) const {
    SchemaRecognizer r(*schema, ws);
    return r.feed(doc) && r.done();
  }
  ojson json;
  std::shared_ptr<const JsonSchema> schema;
};

TEST(SchemaRecognizer, TakesValuesOfTheSchemaAndRefusesOthers) {
  const Compiled s(R"({"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                      "tags": {"type": "array", "items": {"enum": ["a", "ab", 7, 70, null]}, "maxItems": 2},
                      "x": {"type": ["number", "null"]}, "ok": {"type": "boolean"}}, "required": ["id", "ok"]})");
  for (const char* ok : {R"({"id": 1, "ok": true})", R"({"id":-20,"name":"\"q\" \u00e9","ok":false})",
                         R"({"id": 0, "tags": ["ab", 70], "ok": true})", R"({"id": 0, "tags": [7], "x": -1.5e3, "ok": true})",
                         R"({"id": 0, "tags": [], "x": null, "ok": false})", "{\n  \"id\": 5,\n  \"ok\": true\n}"})
    EXPECT_TRUE(s.complete(ok)) << ok;
  for (const char* bad : {R"({"ok": true})",                          // a required property missing
                          R"({"ok": true, "id": 1})",                 // out of the schema's order
                          R"({"id": 1.5, "ok": true})",               // not an integer
                          R"({"id": 1e3, "ok": true})",
                          R"({"id": 1, "ok": true, "extra": 1})",     // not a property
                          R"({"id": 1, "id": 2, "ok": true})",        // twice
                          R"({"id": 1, "tags": ["b"], "ok": true})",  // not in the enum
                          R"({"id": 1, "tags": [700], "ok": true})", R"({"id": 1, "tags": ["a", "a", "a"], "ok": true})",
                          R"({"id": 1, "x": "1", "ok": true})", R"({"id": 1, "ok": 1})", R"({"id": 1, "ok": true,})",
                          R"({"id": 1, "ok": true} )", R"([{"id": 1, "ok": true}])", "{\"id\": 1,  \"ok\": true}"})
    EXPECT_FALSE(s.complete(bad)) << bad;
  // No dead ends: no ',' when nothing may follow it.
  SchemaRecognizer r(*s.schema);
  ASSERT_TRUE(r.feed(R"({"id": 1, "tags": ["a", 7)"));
  EXPECT_FALSE(r.accepts(","));  // maxItems
  EXPECT_TRUE(r.accepts("], \"ok\": true}"));
  ASSERT_TRUE(r.feed(R"(], "ok": true)"));
  EXPECT_FALSE(r.accepts(","));  // the last property
  EXPECT_TRUE(r.accepts("}"));
}

TEST(SchemaRecognizer, FreeValuesAlternativesAndRecursion) {
  const Compiled s(R"({"$ref": "#/$defs/n", "$defs": {"n": {"type": "object", "properties": {"v": {},
                      "next": {"anyOf": [{"$ref": "#/$defs/n"}, {"type": "null"}]}}, "required": ["v", "next"]}}})");
  EXPECT_TRUE(s.complete(R"({"v": {"any": [1, "thing", {}]}, "next": {"v": 2, "next": {"v": null, "next": null}}})"));
  EXPECT_TRUE(s.complete(R"({"v": "s", "next": null})"));
  EXPECT_FALSE(s.complete(R"({"v": 1, "next": {"v": 2}})"));
  EXPECT_FALSE(s.complete(R"({"v": 1, "next": []})"));
  // A free value's own whitespace follows the same rule.
  EXPECT_FALSE(s.complete(R"({"v": [1,  2], "next": null})"));
  EXPECT_TRUE(s.complete(R"({"v": [1,  2], "next": null})", JsonWhitespace::rfc));
  // Nesting deeper than the frames refuses to open another level.
  std::string deep;
  for (int i = 0; i < SchemaRecognizer::kMaxFrames; ++i) deep += R"({"v": 0, "next": )";
  SchemaRecognizer r(*s.schema);
  EXPECT_FALSE(r.feed(deep));
}

TEST(SchemaRecognizer, MapsTakeAnyKeysAndStringsCountTheirCharacters) {
  const Compiled s(R"({"type": "object", "properties": {"counts": {"additionalProperties": {"type": "integer"}},
                      "id": {"type": "string", "minLength": 2, "maxLength": 3}}, "required": ["id"]})");
  for (const char* ok : {R"({"counts": {}, "id": "ab"})", R"({"counts": {"a b": 1, "": -2, "a b": 3}, "id": "abc"})",
                         R"({"id": "\"\\\n"})", R"({"id": "é日"})", "{\"id\": \"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"}"})
    EXPECT_TRUE(s.complete(ok)) << ok;
  for (const char* bad : {R"({"counts": {"a": "1"}, "id": "ab"})", R"({"counts": {a: 1}, "id": "ab"})", R"({"id": "a"})",
                          R"({"id": "abcd"})", R"({"id": "\u0061b"})", R"({"id": "\\"})", R"({"counts": [], "id": "ab"})"})
    EXPECT_FALSE(s.complete(bad)) << bad;
  SchemaRecognizer r(*s.schema);
  ASSERT_TRUE(r.feed(R"({"counts": {"free)"));
  EXPECT_TRUE(r.in_string());  // a map's key: plain tokens pass the mask unwalked
  ASSERT_TRUE(r.feed(R"(": 1}, "id": "x)"));
  EXPECT_FALSE(r.in_string());  // a counted string is walked
}

TEST(SchemaRecognizer, NumbersKeepWithinTheirBoundsAndNeverReachADeadEnd) {
  const Compiled s(R"({"type": "object", "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 120},
                      "p": {"type": "number", "minimum": 0, "maximum": 1}, "t": {"type": "number", "exclusiveMinimum": -2.5,
                      "exclusiveMaximum": 10}, "n": {"type": "integer", "exclusiveMinimum": 5, "maximum": 7},
                      "big": {"type": "integer", "minimum": 10, "maximum": 20}}})");
  for (const char* ok : {R"({"age": 0})", R"({"age": 120})", R"({"age": 7, "p": 0.5})", R"({"p": 1.0})", R"({"p": 0.999})",
                         R"({"p": 0, "t": -2.4999})", R"({"t": 9.99})", R"({"t": -0})", R"({"n": 6})", R"({"n": 7})"})
    EXPECT_TRUE(s.complete(ok)) << ok;
  for (const char* bad : {R"({"age": -1})", R"({"age": 121})", R"({"age": 1000})", R"({"age": 1e2})", R"({"p": 1.01})",
                          R"({"p": -0.1})", R"({"p": 2})", R"({"p": 1e-3})", R"({"t": -2.5})", R"({"t": 10})", R"({"t": 10.0})",
                          R"({"t": -3})", R"({"n": 5})", R"({"n": 8})", R"({"big": 1})", R"({"big": 21})", R"({"p": 0.1234567890123456})"})
    EXPECT_FALSE(s.complete(bad)) << bad;
  // Each digit is taken only when some number from it lies within the bounds.
  SchemaRecognizer r(*s.schema);
  ASSERT_TRUE(r.feed(R"({"age": 12)"));
  EXPECT_TRUE(r.accepts("0"));
  EXPECT_FALSE(r.accepts("1"));
  EXPECT_FALSE(r.accepts("."));  // an integer
  EXPECT_TRUE(r.accepts("}"));
  SchemaRecognizer p(*s.schema);
  ASSERT_TRUE(p.feed(R"({"p": 1)"));
  EXPECT_TRUE(p.accepts(".00"));
  EXPECT_FALSE(p.accepts(".01"));
  EXPECT_FALSE(p.accepts("0"));
  SchemaRecognizer n(*s.schema);
  ASSERT_TRUE(n.feed(R"({"n": )"));
  EXPECT_FALSE(n.accepts("5"));  // 5 is excluded and 50 on are above 7
  EXPECT_FALSE(n.accepts("-"));
  SchemaRecognizer big(*s.schema);
  ASSERT_TRUE(big.feed(R"({"big": 1)"));
  EXPECT_FALSE(big.accepts("}"));  // 1 may go on to 10-19, not end
  EXPECT_TRUE(big.accepts("9}"));
}

TEST(SchemaRecognizer, StringRootsAndEnumsOfObjectsAreDoneWhenTheirLastByteIsWritten) {
  const Compiled s(R"({"enum": ["yes", "no", {"k": [1]}]})");
  SchemaRecognizer r(*s.schema);
  ASSERT_TRUE(r.feed("\"no"));
  EXPECT_FALSE(r.done());
  ASSERT_TRUE(r.feed("\""));
  EXPECT_TRUE(r.done());
  EXPECT_FALSE(r.accepts(" "));
  EXPECT_TRUE(s.complete(R"({"k":[1]})"));
  EXPECT_FALSE(s.complete(R"({"k": [1]})"));  // literals are written compactly
  const Compiled str(R"({"type": "string"})");
  SchemaRecognizer q(*str.schema);
  EXPECT_TRUE(q.feed("\"free text"));
  EXPECT_TRUE(q.in_string());
  EXPECT_TRUE(q.feed("\""));
  EXPECT_TRUE(q.done());
}

// The schema the random tests use: every kind of node, keys of which no
// one-byte edit makes another.
constexpr const char* kSchema = R"({
  "type": "object",
  "properties": {
    "id": {"type": "integer"},
    "title": {"type": "string"},
    "tags": {"type": "array", "items": {"enum": ["red", "green", "blue", 7, 71, null, true]}, "minItems": 1, "maxItems": 3},
    "nested": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]},
    "score": {"type": ["number", "null"]},
    "flag": {"type": "boolean"},
    "meta": {"type": "object", "additionalProperties": {"type": "integer"}},
    "code": {"type": "string", "minLength": 2, "maxLength": 4},
    "rating": {"type": "integer", "minimum": 1, "maximum": 5},
    "ratio": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
    "any": {}
  },
  "required": ["id", "tags", "flag"],
  "$defs": {"node": {"type": "object", "properties": {"value": {"type": "integer"},
            "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}, "required": ["value"]}}
})";

// What the recognizer promises, checked plainly on a parsed document: the
// keywords' meaning, objects closed and in the schema's order.
class Validator {
 public:
  explicit Validator(const ojson& root) : root_(root) {}
  bool valid(const ojson& v) const { return valid(v, root_); }

 private:
  const ojson& resolve(const ojson& s) const {
    return s.contains("$ref") ? root_.at(ojson::json_pointer(s["$ref"].get<std::string>().substr(1))) : s;
  }
  static bool has_type(const ojson& v, const std::string& t) {
    if (t == "integer") return v.is_number_integer();
    if (t == "number") return v.is_number();
    if (t == "string") return v.is_string();
    if (t == "boolean") return v.is_boolean();
    if (t == "null") return v.is_null();
    if (t == "object") return v.is_object();
    return v.is_array();
  }
  bool valid(const ojson& v, const ojson& schema) const {
    const ojson& s = resolve(schema);
    if (s.contains("anyOf")) return std::any_of(s["anyOf"].begin(), s["anyOf"].end(), [&](const ojson& a) { return valid(v, a); });
    if (s.contains("enum")) return std::find(s["enum"].begin(), s["enum"].end(), v) != s["enum"].end();
    if (s.contains("type")) {
      const ojson types = s["type"].is_array() ? s["type"] : ojson::array({s["type"]});
      if (std::none_of(types.begin(), types.end(), [&](const ojson& t) { return has_type(v, t.get<std::string>()); })) return false;
    }
    if (v.is_object() && s.contains("properties")) {
      size_t next = 0;
      const auto& props = s["properties"];
      std::vector<std::string> names;
      for (const auto& [k, _] : props.items()) names.push_back(k);
      for (const auto& [k, value] : v.items()) {
        const auto at = std::find(names.begin() + static_cast<std::ptrdiff_t>(next), names.end(), k);
        if (at == names.end() || !valid(value, props[k])) return false;
        next = static_cast<size_t>(at - names.begin()) + 1;
      }
      for (const ojson& r : s.value("required", ojson::array()))
        if (!v.contains(r.get<std::string>())) return false;
    }
    if (v.is_object() && !s.contains("properties") && s.contains("additionalProperties"))
      for (const auto& [k, value] : v.items())
        if (!valid(value, s["additionalProperties"])) return false;
    if (v.is_string() && (s.contains("minLength") || s.contains("maxLength"))) {
      const std::string& t = v.get_ref<const std::string&>();
      const size_t chars = static_cast<size_t>(std::count_if(t.begin(), t.end(), [](char c) { return (c & 0xc0) != 0x80; }));
      if (chars < s.value("minLength", size_t{0}) || chars > s.value("maxLength", SIZE_MAX)) return false;
    }
    if (v.is_number()) {
      const double x = v.get<double>();
      if (s.contains("minimum") && x < s["minimum"].get<double>()) return false;
      if (s.contains("maximum") && x > s["maximum"].get<double>()) return false;
      if (s.contains("exclusiveMinimum") && x <= s["exclusiveMinimum"].get<double>()) return false;
      if (s.contains("exclusiveMaximum") && x >= s["exclusiveMaximum"].get<double>()) return false;
    }
    if (v.is_array() && s.contains("items")) {
      if (v.size() < s.value("minItems", size_t{0}) || v.size() > s.value("maxItems", SIZE_MAX)) return false;
      for (const ojson& item : v)
        if (!valid(item, s["items"])) return false;
    }
    return true;
  }
  const ojson& root_;
};

// A random valid document of kSchema.
class Generator {
 public:
  explicit Generator(std::mt19937& rng) : rng_(rng) {}
  ojson document() {
    ojson o = ojson::object();
    o["id"] = integer();
    if (coin()) o["title"] = text();
    ojson tags = ojson::array();
    const ojson choices = ojson::array({"red", "green", "blue", 7, 71, nullptr, true});
    for (int i = 0, n = pick(3) + 1; i < n; ++i) tags.push_back(choices[static_cast<size_t>(pick(7))]);
    o["tags"] = tags;
    if (coin()) o["nested"] = coin() ? ojson(nullptr) : node(0);
    if (coin()) o["score"] = coin() ? ojson(nullptr) : ojson(std::ldexp(std::uniform_real_distribution<double>(-1, 1)(rng_), pick(20) - 10));
    o["flag"] = coin();
    if (coin()) {
      ojson meta = ojson::object();
      for (int i = 0, n = pick(3); i < n; ++i) meta[text()] = integer();
      o["meta"] = meta;
    }
    if (coin()) {
      std::string code;
      while (code.size() < 2) code = text();
      o["code"] = code.substr(0, 4);
    }
    if (coin()) o["rating"] = pick(5) + 1;
    if (coin()) o["ratio"] = pick(1000) / 1000.0;
    if (coin()) o["any"] = free(0);
    return o;
  }

 private:
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }
  bool coin() { return pick(2) == 0; }
  int64_t integer() { return std::uniform_int_distribution<int64_t>(-5000, 5000)(rng_); }
  std::string text() {
    static const std::string kAlphabet = "ab \"\\/\n\t{}[],:0e";
    std::string s;
    for (int i = 0, n = pick(6); i < n; ++i) s += kAlphabet[static_cast<size_t>(pick(static_cast<int>(kAlphabet.size())))];
    return s;
  }
  ojson node(int depth) {
    ojson n = ojson::object();
    n["value"] = integer();
    if (coin()) n["next"] = depth > 2 || coin() ? ojson(nullptr) : node(depth + 1);
    return n;
  }
  ojson free(int depth) {
    switch (pick(depth > 2 ? 4 : 6)) {
      case 0: return nullptr;
      case 1: return integer();
      case 2: return text();
      case 3: return coin();
      case 4: {
        ojson a = ojson::array();
        for (int i = 0, n = pick(3); i < n; ++i) a.push_back(free(depth + 1));
        return a;
      }
      default: {
        ojson o = ojson::object();
        for (int i = 0, n = pick(3); i < n; ++i) o[text()] = free(depth + 1);
        return o;
      }
    }
  }
  std::mt19937& rng_;
};

// From any prefix the recognizer accepts, some byte other than whitespace
// goes on (or it is done): whitespace alone never leads anywhere.
bool goes_on(const SchemaRecognizer& r) {
  if (r.done()) return true;
  for (int b = 0; b < 256; ++b)
    if (!std::isspace(b) && r.accepts(std::string(1, static_cast<char>(b)))) return true;
  return false;
}

TEST(SchemaRecognizer, EveryPrefixOfAValidDocumentIsAcceptedAndGoesOn) {
  const Compiled s(kSchema);
  const Validator validator(s.json);
  std::mt19937 rng(7);
  Generator g(rng);
  for (int i = 0; i < 200; ++i) {
    const ojson doc = g.document();
    ASSERT_TRUE(validator.valid(doc)) << doc.dump();
    const std::string text = i % 2 ? doc.dump() : doc.dump(2);
    SchemaRecognizer r(*s.schema);
    for (size_t k = 0; k < text.size(); ++k) {
      ASSERT_FALSE(r.done()) << text.substr(0, k);
      if (i < 20) ASSERT_TRUE(goes_on(r)) << text.substr(0, k);
      ASSERT_TRUE(r.feed(text[k])) << text.substr(0, k + 1);
    }
    EXPECT_TRUE(r.done()) << text;
  }
}

TEST(SchemaRecognizer, AgreesWithAParserAndAValidatorOnRandomEdits) {
  const Compiled s(kSchema);
  const Validator validator(s.json);
  std::mt19937 rng(11);
  Generator g(rng);
  const std::string kBytes = "{}[],:\" 0123456789.-eEtrufalsn\\abc\n";
  int valid = 0, invalid = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string doc = g.document().dump(i % 3 == 0 ? 2 : -1);
    const size_t at = std::uniform_int_distribution<size_t>(0, doc.size() - 1)(rng);
    const char b = kBytes[std::uniform_int_distribution<size_t>(0, kBytes.size() - 1)(rng)];
    switch (i % 3) {
      case 0: doc[at] = b; break;
      case 1: doc.insert(at, 1, b); break;
      default: doc.erase(at, 1);
    }
    bool expected = false;
    try {
      expected = validator.valid(ojson::parse(doc));
    } catch (const ojson::parse_error&) {
    } catch (const ojson::out_of_range&) {
      continue;  // a number too large for a double (an edit of an exponent): valid JSON, but nothing to validate
    }
    SchemaRecognizer r(*s.schema, JsonWhitespace::rfc);
    size_t fed = 0;
    while (fed < doc.size() && r.feed(doc[fed])) ++fed;
    const bool accepted = fed == doc.size() && r.done();
    // A bounded number is never written with an exponent: where an edit made
    // one, only what is accepted must be valid.
    const bool exponent = std::regex_search(doc, std::regex("[0-9][eE][-+0-9]"));
    if (accepted || !exponent) EXPECT_EQ(accepted, expected) << doc;
    if (fed < doc.size() || !r.done()) {
      SchemaRecognizer again(*s.schema, JsonWhitespace::rfc);  // the accepted part goes on
      ASSERT_TRUE(again.feed(std::string_view(doc).substr(0, fed)));
      EXPECT_TRUE(goes_on(again)) << doc.substr(0, fed);
    }
    (expected ? valid : invalid) += 1;
  }
  EXPECT_GT(valid, 300);
  EXPECT_GT(invalid, 1000);
}

}  // namespace
}  // namespace umi
