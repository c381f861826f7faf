// Pre-tokenizers of Hugging Face tokenizer.json: split normalized text into
// the words the model encodes one at a time (Split, ByteLevel, Metaspace,
// Digits, Whitespace, WhitespaceSplit, Sequence).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace umi {

struct PreToken {
  std::string text;
  // True for the piece that begins at offset 0 of the user's text (Metaspace's
  // prepend_scheme "first" adds its marker there only).
  bool at_start = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void apply(std::vector<PreToken>& pieces) const = 0;
  // True when text passes through ByteLevel: raw bytes are then kept as they
  // are, and invalid UTF-8 is not replaced.
  virtual bool byte_level() const { return false; }
};

std::unique_ptr<PreTokenizer> pre_tokenizer_from_json(const nlohmann::json& j, std::string_view source);

// GPT-2's ByteLevel pre-tokenizer with its own split regex (GGUF "gpt2"
// vocabularies), or with the given split regex.
std::unique_ptr<PreTokenizer> byte_level_pre_tokenizer(std::string_view split_regex);

}  // namespace umi
