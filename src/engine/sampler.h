// Picks the next token from logits: repetition/presence/frequency penalties,
// temperature, top-k, top-p, min-p, then a draw from a seeded generator (same
// seed, same tokens). Temperature 0 is greedy.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "backend/token_draw.h"
#include "backend/top_k.h"

namespace umi {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;          // 0: off
  float top_p = 0.95f;     // 1: off
  float min_p = 0.05f;     // 0: off
  float repetition_penalty = 1.0f;  // 1: off (Hugging Face semantics)
  float presence_penalty = 0.0f;    // OpenAI semantics
  float frequency_penalty = 0.0f;
  int penalty_last_n = 64;  // how much history the penalties look at
  uint64_t seed = 0;
};

class Sampler {
 public:
  // Throws InputError for out-of-range parameters (NaN, negative...).
  explicit Sampler(SamplingParams params);
  // `logits` is modified in place. `history`: the tokens so far (prompt and output).
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);
  // Whether sample() is the plain argmax of the logits (temperature 0, no
  // penalties): the backend may then pick the token where the logits are.
  bool greedy() const { return p_.temperature == 0.0f && !penalties(); }
  // When sample() would keep only the top_k best logits (temperature > 0,
  // top-k on and at most kMaxTopK, no penalties): that k, else 0. The
  // backend may then select them where the logits are (Backend::top_k).
  int candidates_needed() const {
    return p_.temperature > 0.0f && p_.top_k > 0 && p_.top_k <= kMaxTopK && !penalties() ? p_.top_k : 0;
  }
  float temperature() const { return p_.temperature; }
  // The draw sample() makes, from those candidates (k = candidates_needed(),
  // this temperature): the same token for the same generator state.
  int32_t sample(const TopK& top);
  // Whether sample() draws from the whole row by token_draw.h's rule
  // (temperature > 0, top-k off, no penalties): the backend may then draw
  // where the logits are (Backend::draw), with next_draw()'s settings.
  bool draws_whole_row() const { return p_.temperature > 0.0f && p_.top_k == 0 && !penalties(); }
  // The next whole-row draw's settings and key; the generator moves on as
  // sample() moves it for such a draw.
  TokenDraw next_draw();
  // The token of that draw, made by a backend (its `token` out).
  int32_t sample(const TokenDraw& drawn);

 private:
  bool penalties() const { return p_.repetition_penalty != 1.0f || p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f; }
  // Softmax, top-p, min-p and the draw over candidates_ (best first).
  int32_t draw();
  // min-p and the draw over candidates_ as probabilities (best first).
  int32_t draw_probabilities();
  int32_t pick(double total);

  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;  // value: logit / temperature, then weight or probability
  DrawScratch draw_scratch_;           // a whole-row draw's working memory
};

}  // namespace umi
