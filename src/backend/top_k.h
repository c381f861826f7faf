// Sampling candidates: the k best tokens of a row of logits, so that
// sampling with top-k needs only those to cross from a device (1 KB instead
// of a 513 KB Llama-3 row). The order is total (value, then id), so every
// backend's selection gives the same list as this reference, and sampling
// from it draws the same token as sampling from the whole row.
#pragma once

#include <array>
#include <cstdint>

namespace umi {

constexpr int kMaxTopK = 128;  // the most candidates a backend selects

struct Candidate {
  float value = 0;  // logit / temperature
  int32_t id = 0;
};

// One row's request and answer.
struct TopK {
  int k = 0;                 // in: 1..kMaxTopK
  float temperature = 1.0f;  // in: > 0; values are logit / temperature, rounded as floats
  int count = 0;             // out: min(k, the row's finite logits)
  std::array<Candidate, kMaxTopK> best;  // out: best first; equal values, lower id first
};

// Whether candidate a ranks before b.
inline bool ranks_before(const Candidate& a, const Candidate& b) {
  return a.value > b.value || (a.value == b.value && a.id < b.id);
}

// Throws umi::Error unless 1 <= k <= kMaxTopK and the temperature is
// finite and positive: what every backend's top_k checks first.
void check_top_k_request(const TopK& t);

// The reference selection: the finite logits of `row` (n of them) divided by
// `temperature`, the k best into out[0..count). Returns count.
int select_top_k(const float* row, int64_t n, float temperature, int k, Candidate* out);

}  // namespace umi
