#include "engine/sampler.h"

#include <algorithm>
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

  if (p_.top_k == 0) {  // the rule a backend's draw keeps to (token_draw.h)
    TokenDraw d = next_draw();
    d.token = draw_token(logits.data(), n, d, draw_scratch_);
    return sample(d);
  }
  candidates_.clear();
  for (int32_t i = 0; i < n; ++i)
    if (std::isfinite(logits[static_cast<size_t>(i)])) candidates_.push_back({logits[static_cast<size_t>(i)] / p_.temperature, i});
  if (candidates_.empty()) throw Error("every logit is NaN or infinite");
  // Top-k on: the best k sorted, also when fewer are finite (a JSON mask), so
  // that the draw is the one a backend's candidates give (sample(TopK)).
  const auto keep = static_cast<long>(std::min<size_t>(static_cast<size_t>(p_.top_k), candidates_.size()));
  std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), ranks_before);
  candidates_.resize(static_cast<size_t>(keep));
  return draw();
}

TokenDraw Sampler::next_draw() {
  return {.temperature = p_.temperature, .top_p = p_.top_p, .min_p = p_.min_p, .key = rng_()};
}

int32_t Sampler::sample(const TokenDraw& drawn) {
  if (drawn.token < 0) throw Error("every logit is NaN or infinite");
  return drawn.token;
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
