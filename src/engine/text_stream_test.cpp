#include "engine/text_stream.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace umi {
namespace {

Tokenizer bundled() { return load_tokenizer(std::string(UMI_SOURCE_DIR) + "/models/tiny-shakespeare"); }

TEST(TextStream, PiecesAddUpToTheWholeDecodeAndNeverSplitACharacter) {
  const Tokenizer tok = bundled();
  // A byte-level vocabulary trained on English splits these into byte tokens.
  const std::string text = "ROMEO: caf\xC3\xA9 \xE2\x9C\x93 na\xC3\xAFve \xF0\x9F\x98\x80 end";
  const std::vector<int32_t> ids = tok.encode(text, false);
  TextStream s(tok, {});
  std::string joined;
  for (int32_t id : ids) {
    std::string piece = s.push(id);
    // Every piece is whole UTF-8: no replacement characters, no cut sequences.
    EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos);
    joined += piece;
  }
  joined += s.finish();
  EXPECT_EQ(joined, tok.decode(ids, true));
  EXPECT_EQ(joined, text);
}

TEST(TextStream, StopStringsAcrossTokensEndTheStreamUnemitted) {
  const Tokenizer tok = bundled();
  const std::vector<int32_t> ids = tok.encode("First Citizen:\nSpeak, speak.\nAll:", false);
  TextStream s(tok, {"\nAll", "never"});
  std::string joined;
  for (int32_t id : ids) {
    joined += s.push(id);
    if (s.stopped()) break;
  }
  joined += s.finish();
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(joined, "First Citizen:\nSpeak, speak.");
  EXPECT_EQ(s.text(), joined);
  EXPECT_THROW(TextStream(tok, {""}), InputError);
}

}  // namespace
}  // namespace umi
