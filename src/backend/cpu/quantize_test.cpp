#include "backend/cpu/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/dot.h"

namespace umi::cpu {
namespace {

// Relative RMS error of x through quantize_row and dequantize, over all
// values and over those of magnitude above 2.5 (the large ones).
struct RoundTrip {
  double all, large;
};
RoundTrip round_trip(DType t, const std::vector<float>& x) {
  std::vector<std::byte> q(dtype_bytes(t, x.size()).value());
  quantize_row(t, x.data(), static_cast<int64_t>(x.size()), q.data());
  std::vector<float> y(x.size());
  dequantize(t, q.data(), y.data(), static_cast<int64_t>(x.size()));
  double e = 0, s = 0, el = 0, sl = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = static_cast<double>(x[i]) - y[i], v = static_cast<double>(x[i]) * x[i];
    e += d * d, s += v;
    if (std::fabs(x[i]) > 2.5f) el += d * d, sl += v;
  }
  return {std::sqrt(e / s), std::sqrt(el / sl)};
}
double round_trip_error(DType t, const std::vector<float>& x) { return round_trip(t, x).all; }

// The K-quants' scales are fitted by weighted least squares (fit_symmetric,
// fit_with_min, with ggml's weights), not set by each group's extremes.
// Gaussian values, every seventh three times as large (weights have
// outliers). Each bound sits between the two quantizers on the measure the
// fit gains on (the weights trade some of one for the other): relative RMS
// over all values for Q2_K (extremes 0.374, fit 0.338), Q4_K (0.097,
// 0.089), Q5_K (0.047, 0.044) and Q6_K (0.0245, 0.0238); over the large
// values for Q3_K (0.060, 0.043; over all 0.196, 0.200) and Q6_K (0.0071,
// 0.0055). On the bundled model the mean KL divergence from the f32 model's
// next-token distributions over 3,000 positions fell 10-19% for every type
// (umi_bench_quant_quality, PERFORMANCE.md).
TEST(Quantize, KQuantScalesFitTheValues) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> x(256 * 1024);
  for (size_t i = 0; i < x.size(); ++i) x[i] = nd(rng) * (i % 7 == 0 ? 3.0f : 1.0f);
  EXPECT_LT(round_trip(DType::Q2_K, x).all, 0.35);
  EXPECT_LT(round_trip(DType::Q3_K, x).large, 0.05);
  EXPECT_LT(round_trip(DType::Q3_K, x).all, 0.205);
  EXPECT_LT(round_trip(DType::Q4_K, x).all, 0.092);
  EXPECT_LT(round_trip(DType::Q5_K, x).all, 0.0455);
  EXPECT_LT(round_trip(DType::Q6_K, x).all, 0.0242);
  EXPECT_LT(round_trip(DType::Q6_K, x).large, 0.0062);
}

// A group whose values are all equal, all zero or all negative still
// round-trips (no division by a zero range, an offset where one is needed).
TEST(Quantize, KQuantsTakeDegenerateGroups) {
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    for (float v : {1.5f, -2.0f}) EXPECT_LT(round_trip_error(t, std::vector<float>(256, v)), 0.05) << to_string(t) << " " << v;
    std::vector<std::byte> q(dtype_bytes(t, 256).value());
    const std::vector<float> zeros(256, 0.0f);
    quantize_row(t, zeros.data(), 256, q.data());
    std::vector<float> y(256, std::nanf(""));
    dequantize(t, q.data(), y.data(), 256);
    for (float f : y) ASSERT_EQ(f, 0.0f) << to_string(t);
    std::vector<float> neg(256);
    for (size_t i = 0; i < neg.size(); ++i) neg[i] = -1.0f - static_cast<float>(i % 16) / 16.0f;
    EXPECT_LT(round_trip_error(t, neg), 0.15) << to_string(t);
  }
}

}  // namespace
}  // namespace umi::cpu
