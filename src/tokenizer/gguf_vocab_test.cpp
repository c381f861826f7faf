// GGUF vocabularies: the real Llama-3 and Qwen3 vocabularies written into GGUF
// metadata the way llama.cpp's converter does, checked against the same
// Hugging Face fixtures as tokenizer.json; and the SentencePiece ("llama")
// algorithm on a vocabulary small enough to reason about by hand.
#include <gtest/gtest.h>

#include "support/fixtures.h"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "format/gguf.h"
#include "support/file_builders.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace umi {
namespace {

using nlohmann::json;

using test::read_text;

// tokenizer.json -> GGUF tokenizer metadata (tokens, token_type, merges, pre).
test::Bytes gguf_from_tokenizer_json(const std::string& path, const std::string& pre) {
  json j = json::parse(read_text(path));
  size_t n = 0;
  for (auto& [tok, id] : j["model"]["vocab"].items()) n = std::max(n, id.get<size_t>() + 1);
  for (auto& a : j["added_tokens"]) n = std::max(n, a["id"].get<size_t>() + 1);
  std::vector<std::string> tokens(n);
  std::vector<int32_t> types(n, 1);
  for (auto& [tok, id] : j["model"]["vocab"].items()) tokens[id.get<size_t>()] = tok;
  for (auto& a : j["added_tokens"]) {
    tokens[a["id"].get<size_t>()] = a["content"].get<std::string>();
    types[a["id"].get<size_t>()] = a["special"].get<bool>() ? 3 : 4;
  }
  std::vector<std::string> merges;
  for (auto& m : j["model"]["merges"])
    merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
  test::Bytes type_bytes(4 + 8 + 4 * n);
  uint32_t elem = 5;  // i32
  uint64_t count = n;
  std::memcpy(type_bytes.data(), &elem, 4);
  std::memcpy(type_bytes.data() + 4, &count, 8);
  std::memcpy(type_bytes.data() + 12, types.data(), 4 * n);
  test::GgufBuilder g;
  g.kv_string("tokenizer.ggml.model", "gpt2")
      .kv_string("tokenizer.ggml.pre", pre)
      .kv_string_array("tokenizer.ggml.tokens", tokens)
      .kv_raw("tokenizer.ggml.token_type", 9, type_bytes)
      .kv_string_array("tokenizer.ggml.merges", merges)
      .kv_bool("tokenizer.ggml.add_bos_token", 0);
  return g.build();
}

class GgufExactness : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(GgufExactness, MatchesHuggingFace) {
  auto [name, pre] = GetParam();
  test::Bytes bytes = gguf_from_tokenizer_json(std::string(UMI_SOURCE_DIR) + "/../shared/data/tokenizers/" + name + "/tokenizer.json", pre);
  GgufFile g = parse_gguf(bytes, name + ".gguf");
  Tokenizer tok = Tokenizer::from_gguf(g);
  json fx = json::parse(read_text(std::string(UMI_SOURCE_DIR) + "/tests/fixtures/tokenizer/" + name + ".ids.json"));
  int checked = 0, bad = 0;
  for (const json& c : fx["cases"]) {
    std::string text = c["text"].get<std::string>();
    // GGUF vocabularies carry no normalizer (llama.cpp applies none): Qwen's
    // NFC step only matters for text that is not already NFC.
    if (unicode::normalize(text, unicode::NormalForm::nfc) != text) continue;
    ++checked;
    if (tok.encode(text, false) != c["ids"].get<std::vector<int32_t>>() && bad++ < 5) ADD_FAILURE() << json(text).dump();
    if (tok.decode(c["ids"].get<std::vector<int32_t>>()) != c["decoded"].get<std::string>() && bad++ < 5)
      ADD_FAILURE() << "decode " << json(text).dump();
  }
  EXPECT_GE(checked, 270);
  EXPECT_EQ(bad, 0);
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, GgufExactness,
                         ::testing::Values(std::make_pair(std::string("llama3"), std::string("llama-bpe")),
                                           std::make_pair(std::string("qwen3"), std::string("qwen2"))),
                         [](const auto& info) { return info.param.first; });

// A SentencePiece vocabulary: merges happen by the merged token's score.
test::Bytes spm_gguf(bool add_bos) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    tokens.push_back(name);
    scores.push_back(0);
    types.push_back(6);
  }
  const std::pair<const char*, float> pieces[] = {
      {"\xE2\x96\x81", -1}, {"h", -2}, {"e", -2}, {"l", -2}, {"o", -2}, {"w", -2}, {"r", -2}, {"d", -2},
      {"\xE2\x96\x81h", -3}, {"ll", -4}, {"\xE2\x96\x81he", -5}, {"llo", -6}, {"\xE2\x96\x81hello", -7},
      {"\xE2\x96\x81w", -8}, {"or", -9}, {"ld", -10}, {"\xE2\x96\x81wor", -11}, {"\xE2\x96\x81world", -12}};
  for (auto [p, s] : pieces) {
    tokens.push_back(p);
    scores.push_back(s);
    types.push_back(1);
  }
  test::Bytes type_bytes(12 + 4 * types.size());
  uint32_t elem = 5;
  uint64_t count = types.size();
  std::memcpy(type_bytes.data(), &elem, 4);
  std::memcpy(type_bytes.data() + 4, &count, 8);
  std::memcpy(type_bytes.data() + 12, types.data(), 4 * types.size());
  test::GgufBuilder g;
  g.kv_string("tokenizer.ggml.model", "llama")
      .kv_string_array("tokenizer.ggml.tokens", tokens)
      .kv_f32_array("tokenizer.ggml.scores", scores)
      .kv_raw("tokenizer.ggml.token_type", 9, type_bytes)
      .kv_u32("tokenizer.ggml.bos_token_id", 1)
      .kv_u32("tokenizer.ggml.eos_token_id", 2)
      .kv_bool("tokenizer.ggml.add_bos_token", add_bos);
  return g.build();
}

TEST(GgufSentencePiece, MergesByScoreWithByteFallback) {
  test::Bytes bytes = spm_gguf(true);
  Tokenizer tok = Tokenizer::from_gguf(parse_gguf(bytes, "spm.gguf"));
  auto id = [&](const char* t) { return *tok.token_id(t); };
  EXPECT_EQ(tok.encode("hello world", true), (std::vector<int32_t>{1, id("\xE2\x96\x81hello"), id("\xE2\x96\x81world")}));
  // "é" is not in the vocabulary: its two UTF-8 bytes come out as byte tokens.
  EXPECT_EQ(tok.encode("hé", false), (std::vector<int32_t>{id("\xE2\x96\x81h"), id("<0xC3>"), id("<0xA9>")}));
  EXPECT_EQ(tok.decode(tok.encode("hello world hé", true), true), "hello world hé");
  EXPECT_EQ(tok.encode("</s>", false), (std::vector<int32_t>{2}));  // control tokens are matched
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
}

TEST(GgufSentencePiece, RefusesWhatItCannotRead) {
  test::GgufBuilder g;
  g.kv_string("tokenizer.ggml.model", "bert").kv_string_array("tokenizer.ggml.tokens", {"a"});
  test::Bytes b = g.build();
  EXPECT_THROW(Tokenizer::from_gguf(parse_gguf(b, "x.gguf")), InputError);
  test::GgufBuilder h;
  h.kv_string("tokenizer.ggml.model", "gpt2").kv_string("tokenizer.ggml.pre", "mystery").kv_string_array("tokenizer.ggml.tokens", {"a"})
      .kv_string_array("tokenizer.ggml.merges", {});
  test::Bytes c = h.build();
  try {
    Tokenizer::from_gguf(parse_gguf(c, "y.gguf"));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("mystery"), std::string::npos);
  }
  test::Bytes none = test::GgufBuilder().kv_u32("x", 1).build();
  EXPECT_THROW(Tokenizer::from_gguf(parse_gguf(none, "z.gguf")), FormatError);
}

}  // namespace
}  // namespace umi
