// Picks the next token from logits: repetition/presence/frequency penalties,
// temperature, top-k, top-p, min-p, then a draw from a seeded generator (same
// seed, same tokens). Temperature 0 is greedy.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

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
  bool greedy() const {
    return p_.temperature == 0.0f && p_.repetition_penalty == 1.0f && p_.presence_penalty == 0.0f && p_.frequency_penalty == 0.0f;
  }

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

}  // namespace umi
