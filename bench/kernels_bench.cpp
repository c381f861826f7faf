// Bandwidth of the matrix-vector product (decode's inner loop) per dtype:
// bytes of weights read per second, against the machine's read bandwidth;
// and the same matrix times 64 tokens (prefill's inner loop) in weight bytes
// per second and multiply-adds per second. For the types whose one-token
// product takes integer kernels, "matvec_build" times every build
// this CPU runs (portable, AVX2, AVX-512 VNNI): its row kernel and its pair
// kernel, in the same run.
//   umi_bench_kernels [rows] [cols] [threads] [tokens]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/dot.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/q8_pairs.h"
#include "backend/cpu/kernel_set.h"
#include "backend/cpu/quantize.h"

namespace {
using namespace umi;

// Each build's single-token kernels on m, in this run: its row kernel (q8
// activations, one row at a time) and, where the build has one, its pair
// kernel (q8_pairs.h) that matmul uses for one token; "matvec_build" lines.
void time_builds(cpu::ThreadPool& pool, const cpu::KernelSet& set, const cpu::MatrixView& m, const std::vector<float>& x,
                 std::vector<float>& y) {
  const cpu::QDotFn qdot = set.qdot(m.dtype);
  if (!qdot) return;
  const size_t rb = m.row_bytes();
  std::vector<cpu::Q8Block> xq(static_cast<size_t>(m.cols / 32));
  std::vector<cpu::Q8KBlock> laid_out(cpu::pair_activation_bytes(m.dtype, m.cols) / sizeof(cpu::Q8KBlock) + 1);
  const cpu::QPairDotFn pair = set.qpair(m.dtype);
  set.quantize(x.data(), m.cols, xq.data());
  if (pair && cpu::is_k_quant(m.dtype)) cpu::make_q8k_blocks(m.dtype, x.data(), m.cols, laid_out.data());  // every build writes the same bytes
  else if (pair) cpu::make_q8_pairs(m.dtype, xq.data(), m.cols / 32, laid_out.data());
  auto time = [&](auto&& product) {
    double best = 1e9;
    for (int rep = 0; rep < 10; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      pool.parallel_chunks(m.rows, 32, product);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  auto print = [&](const char* kernel, double s) {
    std::printf("{\"bench\":\"matvec_build\",\"dtype\":\"%s\",\"isa\":\"%s\",\"kernel\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"threads\":%d,\"ms\":%.3f,\"gb_per_s\":%.2f}\n",
                std::string(to_string(m.dtype)).c_str(), set.name, kernel, static_cast<long long>(m.rows),
                static_cast<long long>(m.cols), pool.size(), s * 1e3, static_cast<double>(rb) * static_cast<double>(m.rows) / s / 1e9);
  };
  print("rows", time([&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) y[static_cast<size_t>(r)] = qdot(m.data + static_cast<size_t>(r) * rb, xq.data(), m.cols);
  }));
  if (pair)
    print("pair", time([&](int64_t r0, int64_t r1) {
      pair(m.data + static_cast<size_t>(r0) * rb, rb, r1 - r0, laid_out.data(), m.cols / 64, y.data() + r0);
    }));
}
}  // namespace

int main(int argc, char** argv) {
  using namespace umi;
  const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 8192, cols = argc > 2 ? std::atoll(argv[2]) : 2048;
  const int threads = argc > 3 ? std::atoi(argv[3]) : 0;
  cpu::ThreadPool pool(threads);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> w(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(cols)), y(static_cast<size_t>(rows));
  for (float& v : w) v = nd(rng);
  for (float& v : x) v = nd(rng);
  const int64_t tokens = argc > 4 ? std::atoll(argv[4]) : 64;
  std::vector<float> xs(static_cast<size_t>(cols * tokens)), ys(static_cast<size_t>(rows * tokens));
  for (float& v : xs) v = nd(rng);
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                  DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q3_K, DType::Q2_K, DType::IQ4_NL, DType::IQ4_XS}) {
    size_t rb = dtype_bytes(t, static_cast<uint64_t>(cols)).value();
    std::vector<std::byte> data(rb * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) cpu::quantize_row(t, w.data() + r * cols, cols, data.data() + static_cast<size_t>(r) * rb);
    cpu::MatrixView m{t, data.data(), rows, cols};
    cpu::matmul(pool, m, x.data(), 1, y.data());
    double best = 1e9;
    for (int rep = 0; rep < 10; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      cpu::matmul(pool, m, x.data(), 1, y.data());
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    for (const cpu::KernelSet* set : cpu::runnable_kernel_sets()) time_builds(pool, *set, m, x, y);
    std::printf("{\"bench\":\"matvec\",\"dtype\":\"%s\",\"isa\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"threads\":%d,\"ms\":%.3f,\"gb_per_s\":%.2f}\n",
                std::string(to_string(t)).c_str(), cpu::kernel_isa(), static_cast<long long>(rows), static_cast<long long>(cols),
                pool.size(), best * 1e3, static_cast<double>(data.size()) / best / 1e9);
    best = 1e9;
    for (int rep = 0; rep < 3; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      cpu::matmul(pool, m, xs.data(), tokens, ys.data());
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("{\"bench\":\"matmul\",\"dtype\":\"%s\",\"isa\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"tokens\":%lld,\"threads\":%d,\"ms\":%.3f,\"gmac_per_s\":%.2f}\n",
                std::string(to_string(t)).c_str(), cpu::kernel_isa(), static_cast<long long>(rows), static_cast<long long>(cols),
                static_cast<long long>(tokens), pool.size(), best * 1e3,
                static_cast<double>(rows * cols * tokens) / best / 1e9);
  }
  return 0;
}
