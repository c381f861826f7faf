// A text tokenizer: Hugging Face tokenizer.json (BPE models, byte-level or
// SentencePiece-style) or a GGUF vocabulary ("gpt2" or "llama"), with the
// same pipeline for both: added tokens, normalizer, pre-tokenizer, BPE,
// post-processor; and decoder for the way back.
//
// Immutable after construction and safe to share between threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"

namespace umi {

struct GgufFile;

class Tokenizer {
 public:
  // tokenizer.json text; `config_json` is tokenizer_config.json (may be empty)
  // for bos/eos names and split_special_tokens. Throws InputError naming what
  // is malformed or unsupported.
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view config_json, std::string_view source);
  // A folder holding tokenizer.json (and optionally tokenizer_config.json).
  static Tokenizer from_folder(const std::string& dir);
  static Tokenizer from_gguf(const GgufFile& gguf);

  // Text to ids. Invalid UTF-8 keeps its bytes through byte-level
  // tokenizers and becomes U+FFFD elsewhere. Never throws on any input.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Ids to text; throws InputError for an id outside the vocabulary.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  int32_t vocab_size() const { return vocab_size_; }
  std::optional<int32_t> token_id(std::string_view token) const;
  std::string token_text(int32_t id) const;  // the raw token string
  bool is_special(int32_t id) const;
  std::optional<int32_t> bos_id() const { return bos_; }
  std::optional<int32_t> eos_id() const { return eos_; }
  bool split_special_tokens() const { return split_special_; }
  void set_split_special_tokens(bool on) { split_special_ = on; }

 private:
  Tokenizer() = default;
  void encode_text(std::string_view piece, bool at_start, std::vector<int32_t>& out) const;

  std::unique_ptr<BpeModel> model_;
  AddedVocabulary added_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Decoder> decoder_;
  std::vector<int32_t> prefix_ids_, suffix_ids_;  // post-processor for single sequences
  bool byte_level_ = false;
  bool split_special_ = false;
  int32_t vocab_size_ = 0;
  std::optional<int32_t> bos_, eos_;
};

}  // namespace umi

namespace umi {
// The tokenizer of MODEL: a folder with tokenizer.json (weights not needed),
// or a GGUF file with a vocabulary.
Tokenizer load_tokenizer(const std::string& model_path);
}  // namespace umi
