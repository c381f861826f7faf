// Memory read bandwidth of this machine: the roofline for decode, which reads
// every weight once per token. Sums a buffer much larger than the caches with
// every core, best of several passes (memory/read_bandwidth.h; `umi bench
// --scenario roofline` measures the same way between decode runs).
//   umi_bench_bandwidth [MiB] [threads]
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "memory/read_bandwidth.h"

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1024;
  int threads = argc > 2 ? std::atoi(argv[2]) : static_cast<int>(std::thread::hardware_concurrency());
  std::vector<std::byte> buf(mib << 20);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<std::byte>(i * 131);
  const double rate = umi::read_bandwidth(buf.data(), buf.size(), threads, 7);
  std::printf("{\"bench\":\"read_bandwidth\",\"mib\":%zu,\"threads\":%d,\"gb_per_s\":%.2f}\n", mib, threads, rate / 1e9);
  return 0;
}
