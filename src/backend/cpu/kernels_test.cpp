// Every CPU kernel against a plain scalar reference, on random inputs.
#include "backend/cpu/kernels.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <ctime>
#include <limits>
#include <thread>
#include <vector>
#include <random>

#include <sys/mman.h>
#include <unistd.h>

#include "backend/cpu/dot.h"
#include "backend/cpu/half.h"
#include "backend/cpu/kernel_set.h"
#include "backend/cpu/q8_pairs.h"
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

const DType kQuantized[] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K,
                            DType::Q6_K, DType::Q3_K, DType::Q2_K, DType::IQ4_NL, DType::IQ4_XS};

// Weights with an offset and a spread that varies by block, so that mins,
// negative scales and per-16 scales all matter.
std::vector<float> lumpy_floats(size_t n, uint32_t seed) {
  auto v = random_floats(n, seed);
  for (size_t i = 0; i < n; ++i) v[i] = v[i] * (0.2f + static_cast<float>((i / 16) % 7)) + 0.3f;
  return v;
}

// The reference for a quantized row times q8 activations: the dequantized
// weights times the dequantized q8 values, in double, and the tolerance a
// float kernel's summation order allows.
struct Reference {
  double value, tolerance;
};
// value(i): the i-th activation as the kernel reads it.
template <class Value>
Reference reference_of(DType t, const std::byte* row, int64_t n, Value value) {
  std::vector<float> wf(static_cast<size_t>(n));
  dequantize(t, row, wf.data(), n);
  double ref = 0, mag = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double xv = value(i);
    ref += wf[static_cast<size_t>(i)] * xv;
    mag += std::fabs(wf[static_cast<size_t>(i)] * xv);
  }
  return {ref, 1e-5 * mag + 1e-4};
}

Reference q8_reference(DType t, const std::byte* row, const std::vector<Q8Block>& xq, int64_t n) {
  return reference_of(t, row, n, [&](int64_t i) {
    const Q8Block& b = xq[static_cast<size_t>(i / 32)];
    return static_cast<double>(b.d) * b.q[i % 32];
  });
}

TEST(Kernels, IntegerDotsOfQuantizedWeightsMatchTheFloatReference) {
  for (DType t : kQuantized) {
    for (int64_t n : {256, 512, 4096}) {
      auto w = lumpy_floats(static_cast<size_t>(n), static_cast<uint32_t>(n + 7));
      auto x = random_floats(static_cast<size_t>(n), static_cast<uint32_t>(n + 8));
      auto row = encode(t, w);
      std::vector<Q8Block> xq(static_cast<size_t>(n / 32));
      quantize_activations(x.data(), n, xq.data());
      const auto [ref, tol] = q8_reference(t, row.data(), xq, n);
      EXPECT_NEAR(qdot_portable(t)(row.data(), xq.data(), n), ref, tol) << to_string(t) << " " << n;
      for (const KernelSet* set : runnable_kernel_sets()) {
      EXPECT_NEAR(set->qdot(t)(row.data(), xq.data(), n), ref, tol) << to_string(t) << " " << n << " " << set->name;
      if (QDot4Fn four = set->qdot4(t)) {
        std::vector<std::vector<Q8Block>> xs(4, std::vector<Q8Block>(static_cast<size_t>(n / 32)));
        const Q8Block* ptrs[4];
        for (int j = 0; j < 4; ++j) {
          auto xj = random_floats(static_cast<size_t>(n), static_cast<uint32_t>(n + 20 + j));
          quantize_activations(xj.data(), n, xs[static_cast<size_t>(j)].data());
          ptrs[j] = xs[static_cast<size_t>(j)].data();
        }
        float out[4];
        four(row.data(), ptrs, n, out);
        for (int j = 0; j < 4; ++j) {
          const float one = qdot_portable(t)(row.data(), ptrs[j], n);
          EXPECT_NEAR(out[j], one, 1e-4f * (1 + std::fabs(one)) * std::sqrt(static_cast<float>(n))) << to_string(t) << " row " << j;
        }
      }
      }
    }
  }
}

// Activations laid out for a pair kernel, and the double reference of a row
// against the activations they hold: Q4_0 and Q8_0 read q8 blocks (one
// scale per 32), the K-quants Q8KBlocks (one per 256).
struct PairInput {
  std::vector<Q8Block> xq;
  std::vector<Q8KBlock> xk;
  std::vector<Q8Pair> pairs;  // 64-byte aligned room for any non-K layout
  const void* laid_out() const { return xk.empty() ? static_cast<const void*>(pairs.data()) : xk.data(); }
};

PairInput pair_input(DType t, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  PairInput in;
  if (is_k_quant(t)) {
    in.xk.resize(static_cast<size_t>(n / 256));
    make_q8k_blocks(t, x.data(), n, in.xk.data());
    return in;
  }
  in.xq.resize(static_cast<size_t>(n / 32));
  quantize_activations(x.data(), n, in.xq.data());
  in.pairs.resize((pair_activation_bytes(t, n) + sizeof(Q8Pair) - 1) / sizeof(Q8Pair));
  // Not zero: the engine's scratch holds the last product's activations, so
  // the layout must write (or zero) every byte a kernel reads. All ones: a
  // stale float left in place reads as NaN, which no zero weight cancels.
  std::memset(static_cast<void*>(in.pairs.data()), 0xFF, in.pairs.size() * sizeof(Q8Pair));
  make_q8_pairs(t, in.xq.data(), n / 32, in.pairs.data());
  return in;
}

Reference pair_reference(DType t, const std::byte* row, const PairInput& in, int64_t n) {
  if (in.xk.empty()) return q8_reference(t, row, in.xq, n);
  return reference_of(t, row, n, [&](int64_t i) {
    const Q8KBlock& b = in.xk[static_cast<size_t>(i / 256)];
    return static_cast<double>(b.d[0]) * b.q[k_position(t, static_cast<int>(i % 256))];
  });
}

// The single-token pair kernels (q8_pairs.h) against the double reference
// of the activations they read, with odd and even step counts, 1-3 rows. The last row ends where a readable page does
// (the next one is PROT_NONE): a kernel that reads past its rows, as a
// matrix's last row lies at the end of a mapped file, faults.
TEST(Kernels, PairKernelsMatchTheReferenceAndStayInTheirRows) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  int checked = 0;
  for (const KernelSet* set : runnable_kernel_sets())
    for (DType t : {DType::Q4_0, DType::Q5_0, DType::Q4_1, DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS, DType::IQ4_NL,
                    DType::Q3_K, DType::Q2_K})
      for (int64_t rows = 1; rows <= 3; ++rows) {
        const QPairDotFn dot = set->qpair(t);
        if (!dot) continue;
        // The 4-bit formats go sixteen blocks at a time (0, 3, 4 and 8 groups, then 0-3 quads of a last one), Q8_0 two, the
        // K-quants a super-block.
        const auto sizes = is_nibble_group(t)                      ? std::vector<int64_t>{128, 384, 1536, 2304, 4224}
                           : is_k_quant(t)                       ? std::vector<int64_t>{256, 768, 2048, 8192}
                                              : std::vector<int64_t>{64, 192, 2048, 4160};
        for (int64_t n : sizes) {
          std::vector<std::byte> data;
          for (int64_t r = 0; r < rows; ++r) {
            const auto row = encode(t, lumpy_floats(static_cast<size_t>(n), static_cast<uint32_t>(n + 3 + r)));
            data.insert(data.end(), row.begin(), row.end());
          }
          const size_t rb = data.size() / static_cast<size_t>(rows);
          const size_t span = (data.size() + page - 1) / page * page;
          void* map = mmap(nullptr, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
          ASSERT_NE(map, MAP_FAILED);
          ASSERT_EQ(mprotect(static_cast<std::byte*>(map) + span, page, PROT_NONE), 0);
          std::byte* at = static_cast<std::byte*>(map) + span - data.size();
          std::memcpy(at, data.data(), data.size());
          const PairInput in = pair_input(t, random_floats(static_cast<size_t>(n), static_cast<uint32_t>(n + 4)));
          std::vector<float> y(static_cast<size_t>(rows), std::nanf(""));
          dot(at, rb, rows, in.laid_out(), n / 64, y.data());
          for (int64_t r = 0; r < rows; ++r) {
            const auto [ref, tol] = pair_reference(t, data.data() + static_cast<size_t>(r) * rb, in, n);
            EXPECT_NEAR(y[static_cast<size_t>(r)], ref, tol) << set->name << " " << to_string(t) << " n " << n << " row " << r << "/" << rows;
          }
          munmap(map, span + page);
          ++checked;
        }
      }
  if (checked == 0) GTEST_SKIP() << "no build with pair kernels runs on this CPU";
}

// Q8KBlocks hold x to within half a step of their one scale, in order,
// with the sums of their q per 16 and per 32; every build writes the same
// bytes.
TEST(Kernels, KQuantActivationsHoldTheirValuesAndSums) {
  const int64_t n = 768;
  auto x = random_floats(static_cast<size_t>(n), 91);
  for (int64_t i = 256; i < 512; ++i) x[static_cast<size_t>(i)] *= 1e-3f;  // a block of small values: its own scale
  std::vector<Q8KBlock> ref(static_cast<size_t>(n / 256));
  portable_kernels().quantize_k(x.data(), n, ref.data());
  for (int64_t b = 0; b < n / 256; ++b) {
    const Q8KBlock& k = ref[static_cast<size_t>(b)];
    float amax = 0;
    for (int64_t i = 0; i < 256; ++i) amax = std::max(amax, std::fabs(x[static_cast<size_t>(b * 256 + i)]));
    EXPECT_FLOAT_EQ(k.d[15], amax / 127) << "block " << b;
    int sum16[16] = {};
    for (int i = 0; i < 256; ++i) {
      EXPECT_NEAR(k.q[i] * k.d[0], x[static_cast<size_t>(b * 256 + i)], 0.5001 * k.d[0]) << "block " << b << " value " << i;
      sum16[i / 16] += k.q[i];
    }
    for (int j = 0; j < 16; ++j) EXPECT_EQ(k.sum16[j], sum16[j]) << "block " << b << " sixteen " << j;
    for (int s = 0; s < 8; ++s) EXPECT_EQ(k.sum32[s], sum16[2 * s] + sum16[2 * s + 1]) << "block " << b << " sub-block " << s;
  }
  for (const KernelSet* set : runnable_kernel_sets()) {
    std::vector<Q8KBlock> got(ref.size());
    set->quantize_k(x.data(), n, got.data());
    for (size_t b = 0; b < ref.size(); ++b) {
      EXPECT_EQ(std::memcmp(got[b].q, ref[b].q, sizeof ref[b].q), 0) << set->name << " block " << b;
      EXPECT_EQ(std::memcmp(got[b].sum16, ref[b].sum16, sizeof ref[b].sum16), 0) << set->name << " block " << b;
    }
  }
}

// The Q4_0 pair kernels decode the weights' f16 scales by conversion
// (512-bit) or by integer shifts (256-bit, pair_dot_avx2.h): positive,
// negative and subnormal d (weights near 1e-5) all match the reference, and
// so do activations with block scales past 2^15 (~1e5), which the layout of
// sessions 13-19 (d x 2^112) could not carry; matmul's pair path too.
TEST(Kernels, Q4_0PairScalesOfEverySignAndSizeAndHugeActivations) {
  const int64_t n = 512;
  for (const KernelSet* set : runnable_kernel_sets()) {
    const QPairDotFn dot = set->qpair(DType::Q4_0);
    if (!dot) continue;
    for (float x_scale : {1.0f, 1e7f})
      for (float scale : {1.0f, -1.0f, 1e-5f, -3e-6f}) {
        auto wf = lumpy_floats(static_cast<size_t>(n), 77);
        for (size_t i = 0; i < wf.size(); ++i) wf[i] *= (i / 32) % 2 ? scale : -scale;
        const auto row = encode(DType::Q4_0, wf);
        const PairInput in = pair_input(DType::Q4_0, random_floats(static_cast<size_t>(n), 78, x_scale));
        float y = std::nanf("");
        dot(row.data(), row.size(), 1, in.laid_out(), n / 64, &y);
        const auto [ref, tol] = q8_reference(DType::Q4_0, row.data(), in.xq, n);
        const double tol_scaled = (tol - 1e-4) + 1e-4 * std::fabs(scale) * x_scale;  // the reference's floor, scaled with the operands
        EXPECT_NEAR(y, ref, tol_scaled) << set->name << " weights x " << scale << " activations x " << x_scale;
        EXPECT_NE(ref, 0.0) << "the reference must not be trivially zero";
        EXPECT_TRUE(std::isfinite(y));
      }
  }
  const int64_t rows = 64;
  std::vector<std::byte> data;
  for (int64_t r = 0; r < rows; ++r) {
    const auto row = encode(DType::Q4_0, lumpy_floats(static_cast<size_t>(n), static_cast<uint32_t>(r + 5)));
    data.insert(data.end(), row.begin(), row.end());
  }
  auto x = random_floats(static_cast<size_t>(n), 79, 1e7f);  // block scales ~1e5: over 2^15
  std::vector<Q8Block> xq(static_cast<size_t>(n / 32));
  quantize_activations(x.data(), n, xq.data());
  ThreadPool pool(2);
  std::vector<float> y(static_cast<size_t>(rows));
  matmul(pool, MatrixView{DType::Q4_0, data.data(), rows, n}, x.data(), 1, y.data());
  const size_t rb = data.size() / rows;
  for (int64_t r = 0; r < rows; ++r) {
    const auto [ref, tol] = q8_reference(DType::Q4_0, data.data() + static_cast<size_t>(r) * rb, xq, n);
    ASSERT_NEAR(y[static_cast<size_t>(r)], ref, tol) << "row " << r;
    ASSERT_TRUE(std::isfinite(y[static_cast<size_t>(r)]));
  }
}

// The tiled GEMM of every build, every format, 1-9 tokens (every tail of the
// 4-token groups), against the portable row kernel; 40 rows: whole tiles
// done, the tail left to the caller.
TEST(Kernels, TiledGemmMatchesTheRowKernels) {
  for (const KernelSet* set : runnable_kernel_sets()) {
    for (DType t : kQuantized) {
      QGemmFn gemm = set->qgemm(t);
      if (!gemm) continue;
      const int64_t rows = 40, cols = 512, tokens = 9;
      std::vector<std::byte> data;
      for (int64_t r = 0; r < rows; ++r) {
        auto row = encode(t, lumpy_floats(cols, static_cast<uint32_t>(r + 100)));
        data.insert(data.end(), row.begin(), row.end());
      }
      const size_t rb = data.size() / rows;
      auto x = random_floats(static_cast<size_t>(tokens * cols), 99);
      std::vector<Q8Block> xq(static_cast<size_t>(tokens * cols / 32));
      for (int64_t tk = 0; tk < tokens; ++tk) quantize_activations(x.data() + tk * cols, cols, xq.data() + tk * (cols / 32));
      std::vector<std::byte> pack(gemm_pack_bytes(cols) + 64);
      void* aligned = pack.data() + (64 - reinterpret_cast<uintptr_t>(pack.data()) % 64) % 64;
      for (int64_t used = 1; used <= tokens; ++used) {
        std::vector<float> y(static_cast<size_t>(used * rows), std::nanf(""));
        const int64_t done = gemm(GemmArgs{data.data(), rb, cols, 0, rows, xq.data(), used, y.data(), rows, aligned});
        ASSERT_TRUE(done == 32 || done == 40) << set->name << " did " << done << " rows";
        for (int64_t tk = 0; tk < used; ++tk)
          for (int64_t r = 0; r < rows; ++r) {
            if (r >= done) {
              ASSERT_TRUE(std::isnan(y[static_cast<size_t>(tk * rows + r)])) << "row " << r << " is the caller's";
              continue;
            }
            const float ref = qdot_portable(t)(data.data() + r * static_cast<int64_t>(rb), xq.data() + tk * (cols / 32), cols);
            ASSERT_NEAR(y[static_cast<size_t>(tk * rows + r)], ref, 1e-4f * (1 + std::fabs(ref)) * 10)
                << set->name << " " << to_string(t) << " tokens " << used << " row " << r;
          }
      }
    }
  }
}

TEST(Kernels, QuantizedDotOfFloatActivationsIsCloseToTheFloatDot) {
  for (DType t : kQuantized) {
    const int64_t n = 4096;
    auto w = lumpy_floats(n, 31), x = random_floats(n, 32);
    auto row = encode(t, w);
    std::vector<Q8Block> xq(n / 32);
    quantize_activations(x.data(), n, xq.data());
    const float ref = dot_reference(t, row.data(), x.data(), n);
    // The q8 rounding of x (0.4% per value) is the only difference.
    EXPECT_NEAR(qdot_function(t)(row.data(), xq.data(), n), ref, 0.01 * std::sqrt(n) * 2.5) << to_string(t);
  }
}

// Every build's activation quantizer against the plain rule: d = max|x| /
// 127, q = the float x * (1 / d) rounded to the nearest integer, ties to
// even; each half's sum of q. A block whose max is 127 has d = 1, so its
// values k + 0.5 are exact ties.
TEST(Kernels, ActivationQuantizersOfEveryBuildRoundTiesToEvenAndCarryTheirSums) {
  auto x = random_floats(256, 3);
  for (int i = 0; i < 32; ++i) x[static_cast<size_t>(i)] = i == 0 ? 127.0f : static_cast<float>(i % 2 ? i : -i) * 2.0f + 0.5f;
  for (const KernelSet* set : runnable_kernel_sets()) {
    std::vector<Q8Block> xq(x.size() / 32);
    set->quantize(x.data(), static_cast<int64_t>(x.size()), xq.data());
    for (size_t b = 0; b < xq.size(); ++b) {
      float m = 0;
      for (int i = 0; i < 32; ++i) m = std::max(m, std::fabs(x[b * 32 + static_cast<size_t>(i)]));
      const float d = m / 127.0f, id = 1.0f / d;
      ASSERT_EQ(xq[b].d, d) << set->name << " block " << b;
      int sum[2] = {0, 0};
      for (int i = 0; i < 32; ++i) {
        const volatile float p = x[b * 32 + static_cast<size_t>(i)] * id;  // rounded to float first
        const int q = static_cast<int>(std::nearbyint(p));
        ASSERT_EQ(xq[b].q[i], q) << set->name << " block " << b << " value " << i << " (" << p << ")";
        sum[i / 16] += q;
      }
      EXPECT_EQ(xq[b].sum[0], sum[0]) << set->name;
      EXPECT_EQ(xq[b].sum[1], sum[1]) << set->name;
    }
  }
}

// Hand-built blocks pin the bit layouts of quant_blocks.h (independently of
// the quantizers, which could share a misreading with dequantize()).
TEST(Kernels, BlockLayoutsReadAsGgmlWritesThem) {
  // Q5_0: d = 1 (f16 0x3c00), qh bit 0 and bit 17 set, qs[0] = 0x21, qs[1] = 0x00.
  std::vector<std::byte> q50(22, std::byte{0});
  q50[0] = std::byte{0x00}, q50[1] = std::byte{0x3c};
  q50[2] = std::byte{0x01}, q50[4] = std::byte{0x02};  // bits 0 and 17
  q50[6] = std::byte{0x21};
  std::vector<float> out(32);
  dequantize(DType::Q5_0, q50.data(), out.data(), 32);
  EXPECT_EQ(out[0], 1 + 16 - 16);   // low nibble 1, bit 0 set
  EXPECT_EQ(out[16], 2 - 16);       // high nibble 2, bit 16 clear
  EXPECT_EQ(out[17], 0 + 16 - 16);  // bit 17 set
  EXPECT_EQ(out[1], -16);
  // Q4_K: d = 1, dmin = 1; sub-block 5 gets scale 0x25 = 37 (low nibble 5 in byte 9, top bits 0b10
  // in byte 1) and min 0x13 = 19 (low nibble 3 in byte 9's high half, top bits 0b01 in byte 5).
  std::vector<std::byte> q4k(144, std::byte{0});
  q4k[1] = std::byte{0x3c}, q4k[3] = std::byte{0x3c};
  q4k[4 + 9] = std::byte{0x35};
  q4k[4 + 1] = std::byte{0x80};
  q4k[4 + 5] = std::byte{0x40};
  q4k[16 + 64 + 3] = std::byte{0x70};  // chunk 2, l = 3: high nibble 7 -> sub-block 5, element 3
  std::vector<float> k(256);
  dequantize(DType::Q4_K, q4k.data(), k.data(), 256);
  EXPECT_EQ(k[5 * 32 + 3], 37.0f * 7 - 19);
  EXPECT_EQ(k[5 * 32 + 4], -19.0f);
  EXPECT_EQ(k[4 * 32 + 3], 0.0f);  // sub-block 4: scale and min 0
  // Q6_K: d = 1 at byte 208; scales[9] = -2; element 128 + 16 + 64 = 208 (second half, group 2, l = 16)
  // takes the high nibble of ql[64 + 16] and bits 4-5 of qh[32 + 16].
  std::vector<std::byte> q6k(210, std::byte{0});
  q6k[209] = std::byte{0x3c};
  q6k[192 + 13] = std::byte{0xfe};     // scale of values 208..223
  q6k[64 + 16] = std::byte{0x50};      // nibble 5
  q6k[128 + 32 + 16] = std::byte{0x20};  // bits 4-5 = 0b10
  std::vector<float> six(256);
  dequantize(DType::Q6_K, q6k.data(), six.data(), 256);
  EXPECT_EQ(six[208], -2.0f * ((5 | (2 << 4)) - 32));
  // Q3_K: d = 1 at byte 108; scale 13 (values 208..223) = 43 - 32 = 11: low nibble 0xB in byte 5's high
  // half, top bits 0b10 at bits 6-7 of byte 9 (of the 12 at 96). Element 210 (second half, shift group
  // 2, l = 18): bits 4-5 of qs[32 + 18] = 3, hmask[18] bit 6 set (q = 3); element 211: bits 0, bit clear (q = -4).
  std::vector<std::byte> q3k(110, std::byte{0});
  q3k[109] = std::byte{0x3c};
  q3k[96 + 5] = std::byte{0xB0}, q3k[96 + 9] = std::byte{0x80};
  q3k[32 + 32 + 18] = std::byte{0x30};
  q3k[18] = std::byte{0x40};
  std::vector<float> three(256);
  dequantize(DType::Q3_K, q3k.data(), three.data(), 256);
  EXPECT_EQ(three[210], 11.0f * 3);
  EXPECT_EQ(three[211], 11.0f * -4);
  // Q2_K: d = dmin = 1 (bytes 80, 82); scales[6] = 0x35 (scale 5, min 3) for values 96..111;
  // element 100 (shift group 3, l = 4): bits 6-7 of qs[4] = 2.
  std::vector<std::byte> q2k(84, std::byte{0});
  q2k[81] = std::byte{0x3c}, q2k[83] = std::byte{0x3c};
  q2k[6] = std::byte{0x35};
  q2k[16 + 4] = std::byte{0x80};
  std::vector<float> two(256);
  dequantize(DType::Q2_K, q2k.data(), two.data(), 256);
  EXPECT_EQ(two[100], 5.0f * 2 - 3);
  EXPECT_EQ(two[101], -3.0f);
  // IQ4_NL: d = 1; qs[3] = 0xF2: element 3 is level 2 (-83), element 19 level 15 (113).
  std::vector<std::byte> nl(18, std::byte{0});
  nl[1] = std::byte{0x3c}, nl[2 + 3] = std::byte{0xF2};
  std::vector<float> nlv(32);
  dequantize(DType::IQ4_NL, nl.data(), nlv.data(), 32);
  EXPECT_EQ(nlv[3], -83.0f);
  EXPECT_EQ(nlv[19], 113.0f);
  EXPECT_EQ(nlv[0], -127.0f);
  // IQ4_XS: d = 1; sub-block 5's scale 42 - 32 = 10: low nibble 0xA in scales_l[2]'s high half, top
  // bits 0b10 at bits 10-11 of scales_h; its qs[7] = 0x1F: element 167 level 15, element 183 level 1.
  std::vector<std::byte> xs(136, std::byte{0});
  xs[1] = std::byte{0x3c}, xs[3] = std::byte{0x08}, xs[4 + 2] = std::byte{0xA0};
  xs[8 + 16 * 5 + 7] = std::byte{0x1F};
  std::vector<float> xsv(256);
  dequantize(DType::IQ4_XS, xs.data(), xsv.data(), 256);
  EXPECT_EQ(xsv[167], 10.0f * 113);
  EXPECT_EQ(xsv[183], 10.0f * -104);
  EXPECT_EQ(xsv[0], -32.0f * -127);  // sub-block 0: scale 0 - 32
}

TEST(Kernels, QuantizeThenDequantizeIsCloseAndNeverZeroedOut) {
  auto x = lumpy_floats(1024, 5);
  for (auto [t, tol] : {std::pair{DType::F16, 1e-3}, std::pair{DType::BF16, 8e-3}, std::pair{DType::Q8_0, 1e-2},
                        std::pair{DType::Q4_0, 0.15}, std::pair{DType::Q4_1, 0.12}, std::pair{DType::Q5_0, 0.08},
                        std::pair{DType::Q5_1, 0.06}, std::pair{DType::Q4_K, 0.12}, std::pair{DType::Q5_K, 0.06},
                        std::pair{DType::Q6_K, 0.03}, std::pair{DType::Q3_K, 0.25}, std::pair{DType::Q2_K, 0.5},
                        std::pair{DType::IQ4_NL, 0.12}, std::pair{DType::IQ4_XS, 0.12}}) {
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

TEST(Kernels, ScaleAddReadsEveryKvType) {
  const int64_t n = 64;
  auto v = random_floats(n, 41), acc0 = random_floats(n, 42);
  for (DType t : {DType::F32, DType::F16, DType::Q8_0}) {
    auto enc = encode(t, v);
    std::vector<float> back(n);
    dequantize(t, enc.data(), back.data(), n);
    for (const KernelSet* set : runnable_kernel_sets()) {
      auto acc = acc0;
      set->scale_add(acc.data(), 0.5f, 2.0f, enc.data(), t, n);
      for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(acc[i], acc0[i] * 0.5f + 2.0f * back[i], 1e-5f) << to_string(t) << set->name;
    }
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

// The gated product against its definition, gate = silu(x Wg^T) * (x Wu^T),
// through the single-token pair job (whichever thread finishes the second of
// a chunk's two products applies the gate) and the several-token path, with
// 1-3 threads and a row count that leaves a short last chunk.
TEST(Kernels, GatedMatmulIsSiluOfGateTimesUpOnEveryPath) {
  for (int threads = 1; threads <= 3; ++threads) {
    ThreadPool pool(threads);
    for (DType t : {DType::Q4_0, DType::Q8_0, DType::F32}) {
      const int64_t rows = 1000, cols = 256;
      std::vector<std::byte> g, u;
      for (int64_t r = 0; r < rows; ++r) {
        const auto gr = encode(t, random_floats(cols, static_cast<uint32_t>(r)));
        const auto ur = encode(t, random_floats(cols, static_cast<uint32_t>(r + 5000)));
        g.insert(g.end(), gr.begin(), gr.end());
        u.insert(u.end(), ur.begin(), ur.end());
      }
      const MatrixView wg{t, g.data(), rows, cols}, wu{t, u.data(), rows, cols};
      for (int64_t tokens : {1, 3}) {
        auto x = random_floats(static_cast<size_t>(tokens * cols), 91);
        std::vector<float> gate(static_cast<size_t>(tokens * rows), std::nanf("")), up(gate.size(), std::nanf(""));
        std::vector<float> g_ref(gate.size()), u_ref(gate.size());
        gated_matmul(pool, wg, wu, x.data(), tokens, gate.data(), up.data());
        matmul(pool, wg, x.data(), tokens, g_ref.data());
        matmul(pool, wu, x.data(), tokens, u_ref.data());
        for (size_t i = 0; i < gate.size(); ++i) {
          const double a = g_ref[i], want = a / (1.0 + std::exp(-a)) * u_ref[i];
          ASSERT_NEAR(gate[i], want, 1e-5 * (1 + std::fabs(want))) << to_string(t) << " threads " << threads << " tokens " << tokens << " value " << i;
        }
      }
    }
  }
}

TEST(Kernels, MatmulMatchesRowByRowReference) {
  ThreadPool pool(3);
  for (DType t : {DType::F32, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    const int64_t rows = 67, cols = dtype_info(t).block_elems == 256 ? 512 : 96, tokens = 13;  // GEMM tiles and row tail
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

// One token through matmuls with Q4_K, Q5_K and Q6_K products of one input
// (as a Q4_K_M file's q, k and v): one job on activations quantized once,
// each product what matmul alone gives, to the bit.
TEST(Kernels, MatmulsOfMixedKQuantsMatchEachProductAlone) {
  ThreadPool pool(2);
  const int64_t cols = 768;
  const auto x = random_floats(static_cast<size_t>(cols), 5);
  std::vector<std::vector<std::byte>> data;
  std::vector<MatrixView> ws;
  std::vector<std::vector<float>> ys, alone;
  const DType types[] = {DType::Q4_K, DType::Q6_K, DType::Q5_K};
  for (size_t i = 0; i < 3; ++i) {
    const int64_t rows = 40 + 9 * static_cast<int64_t>(i);
    data.emplace_back();
    for (int64_t r = 0; r < rows; ++r) {
      auto row = encode(types[i], random_floats(static_cast<size_t>(cols), static_cast<uint32_t>(100 * i + static_cast<size_t>(r))));
      data.back().insert(data.back().end(), row.begin(), row.end());
    }
    ys.emplace_back(static_cast<size_t>(rows), std::nanf(""));
    alone.emplace_back(static_cast<size_t>(rows), std::nanf(""));
  }
  for (size_t i = 0; i < 3; ++i) ws.push_back({types[i], data[i].data(), static_cast<int64_t>(ys[i].size()), cols});
  std::vector<Product> products;
  for (size_t i = 0; i < 3; ++i) {
    products.push_back({ws[i], ys[i].data()});
    matmul(pool, ws[i], x.data(), 1, alone[i].data());
  }
  matmuls(pool, products, x.data(), 1);
  for (size_t i = 0; i < 3; ++i)
    for (size_t r = 0; r < ys[i].size(); ++r) ASSERT_EQ(ys[i][r], alone[i][r]) << to_string(types[i]) << " row " << r;
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

}  // namespace
}  // namespace umi::cpu

namespace umi::cpu {
namespace {

// The attention tile kernels of every build against plain double loops, on
// random inputs and awkward sizes (keys not a multiple of 4, hd not of 32).
TEST(Kernels, AttentionTilesMatchPlainLoops) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (const KernelSet* set : runnable_kernel_sets()) {
    for (int64_t hd : {64, 40, 128}) {
      const int64_t nq = 5, nk = 13, q_stride = hd + 8;
      std::vector<float> q(static_cast<size_t>(nq * q_stride)), k(static_cast<size_t>(nk * hd)), v(k.size());
      for (float& x : q) x = nd(rng);
      for (float& x : k) x = nd(rng);
      for (float& x : v) x = nd(rng);
      std::vector<float> scores(static_cast<size_t>(nq * nk), std::nanf(""));
      set->attn_scores(q.data(), q_stride, nq, k.data(), nk, hd, 0.125f, scores.data());
      std::vector<float> acc(static_cast<size_t>(nq * hd)), ref_acc(acc.size());
      for (float& x : acc) x = nd(rng);
      ref_acc = acc;
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t j = 0; j < nk; ++j) {
          double s = 0;
          for (int64_t d = 0; d < hd; ++d) s += static_cast<double>(q[static_cast<size_t>(i * q_stride + d)]) * k[static_cast<size_t>(j * hd + d)];
          ASSERT_NEAR(scores[static_cast<size_t>(i * nk + j)], s * 0.125, 1e-4) << set->name << " hd " << hd;
        }
      set->attn_accumulate(scores.data(), nq, v.data(), nk, hd, acc.data(), hd);
      for (int64_t i = 0; i < nq; ++i)
        for (int64_t d = 0; d < hd; ++d) {
          double s = ref_acc[static_cast<size_t>(i * hd + d)];
          for (int64_t j = 0; j < nk; ++j) s += static_cast<double>(scores[static_cast<size_t>(i * nk + j)]) * v[static_cast<size_t>(j * hd + d)];
          ASSERT_NEAR(acc[static_cast<size_t>(i * hd + d)], s, 1e-4) << set->name << " hd " << hd;
        }
    }
    // KV rows in every cache type come back as the dequantizer gives them.
    std::vector<float> x(64);
    for (float& f : x) f = nd(rng);
    for (DType t : {DType::F32, DType::F16, DType::Q8_0}) {
      std::vector<std::byte> row(dtype_bytes(t, 64).value());
      quantize_row(t, x.data(), 64, row.data());
      std::vector<float> got(64, std::nanf("")), want(64);
      set->kv_to_f32(row.data(), t, 64, got.data());
      dequantize(t, row.data(), want.data(), 64);
      for (size_t i = 0; i < 64; ++i) ASSERT_EQ(got[i], want[i]) << set->name << " " << to_string(t) << " " << i;
    }
  }
}

// The fused single-token attention of every build against a double softmax
// over the same keys as the cache holds them (dequantized), continuing a
// state left by earlier keys and starting from none; key counts below,
// at and across the kernel's tile of eight, head dims not a multiple of 8,
// rows at a stride past their bytes.
TEST(Kernels, AttnKeysEqualsADoubleOnlineSoftmax) {
  std::mt19937 rng(13);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (const KernelSet* set : runnable_kernel_sets())
    for (DType t : {DType::F32, DType::F16, DType::Q8_0})
      for (int64_t hd : {64, 40, 128, 6, 256}) {
        if (t == DType::Q8_0 && hd % 32 != 0) continue;
        const size_t row_bytes = dtype_bytes(t, static_cast<uint64_t>(hd)).value(), stride = 2 * row_bytes + 16;
        for (int64_t n : {1, 5, 8, 13, 16, 37})
          for (bool fresh : {false, true}) {
            const int64_t nq = 4;
            std::vector<float> q(static_cast<size_t>(nq * hd)), x(static_cast<size_t>(hd)), kd(static_cast<size_t>(n * hd)),
                vd(kd.size());
            for (float& f : q) f = nd(rng);
            std::vector<std::byte> k(static_cast<size_t>(n) * stride), v(k.size());
            for (int64_t j = 0; j < n; ++j) {  // each row quantized, and what the cache then holds
              for (float& f : x) f = 2 * nd(rng);
              quantize_row(t, x.data(), hd, k.data() + j * stride);
              dequantize(t, k.data() + j * stride, kd.data() + j * hd, hd);
              for (float& f : x) f = nd(rng);
              quantize_row(t, x.data(), hd, v.data() + j * stride);
              dequantize(t, v.data() + j * stride, vd.data() + j * hd, hd);
            }
            std::vector<float> row_max(nq), denom(nq), o(static_cast<size_t>(nq * hd));
            for (int64_t g = 0; g < nq; ++g) {
              row_max[g] = fresh ? -std::numeric_limits<float>::infinity() : nd(rng) + (g == 0 ? 30.f : 0.f);  // one far above the scores
              denom[g] = fresh ? 0.f : 1.5f + g;
            }
            for (float& f : o) f = fresh ? 0.f : nd(rng);
            const std::vector<float> max0 = row_max, denom0 = denom, o0 = o;
            const float scale = 0.3f;
            set->attn_keys(q.data(), nq, k.data(), v.data(), stride, t, n, hd, scale, row_max.data(), denom.data(), o.data());
            for (int64_t g = 0; g < nq; ++g) {
              std::vector<double> s(static_cast<size_t>(n));
              double m = max0[g];
              for (int64_t j = 0; j < n; ++j) {
                for (int64_t d = 0; d < hd; ++d) s[j] += static_cast<double>(q[g * hd + d]) * kd[j * hd + d];
                s[j] *= scale;
                m = std::max(m, s[j]);
              }
              const double c = std::exp(static_cast<double>(max0[g]) - m);
              double want_denom = denom0[g] * c;
              for (int64_t j = 0; j < n; ++j) want_denom += std::exp(s[j] - m);
              const std::string where = std::string(set->name) + " " + std::string(to_string(t)) + " hd " + std::to_string(hd) + " n " +
                                        std::to_string(n) + (fresh ? " fresh" : " continued");
              ASSERT_NEAR(row_max[g], m, 1e-5 * (1 + std::abs(m))) << where;
              ASSERT_NEAR(denom[g], want_denom, 1e-5 * want_denom) << where;
              for (int64_t d = 0; d < hd; ++d) {
                double want = o0[g * hd + d] * c;
                for (int64_t j = 0; j < n; ++j) want += std::exp(s[j] - m) * vd[j * hd + d];
                ASSERT_NEAR(o[g * hd + d], want, 1e-5 * (1 + std::abs(want)) * std::sqrt(static_cast<double>(n))) << where << " d " << d;
              }
            }
          }
      }
}

// The vector exponential behind SiLU and the softmax, in every build, against
// the C library on random values across its whole range and at the edges.
// 2 ulp of e^x (2.4e-7 relative) where it is a normal float, subnormal and
// infinite where the library's is, is the promise; the callers' tolerance to
// transformers is 1e-4.
TEST(Kernels, SwigluAndSoftmaxExponentialsOfEveryBuildMatchTheLibrary) {
  std::mt19937 rng(12);
  std::uniform_real_distribution<float> wide(-100.f, 100.f);
  std::normal_distribution<float> nd(0.f, 3.f);
  std::vector<float> g(203), u(g.size());
  for (size_t i = 0; i < g.size(); ++i) g[i] = i % 3 == 0 ? wide(rng) : nd(rng), u[i] = nd(rng);
  // Edges: zero of both signs, where e^-g leaves the floats, huge, tiny.
  const float edges[] = {0.f, -0.f, 87.2f, 87.4f, -87.2f, -87.4f, -88.1f, 88.1f, -88.8f, 88.8f, -100.f, -104.5f, 1e-30f, -1e-30f,
                         3e38f, -3e38f, 0.5f, -0.5f};
  for (size_t i = 0; i < std::size(edges); ++i) g[i] = edges[i];
  for (const KernelSet* set : runnable_kernel_sets()) {
    std::vector<float> got = g;
    set->swiglu(got.data(), u.data(), static_cast<int64_t>(g.size()));
    for (size_t i = 0; i < g.size(); ++i) {  // in floats, as the library (and torch) compute it: e^88.8 is infinite
      const float want = g[i] / (1.0f + std::exp(-g[i])) * u[i];
      ASSERT_NEAR(got[i], want, 5e-7 * std::fabs(want) + 1e-44) << set->name << " g " << g[i];
    }
    // Softmax numerators: scores up to 110 below the largest.
    std::vector<float> s(77);
    for (float& x : s) x = std::uniform_real_distribution<float>(-110.f, 0.f)(rng) + 5.f;
    s[3] = 5.f;
    std::vector<float> e = s;
    const float sum = set->exp_sum(e.data(), static_cast<int64_t>(e.size()), 5.f);
    double want_sum = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      const double want = std::exp(static_cast<double>(s[i]) - 5.0);
      want_sum += want;
      ASSERT_NEAR(e[i], want, 3e-7 * want + 1e-44) << set->name << " s " << s[i];
    }
    EXPECT_NEAR(sum, want_sum, 1e-6 * want_sum) << set->name;
    EXPECT_EQ(e[3], 1.0f) << set->name;
    std::vector<float> nan_row{std::nanf(""), 0.f};
    set->exp_sum(nan_row.data(), 2, 0.f);
    EXPECT_TRUE(std::isnan(nan_row[0])) << set->name;
  }
}

// K and V rows go into the cache as quantize_row writes them, bit for bit,
// in every build: F16 ties, subnormals, overflow to infinity included.
TEST(Kernels, KvRowsOfEveryBuildAreWrittenAsQuantizeRowWritesThem) {
  std::vector<float> x = random_floats(165, 13, 4.f);
  const float edges[] = {1.0009765625f /* tie: 1 + 2^-11 */, 1.0029296875f, 65504.f, 65520.f /* rounds to Inf */, 1e6f, -1e6f,
                         6e-8f, 3e-8f, 1e-5f, -0.f, 0.f, std::numeric_limits<float>::infinity()};
  for (size_t i = 0; i < std::size(edges); ++i) x[i] = edges[i];
  for (const KernelSet* set : runnable_kernel_sets())
    for (DType t : {DType::F32, DType::F16, DType::Q8_0}) {
      const int64_t n = t == DType::Q8_0 ? 128 : static_cast<int64_t>(x.size()) - 32;  // F32, F16: 133, a ragged tail
      std::vector<std::byte> want(dtype_bytes(t, static_cast<uint64_t>(n)).value()), got(want.size(), std::byte{0x5A});
      quantize_row(t, x.data() + 32, n, want.data());  // Q8_0: past the edges, whose infinity has no block scale
      set->kv_from_f32(x.data() + 32, t, n, got.data());
      ASSERT_EQ(got, want) << set->name << " " << to_string(t);
      if (t == DType::F16) {
        std::vector<std::byte> all(dtype_bytes(t, x.size()).value()), all_want(all.size());
        set->kv_from_f32(x.data(), t, static_cast<int64_t>(x.size()), all.data());
        quantize_row(t, x.data(), static_cast<int64_t>(x.size()), all_want.data());
        ASSERT_EQ(all, all_want) << set->name;
      }
    }
}

}  // namespace
}  // namespace umi::cpu
