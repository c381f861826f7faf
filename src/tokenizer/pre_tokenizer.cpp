#include "tokenizer/pre_tokenizer.h"

#include <optional>

#include "core/error.h"
#include "tokenizer/pattern.h"
#include "tokenizer/unicode.h"

namespace umi {

namespace {

using nlohmann::json;

constexpr const char* kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

Behavior behavior_from(const std::string& s, std::string_view source) {
  if (s == "Removed") return Behavior::removed;
  if (s == "Isolated") return Behavior::isolated;
  if (s == "MergedWithPrevious") return Behavior::merged_with_previous;
  if (s == "MergedWithNext") return Behavior::merged_with_next;
  if (s == "Contiguous") return Behavior::contiguous;
  throw InputError(std::string(source) + ": split behavior \"" + s + "\" is not known");
}

// Splits one piece by match positions according to a behavior (the
// semantics of tokenizers' NormalizedString::split).
void split_piece(const PreToken& piece, const std::vector<std::pair<size_t, size_t>>& matches, bool invert,
                 Behavior behavior, std::vector<PreToken>& out) {
  const std::string& t = piece.text;
  struct Seg {
    size_t b, e;
    bool match;
  };
  std::vector<Seg> segs;
  size_t last = 0;
  for (auto [b, e] : matches) {
    if (b > last) segs.push_back({last, b, invert});
    segs.push_back({b, e, !invert});
    last = e;
  }
  if (last < t.size()) segs.push_back({last, t.size(), invert});

  std::vector<std::pair<size_t, size_t>> parts;
  switch (behavior) {
    case Behavior::removed:
      for (const Seg& s : segs)
        if (!s.match) parts.emplace_back(s.b, s.e);
      break;
    case Behavior::isolated:
      for (const Seg& s : segs) parts.emplace_back(s.b, s.e);
      break;
    case Behavior::contiguous:
      for (size_t i = 0; i < segs.size(); ++i) {
        if (i > 0 && segs[i].match && segs[i - 1].match) parts.back().second = segs[i].e;
        else parts.emplace_back(segs[i].b, segs[i].e);
      }
      break;
    case Behavior::merged_with_previous:
      for (const Seg& s : segs) {
        if (s.match && !parts.empty()) parts.back().second = s.e;
        else parts.emplace_back(s.b, s.e);
      }
      break;
    case Behavior::merged_with_next: {
      bool pending = false;
      for (const Seg& s : segs) {
        if (pending) {
          parts.back().second = s.e;
          pending = s.match;
          continue;
        }
        parts.emplace_back(s.b, s.e);
        pending = s.match;
      }
      break;
    }
  }
  for (auto [b, e] : parts)
    if (e > b) out.push_back({t.substr(b, e - b), piece.at_start && b == 0});
}

class Split final : public PreTokenizer {
 public:
  Split(Pattern p, Behavior b, bool invert) : pattern_(std::move(p)), behavior_(b), invert_(invert) {}
  void apply(std::vector<PreToken>& pieces) const override {
    std::vector<PreToken> out;
    out.reserve(pieces.size() * 4);
    for (const PreToken& p : pieces) split_piece(p, pattern_.find_all(p.text), invert_, behavior_, out);
    pieces.swap(out);
  }

 private:
  Pattern pattern_;
  Behavior behavior_;
  bool invert_;
};

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, std::optional<Pattern> split) : add_prefix_space_(add_prefix_space), split_(std::move(split)) {}
  void apply(std::vector<PreToken>& pieces) const override {
    std::vector<PreToken> out;
    out.reserve(pieces.size() * 2);
    for (PreToken& p : pieces) {
      if (add_prefix_space_ && (p.text.empty() || p.text[0] != ' ')) p.text.insert(0, " ");
      if (split_) split_piece(p, split_->find_all(p.text), false, Behavior::isolated, out);
      else out.push_back(std::move(p));
    }
    for (PreToken& p : out) p.text = to_byte_alphabet(p.text);
    pieces.swap(out);
  }
  bool byte_level() const override { return true; }

 private:
  static std::string to_byte_alphabet(std::string_view s) {
    std::string r;
    r.reserve(s.size() * 2);
    for (unsigned char c : s) unicode::append_utf8(r, unicode::byte_to_unicode(c));
    return r;
  }
  bool add_prefix_space_;
  std::optional<Pattern> split_;
};

class Metaspace final : public PreTokenizer {
 public:
  enum class Prepend { always, first, never };
  Metaspace(std::string replacement, Prepend scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void apply(std::vector<PreToken>& pieces) const override {
    std::vector<PreToken> out;
    Pattern marker = Pattern::literal(replacement_);
    for (PreToken& p : pieces) {
      p.text = Pattern::literal(" ").replace_all(p.text, replacement_);
      bool prepend = scheme_ == Prepend::always || (scheme_ == Prepend::first && p.at_start);
      if (prepend && p.text.rfind(replacement_, 0) != 0) p.text.insert(0, replacement_);
      if (split_) split_piece(p, marker.find_all(p.text), false, Behavior::merged_with_next, out);
      else out.push_back(std::move(p));
    }
    pieces.swap(out);
  }

 private:
  std::string replacement_;
  Prepend scheme_;
  bool split_;
};

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void apply(std::vector<PreToken>& pieces) const override {
    for (const auto& p : parts_) p->apply(pieces);
  }
  bool byte_level() const override {
    for (const auto& p : parts_)
      if (p->byte_level()) return true;
    return false;
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<PreTokenizer> byte_level_pre_tokenizer(std::string_view split_regex) {
  return std::make_unique<ByteLevel>(false, Pattern::regex(split_regex.empty() ? kGpt2Regex : split_regex));
}

std::unique_ptr<PreTokenizer> pre_tokenizer_from_json(const json& j, std::string_view source) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw InputError(std::string(source) + ": pre_tokenizer: missing \"type\"");
  const std::string type = j["type"].get<std::string>();
  if (type == "Split")
    return std::make_unique<Split>(pattern_from_json(j.value("pattern", json()), source),
                                   behavior_from(j.value("behavior", std::string("Isolated")), source),
                                   j.value("invert", false));
  if (type == "ByteLevel") {
    std::optional<Pattern> split;
    if (j.value("use_regex", true)) split = Pattern::regex(kGpt2Regex);
    return std::make_unique<ByteLevel>(j.value("add_prefix_space", true), std::move(split));
  }
  if (type == "Metaspace") {
    std::string scheme = j.value("prepend_scheme", std::string());
    if (scheme.empty()) scheme = j.value("add_prefix_space", true) ? "always" : "never";
    Metaspace::Prepend p = scheme == "always" ? Metaspace::Prepend::always
                           : scheme == "first" ? Metaspace::Prepend::first
                                               : Metaspace::Prepend::never;
    return std::make_unique<Metaspace>(j.value("replacement", std::string("\xE2\x96\x81")), p, j.value("split", true));
  }
  if (type == "Digits")
    return std::make_unique<Split>(Pattern::regex(j.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)"),
                                   Behavior::isolated, false);
  if (type == "WhitespaceSplit") return std::make_unique<Split>(Pattern::regex(R"(\s+)"), Behavior::removed, false);
  if (type == "Whitespace") return std::make_unique<Split>(Pattern::regex(R"(\w+|[^\w\s]+)"), Behavior::removed, true);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const json& p : j.value("pretokenizers", json::array()))
      if (auto q = pre_tokenizer_from_json(p, source)) parts.push_back(std::move(q));
    return std::make_unique<Sequence>(std::move(parts));
  }
  throw InputError(std::string(source) + ": pre_tokenizer type \"" + type +
                   "\" is not supported (Split, ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit, Sequence)");
}

}  // namespace umi
