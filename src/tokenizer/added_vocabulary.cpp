#include "tokenizer/added_vocabulary.h"

#include <algorithm>
#include <cctype>

#include "tokenizer/unicode.h"

namespace umi {

namespace {
bool is_space_byte(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool is_word_byte(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return u >= 0x80 || std::isalnum(u) || c == '_';
}
}  // namespace

void AddedVocabulary::add(AddedToken token) {
  if (token.content.empty()) return;
  if (by_content_.count(token.content)) return;
  size_t index = tokens_.size();
  by_id_[token.id] = index;
  by_content_[token.content] = index;
  auto& bucket = by_first_byte_[static_cast<uint8_t>(token.content[0])];
  tokens_.push_back(std::move(token));
  bucket.push_back(index);
  std::stable_sort(bucket.begin(), bucket.end(),
                   [this](size_t a, size_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
}

const AddedToken* AddedVocabulary::find(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::find(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

std::vector<TextPiece> AddedVocabulary::split(std::string_view text, bool normalized, bool split_special) const {
  std::vector<TextPiece> out;
  size_t plain_start = 0;
  size_t i = 0;
  while (i < text.size()) {
    const AddedToken* hit = nullptr;
    for (size_t idx : by_first_byte_[static_cast<uint8_t>(text[i])]) {
      const AddedToken& t = tokens_[idx];
      if (t.normalized != normalized || (split_special && t.special)) continue;
      if (text.compare(i, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        bool left_ok = i == 0 || !is_word_byte(text[i - 1]);
        size_t e = i + t.content.size();
        bool right_ok = e >= text.size() || !is_word_byte(text[e]);
        if (!left_ok || !right_ok) continue;
      }
      hit = &t;
      break;  // longest first
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t start = i, end = i + hit->content.size();
    if (hit->lstrip)
      while (start > plain_start && is_space_byte(text[start - 1])) --start;
    if (hit->rstrip)
      while (end < text.size() && is_space_byte(text[end])) ++end;
    if (start > plain_start) out.push_back({text.substr(plain_start, start - plain_start), -1, plain_start});
    out.push_back({{}, hit->id, start});
    plain_start = i = end;
  }
  if (plain_start < text.size()) out.push_back({text.substr(plain_start), -1, plain_start});
  return out;
}

}  // namespace umi
