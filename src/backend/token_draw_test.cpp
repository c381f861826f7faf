#include "backend/token_draw.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <random>
#include <vector>

#include "backend/draw_math.h"
#include "core/error.h"

namespace umi {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

double relative_error(double got, double want) { return std::fabs(got - want) / std::max(std::fabs(want), 1e-30); }

// The shared arithmetic is a few ulp from the C library's, over its range.
TEST(DrawMath, LogExpAndLog1pAreCloseToTheLibrarys) {
  std::mt19937 rng(1);
  double worst_log = 0, worst_exp = 0, worst_log1p = 0;
  for (int i = 0; i < 200000; ++i) {
    const float x = std::ldexp(std::uniform_real_distribution<float>(1.0f, 2.0f)(rng), std::uniform_int_distribution<int>(-100, 100)(rng));
    if (std::fabs(x - 1.0f) > 1e-3f) worst_log = std::max(worst_log, relative_error(draw::log(x), std::log(static_cast<double>(x))));
    const float d = std::uniform_real_distribution<float>(draw::kWeightFloor, 0.0f)(rng);
    worst_exp = std::max(worst_exp, relative_error(draw::exp(d), std::exp(static_cast<double>(d))));
    const float u = -std::ldexp(std::uniform_real_distribution<float>(0.5f, 1.0f)(rng), std::uniform_int_distribution<int>(-33, 0)(rng));
    if (u > -1.0f) worst_log1p = std::max(worst_log1p, relative_error(draw::log1p(u), std::log1p(static_cast<double>(u))));
  }
  EXPECT_LT(worst_log, 4e-7);
  EXPECT_LT(worst_exp, 4e-7);
  EXPECT_LT(worst_log1p, 1e-6);
  EXPECT_NEAR(draw::log(1.0f + 1e-6f), std::log1p(static_cast<double>(1.0f + 1e-6f) - 1), 1e-12);
  EXPECT_EQ(draw::exp(0.0f), 1.0f);
  EXPECT_EQ(draw::exp(draw::kWeightFloor - 0.01f), 0.0f);
  EXPECT_EQ(draw::exp(-kInf), 0.0f);
}

// Gumbel noise: mean Euler's constant, variance pi^2 / 6, within its bounds.
TEST(DrawMath, NoiseIsGumbelDistributedAndBounded) {
  double sum = 0, squares = 0;
  float low = kInf, high = -kInf;
  const int n = 1 << 20;
  for (int i = 0; i < n; ++i) {
    const float g = draw::gumbel(0x12345678u, 0x9ABCDEF0u, static_cast<uint32_t>(i));
    sum += g, squares += static_cast<double>(g) * g;
    low = std::min(low, g), high = std::max(high, g);
  }
  const double mean = sum / n, variance = squares / n - mean * mean;
  EXPECT_NEAR(mean, 0.5772157, 0.01);
  EXPECT_NEAR(variance, 1.6449341, 0.02);
  EXPECT_GE(low, draw::kNoiseMin);
  EXPECT_LE(high, draw::kNoiseMax);
  // The extreme hashes stay inside the bounds too.
  for (uint32_t lo : {0u, 1u, 0xFFFFFFFFu})
    for (uint32_t i = 0; i < 4096; ++i) {
      const float g = draw::gumbel(lo, 0, i);
      EXPECT_TRUE(g >= draw::kNoiseMin && g <= draw::kNoiseMax) << g;
    }
}

TEST(TokenDraw, FollowsTheSoftmax) {
  const std::vector<float> row = {2.0f, 1.0f, 0.0f, -1.0f, 0.5f, -3.0f, -kInf, NAN};
  const float t = 0.7f;
  std::vector<double> want(row.size());
  double total = 0;
  for (size_t i = 0; i < 6; ++i) total += want[i] = std::exp(row[i] / t);
  std::mt19937_64 keys(3);
  std::vector<int> seen(row.size());
  const int draws = 200000;
  for (int i = 0; i < draws; ++i) ++seen[static_cast<size_t>(draw_token(row.data(), 8, {.temperature = t, .key = keys()}))];
  for (size_t i = 0; i < row.size(); ++i) {
    const double p = want[i] / total, sigma = std::sqrt(p * (1 - p) / draws);
    EXPECT_NEAR(seen[i] / static_cast<double>(draws), p, 5 * sigma + 1e-9) << "token " << i;
  }
}

// A plain statement of the rule, none of the shortcuts: every weight, the
// whole order sorted, every score computed.
int32_t plain_draw(const std::vector<float>& row, const TokenDraw& d) {
  std::vector<std::pair<float, int32_t>> kept;  // (v, id)
  float top = -kInf;
  for (size_t i = 0; i < row.size(); ++i) {
    const float v = row[i] / d.temperature;
    if (std::isfinite(row[i]) && std::isfinite(v)) kept.push_back({v, static_cast<int32_t>(i)}), top = std::max(top, v);
  }
  if (kept.empty()) return -1;
  std::vector<std::pair<float, int32_t>> order;  // (w, id)
  uint64_t total = 0;
  for (auto [v, id] : kept) order.push_back({draw::exp(v - top), id}), total += draw::weight_mass(order.back().first);
  std::sort(order.begin(), order.end(), [](auto a, auto b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  size_t end = order.size();
  if (d.top_p < 1) {
    const uint64_t target = draw::nucleus_target(total, d.top_p);
    uint64_t held = 0;
    for (end = 0; held < target;) held += draw::weight_mass(order[end++].first);
  }
  float best = -kInf;
  int32_t best_id = -1;
  for (size_t j = 0; j < end; ++j) {
    const auto [w, id] = order[j];
    if (w < d.min_p) continue;
    const float score = row[static_cast<size_t>(id)] / d.temperature + draw::gumbel(static_cast<uint32_t>(d.key), static_cast<uint32_t>(d.key >> 32), static_cast<uint32_t>(id));
    if (score > best || (score == best && id < best_id)) best = score, best_id = id;
  }
  return best_id;
}

// The reference's skipping and banding change nothing: the same token as
// the plain rule, over flat and peaked rows with many equal values.
TEST(TokenDraw, ShortcutsDrawWhatThePlainRuleDraws) {
  std::mt19937 rng(7);
  std::mt19937_64 keys(8);
  for (float scale : {0.1f, 1.0f, 4.0f, 30.0f})
    for (int64_t n : {1, 5, 3000}) {
      std::vector<float> row(static_cast<size_t>(n));
      std::normal_distribution<float> nd(0.0f, scale);
      for (float& v : row) v = std::round(nd(rng) * 4) / 4;  // equal values: ties at the cut
      if (n > 10) row[3] = NAN, row[4] = -kInf, row[5] = kInf;
      for (TokenDraw d : {TokenDraw{.temperature = 1.0f}, TokenDraw{.temperature = 0.6f, .top_p = 0.9f},
                          TokenDraw{.temperature = 1.3f, .top_p = 0.3f, .min_p = 0.05f}, TokenDraw{.temperature = 1.0f, .min_p = 0.2f},
                          TokenDraw{.temperature = 2.0f, .top_p = 0.999f}})
        for (int i = 0; i < 60; ++i) {
          d.key = keys();
          ASSERT_EQ(draw_token(row.data(), n, d), plain_draw(row, d)) << "scale " << scale << ", n " << n << ", top_p " << d.top_p;
        }
    }
}

TEST(TokenDraw, TopPKeepsTheLowerIdsOfEqualWeightsAtTheCut) {
  const std::vector<float> row(8, 0.0f);  // eight equal weights: half the mass is ids 0..3
  std::mt19937_64 keys(5);
  std::map<int32_t, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[draw_token(row.data(), 8, {.top_p = 0.5f, .key = keys()})];
  EXPECT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen.rbegin()->first, 3);
}

TEST(TokenDraw, MinPDropsWhatIsLessLikelyThanItsShareOfTheBest) {
  const std::vector<float> row = {0.0f, -0.1f, -5.0f, -0.6f};  // weights 1, 0.905, 0.0067, 0.549
  std::mt19937_64 keys(6);
  std::map<int32_t, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[draw_token(row.data(), 4, {.min_p = 0.6f, .key = keys()})];
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[0], seen[1]);
}

TEST(TokenDraw, SameKeySameTokenAndNothingFiniteIsNoToken) {
  std::vector<float> row(1000);
  std::mt19937 rng(2);
  for (float& v : row) v = std::normal_distribution<float>(0.0f, 2.0f)(rng);
  std::set<int32_t> tokens;
  for (uint64_t key = 0; key < 50; ++key) {
    const int32_t a = draw_token(row.data(), 1000, {.key = key});
    EXPECT_EQ(a, draw_token(row.data(), 1000, {.key = key}));
    tokens.insert(a);
  }
  EXPECT_GT(tokens.size(), 10u);  // the key matters
  const std::vector<float> none = {NAN, -kInf, kInf};
  EXPECT_EQ(draw_token(none.data(), 3, {}), -1);
  EXPECT_THROW(draw_token(row.data(), 1000, {.temperature = 0.0f}), Error);
  EXPECT_THROW(draw_token(row.data(), 1000, {.top_p = 0.0f}), Error);
  EXPECT_THROW(draw_token(row.data(), 1000, {.min_p = 1.5f}), Error);
  EXPECT_THROW(draw_token(row.data(), 1000, {.temperature = NAN}), Error);
}

}  // namespace
}  // namespace umi
