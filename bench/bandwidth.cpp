// Memory read bandwidth of this machine: the roofline for decode, which reads
// every weight once per token. Sums a buffer much larger than the caches with
// every core over 2 MiB pages where the OS gives them, best of several
// passes (memory/read_bandwidth.h; `umi bench
// --scenario roofline` measures the same way between decode runs).
//   umi_bench_bandwidth [MiB] [threads]
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <memory>

#include "memory/read_bandwidth.h"
#include "memory/system_memory.h"

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1024;
  int threads = argc > 2 ? std::atoi(argv[2]) : static_cast<int>(std::thread::hardware_concurrency());
  const size_t bytes = mib << 20;
  std::unique_ptr<std::byte[]> buf(new std::byte[bytes]);  // untouched until advised
  umi::advise_huge_pages(buf.get(), bytes);                 // 2 MiB pages, as the model files get
  for (size_t i = 0; i < bytes; ++i) buf[i] = static_cast<std::byte>(i * 131);
  const double rate = umi::read_bandwidth(buf.get(), bytes, threads, 7);
  std::printf("{\"bench\":\"read_bandwidth\",\"mib\":%zu,\"threads\":%d,\"gb_per_s\":%.2f}\n", mib, threads, rate / 1e9);
  return 0;
}
