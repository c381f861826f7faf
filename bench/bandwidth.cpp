// Memory read bandwidth of this machine: the roofline for decode, which reads
// every weight once per token. Sums a buffer much larger than the caches with
// every core, best of several passes.
//   umi_bench_bandwidth [MiB] [threads]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1024;
  int threads = argc > 2 ? std::atoi(argv[2]) : static_cast<int>(std::thread::hardware_concurrency());
  size_t n = mib * (1u << 20) / sizeof(float);
  std::vector<float> buf(n);
  for (size_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i & 1023);
  double best = 0;
  volatile float sink = 0;
  for (int pass = 0; pass < 7; ++pass) {
    std::vector<float> partial(static_cast<size_t>(threads));
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        size_t b = n * static_cast<size_t>(t) / static_cast<size_t>(threads), e = n * static_cast<size_t>(t + 1) / static_cast<size_t>(threads);
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        for (size_t i = b; i + 8 <= e; i += 8) {
          s0 += buf[i], s1 += buf[i + 1], s2 += buf[i + 2], s3 += buf[i + 3];
          s4 += buf[i + 4], s5 += buf[i + 5], s6 += buf[i + 6], s7 += buf[i + 7];
        }
        partial[static_cast<size_t>(t)] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
      });
    for (auto& t : ts) t.join();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (float p : partial) sink = sink + p;
    best = std::max(best, static_cast<double>(n * sizeof(float)) / s / 1e9);
  }
  std::printf("{\"bench\":\"read_bandwidth\",\"mib\":%zu,\"threads\":%d,\"gb_per_s\":%.2f}\n", mib, threads, best);
  return 0;
}
