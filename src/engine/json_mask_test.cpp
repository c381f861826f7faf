// The mask: tokens refused exactly when the recognizer refuses their bytes,
// the byte-order walk against checking each of Llama 3's 128K tokens alone.
#include "engine/json_mask.h"

#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "tokenizer/token_bytes.h"

namespace umi {
namespace {

bool complete(std::string_view s, JsonWhitespace ws) {
  JsonRecognizer j(ws);
  return j.feed(s) && j.done();
}

TEST(JsonMask, LeavesOnlyTokensThatContinueTheObject) {
  const JsonVocabulary bytes({"{", "\"", "}", "{\"", " {", "a", "", "\":", "1}", "[", "\"a\":1}x"});
  EXPECT_EQ(bytes.plain, (std::vector<uint8_t>{1, 0, 1, 0, 1, 1, 0, 0, 1, 1, 0}));
  JsonRecognizer j;
  std::vector<float> logits(bytes.bytes.size() + 2, 1.0f);  // two ids past the table: a padded vocabulary
  EXPECT_EQ(mask_to_json(j, bytes, logits), 3);  // "{", "{\"", " {"
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(logits, (std::vector<float>{1, -inf, -inf, 1, 1, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf}));
  ASSERT_TRUE(j.feed("{\"a"));
  std::fill(logits.begin(), logits.end(), 1.0f);
  EXPECT_EQ(mask_to_json(j, bytes, logits), 9);  // in a key: all but the empty token, "\"a\":1}x" (no ':' after a value) and the padding
  ASSERT_TRUE(j.feed("\":"));
  std::fill(logits.begin(), logits.end(), 1.0f);
  EXPECT_EQ(mask_to_json(j, bytes, logits), 7);  // a value: "{", "\"", "{\"", " {", "\":" (a string), "1}" (which ends it all), "["
  EXPECT_EQ(logits[2], -inf);
  EXPECT_EQ(logits[8], 1.0f);
}

const JsonVocabulary& llama3() {
  static const JsonVocabulary v(token_bytes(Tokenizer::from_folder(std::string(UMI_SOURCE_DIR) + "/../shared/data/tokenizers/llama3")));
  return v;
}

// At every position of `text`, fed to `r` as it goes: the walk leaves exactly
// the tokens whose bytes the recognizer accepts alone. Returns the positions checked.
template <class Recognizer>
int expect_walk_matches(Recognizer r, const std::string& text) {
  const JsonVocabulary& v = llama3();
  std::vector<float> walked(v.bytes.size() + 5), alone(walked.size());
  int checked = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    std::fill(walked.begin(), walked.end(), 1.0f);
    const int64_t left = mask_to_json(r, v, walked);
    int64_t count = 0;
    for (size_t id = 0; id < alone.size(); ++id) {
      const bool ok = id < v.bytes.size() && !v.bytes[id].empty() && r.accepts(v.bytes[id]);
      alone[id] = ok ? 1.0f : -std::numeric_limits<float>::infinity();
      count += ok;
    }
    EXPECT_EQ(walked, alone) << "after " << text.substr(0, i);
    EXPECT_EQ(left, count);
    if (walked != alone) break;
    ++checked;
    if (i < text.size() && !r.feed(text[i])) {
      ADD_FAILURE() << "refused " << text.substr(0, i + 1);
      break;
    }
  }
  return checked;
}

// The walk in byte order (shared prefixes once, refused prefixes skipped)
// refuses exactly what checking every token alone refuses: Llama 3's 128K
// tokens at every position of a pretty-printed and a compact document.
TEST(JsonMask, TheWalkRefusesWhatEachTokenAloneWould) {
  ASSERT_EQ(llama3().order.size(), 128000u);  // 128,256 less the 256 special tokens
  const std::string doc = "{\n  \"name\": \"Ada \\\"L\\u00e9\",\n  \"n\": [-1.5e+3, 0, true, null, {}],\n\t\"x\": {\"y\": false}\n}";
  const std::string compact = R"({"k":[{"a":-0.25E-2},[],"s t"],"z":"q"})";
  ASSERT_TRUE(complete(doc, JsonWhitespace::tight)) << doc;
  EXPECT_EQ(expect_walk_matches(JsonRecognizer(), doc), static_cast<int>(doc.size() + 1));
  EXPECT_EQ(expect_walk_matches(JsonRecognizer(), compact), static_cast<int>(compact.size() + 1));
}

// The same for a schema: keys and enum values narrowed by their candidates,
// numbers ended by what follows them, a free string's plain tokens unwalked.
TEST(JsonMask, TheWalkRefusesWhatEachTokenAloneWouldForASchema) {
  const auto schema = compile_json_schema(nlohmann::ordered_json::parse(R"({"type": "object", "properties": {
      "name": {"type": "string"}, "kind": {"enum": ["cat", "catalog", "dog", 7, 70]}, "n": {"type": "integer"},
      "xs": {"type": "array", "items": {"type": "number"}, "maxItems": 2}, "ok": {"type": ["boolean", "null"]},
      "free": {}}, "required": ["name", "kind"]})"));
  const std::string doc = "{\n  \"name\": \"Tom \\\"T\\\"\",\n  \"kind\": \"catalog\",\n  \"n\": -12,\n  \"xs\": [1.5, -2e3],\n  \"ok\": null\n}";
  const std::string compact = R"({"name":"","kind":70,"free":{"a":[1,"b"]}})";
  EXPECT_EQ(expect_walk_matches(SchemaRecognizer(*schema), doc), static_cast<int>(doc.size() + 1));
  EXPECT_EQ(expect_walk_matches(SchemaRecognizer(*schema), compact), static_cast<int>(compact.size() + 1));
}

}  // namespace
}  // namespace umi
