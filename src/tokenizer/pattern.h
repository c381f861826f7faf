// The {"String": "..."} or {"Regex": "..."} patterns that tokenizer.json uses
// in Split pre-tokenizers and Replace normalizers/decoders.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/regex.h"

namespace umi {

class Pattern {
 public:
  static Pattern literal(std::string s);
  static Pattern regex(std::string_view pattern);

  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;
  std::string replace_all(std::string_view text, std::string_view with) const;

 private:
  std::string literal_;
  std::shared_ptr<const Regex> regex_;  // shared: compiled once, immutable
};

Pattern pattern_from_json(const nlohmann::json& j, std::string_view source);

}  // namespace umi
