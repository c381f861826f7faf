// Generated tokens to streamed text: incremental detokenization (each token
// costs the decode of a few tokens, not of the whole output), UTF-8 held back
// until a character is complete, and stop strings: text that may be the start
// of one is held until the next token shows whether it completes; a completed
// stop string ends the stream and is not emitted.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace umi {

class TextStream {
 public:
  TextStream(const Tokenizer& tok, std::vector<std::string> stop_strings);

  // Adds a generated token; returns the text that may now be emitted.
  std::string push(int32_t token);
  // The end of generation: whatever was held back (not after a stop string).
  std::string finish();
  bool stopped() const { return stopped_; }
  const std::string& text() const { return text_; }  // everything decoded, cut at a stop string

 private:
  const Tokenizer& tok_;
  std::vector<std::string> stops_;
  std::vector<int32_t> tokens_;
  size_t prefix_ = 0, read_ = 0;  // decode window: tokens_[prefix_, read_) is already text
  std::string text_;
  size_t emitted_ = 0;  // bytes of text_ handed out
  bool stopped_ = false;
};

}  // namespace umi
