#include "engine/json_schema.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <map>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/error.h"

namespace umi {

using ojson = nlohmann::ordered_json;

bool JsonSchema::Node::may_close(size_t next) const {
  return std::none_of(properties.begin() + static_cast<std::ptrdiff_t>(std::min(next, properties.size())), properties.end(),
                      [](const Property& p) { return p.required; });
}

std::pair<double, double> JsonSchema::Node::integer_bounds() const {
  return {exclusive_minimum ? std::floor(minimum) + 1 : std::ceil(minimum), exclusive_maximum ? std::ceil(maximum) - 1 : std::floor(maximum)};
}

namespace {

using Kind = JsonSchema::Kind;
using Node = JsonSchema::Node;

[[noreturn]] void fail(const std::string& pointer, std::string_view reason) {
  throw InputError("JSON schema: " + (pointer.empty() ? std::string("(root)") : pointer) + ": " + std::string(reason));
}

// Keywords that constrain a value in ways the recognizer does not keep to.
constexpr std::string_view kUnsupported[] = {
    "pattern",           "multipleOf",       "minProperties", "maxProperties", "patternProperties", "propertyNames",
    "dependentRequired", "dependentSchemas", "dependencies",  "contains",      "minContains",       "maxContains",
    "prefixItems",       "not",              "if",            "then",          "else",              "$dynamicRef",
    "$recursiveRef",     "contentSchema"};
// Keywords that say what a value is (anything else is an annotation).
constexpr std::string_view kConstraining[] = {"type", "properties", "required", "items", "minItems", "maxItems", "enum", "const",
                                              "anyOf", "oneOf", "allOf", "additionalProperties", "unevaluatedProperties",
                                              "unevaluatedItems", "uniqueItems", "minLength", "maxLength",
                                              "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};

bool has(const ojson& s, const char* key) { return s.contains(key); }

void set_first(Node& n, unsigned char b) { n.first[b >> 6] |= uint64_t{1} << (b & 63); }

void set_first_of_types(Node& n) {
  const uint8_t t = n.types;
  if (t & JsonSchema::string) set_first(n, '"');
  if (t & (JsonSchema::number | JsonSchema::integer))
    for (unsigned char b : std::string_view("-0123456789")) set_first(n, b);
  if (t & JsonSchema::boolean) set_first(n, 't'), set_first(n, 'f');
  if (t & JsonSchema::null) set_first(n, 'n');
  if (t & JsonSchema::object) set_first(n, '{');
  if (t & JsonSchema::array) set_first(n, '[');
}

uint8_t type_bit(const ojson& t, const std::string& pointer) {
  static const std::map<std::string, uint8_t, std::less<>> kTypes = {
      {"string", JsonSchema::string}, {"number", JsonSchema::number}, {"integer", JsonSchema::integer},
      {"boolean", JsonSchema::boolean}, {"null", JsonSchema::null},   {"object", JsonSchema::object},
      {"array", JsonSchema::array}};
  if (!t.is_string()) fail(pointer, "a type must be a string");
  const auto it = kTypes.find(t.get_ref<const std::string&>());
  if (it == kTypes.end()) fail(pointer, "unknown type '" + t.get<std::string>() + "'");
  return it->second;
}

uint8_t value_type(const ojson& v) {
  if (v.is_string()) return JsonSchema::string;
  if (v.is_number_integer()) return JsonSchema::integer | JsonSchema::number;
  if (v.is_number()) return JsonSchema::number;
  if (v.is_boolean()) return JsonSchema::boolean;
  if (v.is_null()) return JsonSchema::null;
  return v.is_object() ? JsonSchema::object : JsonSchema::array;
}

// A count keyword (minItems, maxLength, ...), when present, into `out`.
void count(const ojson& s, const char* key, const std::string& pointer, uint32_t& out) {
  if (!s.contains(key)) return;
  const ojson& v = s[key];
  if (!v.is_number_unsigned() || v.get<uint64_t>() >= UINT32_MAX) fail(pointer + "/" + key, "must be a count");
  out = v.get<uint32_t>();
}

// minimum, maximum and their exclusive forms: numbers (JSON Schema 6 on) or,
// beside minimum/maximum, booleans (draft 4).
void bounds(const ojson& s, const std::string& pointer, Node& n) {
  const auto number = [&](const char* key) {
    if (!s[key].is_number()) fail(pointer + "/" + key, "must be a number");
    return s[key].get<double>();
  };
  if (s.contains("minimum")) n.minimum = number("minimum");
  if (s.contains("maximum")) n.maximum = number("maximum");
  for (const auto& [key, bound, exclusive, raise] :
       {std::tuple{"exclusiveMinimum", &n.minimum, &n.exclusive_minimum, true}, std::tuple{"exclusiveMaximum", &n.maximum, &n.exclusive_maximum, false}}) {
    if (!s.contains(key)) continue;
    if (s[key].is_boolean()) {
      *exclusive = s[key].get<bool>();
      continue;
    }
    const double v = number(key);
    if (raise ? v >= *bound : v <= *bound) *bound = v, *exclusive = true;  // the tighter of the two
  }
  if (!(n.types & (JsonSchema::number | JsonSchema::integer)) || !n.bounded()) return;
  if (n.minimum > n.maximum || (n.minimum == n.maximum && (n.exclusive_minimum || n.exclusive_maximum)))
    fail(pointer, "no number lies within minimum and maximum");
  if (!(n.types & JsonSchema::number) && n.integer_bounds().first > n.integer_bounds().second)
    fail(pointer, "no integer lies within minimum and maximum");
}

// A value as the output must spell it: compact JSON.
std::string text(const ojson& v, const std::string& pointer) {
  std::string t = v.dump();
  if (t.size() > JsonSchema::kMaxText) fail(pointer, "a key or value longer than 4096 bytes is not supported");
  return t;
}

class Compiler {
 public:
  explicit Compiler(const ojson& root) : root_(root) {}

  uint32_t compile(const ojson& s, const std::string& pointer);
  std::vector<Node> nodes;
  std::map<uint32_t, std::string> any_of_at;  // where each anyOf/oneOf is, for errors

 private:
  uint32_t add(Node n, const std::string& pointer) {
    if (nodes.size() >= JsonSchema::kMaxNodes) fail(pointer, "the schema has more than 4096 parts");
    nodes.push_back(std::move(n));
    return static_cast<uint32_t>(nodes.size() - 1);
  }
  uint32_t any_value(const std::string& pointer) {
    Node n;
    n.types = 0x7f;
    return add(std::move(n), pointer);
  }
  uint32_t ref(const ojson& s, const std::string& pointer);
  uint32_t alternatives(const ojson& list, const std::string& pointer);
  uint32_t literals(const ojson& s, uint8_t types, const std::string& pointer);
  uint32_t object(const ojson& s, const std::string& pointer);
  uint32_t array(const ojson& s, const std::string& pointer);
  uint8_t types_of(const ojson& s, const std::string& pointer) const;

  static constexpr int kMaxNesting = 256;
  const ojson& root_;
  std::map<std::string, uint32_t> by_reference_;
  int depth_ = 0;
};

uint32_t Compiler::compile(const ojson& s, const std::string& pointer) {
  // References chain schemas beyond the text's own nesting: the stack is bounded here.
  struct Nesting {
    int& depth;
    ~Nesting() { --depth; }
  } nesting{++depth_};
  if (depth_ > kMaxNesting) fail(pointer, "references nest more than 256 schemas deep");
  if (s.is_boolean()) {
    if (!s.get<bool>()) fail(pointer, "the schema false accepts nothing");
    return any_value(pointer);
  }
  if (!s.is_object()) fail(pointer, "a schema must be an object or a boolean");
  for (std::string_view k : kUnsupported)
    if (s.contains(k)) fail(pointer, "'" + std::string(k) + "' is not supported");
  if (s.contains("uniqueItems") && s["uniqueItems"] != false) fail(pointer, "'uniqueItems' is not supported");
  const auto constraining = [&](std::string_view except) {
    return std::any_of(std::begin(kConstraining), std::end(kConstraining), [&](std::string_view k) { return k != except && s.contains(k); });
  };
  if (has(s, "$ref")) {
    if (constraining("")) fail(pointer, "'$ref' beside other keywords that constrain the value is not supported");
    return ref(s["$ref"], pointer + "/$ref");
  }
  for (const char* k : {"anyOf", "oneOf", "allOf"}) {
    if (!has(s, k)) continue;
    if (constraining(k)) fail(pointer, "'" + std::string(k) + "' beside other keywords that constrain the value is not supported");
    const ojson& list = s[k];
    if (!list.is_array() || list.empty()) fail(pointer + "/" + k, "must be a non-empty array of schemas");
    if (std::string_view(k) != "allOf") return alternatives(list, pointer + "/" + k);
    // Alternatives that cannot begin alike exclude each other: oneOf is anyOf.
    if (list.size() != 1) fail(pointer, "'allOf' of more than one schema is not supported");
    return compile(list[0], pointer + "/allOf/0");
  }
  const uint8_t types = types_of(s, pointer);
  if (has(s, "enum") || has(s, "const")) return literals(s, types, pointer);
  uint32_t min_length = 0, max_length = UINT32_MAX;
  count(s, "minLength", pointer, min_length);
  count(s, "maxLength", pointer, max_length);
  if (min_length > max_length) fail(pointer, "minLength is above maxLength");
  const bool structured_object = (types & JsonSchema::object) && (has(s, "properties") || has(s, "additionalProperties") ||
                                                                     has(s, "unevaluatedProperties"));
  const bool structured_array = (types & JsonSchema::array) && (has(s, "items") || has(s, "unevaluatedItems") ||
                                                                  has(s, "minItems") || has(s, "maxItems"));
  std::vector<uint32_t> parts;
  if (structured_object) parts.push_back(object(s, pointer));
  if (structured_array) parts.push_back(array(s, pointer));
  const auto rest = static_cast<uint8_t>(types & ~((structured_object ? JsonSchema::object : 0) | (structured_array ? JsonSchema::array : 0)));
  if (rest != 0) {
    Node n;
    n.types = static_cast<uint8_t>(rest);
    n.min_length = min_length, n.max_length = max_length;
    bounds(s, pointer, n);
    parts.push_back(add(std::move(n), pointer));
  }
  if (parts.size() == 1) return parts[0];
  Node n;
  n.kind = Kind::any_of;
  n.alternatives = std::move(parts);
  return add(std::move(n), pointer);
}

// The types a schema takes: its "type", or without one what its keywords
// are about (a value with "properties" may be an object: making it one keeps
// the output valid).
uint8_t Compiler::types_of(const ojson& s, const std::string& pointer) const {
  if (!has(s, "type")) {
    uint8_t t = 0;
    if (has(s, "properties") || has(s, "required") || has(s, "additionalProperties")) t |= JsonSchema::object;
    if (has(s, "items") || has(s, "minItems") || has(s, "maxItems")) t |= JsonSchema::array;
    return t != 0 ? t : 0x7f;
  }
  const ojson& t = s["type"];
  if (!t.is_array()) return type_bit(t, pointer + "/type");
  if (t.empty()) fail(pointer + "/type", "an empty list of types accepts nothing");
  uint8_t bits = 0;
  for (size_t i = 0; i < t.size(); ++i) bits |= type_bit(t[i], pointer + "/type/" + std::to_string(i));
  return bits;
}

uint32_t Compiler::ref(const ojson& r, const std::string& pointer) {
  if (!r.is_string()) fail(pointer, "must be a string");
  const std::string& target = r.get_ref<const std::string&>();
  if (target.empty() || target[0] != '#') fail(pointer, "only references within the schema ('#', '#/$defs/...') are supported");
  if (const auto it = by_reference_.find(target); it != by_reference_.end()) return it->second;
  const ojson* to = &root_;
  try {
    to = &root_.at(ojson::json_pointer(target.substr(1)));
  } catch (const ojson::exception&) {
    fail(pointer, "'" + target + "' names nothing in the schema");
  }
  // The id is known before the target is compiled, so that the target may refer to itself.
  const uint32_t id = add(Node{}, pointer);
  by_reference_[target] = id;
  const uint32_t compiled = compile(*to, target.substr(1));
  nodes[id] = nodes[compiled];
  if (const auto it = any_of_at.find(compiled); it != any_of_at.end()) any_of_at[id] = it->second;
  return id;
}

uint32_t Compiler::alternatives(const ojson& list, const std::string& pointer) {
  Node n;
  n.kind = Kind::any_of;
  for (size_t i = 0; i < list.size(); ++i) n.alternatives.push_back(compile(list[i], pointer + "/" + std::to_string(i)));
  if (n.alternatives.size() == 1) return n.alternatives[0];
  const uint32_t id = add(std::move(n), pointer);
  any_of_at[id] = pointer;
  return id;
}

uint32_t Compiler::literals(const ojson& s, uint8_t types, const std::string& pointer) {
  if (has(s, "enum") && has(s, "const")) fail(pointer, "'enum' beside 'const' is not supported");
  const ojson values = has(s, "const") ? ojson::array({s["const"]}) : s["enum"];
  if (!values.is_array() || values.empty()) fail(pointer + "/enum", "must be a non-empty array");
  Node n;
  n.kind = Kind::literals;
  for (const ojson& v : values)
    if (value_type(v) & types) n.texts.push_back(text(v, pointer + "/enum"));
  if (n.texts.empty()) fail(pointer, "no value of 'enum' or 'const' has the schema's type");
  std::sort(n.texts.begin(), n.texts.end());
  n.texts.erase(std::unique(n.texts.begin(), n.texts.end()), n.texts.end());
  if (n.texts.size() > JsonSchema::kMaxCandidates) fail(pointer + "/enum", "more than 64 values are not supported");
  for (const std::string& l : n.texts) set_first(n, static_cast<unsigned char>(l[0]));
  return add(std::move(n), pointer);
}

uint32_t Compiler::object(const ojson& s, const std::string& pointer) {
  const ojson empty = ojson::object();
  const ojson& properties = has(s, "properties") ? s["properties"] : empty;
  if (!properties.is_object()) fail(pointer + "/properties", "must be an object");
  if (properties.size() > JsonSchema::kMaxCandidates) fail(pointer + "/properties", "more than 64 properties are not supported");
  Node n;
  n.kind = Kind::object;
  if (!has(s, "properties") && has(s, "additionalProperties") && s["additionalProperties"] != false) {
    // A map: any keys, each value of additionalProperties (required keys cannot be promised).
    if (has(s, "required") && !s["required"].empty()) fail(pointer + "/required", "required keys of a map are not supported");
    n.map = true;
    set_first(n, '{');
    const uint32_t id = add(std::move(n), pointer);
    const uint32_t values = compile(s["additionalProperties"], pointer + "/additionalProperties");
    nodes[id].items = values;
    return id;
  }
  for (const auto& [key, value] : properties.items()) {
    n.properties.push_back({});
    n.texts.push_back(text(ojson(key), pointer + "/properties"));
  }
  if (has(s, "required")) {
    const ojson& required = s["required"];
    if (!required.is_array()) fail(pointer + "/required", "must be an array of names");
    for (const ojson& name : required) {
      if (!name.is_string()) fail(pointer + "/required", "must be an array of names");
      const std::string key = name.dump();
      const auto p = std::find(n.texts.begin(), n.texts.end(), key);
      if (p == n.texts.end()) fail(pointer + "/required", "names " + key + ", which 'properties' does not declare");
      n.properties[static_cast<size_t>(p - n.texts.begin())].required = true;
    }
  }
  const size_t count = n.properties.size();
  n.keys_after.assign(count + 1, 0);
  for (size_t next = 0; next < count; ++next)
    for (size_t i = next; i < count; ++i) {
      n.keys_after[next] |= uint64_t{1} << i;
      if (n.properties[i].required) break;
    }
  set_first(n, '{');
  const uint32_t id = add(std::move(n), pointer);
  size_t i = 0;
  for (const auto& [key, value] : properties.items()) {
    const uint32_t child = compile(value, pointer + "/properties/" + key);
    nodes[id].properties[i++].node = child;
  }
  return id;
}

uint32_t Compiler::array(const ojson& s, const std::string& pointer) {
  Node n;
  n.kind = Kind::array;
  count(s, "minItems", pointer, n.min_items);
  count(s, "maxItems", pointer, n.max_items);
  if (n.min_items > n.max_items) fail(pointer, "minItems is above maxItems");
  if (has(s, "unevaluatedItems") && s["unevaluatedItems"] == false && !has(s, "items"))
    fail(pointer, "'unevaluatedItems' false without 'items' is not supported");
  set_first(n, '[');
  const uint32_t id = add(std::move(n), pointer);
  const uint32_t items = has(s, "items") ? compile(s["items"], pointer + "/items") : any_value(pointer);
  nodes[id].items = items;
  return id;
}

// anyOf's plain types become one: alternatives that are values taken as they
// come (integer, number, a free object...) overlap only in ways their union
// settles, so anyOf [integer, number] is a number and need not begin apart.
void merge_plain_alternatives(std::vector<Node>& nodes) {
  for (size_t id = 0; id < nodes.size(); ++id) {
    if (nodes[id].kind != Kind::any_of) continue;
    std::vector<uint32_t> kept;
    uint8_t types = 0;
    int plain = 0;
    for (uint32_t a : nodes[id].alternatives) {
      const Node& alt = nodes[a];
      if (alt.kind == Kind::value && !alt.limits_length() && !alt.bounded()) types |= alt.types, ++plain;
      else kept.push_back(a);
    }
    if (plain < 2) continue;
    Node merged;
    merged.types = types;
    kept.push_back(static_cast<uint32_t>(nodes.size()));
    nodes.push_back(std::move(merged));
    nodes[id].alternatives = std::move(kept);
  }
}

// The bytes each node may begin with, to a fixed point (a reference may make
// a node's first bytes depend on its own).
void first_bytes(std::vector<Node>& nodes) {
  for (Node& n : nodes)
    if (n.kind == Kind::value) set_first_of_types(n);
  for (bool changed = true; changed;) {
    changed = false;
    for (Node& n : nodes) {
      if (n.kind != Kind::any_of) continue;
      for (uint32_t a : n.alternatives)
        for (size_t w = 0; w < 4; ++w) {
          const uint64_t merged = n.first[w] | nodes[a].first[w];
          changed |= merged != n.first[w];
          n.first[w] = merged;
        }
    }
  }
}

}  // namespace

std::shared_ptr<const JsonSchema> compile_json_schema(const ojson& schema) {
  Compiler c(schema);
  auto out = std::make_shared<JsonSchema>();
  out->root = c.compile(schema, "");
  out->nodes = std::move(c.nodes);
  merge_plain_alternatives(out->nodes);
  if (out->nodes.size() > JsonSchema::kMaxNodes) fail("", "the schema has more than 4096 parts");
  first_bytes(out->nodes);
  for (size_t id = 0; id < out->nodes.size(); ++id) {
    const Node& n = out->nodes[id];
    if (n.first == std::array<uint64_t, 4>{}) fail(c.any_of_at[static_cast<uint32_t>(id)], "the schema accepts nothing (a reference to itself alone?)");
    if (n.kind != Kind::any_of) continue;
    std::array<uint64_t, 4> seen{};
    for (uint32_t a : n.alternatives)
      for (size_t w = 0; w < 4; ++w) {
        if (seen[w] & out->nodes[a].first[w])
          fail(c.any_of_at[static_cast<uint32_t>(id)], "alternatives that may begin with the same byte are not supported");
        seen[w] |= out->nodes[a].first[w];
      }
  }
  const Node& root = out->nodes[out->root];
  for (char digit : std::string_view("-0123456789"))
    if (root.may_begin(digit)) fail("", "a number at the top level is not supported (nothing after it would show where it ends)");
  return out;
}

}  // namespace umi
