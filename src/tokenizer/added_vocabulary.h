// Added tokens of a tokenizer (special tokens such as <|im_start|>, and user
// additions): found in the text before pre-tokenization, leftmost-longest,
// honouring lstrip/rstrip/single_word, and encoded as their ids directly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace umi {

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;  // matched after normalization rather than on the raw text
};

// A run of text between added tokens, or an added token.
struct TextPiece {
  std::string_view text;  // empty for a token
  int32_t token = -1;     // >= 0: an added token's id
  size_t offset = 0;      // where the piece starts in the text it came from
};

class AddedVocabulary {
 public:
  void add(AddedToken token);
  // Splits text on the tokens whose `normalized` flag equals `normalized`;
  // with split_special, special tokens are left in the text.
  std::vector<TextPiece> split(std::string_view text, bool normalized, bool split_special) const;

  const AddedToken* find(int32_t id) const;
  const AddedToken* find(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool empty() const { return tokens_.empty(); }

 private:
  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t> by_content_;
  std::vector<std::vector<size_t>> by_first_byte_ = std::vector<std::vector<size_t>>(256);  // longest first
};

}  // namespace umi
