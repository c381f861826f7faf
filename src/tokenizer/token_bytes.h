// What each token of a vocabulary adds to decoded text, for constraints that
// read the text as it is generated (JSON mode, json_recognizer.h).
//
// A token's bytes are taken in context: the decode of an ordinary anchor
// token followed by it, less the anchor's own decode. Alone, many tokens
// decode differently: SentencePiece-style decoders strip the space a leading
// "▁" stands for at the start of the text, so "▁{" alone would read as "{".
// Byte-fallback tokens of half a UTF-8 character decode to U+FFFD; they only
// ever stand inside strings, where a constraint takes any byte of 0x80 up.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace umi {

// token_bytes(tok)[id] for every id of tok's vocabulary; empty for special
// (control) tokens: BOS, EOS, end of turn.
std::vector<std::string> token_bytes(const Tokenizer& tok);

}  // namespace umi
