#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <map>

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

TEST(Sampler, PenaltiesDiscourageRepeats) {
  Sampler s({.temperature = 0, .repetition_penalty = 2.0f});
  std::vector<int32_t> history{0, 0};
  auto l = logits_of({3.0f, 2.0f});  // 3/2 = 1.5 < 2
  EXPECT_EQ(s.sample(l, history), 1);
  Sampler f({.temperature = 0, .frequency_penalty = 0.6f});
  auto m = logits_of({3.0f, 2.0f});  // 3 - 2 * 0.6 = 1.8 < 2
  EXPECT_EQ(f.sample(m, history), 1);
}

TEST(Sampler, RefusesNonsense) {
  EXPECT_THROW(Sampler({.temperature = std::nanf("")}), InputError);
  EXPECT_THROW(Sampler({.temperature = -1}), InputError);
  EXPECT_THROW(Sampler({.top_p = 0}), InputError);
  EXPECT_THROW(Sampler({.top_k = -2}), InputError);
}

}  // namespace
}  // namespace umi
