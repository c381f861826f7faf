// The CUDA kernels against plain CPU references on random inputs: the q8
// activation quantizer (bit for bit the CPU's), the integer matvec (Q8_0,
// Q4_0, K-quants) for every token count it takes, each quantized type's
// device layout through dequantize_f16, and paged
// attention (GQA rows, prefill groups, split keys) in double. Run on the GPU
// machine; skipped where no GPU is visible.
#include <gtest/gtest.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/dot.h"
#include "backend/cpu/quantize.h"
#include "backend/cuda/attention_mma.h"
#include "backend/cuda/logit_mask.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/quant_layout.h"
#include "backend/cuda/quant_matvec.h"
#include "backend/cuda/token_draw.h"
#include "backend/cuda/top_k.h"
#include "backend/token_draw.h"
#include "backend/top_k.h"
#include "core/error.h"

namespace umi::cuda {
namespace {

// A device array that frees itself.
template <typename T>
struct DeviceArray {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceArray(size_t count) : n(count) { EXPECT_EQ(cudaMalloc(&p, count * sizeof(T)), cudaSuccess); }
  explicit DeviceArray(const std::vector<T>& v) : DeviceArray(v.size()) {
    EXPECT_EQ(cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceArray() { cudaFree(p); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  std::vector<T> get() const {
    std::vector<T> v(n);
    EXPECT_EQ(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
};

std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale = 1.f) {
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

double rel_error(const std::vector<float>& y, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i])) return INFINITY;
    num += (y[i] - ref[i]) * (y[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

// q8 values and (d, sum) on the device that differ from the CPU quantizer's
// blocks of `x`.
int64_t q8_mismatches(const std::vector<float>& x, const DeviceArray<int8_t>& q, const DeviceArray<float2>& ds) {
  std::vector<cpu::Q8Block> want(x.size() / 32);
  cpu::quantize_activations(x.data(), static_cast<int64_t>(x.size()), want.data());
  const std::vector<int8_t> gq = q.get();
  const std::vector<float2> gds = ds.get();
  int64_t mismatches = 0;
  for (size_t b = 0; b < want.size(); ++b) {
    mismatches += gds[b].x != want[b].d || gds[b].y != want[b].qsum();
    for (int i = 0; i < 32; ++i) mismatches += gq[b * 32 + i] != want[b].q[i];
  }
  return mismatches;
}

#define SKIP_WITHOUT_GPU() \
  if (!device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device here"

TEST(CudaKernels, Q8QuantizationIsTheCpusBitForBit) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(7);
  for (size_t n : {32u, 4096u, 14336u * 3}) {
    std::vector<float> x = random_floats(n, rng, 3.f);
    x[5] = 0.f;
    if (n >= 64)
      for (int i = 0; i < 32; ++i) x[32 + i] = 0.f;  // an all-zero block: d = 0
    DeviceArray<float> dx(x);
    DeviceArray<int8_t> q(x.size());
    DeviceArray<float2> ds(x.size() / 32);
    ASSERT_EQ(quantize_q8(dx.p, {q.p, ds.p, static_cast<int64_t>(x.size())}, nullptr), cudaSuccess);
    EXPECT_EQ(q8_mismatches(x, q, ds), 0) << n << " values";
  }
}

// A quantized matrix made by the CPU quantizer, on the device as the
// backend uploads it: split (Q8_0, Q4_0, Q6_K) or as the file has it.
struct SplitMatrix {
  std::vector<std::byte> file;
  DeviceArray<std::byte> device;
  SplitMatrix(DType t, int64_t rows, int64_t cols, std::mt19937& rng)
      : file(dtype_bytes(t, static_cast<uint64_t>(rows * cols)).value()), device(file.size()) {
    const size_t rb = dtype_bytes(t, static_cast<uint64_t>(cols)).value();
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<float> v = random_floats(static_cast<size_t>(cols), rng);
      cpu::quantize_row(t, v.data(), cols, file.data() + static_cast<size_t>(r) * rb);
    }
    if (!is_split_type(t)) {
      EXPECT_EQ(cudaMemcpy(device.p, file.data(), file.size(), cudaMemcpyHostToDevice), cudaSuccess);
      return;
    }
    DeviceArray<std::byte> raw(file);
    const int64_t blocks = rows * cols / dtype_info(t).block_elems;
    // In two calls, as upload splits chunk by chunk.
    EXPECT_EQ(split_blocks(t, raw.p, 0, blocks / 2, blocks, device.p, nullptr), cudaSuccess);
    EXPECT_EQ(split_blocks(t, raw.p + static_cast<size_t>(blocks / 2) * dtype_info(t).block_bytes, blocks / 2, blocks - blocks / 2,
                           blocks, device.p, nullptr),
              cudaSuccess);
  }
};

// Q5_0 is rewritten on upload as a split Q8_0 matrix holding exactly the
// file's values, Q4_1 and Q5_1 as f16 values each rounded once (within
// half an f16 step, with room for the device's fused multiply-add), in two
// calls as upload goes chunk by chunk. A wrong nibble or fifth bit moves a
// value by d or 16 d, a lost m by m.
TEST(CudaKernels, RewrittenFormatsKeepTheFilesValues) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(23);
  const int64_t rows = 5, cols = 512, n = rows * cols;
  for (DType t : {DType::Q5_0, DType::Q4_1, DType::Q5_1, DType::IQ4_NL, DType::IQ4_XS, DType::Q3_K, DType::Q2_K}) {
    const int64_t blocks = n / dtype_info(t).block_elems;
    std::vector<std::byte> file(dtype_bytes(t, static_cast<uint64_t>(n)).value());
    const size_t rb = file.size() / rows;
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<float> v = random_floats(static_cast<size_t>(cols), rng);
      for (float& x : v) x += 0.5f;  // Q4_1/Q5_1's m away from zero
      cpu::quantize_row(t, v.data(), cols, file.data() + static_cast<size_t>(r) * rb);
    }
    std::vector<float> want(static_cast<size_t>(n));
    cpu::dequantize(t, file.data(), want.data(), n);
    DeviceArray<std::byte> raw(file), device(device_matrix_bytes(t, blocks));
    ASSERT_EQ(device.n, dtype_bytes(device_dtype(t), static_cast<uint64_t>(n)).value()) << to_string(t);
    EXPECT_EQ(split_blocks(t, raw.p, 0, 7, blocks, device.p, nullptr), cudaSuccess);
    EXPECT_EQ(split_blocks(t, raw.p + 7 * dtype_info(t).block_bytes, 7, blocks - 7, blocks, device.p, nullptr), cudaSuccess);
    const std::vector<std::byte> got = device.get();
    // What the device holds, as floats: split Q8_0 (quants, then an f16 a block), split Q6_K (each block's
    // 208 bytes of quants, then its f16 d: put back together as the file's block), or f16 values.
    std::vector<float> held(static_cast<size_t>(n));
    if (device_dtype(t) == DType::Q6_K) {
      for (int64_t b = 0; b < n / 256; ++b) {
        std::byte block[210];
        std::memcpy(block, got.data() + b * 208, 208);
        std::memcpy(block + 208, got.data() + (n / 256) * 208 + b * 2, 2);
        cpu::dequantize(DType::Q6_K, block, held.data() + b * 256, 256);
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      __half h;
      if (device_dtype(t) == DType::Q8_0) {
        std::memcpy(&h, got.data() + n + i / 32 * 2, 2);
        held[static_cast<size_t>(i)] = static_cast<float>(static_cast<int8_t>(got[static_cast<size_t>(i)])) * __half2float(h);
      } else if (device_dtype(t) == DType::F16) {
        std::memcpy(&h, got.data() + i * 2, 2);
        held[static_cast<size_t>(i)] = __half2float(h);
      }
    }
    // Exact where the device type holds the file's values (Q5_0, IQ4_NL as Q8_0; Q3_K as Q6_K); within one
    // f16 rounding of a scale (IQ4_XS) or a value (Q4_1, Q5_1, Q2_K as F16).
    const bool exact = t == DType::Q5_0 || t == DType::IQ4_NL || t == DType::Q3_K;
    int64_t wrong = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float w = want[static_cast<size_t>(i)], g = held[static_cast<size_t>(i)];
      wrong += exact ? g != w : std::fabs(g - w) > std::fabs(w) * 0x1p-10f + 1e-7f;
    }
    EXPECT_EQ(wrong, 0) << to_string(t);
  }
}

// The generic product on float weights (the few-token passes below the
// cuBLAS threshold: 16 bytes of weights a lane, up to 8 tokens a sweep)
// against a double reference on the same values, for token counts that
// fill, split and leave partial its passes.
TEST(CudaKernels, FloatMatmulMatchesADoubleReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(29);
  const int64_t rows = 37, cols = 320;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (int64_t tokens : {1, 2, 7, 8, 9, 17, 31}) {
      std::vector<std::byte> file(dtype_bytes(t, static_cast<uint64_t>(rows * cols)).value());
      const std::vector<float> v = random_floats(static_cast<size_t>(rows * cols), rng);
      cpu::quantize_row(t, v.data(), rows * cols, file.data());
      std::vector<float> wv(v.size());
      cpu::dequantize(t, file.data(), wv.data(), rows * cols);
      const std::vector<float> x = random_floats(static_cast<size_t>(tokens * cols), rng);
      std::vector<double> ref(static_cast<size_t>(tokens * rows));
      for (int64_t k = 0; k < tokens; ++k)
        for (int64_t r = 0; r < rows; ++r) {
          double acc = 0;
          for (int64_t c = 0; c < cols; ++c) acc += static_cast<double>(wv[static_cast<size_t>(r * cols + c)]) * x[static_cast<size_t>(k * cols + c)];
          ref[static_cast<size_t>(k * rows + r)] = acc;
        }
      DeviceArray<std::byte> dw(file);
      DeviceArray<float> dx(x), dy(ref.size());
      ASSERT_EQ(cudaMemset(dy.p, 0xFF, dy.n * sizeof(float)), cudaSuccess);  // NaN: an unwritten output fails
      ASSERT_EQ(matmul_generic({t, dw.p, rows, cols}, dx.p, tokens, dy.p, nullptr), cudaSuccess);
      EXPECT_LT(rel_error(dy.get(), ref), 1e-6) << to_string(t) << ", " << tokens << " tokens";
    }
}

constexpr DType kKQuants[] = {DType::Q4_K, DType::Q5_K, DType::Q6_K};

// y = x W^T in double from the CPU's q8 blocks of x.
std::vector<double> q8_reference(DType t, const std::vector<std::byte>& file, int64_t rows, int64_t cols,
                                 const std::vector<cpu::Q8Block>& xb, int64_t tokens) {
  const size_t rb = dtype_bytes(t, static_cast<uint64_t>(cols)).value();
  std::vector<double> ref(static_cast<size_t>(tokens * rows));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    cpu::dequantize(t, file.data() + static_cast<size_t>(r) * rb, row.data(), cols);
    for (int64_t k = 0; k < tokens; ++k) {
      double acc = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const cpu::Q8Block& b = xb[static_cast<size_t>((k * cols + c) / 32)];
        acc += static_cast<double>(row[static_cast<size_t>(c)]) * b.d * b.q[c % 32];
      }
      ref[static_cast<size_t>(k * rows + r)] = acc;
    }
  }
  return ref;
}

// One matrix against `tokens` random rows of x with `kernel`: stored,
// accumulated, and accumulated with the product kept apart (the fused
// residual add), each against the double reference.
void check_integer_matvec(DType t, int64_t rows, int64_t cols, int64_t tokens, MatvecKernel kernel, std::mt19937& rng) {
  SplitMatrix w(t, rows, cols, rng);
  const std::string what = std::string(to_string(t)) + ", " + std::to_string(cols) + " columns, " + std::to_string(tokens) +
                           " tokens, " + (kernel == MatvecKernel::mma ? "tensor cores" : "dp4a");
  const std::vector<float> x = random_floats(static_cast<size_t>(tokens * cols), rng);
  std::vector<cpu::Q8Block> xb(x.size() / 32);
  cpu::quantize_activations(x.data(), static_cast<int64_t>(x.size()), xb.data());
  std::vector<double> ref = q8_reference(t, w.file, rows, cols, xb, tokens);
  DeviceArray<float> dx(x), dy(ref.size());
  DeviceArray<int8_t> q(x.size());
  DeviceArray<float2> ds(x.size() / 32);
  DeviceArray<std::byte> tiles(static_cast<size_t>(q8_tiles_bytes(tokens, cols)));
  const Q8Rows xq{q.p, ds.p, static_cast<int64_t>(x.size()), tiles.p};
  ASSERT_EQ(quantize_q8(dx.p, xq, nullptr), cudaSuccess);
  ASSERT_EQ(cudaMemset(dy.p, 0xFF, dy.n * sizeof(float)), cudaSuccess);  // NaN: an unwritten output fails
  MatvecTargets plain;
  plain.m[0] = {w.device.p, rows, dy.p};
  plain.count = 1;
  ASSERT_EQ(matvec_q8(t, cols, plain, xq, tokens, MatvecOutput::store, nullptr, kernel), cudaSuccess);
  EXPECT_LT(rel_error(dy.get(), ref), 1e-5) << what;
  // accumulate: y += W x
  ASSERT_EQ(matvec_q8(t, cols, plain, xq, tokens, MatvecOutput::accumulate, nullptr, kernel), cudaSuccess);
  for (double& v : ref) v *= 2;
  EXPECT_LT(rel_error(dy.get(), ref), 1e-5) << what << ", accumulated";
  // accumulate with the product also stored apart (the fused residual add)
  DeviceArray<float> apart(ref.size());
  MatvecTargets one;
  one.m[0] = {w.device.p, rows, dy.p, apart.p};
  one.count = 1;
  ASSERT_EQ(matvec_q8(t, cols, one, xq, tokens, MatvecOutput::accumulate, nullptr, kernel), cudaSuccess);
  std::vector<double> single = ref, triple = ref;
  for (size_t i = 0; i < ref.size(); ++i) single[i] = ref[i] / 2, triple[i] = ref[i] * 1.5;
  EXPECT_LT(rel_error(apart.get(), single), 1e-5) << what << ", also";
  EXPECT_LT(rel_error(dy.get(), triple), 1e-5) << what << ", accumulated again";
}

// Both kernels (dp4a, tensor cores) for every token count they may get,
// on rows that do not fill the tensor-core kernel's 16-row tiles.
TEST(CudaKernels, IntegerMatvecMatchesTheCpuForEveryTokenCount) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  for (MatvecKernel kernel : {MatvecKernel::dp4a, MatvecKernel::mma})
    for (DType t : {DType::Q8_0, DType::Q4_0})
      for (int64_t cols : {320, 4640})  // 10 blocks a row; 145 (one token: 8 blocks per lane, the last round partial)
        for (int64_t tokens : {1, 2, 3, 4, 5, 8, 9, 17, 31, 40, 64, 65, 100}) {
          if (cols > 320 && tokens > 9) break;  // the long rows matter for the fewest tokens
          check_integer_matvec(t, 37, cols, tokens, kernel, rng);
        }
}

// K-quants, both kernels: one block a row (dp4a: most lanes idle), and 18
// blocks (dp4a: Q4_K/Q5_K 72 sub-block pairs, Q6_K 36 halves, lanes' last
// rounds partial; tensor cores: 144 sub-blocks split across warps).
TEST(CudaKernels, KQuantMatvecMatchesTheCpuForEveryTokenCount) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(19);
  for (MatvecKernel kernel : {MatvecKernel::dp4a, MatvecKernel::mma})
    for (DType t : kKQuants)
      for (int64_t cols : {256, 4608})
        for (int64_t tokens : {1, 2, 3, 4, 5, 8, 9, 17, 64, 65}) {
          if (cols > 256 && tokens > 9) break;
          check_integer_matvec(t, 37, cols, tokens, kernel, rng);
        }
  // Rows that are not whole 256-value blocks: a clear refusal.
  SplitMatrix w(DType::Q4_K, 16, 256, rng);
  DeviceArray<float> y(16 * 4);
  DeviceArray<int8_t> q(4 * 256);
  DeviceArray<float2> ds(4 * 8);
  DeviceArray<std::byte> tiles(static_cast<size_t>(q8_tiles_bytes(4, 256)));
  MatvecTargets plain;
  plain.m[0] = {w.device.p, 16, y.p};
  plain.count = 1;
  EXPECT_THROW(matvec_q8(DType::Q4_K, 320, plain, {q.p, ds.p, 4 * 320, tiles.p}, 4, MatvecOutput::store, nullptr), Error);
}

// One launch for q, k, v (three matrices of different rows), and for gate
// and up with their SwiGLU, as the backend fuses them.
TEST(CudaKernels, FusedIntegerProductsMatchTheCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(13);
  for (MatvecKernel kernel : {MatvecKernel::dp4a, MatvecKernel::mma})
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const int64_t cols = 256, rows[3] = {64, 16, 21};
    for (int64_t tokens : {1, 6, 24, 64}) {
      SCOPED_TRACE(kernel == MatvecKernel::mma ? "tensor cores" : "dp4a");
      const std::vector<float> x = random_floats(static_cast<size_t>(tokens * cols), rng);
      std::vector<cpu::Q8Block> xb(x.size() / 32);
      cpu::quantize_activations(x.data(), static_cast<int64_t>(x.size()), xb.data());
      DeviceArray<float> dx(x);
      DeviceArray<int8_t> q(x.size());
      DeviceArray<float2> ds(x.size() / 32);
      DeviceArray<std::byte> tiles(static_cast<size_t>(q8_tiles_bytes(tokens, cols)));
      const Q8Rows xq{q.p, ds.p, static_cast<int64_t>(x.size()), tiles.p};
      ASSERT_EQ(quantize_q8(dx.p, xq, nullptr), cudaSuccess);
      std::vector<std::unique_ptr<SplitMatrix>> w;
      std::vector<std::unique_ptr<DeviceArray<float>>> y;
      MatvecTargets targets;
      for (int j = 0; j < 3; ++j) {
        w.push_back(std::make_unique<SplitMatrix>(t, rows[j], cols, rng));
        y.push_back(std::make_unique<DeviceArray<float>>(static_cast<size_t>(tokens * rows[j])));
        ASSERT_EQ(cudaMemset(y[j]->p, 0xFF, y[j]->n * sizeof(float)), cudaSuccess);
        targets.m[targets.count++] = {w[j]->device.p, rows[j], y[j]->p};
      }
      ASSERT_EQ(matvec_q8(t, cols, targets, xq, tokens, MatvecOutput::store, nullptr, kernel), cudaSuccess);
      for (int j = 0; j < 3; ++j)
        EXPECT_LT(rel_error(y[j]->get(), q8_reference(t, w[j]->file, rows[j], cols, xb, tokens)), 1e-5)
            << to_string(t) << " matrix " << j << ", " << tokens << " tokens";
      // SwiGLU of two 21-row matrices: y0 = silu(gate) * up, y1 = up.
      SplitMatrix gate(t, 21, cols, rng), up(t, 21, cols, rng);
      MatvecTargets pair;
      pair.m[0] = {gate.device.p, 21, y[2]->p};
      DeviceArray<float> upy(static_cast<size_t>(tokens * 21));
      pair.m[1] = {up.device.p, 21, upy.p};
      pair.count = 2;
      ASSERT_EQ(matvec_q8(t, cols, pair, xq, tokens, MatvecOutput::swiglu, nullptr, kernel), cudaSuccess);
      const std::vector<double> g = q8_reference(t, gate.file, 21, cols, xb, tokens), u = q8_reference(t, up.file, 21, cols, xb, tokens);
      std::vector<double> expect(g.size());
      for (size_t i = 0; i < g.size(); ++i) expect[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      EXPECT_LT(rel_error(y[2]->get(), expect), 1e-5) << to_string(t) << " swiglu, " << tokens << " tokens";
      EXPECT_LT(rel_error(upy.get(), u), 1e-5) << to_string(t) << " swiglu's up, " << tokens << " tokens";
    }
  }
}

// One token of float weights (f32, f16, bf16) through the targets' outputs:
// q/k/v-like matrices in one launch, the residual add with the product kept
// apart, and SwiGLU, against a double reference of the stored values.
TEST(CudaKernels, FloatProductsWithTargetsMatchADoubleReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(31);
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    const int64_t cols = 4096 + 96, rows[3] = {64, 16, 21};
    const std::vector<float> x = random_floats(static_cast<size_t>(cols), rng);
    DeviceArray<float> dx(x);
    // A matrix of random values as the device reads it, and those values.
    auto matrix = [&](int64_t r, std::vector<float>& values) {
      values = random_floats(static_cast<size_t>(r * cols), rng);
      std::vector<uint16_t> h(values.size());
      for (size_t i = 0; i < values.size(); ++i) {
        if (t == DType::F16) {
          const __half v = __float2half(values[i]);
          std::memcpy(&h[i], &v, 2);
          values[i] = __half2float(v);
        } else {
          uint32_t u;
          std::memcpy(&u, &values[i], 4);
          h[i] = static_cast<uint16_t>(u >> 16);
          u = static_cast<uint32_t>(h[i]) << 16;
          std::memcpy(&values[i], &u, 4);
        }
      }
      auto d = std::make_unique<DeviceArray<std::byte>>(values.size() * (t == DType::F32 ? 4 : 2));
      const void* src = t == DType::F32 ? static_cast<const void*>(values.data()) : static_cast<const void*>(h.data());
      EXPECT_EQ(cudaMemcpy(d->p, src, d->n, cudaMemcpyHostToDevice), cudaSuccess);
      return d;
    };
    auto product = [&](const std::vector<float>& w, int64_t r) {
      std::vector<double> y(static_cast<size_t>(r));
      for (int64_t i = 0; i < r; ++i)
        for (int64_t c = 0; c < cols; ++c) y[static_cast<size_t>(i)] += static_cast<double>(w[static_cast<size_t>(i * cols + c)]) * x[static_cast<size_t>(c)];
      return y;
    };
    std::vector<float> wv[3];
    std::vector<std::unique_ptr<DeviceArray<std::byte>>> wd;
    std::vector<std::unique_ptr<DeviceArray<float>>> y;
    MatvecTargets three;
    for (int j = 0; j < 3; ++j) {
      wd.push_back(matrix(rows[j], wv[j]));
      y.push_back(std::make_unique<DeviceArray<float>>(static_cast<size_t>(rows[j])));
      ASSERT_EQ(cudaMemset(y[j]->p, 0xFF, y[j]->n * sizeof(float)), cudaSuccess);
      three.m[three.count++] = {wd[j]->p, rows[j], y[j]->p};
    }
    ASSERT_EQ(matvec(t, cols, three, dx.p, MatvecOutput::store, nullptr), cudaSuccess);
    for (int j = 0; j < 3; ++j) EXPECT_LT(rel_error(y[j]->get(), product(wv[j], rows[j])), 1e-5) << to_string(t) << " matrix " << j;
    // y0 += W0 x, the product also apart: 2 W0 x and W0 x.
    DeviceArray<float> apart(static_cast<size_t>(rows[0]));
    MatvecTargets acc;
    acc.m[0] = {wd[0]->p, rows[0], y[0]->p, apart.p};
    acc.count = 1;
    ASSERT_EQ(matvec(t, cols, acc, dx.p, MatvecOutput::accumulate, nullptr), cudaSuccess);
    std::vector<double> once = product(wv[0], rows[0]), twice = once;
    for (double& v : twice) v *= 2;
    EXPECT_LT(rel_error(y[0]->get(), twice), 1e-5) << to_string(t) << " accumulated";
    EXPECT_LT(rel_error(apart.get(), once), 1e-5) << to_string(t) << " also";
    // SwiGLU of two 21-row matrices: y1 = silu(gate) * up, y2 = up.
    std::vector<float> gv;
    auto gd = matrix(21, gv);
    DeviceArray<float> gy(21);
    MatvecTargets pair;
    pair.m[0] = {gd->p, 21, gy.p};
    pair.m[1] = {wd[2]->p, 21, y[2]->p};
    pair.count = 2;
    ASSERT_EQ(cudaMemset(gy.p, 0xFF, gy.n * sizeof(float)), cudaSuccess);
    ASSERT_EQ(matvec(t, cols, pair, dx.p, MatvecOutput::swiglu, nullptr), cudaSuccess);
    const std::vector<double> g = product(gv, 21), u = product(wv[2], 21);
    std::vector<double> expect(21);
    for (size_t i = 0; i < 21; ++i) expect[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
    EXPECT_LT(rel_error(gy.get(), expect), 1e-5) << to_string(t) << " swiglu";
    EXPECT_LT(rel_error(y[2]->get(), u), 1e-5) << to_string(t) << " swiglu's up";
  }
}

// Greedy tokens on the device: the first largest value of each row, as
// std::max_element; rows with planted ties, -inf and a NaN.
TEST(CudaKernels, ArgmaxRowsIsTheFirstLargestValue) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(17);
  for (int64_t n : {1, 31, 1000, 2049, 128256, 300001}) {
    const int64_t rows = 5;
    std::vector<float> x = random_floats(static_cast<size_t>(rows * n), rng, 4.f);
    if (n > 100) {
      x[static_cast<size_t>(n + 10)] = x[static_cast<size_t>(n + 90)] = 50.f;    // row 1: a tie, the first wins
      x[static_cast<size_t>(2 * n + 3)] = std::nanf("");                        // row 2: a NaN never wins
      for (int64_t i = 3 * n; i < 4 * n; ++i) x[static_cast<size_t>(i)] = -INFINITY;  // row 3: all -inf: index 0
      x[static_cast<size_t>(5 * n - 1)] = 60.f;                                  // row 4: the last element
      x[5] = x[static_cast<size_t>(n - 3)] = 70.f;  // row 0: a tie across slices of the row, the first wins
    }
    DeviceArray<float> dx(x);
    DeviceArray<int32_t> ids(static_cast<size_t>(rows));
    DeviceArray<std::byte> scratch(argmax_scratch_bytes(rows, n));
    EXPECT_THROW(argmax_rows(dx.p, rows, n, ids.p, scratch.p, scratch.n - 1, nullptr), Error);
    ASSERT_EQ(argmax_rows(dx.p, rows, n, ids.p, scratch.p, scratch.n, nullptr), cudaSuccess);
    const std::vector<int32_t> got = ids.get();
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = x.data() + r * n;
      int64_t want = 0;  // max_element, skipping NaN
      for (int64_t i = 1; i < n; ++i)
        if (row[i] > row[want] || std::isnan(row[want])) want = i;
      EXPECT_EQ(got[static_cast<size_t>(r)], want) << "row " << r << " of " << n;
    }
  }
}

// A constrained row's mask: every refused logit -inf, every allowed one
// untouched (bit for bit), for widths that end mid-word; bad arguments throw.
TEST(CudaKernels, MaskLogitsRefusesExactlyTheClearedBits) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(23);
  for (int64_t n : {1, 31, 33, 1000, 128256, 151936}) {
    std::vector<float> x = random_floats(static_cast<size_t>(n), rng, 4.f);
    std::vector<uint32_t> bits(static_cast<size_t>((n + 31) / 32));
    for (uint32_t& w : bits) w = static_cast<uint32_t>(rng()) & static_cast<uint32_t>(rng());  // a quarter allowed
    DeviceArray<float> dx(x);
    DeviceArray<uint32_t> dbits(bits);
    ASSERT_EQ(mask_logits(dx.p, n, dbits.p, nullptr), cudaSuccess);
    const std::vector<float> got = dx.get();
    for (int64_t i = 0; i < n; ++i) {
      const bool allowed = bits[static_cast<size_t>(i >> 5)] >> (i & 31) & 1;
      if (allowed) EXPECT_EQ(std::memcmp(&got[static_cast<size_t>(i)], &x[static_cast<size_t>(i)], sizeof(float)), 0) << i;
      else EXPECT_EQ(got[static_cast<size_t>(i)], -INFINITY) << i;
    }
  }
  EXPECT_THROW(mask_logits(nullptr, 10, nullptr, nullptr), Error);
}

// RMSNorm for row widths on both kernels (the vectorised one: widths a
// multiple of 4 up to 16384; the scalar one otherwise), f32 and bf16
// weights, against a double reference; the q8 output is the CPU's quantizer
// applied to the kernel's own float output, bit for bit.
TEST(CudaKernels, RmsNormMatchesADoubleReferenceAndQuantizesItsOwnOutput) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(23);
  for (int64_t n : {32, 96, 100, 896, 4096, 14336, 20000, 30}) {
    for (DType wt : {DType::F32, DType::BF16}) {
      const int64_t rows = 3;
      const std::vector<float> x = random_floats(static_cast<size_t>(rows * n), rng, 2.f);
      std::vector<float> w = random_floats(static_cast<size_t>(n), rng);
      std::vector<uint16_t> wb(w.size());
      for (size_t i = 0; i < w.size(); ++i) {  // bf16 by truncation; w is then exactly what the GPU reads
        uint32_t u;
        std::memcpy(&u, &w[i], 4);
        wb[i] = static_cast<uint16_t>(u >> 16);
        u = static_cast<uint32_t>(wb[i]) << 16;
        if (wt == DType::BF16) std::memcpy(&w[i], &u, 4);
      }
      DeviceArray<float> dx(x), dw(w), out(x.size());
      DeviceArray<uint16_t> dwb(wb);
      const bool q8 = n % 32 == 0;
      DeviceArray<int8_t> q(x.size());
      DeviceArray<float2> ds(x.size() / 32 + 1);
      const Q8Rows rows_q8{q.p, ds.p, static_cast<int64_t>(x.size())};
      const WeightVector wv{wt, wt == DType::BF16 ? static_cast<const void*>(dwb.p) : static_cast<const void*>(dw.p), n};
      ASSERT_EQ(rms_norm(dx.p, wv, rows, 1e-5f, out.p, q8 ? &rows_q8 : nullptr, nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> got = out.get();
      std::vector<double> ref(x.size());
      for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[static_cast<size_t>(r * n + i)]) * x[static_cast<size_t>(r * n + i)];
        const double scale = 1.0 / std::sqrt(ss / static_cast<double>(n) + 1e-5);
        for (int64_t i = 0; i < n; ++i)
          ref[static_cast<size_t>(r * n + i)] = x[static_cast<size_t>(r * n + i)] * scale * w[static_cast<size_t>(i)];
      }
      EXPECT_LT(rel_error(got, ref), 1e-6) << n << " values, " << to_string(wt);
      if (q8) EXPECT_EQ(q8_mismatches(got, q, ds), 0) << n << " values, " << to_string(wt);
    }
  }
}

// The RMSNorm done inside the products (NextNorm): an accumulate product
// whose blocks quantize x * w and sum x^2, then store and SwiGLU products
// that apply the 1 / rms factor, against the same products after the norm
// kernel: x the same bit for bit, the products within a q8 rounding step
// (x * w and x / rms * w may round a value the other way), the same bits on
// a second run.
TEST(CudaKernels, NormInsideTheProductsMatchesTheNormKernel) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(29);
  const int64_t d = 4096, in = 512, out_rows = 96;
  const float eps = 1e-5f;
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
    SCOPED_TRACE(to_string(t));
    // The norm's blocks come from Q8_0/Q4_0 products only; K-quant products read it.
    const DType tw = next_norm_supports(t) ? t : DType::Q8_0;
    SplitMatrix wo(tw, d, in, rng), w2(t, out_rows, d, rng), gate(t, out_rows, d, rng), up(t, out_rows, d, rng);
    const std::vector<float> x0 = random_floats(static_cast<size_t>(d), rng, 2.f), a = random_floats(static_cast<size_t>(in), rng),
                             g = random_floats(static_cast<size_t>(d), rng);
    DeviceArray<float> da(a), dg(g);
    DeviceArray<int8_t> aq(static_cast<size_t>(in)), nq(static_cast<size_t>(d));
    DeviceArray<float2> ads(static_cast<size_t>(in / 32)), nds(static_cast<size_t>(d / 32));
    DeviceArray<float> sums(static_cast<size_t>(d / 32));
    const Q8Rows aq8{aq.p, ads.p, in};
    ASSERT_EQ(quantize_q8(da.p, aq8, nullptr), cudaSuccess);
    MatvecTargets acc;
    acc.count = 1;
    // y = x0 + Wo a, then the products of rmsnorm(y) * g: [0] store, [1] swiglu gate (up in [2]).
    auto products = [&](const Q8Rows& xn, std::vector<std::vector<float>>& got) {
      DeviceArray<float> z(static_cast<size_t>(out_rows)), s(static_cast<size_t>(out_rows)), u(static_cast<size_t>(out_rows));
      MatvecTargets one, pair;
      one.m[0] = {w2.device.p, out_rows, z.p};
      one.count = 1;
      pair.m[0] = {gate.device.p, out_rows, s.p};
      pair.m[1] = {up.device.p, out_rows, u.p};
      pair.count = 2;
      ASSERT_EQ(matvec_q8(t, d, one, xn, 1, MatvecOutput::store, nullptr, MatvecKernel::dp4a), cudaSuccess);
      ASSERT_EQ(matvec_q8(t, d, pair, xn, 1, MatvecOutput::swiglu, nullptr, MatvecKernel::dp4a), cudaSuccess);
      got = {z.get(), s.get(), u.get()};
    };
    // The norm kernel after the product.
    DeviceArray<float> y_ref(x0), normed(static_cast<size_t>(d));
    acc.m[0] = {wo.device.p, d, y_ref.p};
    ASSERT_EQ(matvec_q8(tw, in, acc, aq8, 1, MatvecOutput::accumulate, nullptr, MatvecKernel::dp4a), cudaSuccess);
    DeviceArray<int8_t> rq(static_cast<size_t>(d));
    DeviceArray<float2> rds(static_cast<size_t>(d / 32));
    const Q8Rows ref_q8{rq.p, rds.p, d};
    ASSERT_EQ(rms_norm(y_ref.p, {DType::F32, dg.p, d}, 1, eps, normed.p, &ref_q8, nullptr), cudaSuccess);
    std::vector<std::vector<float>> want;
    products(ref_q8, want);
    // The norm inside them, twice.
    std::vector<std::vector<float>> first;
    for (int run = 0; run < 2; ++run) {
      DeviceArray<float> y(x0);
      acc.m[0] = {wo.device.p, d, y.p};
      NextNorm next;
      next.w = dg.p;
      next.q8 = {nq.p, nds.p, d};
      next.sums = sums.p;
      ASSERT_EQ(matvec_q8(tw, in, acc, aq8, 1, MatvecOutput::accumulate, nullptr, MatvecKernel::automatic, &next), cudaSuccess);
      EXPECT_EQ(y.get(), y_ref.get()) << "the residual stream itself";
      Q8Rows pending{nq.p, nds.p, d};
      pending.rms_sums = sums.p;
      pending.rms_eps = eps;
      std::vector<std::vector<float>> got;
      products(pending, got);
      for (int k = 0; k < 3; ++k) {
        std::vector<double> w(want[static_cast<size_t>(k)].begin(), want[static_cast<size_t>(k)].end());
        EXPECT_LT(rel_error(got[static_cast<size_t>(k)], w), 1e-3) << "product " << k;
      }
      if (run == 0) first = got;
      else EXPECT_EQ(got, first) << "a second run";
    }
    // Refused: more than one token, the tensor cores, a matrix of part of a 32-row block.
    Q8Rows pending{nq.p, nds.p, d};
    pending.rms_sums = sums.p;
    MatvecTargets one;
    one.m[0] = {w2.device.p, out_rows, y_ref.p};
    one.count = 1;
    EXPECT_THROW(matvec_q8(t, d / 2, one, pending, 2, MatvecOutput::store, nullptr, MatvecKernel::dp4a), Error);
    NextNorm bad;
    bad.w = dg.p;
    bad.q8 = {nq.p, nds.p, 48};
    bad.sums = sums.p;
    MatvecTargets odd;
    odd.m[0] = {wo.device.p, 48, y_ref.p};
    odd.count = 1;
    EXPECT_THROW(matvec_q8(tw, in, odd, aq8, 1, MatvecOutput::accumulate, nullptr, MatvecKernel::dp4a, &bad), Error);
    if (t != tw) {  // and a K-quant product making it
      bad.q8.n = d;
      acc.m[0] = {wo.device.p, d, y_ref.p};
      EXPECT_THROW(matvec_q8(t, in, acc, aq8, 1, MatvecOutput::accumulate, nullptr, MatvecKernel::dp4a, &bad), Error);
    }
  }
}

// Every quantized type's device layout read back as f16 (prefill's GEMM
// input): the CPU's values, rounded to f16. K-quant values are d * sc * q -
// dmin * m, which either compiler may fuse into one rounding: one f16 step.
TEST(CudaKernels, DequantizedSlicesOfTheDeviceLayoutsAreTheCpusValues) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(3);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const int64_t rows = 21, cols = dtype_info(t).block_elems == 32 ? 96 : 768, row0 = 5, n = 11;
    SplitMatrix w(t, rows, cols, rng);
    DeviceArray<__half> out(static_cast<size_t>(n * cols));
    ASSERT_EQ(dequantize_f16({t, w.device.p, rows, cols}, row0, n, out.p, nullptr), cudaSuccess);
    const std::vector<__half> got = out.get();
    const size_t rb = dtype_bytes(t, static_cast<uint64_t>(cols)).value();
    std::vector<float> row(static_cast<size_t>(cols));
    int64_t bad = 0;
    for (int64_t r = 0; r < n; ++r) {
      cpu::dequantize(t, w.file.data() + static_cast<size_t>(row0 + r) * rb, row.data(), cols);
      for (int64_t c = 0; c < cols; ++c) {
        const float g = __half2float(got[static_cast<size_t>(r * cols + c)]), want = __half2float(__float2half(row[static_cast<size_t>(c)]));
        bad += dtype_info(t).block_elems == 32 ? g != want : std::fabs(g - want) > std::fabs(want) / 1024 + 1e-7f;
      }
    }
    EXPECT_EQ(bad, 0) << to_string(t);
  }
}

// Sampling candidates on the device: the host reference's list (values and
// ids, bit for bit) for every row, each row at its own temperature; rows
// of one slice, of several (two rounds), fewer finite values than k, ties.
TEST(CudaKernels, TopKRowsAreTheHostSelection) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(23);
  for (int64_t n : {1, 100, 4096, 4097, 128256, 300001})
    for (int k : {1, 40, 128, 512}) {
      const int64_t rows = n > 200000 ? 2 : 3;
      std::vector<float> x = random_floats(static_cast<size_t>(rows * n), rng, 4.f);
      for (float& v : x) v = std::round(v * 16) / 16;  // many equal values
      x[0] = NAN;
      if (n > 10) x[static_cast<size_t>(n + 3)] = INFINITY, x[static_cast<size_t>(n + 4)] = -INFINITY;
      std::vector<float> temps = {0.7f, 1.0f, 1.9f};
      temps.resize(static_cast<size_t>(rows));
      DeviceArray<float> dx(x), dt(temps);
      DeviceArray<uint64_t> keys(static_cast<size_t>(rows * k));
      DeviceArray<std::byte> scratch(std::max<size_t>(8, top_k_scratch_bytes(rows, n, k)));
      ASSERT_EQ(top_k_rows(dx.p, rows, n, dt.p, k, keys.p, scratch.p, scratch.n, nullptr), cudaSuccess);
      const std::vector<uint64_t> got = keys.get();
      std::vector<Candidate> want(static_cast<size_t>(k));
      for (int64_t r = 0; r < rows; ++r) {
        const int count = select_top_k(x.data() + r * n, n, temps[static_cast<size_t>(r)], k, want.data());
        int64_t bad = 0;
        for (int i = 0; i < k; ++i) {
          const uint64_t key = got[static_cast<size_t>(r * k + i)];
          if (i >= count) {
            bad += key != 0;
            continue;
          }
          bad += top_k_key_id(key) != want[static_cast<size_t>(i)].id || top_k_key_value(key) != want[static_cast<size_t>(i)].value;
        }
        EXPECT_EQ(bad, 0) << n << " values, k " << k << ", row " << r;
      }
    }
  DeviceArray<float> one(4);
  DeviceArray<uint64_t> out(4);
  EXPECT_THROW(top_k_rows(one.p, 1, 4, one.p, kTopKMax + 1, out.p, nullptr, 0, nullptr), Error);
}

// Whole-row draws on the device: the host reference's token for every row
// and key, bit for bit: flat and peaked rows, equal values at the nucleus's
// end, masked and non-finite logits, min-p and top-p alone and together,
// a row with nothing finite; several rows of one call with their own settings.
TEST(CudaKernels, DrawRowsAreTheHostDraw) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(29);
  std::mt19937_64 keys(30);
  const TokenDraw settings[] = {{.temperature = 1.0f}, {.temperature = 0.7f, .top_p = 0.9f}, {.temperature = 1.0f, .min_p = 0.05f},
                                {.temperature = 1.3f, .top_p = 0.5f, .min_p = 0.1f}, {.temperature = 1.0f, .top_p = 0.999f}};
  int64_t compared = 0;
  for (int64_t n : {1, 100, 4097, 128256, 151936})
    for (float scale : {0.05f, 1.0f, 6.0f})
      for (int round = 0; round < 4; ++round) {
        const int64_t rows = 5;
        std::vector<float> x = random_floats(static_cast<size_t>(rows * n), rng, scale);
        if (round % 2) for (float& v : x) v = std::round(v * 4) / 4;  // many equal values
        if (n > 10) x[3] = NAN, x[static_cast<size_t>(n + 4)] = INFINITY, x[static_cast<size_t>(2 * n + 5)] = -INFINITY;
        if (round == 3) std::fill(x.begin() + 4 * n, x.end(), -INFINITY);  // the last row has no candidate
        std::vector<TokenDraw> draws;
        std::vector<DrawSettings> ds;
        for (int64_t r = 0; r < rows; ++r) {
          TokenDraw d = settings[static_cast<size_t>((r + round) % 5)];
          d.key = keys();
          draws.push_back(d);
          ds.push_back({d.temperature, d.top_p, d.min_p, static_cast<uint32_t>(d.key), static_cast<uint32_t>(d.key >> 32)});
        }
        DeviceArray<float> dx(x);
        DeviceArray<DrawSettings> dsettings(ds);
        DeviceArray<unsigned long long> best(static_cast<size_t>(rows));
        DeviceArray<std::byte> scratch(draw_scratch_bytes(rows, n));
        ASSERT_EQ(draw_rows(dx.p, rows, n, dsettings.p, best.p, scratch.p, scratch.n, nullptr), cudaSuccess);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::vector<unsigned long long> got = best.get();
        for (int64_t r = 0; r < rows; ++r, ++compared)
          EXPECT_EQ(draw_token_of(got[static_cast<size_t>(r)]), draw_token(x.data() + r * n, n, draws[static_cast<size_t>(r)]))
              << n << " logits, scale " << scale << ", round " << round << ", row " << r << ", top_p " << draws[static_cast<size_t>(r)].top_p
              << ", min_p " << draws[static_cast<size_t>(r)].min_p;
      }
  EXPECT_EQ(compared, 5 * 3 * 4 * 5);
  DeviceArray<float> one(4);
  DeviceArray<unsigned long long> out(1);
  EXPECT_THROW(draw_rows(one.p, 1, 4, nullptr, out.p, nullptr, 0, nullptr), Error);
}

// Sequences of one pass, each its tokens at positions [first, len): in
// groups of attention_tokens_per_group, or one token each (decode).
struct AttentionCase {
  int64_t lens[2], firsts[2];
  bool one_token_groups;
};

void check_attention(HeadShape s, const AttentionCase& c, DType kv_type, std::mt19937& rng) {
  {
    const int64_t bt = 16, layers = 2, layer = 1, kv_dim = static_cast<int64_t>(s.n_kv_heads) * s.head_dim;
    const int64_t* lens = c.lens;
    const int64_t* firsts = c.firsts;
    // KV blocks: per layer K [bt, kv_dim] then V, random values written by
    // the CPU's KV store (kv_from_f32) in kv_type; the reference reads them
    // back dequantized.
    const size_t row_bytes = dtype_bytes(kv_type, static_cast<uint64_t>(kv_dim)).value();
    const size_t layer_bytes = 2 * static_cast<size_t>(bt) * row_bytes, block_bytes = layer_bytes * layers;
    std::vector<std::vector<float>> kv(2);  // what each sequence's blocks hold, as floats, row by row
    std::vector<void*> block_ptrs;
    std::vector<int32_t> table_start, groups;
    std::vector<int64_t> positions;
    std::vector<DeviceArray<std::byte>*> blocks;
    const int64_t per_group = c.one_token_groups ? 1 : attention_tokens_per_group(s, kv_type);
    for (int q = 0; q < 2; ++q) {
      const int64_t nblocks = (lens[q] + bt - 1) / bt, rows = nblocks * layers * 2 * bt;
      const std::vector<float> v = random_floats(static_cast<size_t>(rows * kv_dim), rng);
      std::vector<std::byte> bytes(static_cast<size_t>(rows) * row_bytes);
      kv[q].resize(v.size());
      for (int64_t r = 0; r < rows; ++r) {
        cpu::kv_from_f32(v.data() + r * kv_dim, kv_type, kv_dim, bytes.data() + r * row_bytes);
        cpu::dequantize(kv_type, bytes.data() + r * row_bytes, kv[q].data() + r * kv_dim, kv_dim);
      }
      const int32_t start = static_cast<int32_t>(block_ptrs.size());
      for (int64_t b = 0; b < nblocks; ++b) {
        blocks.push_back(new DeviceArray<std::byte>(std::vector<std::byte>(bytes.begin() + b * block_bytes, bytes.begin() + (b + 1) * block_bytes)));
        block_ptrs.push_back(blocks.back()->p);
      }
      const int64_t t_first = static_cast<int64_t>(positions.size());
      for (int64_t pos = firsts[q]; pos < lens[q]; ++pos) {
        positions.push_back(pos);
        table_start.push_back(start);
      }
      const int64_t t_end = static_cast<int64_t>(positions.size());
      for (int64_t t = t_first; t < t_end; t += per_group)
        groups.push_back(static_cast<int32_t>(t | (std::min(per_group, t_end - t) << 24)));
    }
    const int64_t T = static_cast<int64_t>(positions.size());
    const std::vector<float> qv = random_floats(static_cast<size_t>(T * s.n_heads * s.head_dim), rng);
    // Reference, in double.
    std::vector<double> ref(qv.size());
    for (int64_t t = 0; t < T; ++t) {
      const int q = t < lens[0] - firsts[0] ? 0 : 1;
      for (int h = 0; h < s.n_heads; ++h) {
        const int kvh = h / (s.n_heads / s.n_kv_heads);
        const float* qh = qv.data() + (t * s.n_heads + h) * s.head_dim;
        auto at = [&](int64_t key, bool v, int d) {
          const int64_t row = (key / bt * layers + layer) * 2 * bt + (v ? bt : 0) + key % bt;
          return static_cast<double>(kv[q][static_cast<size_t>(row * kv_dim + kvh * s.head_dim + d)]);
        };
        std::vector<double> score(static_cast<size_t>(positions[t] + 1));
        double mx = -INFINITY, sum = 0;
        for (int64_t k = 0; k <= positions[t]; ++k) {
          double dot = 0;
          for (int d = 0; d < s.head_dim; ++d) dot += qh[d] * at(k, false, d);
          score[k] = dot / std::sqrt(static_cast<double>(s.head_dim));
          mx = std::max(mx, score[k]);
        }
        for (double& x : score) sum += (x = std::exp(x - mx));
        for (int d = 0; d < s.head_dim; ++d) {
          double o = 0;
          for (int64_t k = 0; k <= positions[t]; ++k) o += score[k] * at(k, true, d);
          ref[static_cast<size_t>((t * s.n_heads + h) * s.head_dim + d)] = o / sum;
        }
      }
    }
    DeviceArray<int64_t> dpos(positions);
    DeviceArray<int32_t> dstart(table_start), dgroups(groups);
    DeviceArray<void*> dblocks(block_ptrs);
    DeviceArray<float> dq(qv), out(qv.size()), partial(1u << 20);
    KvPass p;
    p.positions = dpos.p;
    p.table_start = dstart.p;
    p.block_ptrs = dblocks.p;
    p.groups = dgroups.p;
    p.tokens = T;
    p.n_groups = static_cast<int64_t>(groups.size());
    p.block_tokens = bt;
    p.layer_bytes = layer_bytes;
    p.kv_dtype = kv_type;
    // One split; the default split size; long splits; many small ones (up
    // to the most blocks the splits may make). With head_dim a multiple of 32 the output is also written
    // quantized: the same bytes as quantizing it afterwards.
    const bool quantized = s.head_dim % 32 == 0;
    const bool on_tensor_cores = !c.one_token_groups && mma_attention_supports(s, kv_type);
    DeviceArray<int8_t> q8q(qv.size()), want_q(qv.size());
    DeviceArray<float2> q8ds(qv.size() / 32), want_ds(qv.size() / 32);
    const Q8Rows q8{q8q.p, q8ds.p, static_cast<int64_t>(qv.size())}, want{want_q.p, want_ds.p, static_cast<int64_t>(qv.size())};
    struct Variant {
      bool split;
      int64_t min_keys;
    };
    for (Variant v : {Variant{false, 0}, Variant{true, 0}, Variant{true, 256}, Variant{true, 7}}) {
      const std::string what = std::string(to_string(kv_type)) + " KV, " + std::to_string(s.n_heads) + "/" + std::to_string(s.n_kv_heads) + " heads of " +
                               std::to_string(s.head_dim) + (v.split ? ", splits of at least " + std::to_string(v.min_keys) : ", one split") +
                               (c.one_token_groups ? ", a token a group" : "") + ", last position " + std::to_string(lens[1] - 1);
      ASSERT_EQ(cudaMemset(out.p, 0xFF, out.n * sizeof(float)), cudaSuccess);
      ASSERT_EQ(cudaMemset(q8q.p, 0x55, q8q.n), cudaSuccess);
      const AttentionSplits splits{v.split ? partial.p : nullptr, v.split ? partial.n : 0, v.min_keys};
      ASSERT_EQ(attention(p, s, layer, dq.p, out.p, quantized ? &q8 : nullptr, lens[1] - 1, splits, nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      // The tensor-core kernel rounds q and the probabilities to f16.
      EXPECT_LT(rel_error(out.get(), ref), on_tensor_cores ? 2e-3 : 1e-5) << what;
      if (!quantized) continue;
      ASSERT_EQ(quantize_q8(out.p, want, nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_TRUE(q8q.get() == want_q.get()) << what << ": quantized output";
      const std::vector<float2> got_ds = q8ds.get(), want_ds_h = want_ds.get();
      EXPECT_EQ(std::memcmp(got_ds.data(), want_ds_h.data(), got_ds.size() * sizeof(float2)), 0) << what << ": q8 scales";
    }
    for (auto* b : blocks) delete b;
  }
}

// A prefill chunk of 21 tokens at positions 280..300 and one decode token at
// position 1500 (long enough to split); the same tokens one a group; a
// decode pass of tokens at positions 5..40 and 300 (the splits short enough
// for the warp-a-head decode kernel, some of them empty); and two prefill
// chunks, one a sequence's first (positions 0..99), one at 200..263 (groups
// across the tensor-core kernel's 64-key tiles). Head shapes: the
// tensor-core kernel's three head sizes, with 4 q heads a block (16 tokens a
// group), 1 (64) and 6 (10 tokens: 60 of a block's 64 rows); the CUDA-core
// kernel's 16 and 256.
TEST(CudaKernels, PagedAttentionMatchesADoubleReference) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  for (HeadShape s : {HeadShape{8, 2, 128}, HeadShape{4, 4, 64}, HeadShape{12, 2, 32}, HeadShape{6, 1, 16}, HeadShape{4, 2, 256}})
    for (AttentionCase c : {AttentionCase{{301, 1501}, {280, 1500}, false}, AttentionCase{{301, 1501}, {280, 1500}, true},
                            AttentionCase{{41, 301}, {5, 300}, true}, AttentionCase{{100, 264}, {0, 200}, false}})
      check_attention(s, c, DType::F16, rng);
}

// The q8_0 and f32 KV caches go through the CUDA-core kernel (head_dim a
// multiple of 32 for q8_0).
TEST(CudaKernels, PagedAttentionReadsQ8AndF32KvCaches) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(6);
  for (DType kv : {DType::Q8_0, DType::F32})
    for (HeadShape s : {HeadShape{8, 2, 128}, HeadShape{12, 2, 32}, HeadShape{4, 2, 256}})
      for (AttentionCase c : {AttentionCase{{301, 1501}, {280, 1500}, false}, AttentionCase{{41, 301}, {5, 300}, true}})
        check_attention(s, c, kv, rng);
}

}  // namespace
}  // namespace umi::cuda
