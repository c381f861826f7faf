// Token bytes in context: a text's tokens, each taken from the table, spell
// its decode (SentencePiece-style vocabularies: with their dummy leading
// space); control tokens add nothing.
#include "tokenizer/token_bytes.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

Tokenizer load(const std::string& name) {
  const std::string shared = std::string(UMI_SOURCE_DIR) + "/../shared/data/tokenizers/";
  const std::string fixtures = std::string(UMI_SOURCE_DIR) + "/tests/fixtures/tokenizer/";
  return Tokenizer::from_folder(name == "llama3" || name == "qwen3" ? shared + name : fixtures + name);
}

class TokenBytes : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenBytes, ATextsTokensSpellItAgain) {
  const Tokenizer tok = load(GetParam());
  const std::vector<std::string> bytes = token_bytes(tok);
  ASSERT_EQ(bytes.size(), static_cast<size_t>(tok.vocab_size()));
  for (const std::string text : {R"({"name": "Ada Lovelace", "born": 1815, "tags": ["math", "poetry"], "x": -0.5e3})",
                                 "{\n  \"a\": {\"b\": [true, false, null]}\n}", "The quick brown fox, 3 times."}) {
    const std::vector<int32_t> ids = tok.encode(text, false);
    std::string spelled;
    for (int32_t id : ids) spelled += bytes[static_cast<size_t>(id)];
    const std::string decoded = tok.decode(ids);  // the text itself where the vocabulary holds it all
    EXPECT_TRUE(spelled == decoded || spelled == " " + decoded) << GetParam() << ": " << spelled << " | " << decoded;
    if (GetParam() != "spm-metaspace") EXPECT_EQ(decoded, text);  // that fixture's 1,056 tokens have no space
  }
  for (int32_t id = 0; id < tok.vocab_size(); ++id)
    if (tok.is_special(id)) EXPECT_TRUE(bytes[static_cast<size_t>(id)].empty()) << id;
  if (tok.eos_id()) EXPECT_TRUE(bytes[static_cast<size_t>(*tok.eos_id())].empty());
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, TokenBytes, ::testing::Values("llama3", "qwen3", "spm-legacy", "spm-metaspace"),
                         [](const auto& info) { return std::string(info.param == "spm-legacy" ? "spm_legacy" : info.param == "spm-metaspace" ? "spm_metaspace" : info.param); });

}  // namespace
}  // namespace umi
