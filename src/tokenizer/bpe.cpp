#include "tokenizer/bpe.h"

#include <cstdio>
#include <queue>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace umi {

namespace {
constexpr size_t kCacheEntries = 1 << 16;
constexpr size_t kCacheMaxWord = 256;
uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }
}  // namespace

BpeModel::BpeModel(std::vector<std::string> tokens, BpeOptions options)
    : tokens_(std::move(tokens)), options_(std::move(options)) {
  ids_.reserve(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i)
    if (!tokens_[i].empty()) ids_.emplace(tokens_[i], static_cast<int32_t>(i));  // first id wins on duplicates
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    auto it = ids_.find(name);
    byte_ids_[b] = it == ids_.end() ? -1 : it->second;
  }
}

void BpeModel::set_merges(const std::vector<std::pair<std::string, std::string>>& merges, std::string_view source) {
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [a, b] = merges[r];
    auto ia = id(a), ib = id(b);
    std::string joined = a + b;
    // With a continuing-subword prefix, the right part carries it but the
    // merged token keeps only the left's.
    if (!options_.continuing_subword_prefix.empty() && b.rfind(options_.continuing_subword_prefix, 0) == 0)
      joined = a + b.substr(options_.continuing_subword_prefix.size());
    auto ij = id(joined);
    if (!ia || !ib || !ij)
      throw InputError(std::string(source) + ": merge " + std::to_string(r) + " (\"" + a + "\" \"" + b +
                       "\") uses a token not in the vocabulary");
    merges_.emplace(pair_key(*ia, *ib), Merge{static_cast<float>(r), *ij});  // first (lowest rank) wins
  }
}

void BpeModel::set_scores(std::vector<float> scores) { scores_ = std::move(scores); }

std::optional<int32_t> BpeModel::id(std::string_view token) const {
  auto it = ids_.find(std::string(token));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

std::optional<BpeModel::Merge> BpeModel::find_merge(int32_t left, int32_t right) const {
  if (scores_.empty()) {
    auto it = merges_.find(pair_key(left, right));
    if (it == merges_.end()) return std::nullopt;
    return it->second;
  }
  auto joined = id(tokens_[static_cast<size_t>(left)] + tokens_[static_cast<size_t>(right)]);
  if (!joined) return std::nullopt;
  // Higher score first: the negated score is an ascending rank.
  return Merge{-scores_[static_cast<size_t>(*joined)], *joined};
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& ids) const {
  bool last_unk = false;
  for (size_t i = 0; i < word.size();) {
    size_t n = unicode::valid_sequence_length(word, i);
    if (n == 0) n = 1;  // a stray byte: looked up as itself, else falls back below
    std::string piece(word.substr(i, n));
    if (!options_.continuing_subword_prefix.empty() && i > 0) piece = options_.continuing_subword_prefix + piece;
    if (!options_.end_of_word_suffix.empty() && i + n == word.size()) piece += options_.end_of_word_suffix;
    i += n;
    if (auto id_ = id(piece)) {
      ids.push_back(*id_);
      last_unk = false;
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (size_t k = i - n; k < i; ++k) all = all && byte_ids_[static_cast<uint8_t>(word[k])] >= 0;
      if (all) {
        for (size_t k = i - n; k < i; ++k) ids.push_back(byte_ids_[static_cast<uint8_t>(word[k])]);
        last_unk = false;
        continue;
      }
    }
    if (options_.unk_id) {
      if (!(options_.fuse_unk && last_unk)) ids.push_back(*options_.unk_id);
      last_unk = true;
    }
    // No unk token: the character is dropped, as Hugging Face does.
  }
}

void BpeModel::merge(std::vector<int32_t>& ids) const {
  const size_t n = ids.size();
  if (n < 2) return;
  std::vector<int32_t> prev(n), next(n);
  std::vector<char> alive(n, 1);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  struct Candidate {
    float rank;
    int32_t pos, left_id, right_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0) return;
    int32_t nx = next[static_cast<size_t>(pos)];
    if (nx < 0) return;
    if (auto m = find_merge(ids[static_cast<size_t>(pos)], ids[static_cast<size_t>(nx)]))
      heap.push({m->rank, pos, ids[static_cast<size_t>(pos)], ids[static_cast<size_t>(nx)]});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!heap.empty()) {
    Candidate c = heap.top();
    heap.pop();
    size_t p = static_cast<size_t>(c.pos);
    int32_t nx = next[p];
    // Stale: a symbol of this pair changed since it was queued.
    if (!alive[p] || nx < 0 || ids[p] != c.left_id || ids[static_cast<size_t>(nx)] != c.right_id) continue;
    auto m = find_merge(c.left_id, c.right_id);
    ids[p] = m->result;
    alive[static_cast<size_t>(nx)] = 0;
    next[p] = next[static_cast<size_t>(nx)];
    if (next[p] >= 0) prev[static_cast<size_t>(next[p])] = c.pos;
    push(prev[p]);
    push(c.pos);
  }
  size_t w = 0;
  for (int32_t i = 0; i >= 0; i = next[static_cast<size_t>(i)]) ids[w++] = ids[static_cast<size_t>(i)];
  ids.resize(w);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges)
    if (auto whole = id(word)) {
      out.push_back(*whole);
      return;
    }
  const bool cacheable = word.size() <= kCacheMaxWord;
  if (cacheable) {
    std::lock_guard lock(cache_mu_);
    auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  initial_symbols(word, ids);
  merge(ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard lock(cache_mu_);
    if (cache_.size() >= kCacheEntries) cache_.clear();
    cache_.emplace(std::string(word), std::move(ids));
  }
}

}  // namespace umi
