// A decode step's matrix products alone, Llama-3.2-1B shapes (16 layers of
// q/k/v as one job, o, gate/up as one gated job, down; the 128256-row
// output), random weights in 2 MiB pages where the OS gives them, against a plain read of the same
// bytes right after each step: what the products reach without attention,
// norms or the engine around them, and each kind's rate. JSON lines.
//   umi_bench_products [q4_0|q8_0] [threads] [rounds]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quantize.h"
#include "memory/read_bandwidth.h"
#include "memory/system_memory.h"

int main(int argc, char** argv) {
  using namespace umi;
  using namespace umi::cpu;
  using Clock = std::chrono::steady_clock;
  const DType t = (argc > 1 && std::string(argv[1]) == "q8_0") ? DType::Q8_0 : DType::Q4_0;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 2, rounds = argc > 3 ? std::max(1, std::atoi(argv[3])) : 10;
  const int64_t d = 2048, F = 8192, kv = 512, V = 128256, L = 16;
  struct Matrix { int64_t rows, cols; std::byte* p; };
  std::vector<Matrix> ms;
  for (int l = 0; l < L; ++l)
    for (auto [r, c] : {std::pair{d, d}, {kv, d}, {kv, d}, {d, d}, {F, d}, {F, d}, {d, F}}) ms.push_back({r, c, nullptr});
  ms.push_back({V, d, nullptr});
  size_t total = 0;
  for (const Matrix& m : ms) total += dtype_bytes(t, static_cast<uint64_t>(m.cols)).value() * static_cast<size_t>(m.rows);
  std::unique_ptr<std::byte[]> buffer(new std::byte[total]);  // untouched until advised, as umi_bench_bandwidth
  std::byte* data = buffer.get();
  advise_huge_pages(data, total);
  // 64 random rows a matrix, repeated: every byte is written, the setup stays short.
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> w(static_cast<size_t>(F));
  size_t at = 0;
  for (Matrix& m : ms) {
    m.p = data + at;
    const size_t rb = dtype_bytes(t, static_cast<uint64_t>(m.cols)).value();
    for (int64_t r = 0; r < m.rows; ++r) {
      if (r < 64) {
        for (int64_t i = 0; i < m.cols; ++i) w[static_cast<size_t>(i)] = nd(rng);
        quantize_row(t, w.data(), m.cols, m.p + static_cast<size_t>(r) * rb);
      } else {
        std::memcpy(m.p + static_cast<size_t>(r) * rb, m.p + static_cast<size_t>(r % 64) * rb, rb);
      }
    }
    at += rb * static_cast<size_t>(m.rows);
  }
  std::vector<float> x(static_cast<size_t>(F)), y(static_cast<size_t>(V)), y2(static_cast<size_t>(F)), y3(static_cast<size_t>(F));
  for (float& v : x) v = nd(rng) * 0.1f;
  ThreadPool pool(threads);
  const char* names[5] = {"qkv", "o", "gate_up", "down", "output"};
  double seconds[5] = {}, bytes[5] = {};
  std::vector<double> fractions;
  auto view = [&](const Matrix& m) { return MatrixView{t, m.p, m.rows, m.cols}; };
  auto size = [&](const Matrix& m) { return static_cast<double>(dtype_bytes(t, static_cast<uint64_t>(m.cols)).value()) * static_cast<double>(m.rows); };
  for (int round = 0; round < rounds; ++round) {
    const Clock::time_point start = Clock::now();
    Clock::time_point t0 = start;
    auto lap = [&](int kind, double b) {
      const Clock::time_point now = Clock::now();
      seconds[kind] += std::chrono::duration<double>(now - t0).count();
      bytes[kind] += b;
      t0 = now;
    };
    for (int l = 0; l < L; ++l) {
      const Matrix* m = &ms[static_cast<size_t>(l) * 7];
      const MatrixView q = view(m[0]), k = view(m[1]), v = view(m[2]);
      const Product qkv[] = {{q, y.data()}, {k, y2.data()}, {v, y3.data()}};
      matmuls(pool, qkv, x.data(), 1);
      lap(0, size(m[0]) + size(m[1]) + size(m[2]));
      matmul(pool, view(m[3]), x.data(), 1, y.data());
      lap(1, size(m[3]));
      gated_matmul(pool, view(m[4]), view(m[5]), x.data(), 1, y.data(), y2.data());
      lap(2, size(m[4]) + size(m[5]));
      matmul(pool, view(m[6]), x.data(), 1, y.data());
      lap(3, size(m[6]));
    }
    matmul(pool, view(ms.back()), x.data(), 1, y.data());
    lap(4, size(ms.back()));
    const double step = std::chrono::duration<double>(Clock::now() - start).count();
    const double read = read_bandwidth(data, total, threads, 1);
    fractions.push_back(static_cast<double>(total) / step / read);
    std::printf("{\"bench\":\"products\",\"dtype\":\"%s\",\"threads\":%d,\"round\":%d,\"bytes\":%zu,\"products_gb_s\":%.2f,\"read_gb_s\":%.2f,\"fraction\":%.3f}\n",
                std::string(to_string(t)).c_str(), pool.size(), round, total, static_cast<double>(total) / step / 1e9, read / 1e9,
                fractions.back());
  }
  for (int k = 0; k < 5; ++k)
    std::printf("{\"bench\":\"products_kind\",\"dtype\":\"%s\",\"kind\":\"%s\",\"gb_s\":%.2f}\n", std::string(to_string(t)).c_str(), names[k],
                bytes[k] / seconds[k] / 1e9);
  std::sort(fractions.begin(), fractions.end());
  std::printf("{\"bench\":\"products_summary\",\"dtype\":\"%s\",\"fraction_median\":%.3f}\n", std::string(to_string(t)).c_str(),
              fractions[fractions.size() / 2]);
  return 0;
}
