#include "engine/logprobs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"

namespace umi {
namespace {

TEST(Logprobs, MatchAPlainLogSoftmaxAndTheTopAreTheLargest) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.f, 4.f);
  std::vector<float> logits(5000);
  for (float& v : logits) v = dist(rng);
  logits[17] = logits[99];  // a tie: the lower id comes first
  double z = 0;
  for (float v : logits) z += std::exp(static_cast<double>(v));
  for (int32_t t : {0, 17, 99, 4999}) {
    TokenLogprobs lp = token_logprobs(logits, t, 5);
    EXPECT_NEAR(lp.logprob, std::log(std::exp(static_cast<double>(logits[t])) / z), 1e-4);
    ASSERT_EQ(lp.top.size(), 5u);
    std::vector<float> sorted = logits;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(logits[static_cast<size_t>(lp.top[i].first)], sorted[i]);
      EXPECT_NEAR(lp.top[i].second, sorted[i] - std::log(z), 1e-4);
    }
  }
  std::vector<float> tied = {1.f, 3.f, 3.f, 0.f};
  TokenLogprobs lp = token_logprobs(tied, 0, 3);
  EXPECT_EQ(lp.top[0].first, 1);
  EXPECT_EQ(lp.top[1].first, 2);
  EXPECT_EQ(lp.top[2].first, 0);
  EXPECT_EQ(token_logprobs(tied, 3, 0).top.size(), 0u);
  EXPECT_EQ(token_logprobs(tied, 3, 10).top.size(), 4u);
}

TEST(Logprobs, RefuseBadArguments) {
  std::vector<float> logits = {0.f, 1.f};
  EXPECT_THROW(token_logprobs(logits, 2, 1), InputError);
  EXPECT_THROW(token_logprobs(logits, -1, 1), InputError);
  EXPECT_THROW(token_logprobs(logits, 0, -1), InputError);
}

}  // namespace
}  // namespace umi
