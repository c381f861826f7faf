#include "tokenizer/normalizer.h"

#include <vector>

#include "core/error.h"
#include "tokenizer/pattern.h"
#include "tokenizer/unicode.h"

namespace umi {

namespace {

using nlohmann::json;

class UnicodeForm final : public Normalizer {
 public:
  explicit UnicodeForm(unicode::NormalForm f) : form_(f) {}
  void apply(std::string& t) const override { t = unicode::normalize(t, form_); }

 private:
  unicode::NormalForm form_;
};

class Lowercase final : public Normalizer {
 public:
  void apply(std::string& t) const override { t = unicode::lowercase(t); }
};

class Replace final : public Normalizer {
 public:
  Replace(Pattern p, std::string content) : pattern_(std::move(p)), content_(std::move(content)) {}
  void apply(std::string& t) const override { t = pattern_.replace_all(t, content_); }

 private:
  Pattern pattern_;
  std::string content_;
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string p) : prefix_(std::move(p)) {}
  void apply(std::string& t) const override {
    if (!t.empty()) t.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void apply(std::string& t) const override {
    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; };
    size_t b = 0, e = t.size();
    if (left_)
      while (b < e && is_space(t[b])) ++b;
    if (right_)
      while (e > b && is_space(t[e - 1])) --e;
    t = t.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void apply(std::string& t) const override {
    for (const auto& p : parts_) p->apply(t);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> normalizer_from_json(const json& j, std::string_view source) {
  if (j.is_null()) return nullptr;
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
    throw InputError(std::string(source) + ": normalizer: missing \"type\"");
  const std::string type = j["type"].get<std::string>();
  if (type == "NFC") return std::make_unique<UnicodeForm>(unicode::NormalForm::nfc);
  if (type == "NFD") return std::make_unique<UnicodeForm>(unicode::NormalForm::nfd);
  if (type == "NFKC") return std::make_unique<UnicodeForm>(unicode::NormalForm::nfkc);
  if (type == "NFKD") return std::make_unique<UnicodeForm>(unicode::NormalForm::nfkd);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Replace")
    return std::make_unique<Replace>(pattern_from_json(j.value("pattern", json()), source),
                                     j.value("content", std::string()));
  if (type == "Prepend") return std::make_unique<Prepend>(j.value("prepend", std::string()));
  if (type == "Strip") return std::make_unique<Strip>(j.value("strip_left", true), j.value("strip_right", true));
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const json& n : j.value("normalizers", json::array()))
      if (auto p = normalizer_from_json(n, source)) parts.push_back(std::move(p));
    return std::make_unique<Sequence>(std::move(parts));
  }
  throw InputError(std::string(source) + ": normalizer type \"" + type +
                   "\" is not supported (NFC, NFD, NFKC, NFKD, Lowercase, Replace, Prepend, Strip, Sequence)");
}

}  // namespace umi
