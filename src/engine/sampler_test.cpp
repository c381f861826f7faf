#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "core/error.h"

namespace umi {
namespace {

std::vector<float> logits_of(std::initializer_list<float> l) { return std::vector<float>(l); }

TEST(Sampler, TemperatureZeroIsGreedy) {
  Sampler s({.temperature = 0});
  auto l = logits_of({0.1f, 3.0f, -1.0f, 2.9f});
  EXPECT_EQ(s.sample(l, {}), 1);
}

TEST(Sampler, SameSeedSameTokens) {
  auto draw = [](uint64_t seed) {
    Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = seed});
    std::vector<int32_t> out;
    for (int i = 0; i < 50; ++i) {
      auto l = logits_of({1, 1.2f, 0.8f, 1.1f, 0.9f});
      out.push_back(s.sample(l, {}));
    }
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

TEST(Sampler, TopKOneAndMinPLeaveOnlyTheBest) {
  Sampler k1({.temperature = 1.0f, .top_k = 1, .top_p = 1.0f, .min_p = 0.0f, .seed = 3});
  Sampler minp({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.9f, .seed = 3});
  for (int i = 0; i < 20; ++i) {
    auto l = logits_of({0.5f, 0.4f, 2.0f, 0.3f});
    EXPECT_EQ(k1.sample(l, {}), 2);
    auto m = logits_of({0.5f, 0.4f, 2.0f, 0.3f});
    EXPECT_EQ(minp.sample(m, {}), 2);
  }
}

TEST(Sampler, TopPDrawsOnlyFromTheNucleus) {
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 0.5f, .min_p = 0.0f, .seed = 9});
  std::map<int32_t, int> seen;
  for (int i = 0; i < 200; ++i) {
    auto l = logits_of({2.0f, 1.9f, -3.0f, -3.0f});  // the first two hold ~99%
    ++seen[s.sample(l, {})];
  }
  EXPECT_EQ(seen.count(2) + seen.count(3), 0u);
  EXPECT_GT(seen[0], 0);
}

// Without top-k the nucleus is found by sorting a growing prefix: a flat
// vocabulary whose nucleus holds thousands of tokens (past the first 256
// and 2,048 sorted) draws only from it, and in proportion; min-p alone keeps
// only what clears its floor.
TEST(Sampler, TopPWithoutTopKFindsLargeNuclei) {
  const int n = 20000;
  std::vector<float> base(n);
  for (int i = 0; i < n; ++i) base[static_cast<size_t>(i)] = static_cast<float>((i * 7919) % n) / n;  // a permutation of 0..1
  // The nucleus is the highest values: a fraction of the vocabulary near top_p (weights e^v vary by e).
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 0.3f, .min_p = 0.0f, .seed = 4});
  float lowest = 2.0f;
  for (int i = 0; i < 300; ++i) {
    std::vector<float> l = base;
    const int32_t t = s.sample(l, {});
    lowest = std::min(lowest, base[static_cast<size_t>(t)]);
  }
  // Mass of the top values: the cut lies where the upper tail holds 0.3 of
  // sum(e^v): v >= ~0.765 (e^1 - e^c = 0.3 (e - 1) -> c = ln(e - 0.3 (e - 1)) = 0.764).
  EXPECT_GT(lowest, 0.755f);
  EXPECT_LT(lowest, 0.80f);
  Sampler m({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.5f, .seed = 4});
  for (int i = 0; i < 100; ++i) {
    std::vector<float> l = base;
    l[17] = 5.0f;  // p(17) = e^5 / (e^5 + ~n (e - 1)): nothing else within half of it
    EXPECT_EQ(m.sample(l, {}), 17);
  }
}

TEST(Sampler, PenaltiesDiscourageRepeats) {
  Sampler s({.temperature = 0, .repetition_penalty = 2.0f});
  std::vector<int32_t> history{0, 0};
  auto l = logits_of({3.0f, 2.0f});  // 3/2 = 1.5 < 2
  EXPECT_EQ(s.sample(l, history), 1);
  Sampler f({.temperature = 0, .frequency_penalty = 0.6f});
  auto m = logits_of({3.0f, 2.0f});  // 3 - 2 * 0.6 = 1.8 < 2
  EXPECT_EQ(f.sample(m, history), 1);
}

// Sampling from the backend's candidates (top-k selected where the logits
// are) draws exactly the tokens that sampling from the whole row draws.
TEST(Sampler, DrawsFromSelectedCandidatesAsFromTheRow) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.f, 2.f);
  for (SamplingParams p : {SamplingParams{.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f},
                           SamplingParams{.temperature = 1.3f, .top_k = 7, .top_p = 1.0f, .min_p = 0.0f},
                           SamplingParams{.temperature = 0.2f, .top_k = kMaxTopK, .top_p = 0.5f, .min_p = 0.0f}}) {
    p.seed = 77;
    Sampler from_row(p), from_top(p);
    ASSERT_EQ(from_top.candidates_needed(), p.top_k);
    for (int i = 0; i < 200; ++i) {
      std::vector<float> row(3000);
      for (float& v : row) v = std::round(nd(rng) * 8) / 8;  // ties across the top-k boundary too
      TopK top;
      top.k = from_top.candidates_needed();
      top.temperature = from_top.temperature();
      top.count = select_top_k(row.data(), static_cast<int64_t>(row.size()), top.temperature, top.k, top.best.data());
      const int32_t a = from_row.sample(row, {});
      EXPECT_EQ(from_top.sample(top), a) << "draw " << i << ", top_k " << p.top_k;
    }
  }
  // Penalties, greedy and top-k beyond kMaxTopK need the whole row.
  EXPECT_EQ(Sampler({.temperature = 0.8f, .top_k = 40, .repetition_penalty = 1.1f}).candidates_needed(), 0);
  EXPECT_EQ(Sampler({.temperature = 0.0f, .top_k = 40}).candidates_needed(), 0);
  EXPECT_EQ(Sampler({.temperature = 0.8f, .top_k = 0}).candidates_needed(), 0);
  EXPECT_EQ(Sampler({.temperature = 0.8f, .top_k = kMaxTopK + 1}).candidates_needed(), 0);
  TopK other;
  other.k = 5, other.temperature = 0.8f, other.count = 1;
  EXPECT_THROW(Sampler({.temperature = 0.8f, .top_k = 40}).sample(other), Error);
}

// Nothing truncated (the OpenAI API's defaults): the draw needs no sort, and
// still follows the softmax.
TEST(Sampler, UntruncatedDrawsFollowTheSoftmax) {
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 11});
  int ones = 0, twos = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = {0.0f, std::log(3.0f), -INFINITY, std::log(6.0f)};  // p = 0.1, 0.3, 0, 0.6
    const int32_t t = s.sample(l, {});
    ASSERT_NE(t, 2);
    ones += t == 1, twos += t == 3;
  }
  EXPECT_NEAR(static_cast<double>(ones) / n, 0.3, 0.015);
  EXPECT_NEAR(static_cast<double>(twos) / n, 0.6, 0.015);
}

TEST(Sampler, RefusesNonsense) {
  EXPECT_THROW(Sampler({.temperature = std::nanf("")}), InputError);
  EXPECT_THROW(Sampler({.temperature = -1}), InputError);
  EXPECT_THROW(Sampler({.top_p = 0}), InputError);
  EXPECT_THROW(Sampler({.top_k = -2}), InputError);
}

}  // namespace
}  // namespace umi
