// Every CPU kernel against a plain scalar reference, on random inputs.
#include "backend/cpu/kernels.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>

#include "backend/cpu/dot.h"
#include "backend/cpu/half.h"
#include "backend/cpu/quantize.h"

namespace umi::cpu {
namespace {

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

std::vector<std::byte> encode(DType t, const std::vector<float>& x) {
  std::vector<std::byte> out(dtype_bytes(t, x.size()).value());
  quantize_row(t, x.data(), static_cast<int64_t>(x.size()), out.data());
  return out;
}

class DotKernels : public ::testing::TestWithParam<DType> {};

TEST_P(DotKernels, MatchTheScalarReference) {
  const DType t = GetParam();
  for (int64_t n : {32, 64, 96, 256, 4096, 4128}) {
    auto w = random_floats(static_cast<size_t>(n), static_cast<uint32_t>(n));
    auto x = random_floats(static_cast<size_t>(n), static_cast<uint32_t>(n + 1));
    auto row = encode(t, w);
    float ref = dot_reference(t, row.data(), x.data(), n);
    float tol = 1e-4f * std::sqrt(static_cast<float>(n)) * (1 + std::fabs(ref));
    EXPECT_NEAR(dot_portable(t)(row.data(), x.data(), n), ref, tol) << n;
    EXPECT_NEAR(dot_function(t)(row.data(), x.data(), n), ref, tol) << n;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, DotKernels, ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(Kernels, IntegerDotsOfQuantizedWeightsMatchTheFloatReference) {
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    for (int64_t n : {32, 256, 4096}) {
      auto w = random_floats(static_cast<size_t>(n), static_cast<uint32_t>(n + 7));
      auto x = random_floats(static_cast<size_t>(n), static_cast<uint32_t>(n + 8));
      auto row = encode(t, w);
      std::vector<Q8Block> xq(static_cast<size_t>(n / 32));
      quantize_activations(x.data(), n, xq.data());
      float ref = dot_reference(t, row.data(), x.data(), n);
      float portable = qdot_portable(t)(row.data(), xq.data(), n);
      float fast = qdot_function(t)(row.data(), xq.data(), n);
      // Both integer paths compute the same integers: only float summation order differs.
      EXPECT_NEAR(fast, portable, 1e-4f * (1 + std::fabs(portable))) << to_string(t) << " " << n;
      // Against float activations: the q8 rounding of x (0.4% per value) is the difference.
      EXPECT_NEAR(portable, ref, 0.02f * std::sqrt(static_cast<float>(n))) << to_string(t) << " " << n;
    }
  }
}

TEST(Kernels, QuantizeThenDequantizeIsCloseAndNeverZeroedOut) {
  auto x = random_floats(1024, 5);
  for (auto [t, tol] : {std::pair{DType::F16, 1e-3}, std::pair{DType::BF16, 8e-3}, std::pair{DType::Q8_0, 1e-2}, std::pair{DType::Q4_0, 0.15}}) {
    auto q = encode(t, x);
    std::vector<float> back(x.size(), std::nanf(""));  // poisoned: every element must be written
    dequantize(t, q.data(), back.data(), 1024);
    double num = 0, den = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_FALSE(std::isnan(back[i]));
      num += std::pow(back[i] - x[i], 2);
      den += std::pow(x[i], 2);
    }
    EXPECT_LT(std::sqrt(num / den), tol) << to_string(t);
  }
}

TEST(Kernels, HalfConversionsRoundTripEveryValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_f16(f), h) << h;
    EXPECT_EQ(f32_to_bf16(bf16_to_f32(static_cast<uint16_t>(h))), h & 0xffff) << h;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);              // rounds to infinity
}

TEST(Kernels, MatmulMatchesRowByRowReference) {
  ThreadPool pool(3);
  for (DType t : {DType::F32, DType::BF16, DType::Q8_0, DType::Q4_0}) {
    const int64_t rows = 67, cols = 96, tokens = 5;
    std::vector<std::byte> data;
    for (int64_t r = 0; r < rows; ++r) {
      auto row = encode(t, random_floats(cols, static_cast<uint32_t>(r)));
      data.insert(data.end(), row.begin(), row.end());
    }
    MatrixView w{t, data.data(), rows, cols};
    auto x = random_floats(static_cast<size_t>(tokens * cols), 77);
    std::vector<float> y(static_cast<size_t>(tokens * rows), std::nanf(""));
    matmul(pool, w, x.data(), tokens, y.data());
    // Quantized weights multiply q8-quantized activations: that is the reference.
    std::vector<Q8Block> xq(static_cast<size_t>(tokens * cols / 32));
    for (int64_t tk = 0; tk < tokens; ++tk) quantize_activations(x.data() + tk * cols, cols, xq.data() + tk * (cols / 32));
    for (int64_t tk = 0; tk < tokens; ++tk)
      for (int64_t r = 0; r < rows; ++r) {
        const std::byte* row = data.data() + r * static_cast<int64_t>(w.row_bytes());
        float ref = qdot_portable(t) ? qdot_portable(t)(row, xq.data() + tk * (cols / 32), cols)
                                     : dot_reference(t, row, x.data() + tk * cols, cols);
        EXPECT_NEAR(y[static_cast<size_t>(tk * rows + r)], ref, 1e-3f * (1 + std::fabs(ref)));
      }
  }
}

TEST(Kernels, RmsNormRopeSwigluMatchReferences) {
  auto x = random_floats(64, 3);
  auto wv = random_floats(64, 4);
  std::vector<float> out(64);
  rms_norm(x.data(), VectorView{DType::F32, reinterpret_cast<const std::byte*>(wv.data()), 64}, 64, 1e-5f, out.data());
  double ss = 0;
  for (float v : x) ss += v * v;
  for (int i = 0; i < 64; ++i) EXPECT_NEAR(out[i], x[i] / std::sqrt(ss / 64 + 1e-5) * wv[i], 1e-5);

  std::vector<float> inv_freq{1.0f, 0.1f, 0.01f, 0.001f};
  for (bool interleaved : {false, true}) {
    auto h = random_floats(8, 9), ref = h;
    rope(h.data(), 8, inv_freq.data(), 7, interleaved);
    for (int i = 0; i < 4; ++i) {
      int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + 4;
      double ang = 7.0 * inv_freq[i];
      EXPECT_NEAR(h[a], ref[a] * std::cos(ang) - ref[b] * std::sin(ang), 1e-5);
      EXPECT_NEAR(h[b], ref[b] * std::cos(ang) + ref[a] * std::sin(ang), 1e-5);
    }
  }
  auto g = random_floats(32, 10), u = random_floats(32, 11), ref = g;
  swiglu(g.data(), u.data(), 32);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(g[i], ref[i] / (1 + std::exp(-ref[i])) * u[i], 1e-5);
}

TEST(ThreadPool, RunsEveryIndexExactlyOnce) {
  ThreadPool pool(4);
  for (int64_t n : {1, 3, 17, 1000, 12345}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    pool.parallel_for(n, 7, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  }
}

}  // namespace
}  // namespace umi::cpu
