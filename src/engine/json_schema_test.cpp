// compile_json_schema: what it makes of the keywords it supports, and an
// error naming the place and the keyword for what it does not.
#include "engine/json_schema.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace umi {
namespace {

using ojson = nlohmann::ordered_json;
using Kind = JsonSchema::Kind;

std::shared_ptr<const JsonSchema> compile(std::string_view text) { return compile_json_schema(ojson::parse(text)); }

std::string error_of(std::string_view text) {
  try {
    compile(text);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(JsonSchema, AnObjectKeepsItsPropertiesInOrderAndKnowsWhichKeysMayComeNext) {
  const auto s = compile(R"({"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "string"},
                             "c": {"enum": ["x", 2, null]}, "d": {}}, "required": ["a", "d"]})");
  const auto& root = s->nodes[s->root];
  ASSERT_EQ(root.kind, Kind::object);
  EXPECT_EQ(root.texts, (std::vector<std::string>{"\"b\"", "\"a\"", "\"c\"", "\"d\""}));
  // First: b (optional) or a (required); after b: a; after a: c or d; after c: d; after d: none.
  EXPECT_EQ(root.keys_after, (std::vector<uint64_t>{0b0011, 0b0010, 0b1100, 0b1000, 0b0000}));
  EXPECT_FALSE(root.may_close(0));
  EXPECT_FALSE(root.may_close(3));
  EXPECT_TRUE(root.may_close(4));
  const auto& b = s->nodes[root.properties[0].node];
  EXPECT_EQ(b.kind, Kind::value);
  EXPECT_EQ(b.types, JsonSchema::integer);
  const auto& c = s->nodes[root.properties[2].node];
  EXPECT_EQ(c.kind, Kind::literals);
  EXPECT_EQ(c.texts, (std::vector<std::string>{"\"x\"", "2", "null"}));
  EXPECT_TRUE(c.may_begin('n') && c.may_begin('2') && c.may_begin('"') && !c.may_begin('1'));
  EXPECT_EQ(s->nodes[root.properties[3].node].types, 0x7f);  // {}: any value
}

TEST(JsonSchema, TypeListsAndOptionalValuesBecomeAlternativesToldApartByTheirFirstByte) {
  const auto s = compile(R"({"type": ["object", "null"], "properties": {"v": {"anyOf": [{"type": "array", "items": {"type": "number"}},
                             {"type": "null"}]}}})");
  const auto& root = s->nodes[s->root];
  ASSERT_EQ(root.kind, Kind::any_of);
  ASSERT_EQ(root.alternatives.size(), 2u);
  EXPECT_TRUE(root.may_begin('{') && root.may_begin('n') && !root.may_begin('['));
  const auto& object = s->nodes[root.alternatives[0]];
  const auto& v = s->nodes[object.properties[0].node];
  EXPECT_EQ(v.kind, Kind::any_of);
  EXPECT_EQ(s->nodes[s->nodes[v.alternatives[0]].items].types, JsonSchema::number);
}

TEST(JsonSchema, ReferencesResolveWithinTheSchemaAndMayRecurse) {
  const auto s = compile(R"({"$ref": "#/$defs/list", "$defs": {"list": {"type": "object", "properties": {
                             "head": {"type": "integer"}, "tail": {"anyOf": [{"$ref": "#/$defs/list"}, {"type": "null"}]}},
                             "required": ["head", "tail"]}}})");
  const auto& root = s->nodes[s->root];
  ASSERT_EQ(root.kind, Kind::object);
  const auto& tail = s->nodes[root.properties[1].node];
  ASSERT_EQ(tail.kind, Kind::any_of);
  const auto& again = s->nodes[tail.alternatives[0]];
  EXPECT_EQ(again.kind, Kind::object);
  EXPECT_EQ(again.properties[1].node, root.properties[1].node);  // the same node: a loop, not a copy per level
  // Pydantic wraps a reference with a description in allOf.
  EXPECT_EQ(compile(R"({"properties": {"x": {"allOf": [{"$ref": "#/$defs/t"}], "description": "d"}}, "$defs": {"t": {"type": "boolean"}}})")
                ->nodes.size() > 0,
            true);
}

TEST(JsonSchema, PlainAlternativesMergeAndMapsTakeASchemaForTheirValues) {
  // Pydantic's Union[int, float] and Optional[str] with a map beside them.
  const auto s = compile(R"({"type": "object", "properties": {"x": {"anyOf": [{"type": "integer"}, {"type": "number"},
                             {"type": "null"}]}, "m": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 4}}}})");
  const auto& root = s->nodes[s->root];
  const auto& x = s->nodes[root.properties[0].node];
  ASSERT_EQ(x.kind, Kind::any_of);
  ASSERT_EQ(x.alternatives.size(), 1u);
  EXPECT_EQ(s->nodes[x.alternatives[0]].types, JsonSchema::integer | JsonSchema::number | JsonSchema::null);
  const auto& m = s->nodes[root.properties[1].node];
  EXPECT_EQ(m.kind, Kind::object);
  EXPECT_TRUE(m.map);
  EXPECT_EQ(s->nodes[m.items].max_length, 4u);
  // Alternatives that are not plain still have to begin apart.
  EXPECT_NE(error_of(R"({"anyOf": [{"type": "object", "properties": {}}, {"type": "object"}]})"), "");
}

TEST(JsonSchema, RefusesWhatItCannotKeepToNamingWhereAndWhy) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"type": "object", "properties": {"s": {"type": "string", "pattern": "^a"}}})", "/properties/s: 'pattern' is not supported"},
      {R"({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}})", "'multipleOf' is not supported"},
      {R"({"type": "array", "items": {"type": "string"}, "uniqueItems": true})", "'uniqueItems' is not supported"},
      {R"({"type": "object", "properties": {"a": {}}, "required": ["b"]})", "names \"b\", which 'properties' does not declare"},
      {R"({"anyOf": [{"type": "object"}, {"type": "object", "properties": {}}]})", "/anyOf: alternatives that may begin with the same byte"},
      {R"({"type": "object", "properties": {"v": {"anyOf": [{"type": "integer"}, {"enum": [1, "a"]}]}}})", "/properties/v/anyOf"},
      {R"({"$ref": "https://example.com/schema"})", "only references within the schema"},
      {R"({"$ref": "#/$defs/missing"})", "'#/$defs/missing' names nothing"},
      {R"({"$ref": "#"})", "accepts nothing"},
      {R"({"type": "integer"})", "a number at the top level"},
      {R"({"enum": [1, 2]})", "a number at the top level"},
      {R"({"type": "strin"})", "unknown type 'strin'"},
      {R"({"type": "object", "additionalProperties": {"type": "integer"}, "required": ["a"]})", "required keys of a map"},
      {R"({"type": "string", "minLength": 3, "maxLength": 2})", "minLength is above maxLength"},
      {R"({"type": "object", "properties": {"n": {"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}}})",
       "/properties/n: no integer lies within"},
      {R"({"type": "object", "properties": {"x": {"type": "number", "minimum": 2, "maximum": 1}}})", "no number lies within"},
      {R"({"type": "object", "properties": {"x": {"type": "number", "minimum": "0"}}})", "/properties/x/minimum: must be a number"},
      {R"({"type": "string", "maxLength": -1})", "/maxLength: must be a count"},
      {R"({"type": "array", "minItems": 3, "maxItems": 2})", "minItems is above maxItems"},
      {R"({"type": "string", "enum": [1, 2]})", "no value of 'enum' or 'const' has the schema's type"},
      {R"({"allOf": [{"type": "object"}, {"required": []}]})", "'allOf' of more than one schema"},
      {R"({"type": "object", "$ref": "#/$defs/a", "$defs": {"a": {}}})", "'$ref' beside other keywords"},
      {R"(false)", "accepts nothing"},
      {R"(3)", "must be an object or a boolean"},
  };
  for (const auto& [schema, reason] : cases) {
    const std::string e = error_of(schema);
    EXPECT_NE(e.find("JSON schema: "), std::string::npos) << schema;
    EXPECT_NE(e.find(reason), std::string::npos) << schema << " -> " << e;
  }
  // A chain of references deeper than the compiler's stack bound.
  nlohmann::ordered_json chain = {{"$ref", "#/$defs/d0"}, {"$defs", nlohmann::ordered_json::object()}};
  for (int i = 0; i < 400; ++i)
    chain["$defs"]["d" + std::to_string(i)] = {{"type", "object"}, {"properties", {{"x", {{"$ref", "#/$defs/d" + std::to_string(i + 1)}}}}}};
  chain["$defs"]["d400"] = {{"type", "null"}};
  EXPECT_NE(error_of(chain.dump()).find("references nest more than 256 schemas deep"), std::string::npos);
  chain["$defs"]["d100"] = {{"type", "null"}};  // a chain of 100 compiles
  EXPECT_EQ(error_of(chain.dump()), "");
  // Annotations and keywords JSON Schema does not define are not constraints.
  EXPECT_EQ(error_of(R"({"title": "t", "description": "d", "type": "object", "properties": {"when": {"type": "string",
                        "format": "date-time", "examples": ["x"]}}, "additionalProperties": false, "x-vendor": 1})"),
            "");
}

}  // namespace
}  // namespace umi
