// Normalizers of Hugging Face tokenizer.json: text -> text before splitting
// (NFC/NFD/NFKC/NFKD, Lowercase, Replace, Prepend, Strip, Sequence).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace umi {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(std::string& text) const = 0;
};

// nullptr for a JSON null. Throws InputError naming an unsupported type.
std::unique_ptr<Normalizer> normalizer_from_json(const nlohmann::json& j, std::string_view source);

}  // namespace umi
