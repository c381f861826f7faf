// Exactness against Hugging Face `tokenizers` on >= 300 strings per
// tokenizer (fixtures made by tools/make_tokenizer_fixtures.py).
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include "support/fixtures.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace umi {
namespace {

using nlohmann::json;

using test::read_text;

std::string fixtures() { return std::string(UMI_SOURCE_DIR) + "/tests/fixtures/tokenizer/"; }
std::string shared_tokenizers() { return std::string(UMI_SOURCE_DIR) + "/../shared/data/tokenizers/"; }

Tokenizer load(const std::string& name) {
  if (name == "llama3" || name == "qwen3") return Tokenizer::from_folder(shared_tokenizers() + name);
  return Tokenizer::from_folder(fixtures() + name);
}

std::string show(const std::vector<int32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size() && i < 40; ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + (v.size() > 40 ? ",...]" : "]");
}

class Exactness : public ::testing::TestWithParam<std::string> {};

TEST_P(Exactness, MatchesHuggingFaceOnEveryFixtureString) {
  Tokenizer tok = load(GetParam());
  json fx = json::parse(read_text(fixtures() + GetParam() + ".ids.json"));
  const json& cases = fx["cases"];
  ASSERT_GE(cases.size(), 300u);
  int bad = 0;
  for (const json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    auto want = c["ids"].get<std::vector<int32_t>>();
    auto got = tok.encode(text, /*add_special_tokens=*/false);
    if (got != want && bad++ < 8)
      ADD_FAILURE() << "encode " << json(text).dump() << "\n  want " << show(want) << "\n  got  " << show(got);
    auto want_special = c.contains("ids_with_special") ? c["ids_with_special"].get<std::vector<int32_t>>() : want;
    if (tok.encode(text, true) != want_special && bad++ < 8) ADD_FAILURE() << "encode+special " << json(text).dump();
    std::string decoded = tok.decode(want);
    if (decoded != c["decoded"].get<std::string>() && bad++ < 8)
      ADD_FAILURE() << "decode " << json(text).dump() << "\n  want " << c["decoded"].dump() << "\n  got  " << json(decoded).dump();
  }
  EXPECT_EQ(bad, 0) << "mismatches in " << cases.size() << " strings";
}

TEST_P(Exactness, SplitSpecialTokensEncodesThemAsText) {
  Tokenizer tok = load(GetParam());
  json fx = json::parse(read_text(fixtures() + GetParam() + ".ids.json"));
  tok.set_split_special_tokens(true);
  int checked = 0;
  for (const json& c : fx["cases"]) {
    if (!c.contains("ids_split_special")) continue;
    ++checked;
    EXPECT_EQ(tok.encode(c["text"].get<std::string>(), false), c["ids_split_special"].get<std::vector<int32_t>>())
        << c["text"].dump();
  }
  EXPECT_GT(checked, 0);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, Exactness, ::testing::Values("llama3", "qwen3", "spm-legacy", "spm-metaspace"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

TEST(Tokenizer, RoundTripsByteLevelTextExactly) {
  Tokenizer tok = load("llama3");
  for (std::string s : {std::string("héllo wörld 👨‍👩‍👧"), std::string("\r\n\t  x"), std::string(5000, 'z')}) {
    auto ids = tok.encode(s, false);
    EXPECT_EQ(tok.decode(ids), s);
  }
}

TEST(Tokenizer, InvalidUtf8KeepsItsBytesThroughByteLevel) {
  Tokenizer tok = load("llama3");
  std::string bad = "ok \xff\xfe bytes \xc3";
  auto ids = tok.encode(bad, false);
  EXPECT_FALSE(ids.empty());
  // Decoding is lossy in the way Hugging Face is: invalid bytes come back as U+FFFD.
  std::string back = tok.decode(ids);
  EXPECT_EQ(back, "ok \xEF\xBF\xBD\xEF\xBF\xBD bytes \xEF\xBF\xBD");
}

TEST(Tokenizer, MergesAtTheStartOfAWordStayInBounds) {  // found by fuzzing under UBSan
  Tokenizer tok = load("spm-legacy");
  auto ids = tok.encode("\xff\xfe invalid \xc3", true);
  EXPECT_FALSE(ids.empty());
}

TEST(Tokenizer, InvalidUtf8BecomesReplacementCharactersElsewhere) {
  Tokenizer tok = load("spm-legacy");
  auto a = tok.encode("a\xff" "b", false);
  auto b = tok.encode("a\xEF\xBF\xBD" "b", false);
  EXPECT_EQ(a, b);
}

TEST(Tokenizer, KnowsSpecialTokensAndRefusesOutOfRangeIds) {
  Tokenizer tok = load("qwen3");
  EXPECT_EQ(tok.token_id("<|im_start|>"), 151644);
  EXPECT_TRUE(tok.is_special(151644));
  EXPECT_EQ(tok.eos_id(), tok.token_id("<|im_end|>"));
  EXPECT_GE(tok.vocab_size(), 151669);
  std::vector<int32_t> bad{1, 2, tok.vocab_size()};
  EXPECT_THROW(tok.decode(bad), InputError);
  std::vector<int32_t> neg{-1};
  EXPECT_THROW(tok.decode(neg), InputError);
  std::vector<int32_t> with_special{151644, 872};
  EXPECT_EQ(tok.decode(with_special, /*skip_special_tokens=*/true), tok.decode(std::vector<int32_t>{872}));
}

TEST(Tokenizer, UnsupportedPartsAreNamed) {
  auto expect_error = [](const std::string& json_text, const std::string& part) {
    try {
      Tokenizer::from_json(json_text, "", "t.json");
      ADD_FAILURE() << "accepted: " << json_text;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error(R"({"model":{"type":"WordPiece","vocab":{}}})", "WordPiece");
  expect_error(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"normalizer":{"type":"Precompiled"}})", "Precompiled");
  expect_error(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"BertPreTokenizer"}})", "BertPreTokenizer");
  expect_error(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"decoder":{"type":"CTC"}})", "CTC");
  expect_error(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]}})", "merge 0");
  expect_error(R"({"model":{"type":"BPE","vocab":{"a":-5}}})", "model.vocab");
  expect_error(R"({"model":{"type":"BPE","vocab":{"a":0}},"pre_tokenizer":{"type":"Split","pattern":{"Regex":"(("},"behavior":"Isolated"}})", "regex");
  expect_error("not json", "invalid JSON");
}

}  // namespace
}  // namespace umi
