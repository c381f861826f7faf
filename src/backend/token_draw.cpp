#include "backend/token_draw.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "backend/draw_math.h"
#include "core/error.h"

namespace umi {

void check_draw_request(const TokenDraw& d) {
  if (!(d.temperature > 0) || !std::isfinite(d.temperature) || !(d.top_p > 0 && d.top_p <= 1) || !(d.min_p >= 0 && d.min_p <= 1))
    throw Error("draw: temperature " + std::to_string(d.temperature) + " (finite, > 0), top_p " + std::to_string(d.top_p) +
                " (0..1] or min_p " + std::to_string(d.min_p) + " [0..1] out of range");
}

namespace {

constexpr int32_t kAllIds = std::numeric_limits<int32_t>::max();

// The nucleus's last token (its weight, and its id, or kAllIds when every
// token of that weight is in): `w` holds every token's weight (0 for
// those that are not candidates), in id order. A radix select over the
// weights' 30 bits (w <= 1), ten a pass, as a GPU makes it: the bins of
// tokens with positive mass, from the highest, until the mass reaches what
// the nucleus still needs. The first pass reads every weight; the ids of
// its chosen bin (in id order) are all the later passes read.
std::pair<float, int32_t> nucleus_end(std::span<const float> w, float top_p, std::vector<int32_t>& ids) {
  std::array<uint64_t, 1024> mass;
  std::array<uint32_t, 1024> count;
  auto choose = [&](uint64_t& need) {  // the bin where the mass reaches need; need becomes what is needed of it
    uint32_t bin = 1023;
    for (; bin > 0 && mass[bin] < need; --bin) need -= mass[bin];
    return bin;
  };
  mass.fill(0), count.fill(0);
  for (const float weight : w) {
    const uint32_t bin = draw::float_bits(weight) >> 20;  // 0 for weight 0, which adds nothing
    mass[bin] += draw::weight_mass(weight), ++count[bin];
  }
  uint64_t total = 0;
  for (const uint64_t m : mass) total += m;
  uint64_t need = draw::nucleus_target(total, top_p);
  uint32_t prefix = choose(need) << 20, ties = 0;
  ids.clear();
  for (size_t i = 0; i < w.size(); ++i)
    if (draw::float_bits(w[i]) >> 20 == prefix >> 20) ids.push_back(static_cast<int32_t>(i));
  for (int shift = 10; shift >= 0; shift -= 10) {
    mass.fill(0), count.fill(0);
    for (const int32_t i : ids) {
      const uint32_t bin = draw::float_bits(w[static_cast<size_t>(i)]) >> shift & 1023;
      mass[bin] += draw::weight_mass(w[static_cast<size_t>(i)]), ++count[bin];
    }
    const uint32_t bin = choose(need);
    prefix |= bin << shift, ties = count[bin];
    std::erase_if(ids, [&](int32_t i) { return (draw::float_bits(w[static_cast<size_t>(i)]) >> shift & 1023) != bin; });
  }
  const float end_w = draw::bits_float(prefix);
  const uint64_t unit = draw::weight_mass(end_w);  // > 0: mass is reached only where there is some
  const uint64_t c = (need + unit - 1) / unit;     // of the tokens of weight end_w, the first c by id are in
  return {end_w, c >= ties ? kAllIds : ids[static_cast<size_t>(c - 1)]};
}

// For each of 256 bands of the hash (its top byte), a bound on the noise
// of every hash in it: u >= band / 256 there, and the noise falls as u
// grows. A token whose value plus its band's bound is below the best
// score so far cannot win: only about one in 256 needs its noise computed
// once the best is a few units above the rest (a flat row), and in a
// peaked row nearly none.
const std::array<float, 256>& noise_bounds() {
  static const std::array<float, 256> bounds = [] {
    std::array<float, 256> b{};
    b[0] = draw::kNoiseMax;
    for (int band = 1; band < 256; ++band) b[static_cast<size_t>(band)] = draw::gumbel_of_uniform(static_cast<float>(band) / 256.0f) + 1e-3f;
    return b;
  }();
  return bounds;
}

}  // namespace

int32_t draw_token(const float* row, int64_t n, const TokenDraw& d) {
  DrawScratch scratch;
  return draw_token(row, n, d, scratch);
}

int32_t draw_token(const float* row, int64_t n, const TokenDraw& d, DrawScratch& scratch) {
  check_draw_request(d);
  const bool filtered = d.min_p > 0 || d.top_p < 1;
  scratch.values.resize(static_cast<size_t>(n));
  scratch.weights.resize(filtered ? static_cast<size_t>(n) : 0);
  const std::span<float> v(scratch.values), w(scratch.weights);
  // Values x / t, -inf where x or the quotient is not finite (no
  // candidate). The loops over the row are written to vectorize.
  constexpr float kNone = -std::numeric_limits<float>::infinity(), kMax = std::numeric_limits<float>::max();
  const float t = d.temperature;
  for (size_t i = 0; i < v.size(); ++i) {
    const float q = row[i] / t;
    v[i] = std::fabs(row[i]) <= kMax && std::fabs(q) <= kMax ? q : kNone;
  }
  std::array<float, 16> tops;  // independent maxima, so that the loop vectorizes
  tops.fill(kNone);
  size_t at = 0;
  for (; at + 16 <= v.size(); at += 16)
    for (size_t j = 0; j < 16; ++j) tops[j] = v[at + j] > tops[j] ? v[at + j] : tops[j];
  for (; at < v.size(); ++at) tops[0] = v[at] > tops[0] ? v[at] : tops[0];
  const float top = *std::max_element(tops.begin(), tops.end());
  if (top == kNone) return -1;

  // Which candidates min-p and top-p keep: w >= min_p, and (w, id) ranking
  // no later than the nucleus's last token.
  std::pair<float, int32_t> end{-1.0f, kAllIds};  // top-p off: everything
  if (filtered) {
    for (size_t i = 0; i < w.size(); ++i) w[i] = draw::exp(v[i] - top);  // exp(-inf) is 0
    if (d.top_p < 1) end = nucleus_end(w, d.top_p, scratch.ids);
  }
  auto kept = [&](size_t i) {
    return !filtered || (w[i] >= d.min_p && (w[i] > end.first || (w[i] == end.first && static_cast<int64_t>(i) <= end.second)));
  };

  // Gumbel-max over what is kept, the lowest id of equal scores.
  const auto lo = static_cast<uint32_t>(d.key), hi = static_cast<uint32_t>(d.key >> 32);
  const std::array<float, 256>& bound = noise_bounds();
  float best = kNone;
  int64_t best_id = -1;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] + draw::kNoiseMax < best) continue;  // the common case in a peaked row: no hash
    const uint32_t h = draw::noise_hash(lo, hi, static_cast<uint32_t>(i));
    if (v[i] + bound[h >> 24] < best || v[i] == kNone || !kept(i)) continue;
    const float score = v[i] + draw::gumbel_of_uniform(draw::uniform(h));
    if (score > best || (score == best && static_cast<int64_t>(i) < best_id)) best = score, best_id = static_cast<int64_t>(i);
  }
  return static_cast<int32_t>(best_id);
}

}  // namespace umi
