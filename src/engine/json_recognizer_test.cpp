// JSON mode's recognizer: hand-picked documents both ways, every prefix of a
// valid one accepted, and random one-byte edits of random documents judged
// as nlohmann::json's parser judges them.
#include "engine/json_recognizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>


namespace umi {
namespace {

// A whole document: every byte accepted and the object closed at the end.
bool complete(std::string_view s, JsonWhitespace ws = JsonWhitespace::rfc) {
  JsonRecognizer j(ws);
  return j.feed(s) && j.done();
}

TEST(JsonRecognizer, AcceptsObjectsAndRefusesWhatJsonForbids) {
  for (const char* ok : {"{}", " \n{ }", R"({"a":1})", R"({"a":[1,2.5e-3,{"b":null}],"c":"x\u00e9\n\"","d":true,"e":false})",
                         R"({"n":[-0,0.5,1E+2,-12e7,3.25]})", "{\n  \"k\": [\n    [],\n    {}\n  ]\n}", R"({"é ü":"日本"})"})
    EXPECT_TRUE(complete(ok)) << ok;
  for (const char* bad : {"[1]", "\"s\"", "1", R"({"a":01})", R"({"a":1,})", "{,}", R"({"a" 1})", R"({"a":tru})",
                          "{\"a\":\"\x01\"}", R"({"a":"\q"})", R"({"a":1.})", R"({"a":-})", "{'a':1}", R"({"a":[1 2]})",
                          R"({"a":[1,]})", R"({"a":[1}})", R"({"a":1}})", R"({"a":1} )", R"({"a":"\u12g4"})", R"({"a":+1})",
                          R"({"a":.5})", R"({"a":1e})", R"({1:2})", R"({"a":NaN})"})
    EXPECT_FALSE(complete(bad)) << bad;
}

TEST(JsonRecognizer, EveryPrefixOfAValidObjectIsAcceptedAndOnlyTheWholeIsDone) {
  const std::string doc = R"({"a": [1, -2.5E-3, {"b": null, "c": [true, false]}], "d": "x\\y\u0041", "e": {}})";
  JsonRecognizer j(JsonWhitespace::rfc);
  for (size_t i = 0; i < doc.size(); ++i) {
    EXPECT_FALSE(j.done()) << i;
    EXPECT_TRUE(j.accepts(doc.substr(i))) << i;  // the rest, from here, without changing j
    ASSERT_TRUE(j.feed(doc[i])) << i << ": " << doc.substr(0, i + 1);
  }
  EXPECT_TRUE(j.done());
  EXPECT_FALSE(j.accepts(" "));
  EXPECT_FALSE(j.accepts("{"));
}

TEST(JsonRecognizer, BoundsNestingAndWhitespaceRuns) {
  std::string deep = "{\"a\":" + std::string(JsonRecognizer::kMaxDepth - 1, '[') + std::string(JsonRecognizer::kMaxDepth - 1, ']') + "}";
  EXPECT_TRUE(complete(deep));
  deep = "{\"a\":" + std::string(JsonRecognizer::kMaxDepth, '[');
  EXPECT_FALSE(JsonRecognizer().accepts(deep));
  const JsonRecognizer rfc(JsonWhitespace::rfc);
  EXPECT_TRUE(complete("{" + std::string(JsonRecognizer::kMaxWhitespace, '\n') + "}"));
  EXPECT_FALSE(rfc.accepts("{" + std::string(JsonRecognizer::kMaxWhitespace + 1, ' ')));
  // Whitespace between tokens counts afresh each time.
  EXPECT_TRUE(complete("{" + std::string(60, ' ') + "\"a\"" + std::string(60, ' ') + ":" + std::string(60, ' ') + "1}"));
}

// JSON mode's default: llama.cpp's whitespace (none, a space, or a newline and an indent of up to 20).
TEST(JsonRecognizer, TightWhitespaceIsASpaceOrANewlineAndAnIndent) {
  const auto tight = [](std::string_view s) { return complete(s, JsonWhitespace::tight); };
  EXPECT_TRUE(tight(R"({"a": 1, "b": [true, {}]})"));
  EXPECT_TRUE(tight("{\n  \"a\": [\n\t\t1\n  ]\n}"));
  EXPECT_TRUE(tight("\n{\n" + std::string(JsonRecognizer::kMaxIndent, ' ') + "\"a\": 1}"));
  EXPECT_TRUE(tight("{\"s\": \"  \\n\n\"}") == false);  // a raw newline inside a string is a control character
  EXPECT_TRUE(tight("{\"s\": \"  many   spaces  \"}"));  // strings are not whitespace
  for (const std::string bad : {std::string("{  \"a\": 1}"), std::string("{\n\n\"a\": 1}"), std::string(" \n{}"),
                                "{\n" + std::string(JsonRecognizer::kMaxIndent + 1, ' ') + "\"a\": 1}", std::string("{\t\"a\": 1}"),
                                std::string("{\r\n\"a\": 1}"), std::string("\n\n{}")})
    EXPECT_FALSE(tight(bad)) << bad;
}

nlohmann::json random_value(std::mt19937& rng, int depth) {
  std::uniform_int_distribution<int> kind(0, depth > 3 ? 4 : 6), small(0, 4);
  switch (kind(rng)) {
    case 0: return nullptr;
    case 1: return small(rng) % 2 == 0;
    case 2: return std::uniform_int_distribution<int64_t>(-100000, 100000)(rng);
    case 3: return std::ldexp(std::uniform_real_distribution<double>(-1, 1)(rng), small(rng) * 8 - 16);
    case 4: {
      std::string s;
      // ASCII: an edit inside a UTF-8 character makes text the parser refuses and JSON mode takes (strings take any byte of 0x80 up).
      const char* pieces[] = {"a", "b", "\"", "\\", "/", "\n", "\t", "\x01", "e", " ", "{", "}", "[", "]", ":", ","};
      for (int i = small(rng) * 2; i > 0; --i) s += pieces[std::uniform_int_distribution<int>(0, 15)(rng)];
      return s;
    }
    case 5: {
      nlohmann::json a = nlohmann::json::array();
      for (int i = small(rng); i > 0; --i) a.push_back(random_value(rng, depth + 1));
      return a;
    }
    default: {
      nlohmann::json o = nlohmann::json::object();
      for (int i = small(rng); i > 0; --i) o["k" + std::to_string(small(rng))] = random_value(rng, depth + 1);
      return o;
    }
  }
}

TEST(JsonRecognizer, AgreesWithAJsonParserOnRandomEdits) {
  std::mt19937 rng(7);
  const std::string alphabet = "{}[]\":,.-+0123456789eEtrufalsn \n\\u/aAbF\x01";
  int valid = 0, invalid = 0;
  for (int round = 0; round < 3000; ++round) {
    nlohmann::json o = nlohmann::json::object();
    for (int i = std::uniform_int_distribution<int>(0, 4)(rng); i > 0; --i) o["key" + std::to_string(i)] = random_value(rng, 1);
    std::string doc = o.dump(round % 3 == 0 ? 2 : -1);
    ASSERT_TRUE(complete(doc)) << doc;
    // One byte replaced, inserted or removed.
    const size_t at = std::uniform_int_distribution<size_t>(0, doc.size() - 1)(rng);
    const char c = alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
    switch (round % 3) {
      case 0: doc[at] = c; break;
      case 1: doc.insert(doc.begin() + static_cast<std::ptrdiff_t>(at), c); break;
      default: doc.erase(at, 1); break;
    }
    // The parser takes surrounding whitespace and any top-level value; JSON mode neither.
    const size_t first = doc.find_first_not_of(" \t\n\r"), last = doc.find_last_not_of(" \t\n\r");
    bool parser = true;
    try {
      (void)nlohmann::json::parse(doc);
    } catch (const nlohmann::json::out_of_range&) {
      continue;  // a number past a double's range: valid JSON the parser cannot hold
    } catch (const nlohmann::json::parse_error&) {
      parser = false;
    }
    parser = parser && doc[first] == '{' && last == doc.size() - 1;
    EXPECT_EQ(complete(doc), parser) << doc;
    (parser ? valid : invalid) += 1;
  }
  EXPECT_GT(valid, 100);
  EXPECT_GT(invalid, 1000);
}

}  // namespace
}  // namespace umi
