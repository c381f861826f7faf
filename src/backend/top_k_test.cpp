#include "backend/top_k.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace umi {
namespace {

// The plain definition: every finite logit / temperature, sorted by rank.
std::vector<Candidate> sorted_candidates(const std::vector<float>& row, float temperature) {
  std::vector<Candidate> all;
  for (size_t i = 0; i < row.size(); ++i)
    if (std::isfinite(row[i])) all.push_back({row[i] / temperature, static_cast<int32_t>(i)});
  std::sort(all.begin(), all.end(), ranks_before);
  return all;
}

TEST(TopK, SelectsTheBestInRankOrderWithTiesByLowerId) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.f, 3.f);
  for (int64_t n : {1, 7, 1000, 50000}) {
    std::vector<float> row(static_cast<size_t>(n));
    for (float& v : row) v = std::round(nd(rng) * 4) / 4;  // many equal values
    if (n > 10) {
      row[3] = std::numeric_limits<float>::quiet_NaN();
      row[4] = std::numeric_limits<float>::infinity();
      row[5] = -std::numeric_limits<float>::infinity();
    }
    for (float t : {1.0f, 0.7f, 3.0f})
      for (int k : {1, 2, 40, kMaxTopK}) {
        const std::vector<Candidate> want = sorted_candidates(row, t);
        TopK top;
        top.count = select_top_k(row.data(), n, t, k, top.best.data());
        ASSERT_EQ(top.count, std::min<int64_t>(k, static_cast<int64_t>(want.size()))) << n << " values, k " << k;
        for (int i = 0; i < top.count; ++i) {
          EXPECT_EQ(top.best[static_cast<size_t>(i)].id, want[static_cast<size_t>(i)].id) << n << " values, k " << k << ", rank " << i;
          EXPECT_EQ(top.best[static_cast<size_t>(i)].value, want[static_cast<size_t>(i)].value);
        }
      }
  }
}

TEST(TopK, ARowWithoutFiniteLogitsHasNoCandidates) {
  std::vector<float> row(10, std::numeric_limits<float>::quiet_NaN());
  TopK top;
  EXPECT_EQ(select_top_k(row.data(), 10, 1.0f, 5, top.best.data()), 0);
}

}  // namespace
}  // namespace umi
