// Decoders of Hugging Face tokenizer.json: token strings -> text (ByteLevel,
// Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace umi {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Transforms the token strings in place (a decoder may fuse them into one).
  virtual void apply(std::vector<std::string>& tokens) const = 0;
};

std::unique_ptr<Decoder> decoder_from_json(const nlohmann::json& j, std::string_view source);
std::unique_ptr<Decoder> byte_level_decoder();
// SentencePiece vocabularies (GGUF "llama"): ▁ -> space, <0xXX> -> bytes,
// one leading space dropped.
std::unique_ptr<Decoder> sentencepiece_decoder();

}  // namespace umi
