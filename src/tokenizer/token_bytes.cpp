#include "tokenizer/token_bytes.h"

namespace umi {

std::vector<std::string> token_bytes(const Tokenizer& tok) {
  // The anchor: the token of "a" itself (a SentencePiece-style vocabulary may
  // encode "a" as "▁" and "a": the last of them).
  const std::vector<int32_t> a = tok.encode("a", false);
  const bool anchored = !a.empty();
  std::vector<int32_t> pair = {anchored ? a.back() : 0, 0};
  const std::string anchor = anchored ? tok.decode(std::span<const int32_t>(pair).first(1)) : std::string();
  std::vector<std::string> out(static_cast<size_t>(tok.vocab_size()));
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (tok.is_special(id)) continue;
    const int32_t one[1] = {id};
    if (anchored) {
      pair[1] = id;
      std::string both = tok.decode(pair);
      if (both.starts_with(anchor)) {
        out[static_cast<size_t>(id)] = both.substr(anchor.size());
        continue;
      }
    }
    out[static_cast<size_t>(id)] = tok.decode(one);  // the decoder merged the two: take the token alone
  }
  return out;
}

}  // namespace umi
