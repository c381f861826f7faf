#include "tokenizer/decoder.h"

#include "core/error.h"
#include "tokenizer/pattern.h"
#include "tokenizer/unicode.h"

namespace umi {

namespace {

using nlohmann::json;
const std::string kReplacementChar = "\xEF\xBF\xBD";

class ByteLevel final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      std::string mapped;
      bool all = true;
      for (size_t i = 0; i < t.size() && all;) {
        size_t n;
        int b = unicode::unicode_to_byte(unicode::decode_at(t, i, &n));
        if (b < 0) all = false;
        else mapped += static_cast<char>(b);
        i += n;
      }
      bytes += all ? mapped : t;
    }
    tokens.assign(1, unicode::to_valid_utf8(bytes));
  }
};

class Replace final : public Decoder {
 public:
  Replace(Pattern p, std::string content) : pattern_(std::move(p)), content_(std::move(content)) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) t = pattern_.replace_all(t, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

int byte_token_value(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
  int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

class ByteFallback final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (unicode::is_valid_utf8(pending)) out.push_back(pending);
      else
        for (size_t k = 0; k < pending.size(); ++k) out.push_back(kReplacementChar);
      pending.clear();
    };
    for (std::string& t : tokens) {
      int b = byte_token_value(t);
      if (b >= 0) {
        pending += static_cast<char>(b);
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens.swap(out);
  }
};

class Fuse final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

class Strip final : public Decoder {
 public:
  Strip(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  void apply(std::vector<std::string>& tokens) const override {
    if (content_.empty()) return;
    for (std::string& t : tokens) {
      size_t b = 0, e = t.size();
      for (size_t k = 0; k < start_ && t.compare(b, content_.size(), content_) == 0 && b + content_.size() <= e; ++k)
        b += content_.size();
      for (size_t k = 0; k < stop_ && e >= b + content_.size() && t.compare(e - content_.size(), content_.size(), content_) == 0; ++k)
        e -= content_.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class Metaspace final : public Decoder {
 public:
  Metaspace(std::string replacement, bool strip_first) : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  // As tokenizers does it: in the first token every marker is dropped (not
  // only a leading one) when a prefix was prepended; elsewhere each is a space.
  void apply(std::vector<std::string>& tokens) const override {
    Pattern p = Pattern::literal(replacement_);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = p.replace_all(tokens[i], i == 0 && strip_first_ ? "" : " ");
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class Sequence final : public Decoder {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->apply(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

std::unique_ptr<Decoder> byte_level_decoder() { return std::make_unique<ByteLevel>(); }

std::unique_ptr<Decoder> sentencepiece_decoder() {
  std::vector<std::unique_ptr<Decoder>> parts;
  parts.push_back(std::make_unique<Replace>(Pattern::literal("\xE2\x96\x81"), " "));
  parts.push_back(std::make_unique<ByteFallback>());
  parts.push_back(std::make_unique<Fuse>());
  parts.push_back(std::make_unique<Strip>(" ", 1, 0));
  return std::make_unique<Sequence>(std::move(parts));
}

std::unique_ptr<Decoder> decoder_from_json(const json& j, std::string_view source) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw InputError(std::string(source) + ": decoder: missing \"type\"");
  const std::string type = j["type"].get<std::string>();
  if (type == "ByteLevel") return std::make_unique<ByteLevel>();
  if (type == "Replace")
    return std::make_unique<Replace>(pattern_from_json(j.value("pattern", json()), source), j.value("content", std::string()));
  if (type == "ByteFallback") return std::make_unique<ByteFallback>();
  if (type == "Fuse") return std::make_unique<Fuse>();
  if (type == "Strip")
    return std::make_unique<Strip>(j.value("content", std::string(" ")), j.value("start", size_t{0}), j.value("stop", size_t{0}));
  if (type == "Metaspace") {
    std::string scheme = j.value("prepend_scheme", std::string());
    if (scheme.empty()) scheme = j.value("add_prefix_space", true) ? "always" : "never";
    return std::make_unique<Metaspace>(j.value("replacement", std::string("\xE2\x96\x81")), scheme != "never");
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> parts;
    for (const json& d : j.value("decoders", json::array()))
      if (auto p = decoder_from_json(d, source)) parts.push_back(std::move(p));
    return std::make_unique<Sequence>(std::move(parts));
  }
  throw InputError(std::string(source) + ": decoder type \"" + type +
                   "\" is not supported (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence)");
}

}  // namespace umi
