#include "tokenizer/pattern.h"

#include "core/error.h"

namespace umi {

Pattern Pattern::literal(std::string s) {
  Pattern p;
  p.literal_ = std::move(s);
  return p;
}

Pattern Pattern::regex(std::string_view pattern) {
  Pattern p;
  p.regex_ = std::make_shared<const Regex>(pattern);
  return p;
}

std::vector<std::pair<size_t, size_t>> Pattern::find_all(std::string_view text) const {
  if (regex_) return regex_->find_all(text);
  std::vector<std::pair<size_t, size_t>> out;
  if (literal_.empty()) return out;
  for (size_t at = text.find(literal_); at != std::string_view::npos; at = text.find(literal_, at + literal_.size()))
    out.emplace_back(at, at + literal_.size());
  return out;
}

std::string Pattern::replace_all(std::string_view text, std::string_view with) const {
  std::string out;
  size_t last = 0;
  for (auto [b, e] : find_all(text)) {
    out.append(text.substr(last, b - last));
    out.append(with);
    last = e;
  }
  out.append(text.substr(last));
  return out;
}

Pattern pattern_from_json(const nlohmann::json& j, std::string_view source) {
  if (j.is_object()) {
    if (auto s = j.find("String"); s != j.end() && s->is_string()) return Pattern::literal(s->get<std::string>());
    if (auto r = j.find("Regex"); r != j.end() && r->is_string()) return Pattern::regex(r->get<std::string>());
  }
  if (j.is_string()) return Pattern::literal(j.get<std::string>());
  throw InputError(std::string(source) + ": pattern must be {\"String\": ...} or {\"Regex\": ...}");
}

}  // namespace umi
