// The mask of JSON mode and of structured outputs: the logits of tokens that
// cannot continue the output are set to -infinity before the sampler draws.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/json_recognizer.h"
#include "engine/schema_recognizer.h"

namespace umi {

// A vocabulary as the mask reads it. bytes[id]: what token id adds to the
// text (token_bytes.h: empty for control tokens, EOS and end of turn among
// them). Walking every token every step cost Llama 3's 128K vocabulary
// 1.8-2.3 ms a step outside strings (development VM), and more inside; so:
// - inside a string, plain tokens (most of them) pass unwalked: a string
//   always takes them;
// - elsewhere the tokens are walked in byte order, as a trie would be: each
//   shared prefix once, and a prefix the recognizer refuses skips every
//   token that starts with it (a binary search), so a step costs about the
//   accepted tokens' bytes and one check per refused prefix.
struct JsonVocabulary {
  explicit JsonVocabulary(std::vector<std::string> token_bytes);
  std::vector<std::string> bytes;
  std::vector<uint8_t> plain;    // no '"', '\\' or control byte
  std::vector<uint32_t> plain_bits;  // the same, a bit each: a string's mask starts from a copy
  std::vector<int32_t> not_plain;    // the non-empty tokens that are not plain
  std::vector<int32_t> order;    // the non-empty tokens' ids, their bytes sorted
  std::vector<uint32_t> shared;  // [i]: bytes order[i] shares with order[i - 1] at its start
  size_t longest = 0;
};

// Sets the logit of every token that cannot continue the object to -infinity:
// ids past the vocabulary (a model's padded one) and empty tokens too.
// Returns how many tokens are left.
int64_t mask_to_json(const JsonRecognizer& json, const JsonVocabulary& vocabulary, std::span<float> logits);

// The same, to continue a value of a JSON schema.
int64_t mask_to_json(const SchemaRecognizer& json, const JsonVocabulary& vocabulary, std::span<float> logits);

// The same tokens as a bitset, for a backend to mask with where the logits
// are (Backend::mask_logits): bit id (of word id / 32) set for every id < n
// that may come next. Returns how many do.
int64_t allowed_json_tokens(const JsonRecognizer& json, const JsonVocabulary& vocabulary, size_t n, std::vector<uint32_t>& bits);
int64_t allowed_json_tokens(const SchemaRecognizer& json, const JsonVocabulary& vocabulary, size_t n, std::vector<uint32_t>& bits);

}  // namespace umi
