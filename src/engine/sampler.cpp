#include "engine/sampler.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <unordered_map>

#include "core/error.h"

namespace umi {

Sampler::Sampler(SamplingParams params) : p_(params), rng_(params.seed) {
  auto finite = [](float f) { return std::isfinite(f); };
  if (!finite(p_.temperature) || p_.temperature < 0 || p_.temperature > 100) throw InputError("temperature must be in 0..100");
  if (p_.top_k < 0) throw InputError("top_k must be >= 0");
  if (!finite(p_.top_p) || p_.top_p <= 0 || p_.top_p > 1) throw InputError("top_p must be in (0, 1]");
  if (!finite(p_.min_p) || p_.min_p < 0 || p_.min_p > 1) throw InputError("min_p must be in [0, 1]");
  if (!finite(p_.repetition_penalty) || p_.repetition_penalty <= 0) throw InputError("repetition penalty must be > 0");
  if (!finite(p_.presence_penalty) || std::fabs(p_.presence_penalty) > 2) throw InputError("presence penalty must be in -2..2");
  if (!finite(p_.frequency_penalty) || std::fabs(p_.frequency_penalty) > 2) throw InputError("frequency penalty must be in -2..2");
  if (p_.penalty_last_n < 0) throw InputError("penalty window must be >= 0");
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  const int32_t n = static_cast<int32_t>(logits.size());
  // Penalties over the recent history.
  if (penalties()) {
    std::unordered_map<int32_t, int> counts;
    size_t from = history.size() > static_cast<size_t>(p_.penalty_last_n) ? history.size() - static_cast<size_t>(p_.penalty_last_n) : 0;
    for (size_t i = from; i < history.size(); ++i)
      if (history[i] >= 0 && history[i] < n) ++counts[history[i]];
    for (auto [id, count] : counts) {
      float& l = logits[static_cast<size_t>(id)];
      l = l > 0 ? l / p_.repetition_penalty : l * p_.repetition_penalty;
      l -= p_.presence_penalty + p_.frequency_penalty * static_cast<float>(count);
    }
  }
  if (p_.temperature == 0.0f)
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());

  candidates_.clear();
  for (int32_t i = 0; i < n; ++i)
    if (std::isfinite(logits[static_cast<size_t>(i)])) candidates_.push_back({logits[static_cast<size_t>(i)] / p_.temperature, i});
  if (candidates_.empty()) throw Error("every logit is NaN or infinite");
  if (p_.top_k == 0) return draw_without_top_k();
  // Top-k on: the best k sorted, also when fewer are finite (a JSON mask), so
  // that the draw is the one a backend's candidates give (sample(TopK)).
  const auto keep = static_cast<long>(std::min<size_t>(static_cast<size_t>(p_.top_k), candidates_.size()));
  std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), ranks_before);
  candidates_.resize(static_cast<size_t>(keep));
  return draw();
}

// Top-k off: the softmax over every candidate, but only the best ones
// sorted: a growing sorted prefix until it holds the top-p mass (min-p
// alone: those above its floor; neither, the OpenAI API's defaults: none,
// a draw from the whole softmax needs no order). Sorting 128K candidates a
// token held an 8B model on a GPU to 57 tok/s.
int32_t Sampler::draw_without_top_k() {
  // Values to weights e^(v - max) once (the same order; equal weights are
  // equally likely, whatever their order), probabilities weight / total.
  float top = candidates_[0].value;
  for (const auto& c : candidates_) top = std::max(top, c.value);
  double total = 0;
  for (auto& c : candidates_) {
    c.value = std::exp(c.value - top);
    total += c.value;
  }
  auto prob = [&](float weight) { return static_cast<float>(weight / total); };
  const size_t n = candidates_.size();
  size_t keep = n;
  if (p_.top_p < 1.0f) {
    for (size_t k = std::max(std::min<size_t>(256, n), nucleus_bound(total));; k = std::min(n, k * 8)) {
      // The best k, sorted (the order is total: the same prefix whatever the method): a heap for a few, a
      // selection and a sort when k is a large part of n.
      const auto kth = candidates_.begin() + static_cast<long>(k);
      if (k <= n / 16) {
        std::partial_sort(candidates_.begin(), kth, candidates_.end(), ranks_before);
      } else {
        if (k < n) std::nth_element(candidates_.begin(), kth, candidates_.end(), ranks_before);
        std::sort(candidates_.begin(), kth, ranks_before);
      }
      double mass = 0;
      size_t cut = 0;
      while (cut < k) {
        mass += prob(candidates_[cut++].value);
        if (mass >= p_.top_p) break;
      }
      if (mass >= p_.top_p || k == n) {
        keep = cut;
        break;
      }
    }
  } else if (p_.min_p > 0.0f) {  // min-p alone: what clears its floor, then sorted
    const float floor = prob(1.0f) * p_.min_p;  // the best's weight is e^0
    keep = static_cast<size_t>(std::partition(candidates_.begin(), candidates_.end(), [&](const auto& c) { return prob(c.value) >= floor; }) -
                               candidates_.begin());
    std::sort(candidates_.begin(), candidates_.begin() + static_cast<long>(keep), ranks_before);
  }
  candidates_.resize(keep);
  for (auto& c : candidates_) c.value = prob(c.value);
  return draw_probabilities();
}

// How many of the best candidates (weights, as draw_without_top_k made them)
// hold top_p of `total`, rounded up to a whole band of weights within a
// factor of two: the first sort can then take the nucleus at once. Only where
// the sorting starts depends on it, never which tokens are kept: a short
// bound sorts again with more, as the search did from 256 (a flat
// distribution's nucleus of 100K tokens took it four sorts, 6.7 ms a token).
size_t Sampler::nucleus_bound(double total) const {
  std::array<double, 256> mass{};
  std::array<size_t, 256> count{};
  for (const auto& c : candidates_) {  // weights in (0, 1]: their float exponent
    const size_t band = 255 - (std::bit_cast<uint32_t>(c.value) >> 23 & 0xff);
    mass[band] += c.value, ++count[band];
  }
  double held = 0;
  size_t bound = 0;
  for (size_t band = 0; band < 256; ++band) {
    held += mass[band], bound += count[band];
    if (held >= p_.top_p * total) break;
  }
  return bound;
}

int32_t Sampler::sample(const TopK& top) {
  if (top.k != candidates_needed() || top.temperature != p_.temperature)
    throw Error("sampler: candidates selected for another k or temperature");
  if (top.count <= 0) throw Error("every logit is NaN or infinite");
  candidates_.assign(top.best.begin(), top.best.begin() + top.count);
  return draw();
}

// A draw from candidates_'s weights (their sum: total), in their order.
int32_t Sampler::pick(double total) {
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_);
  for (const auto& [weight, id] : candidates_) {
    r -= weight;
    if (r <= 0) return id;
  }
  return candidates_.back().id;
}

int32_t Sampler::draw() {
  // Softmax over what is left (sorted, highest first).
  const float top = candidates_[0].value;
  double total = 0;
  for (auto& [l, id] : candidates_) {
    l = std::exp(l - top);
    total += l;
  }
  for (auto& c : candidates_) c.value = static_cast<float>(c.value / total);
  // top-p: the smallest prefix whose mass reaches p.
  if (p_.top_p < 1.0f) {
    double mass = 0;
    size_t k = 0;
    while (k < candidates_.size()) {
      mass += candidates_[k++].value;
      if (mass >= p_.top_p) break;
    }
    candidates_.resize(k);
  }
  return draw_probabilities();
}

int32_t Sampler::draw_probabilities() {
  // min-p: drop tokens less likely than min_p times the best.
  if (p_.min_p > 0.0f) {
    float floor = candidates_[0].value * p_.min_p;
    size_t k = 1;
    while (k < candidates_.size() && candidates_[k].value >= floor) ++k;
    candidates_.resize(k);
  }
  double mass = 0;
  for (const auto& c : candidates_) mass += c.value;
  return pick(mass);
}

}  // namespace umi
