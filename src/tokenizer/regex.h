// A compiled PCRE2 pattern (UTF, Unicode properties, JIT) for the split
// patterns of tokenizers (`\p{L}`, `(?i:...)`, `(?!\S)`). Matching works on
// invalid UTF-8 too, so byte-level tokenizers keep every byte.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace umi {

class Regex {
 public:
  // Throws InputError naming the pattern and PCRE2's reason.
  explicit Regex(std::string_view pattern);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // Non-overlapping matches, left to right, as [begin, end) byte offsets.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace umi
