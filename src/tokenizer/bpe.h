// A byte-pair-encoding model: a vocabulary and ranked merges, applied to one
// pre-tokenized word at a time.
//
// Two ways to rank merges: by a merge list (Hugging Face BPE, GGUF "gpt2"), or
// by the score of the merged token (SentencePiece BPE, GGUF "llama"), where
// any adjacent pair whose concatenation is in the vocabulary may merge and the
// highest score goes first. Ties go to the leftmost pair in both.
//
// Merging uses a heap over a linked list of symbols: O(n log n) in the word's
// length, so a 1 MB word with no spaces is not quadratic.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace umi {

struct BpeOptions {
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
  bool byte_fallback = false;  // unknown characters become <0xXX> byte tokens
  bool ignore_merges = false;  // a word that is a token is that token (Llama-3)
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};

class BpeModel {
 public:
  // tokens[id] is the token string; an empty string marks an unused id.
  BpeModel(std::vector<std::string> tokens, BpeOptions options);

  // Ranked merges "a b" -> rank by position. Throws InputError on a merge of
  // tokens not in the vocabulary.
  void set_merges(const std::vector<std::pair<std::string, std::string>>& merges, std::string_view source);
  // SentencePiece: merge by the merged token's score instead.
  void set_scores(std::vector<float> scores);

  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> id(std::string_view token) const;
  const std::string& token(int32_t id) const { return tokens_[static_cast<size_t>(id)]; }
  size_t size() const { return tokens_.size(); }

 private:
  struct PairHash {
    size_t operator()(uint64_t k) const { return std::hash<uint64_t>()(k * 0x9E3779B97F4A7C15ull); }
  };
  struct Merge {
    float rank;  // lower merges first: list position, or the negated score
    int32_t result;
  };
  std::optional<Merge> find_merge(int32_t left, int32_t right) const;
  void initial_symbols(std::string_view word, std::vector<int32_t>& ids) const;
  void merge(std::vector<int32_t>& ids) const;

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int32_t> ids_;
  std::unordered_map<uint64_t, Merge, PairHash> merges_;
  std::vector<float> scores_;  // non-empty: SentencePiece mode
  int32_t byte_ids_[256];      // <0xXX> tokens, -1 where missing
  BpeOptions options_;

  // Words seen before. Bounded; cleared when full (hits dominate on text).
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace umi
