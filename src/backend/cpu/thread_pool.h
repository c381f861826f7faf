// A fixed set of worker threads for data-parallel kernels. parallel_for
// blocks until every index ran. Between jobs a worker spins for a moment
// (kSpin) before it sleeps on a condition variable: a decode step runs ~130
// jobs a token back to back, and waking a sleeping thread through the kernel
// cost more than some of the jobs; an idle server still costs no CPU once
// the moment has passed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace umi::cpu {

class ThreadPool {
 public:
  // threads <= 0: the hardware's concurrency.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }  // the caller works too

  // Runs fn(begin, end) over [0, n) split into one contiguous range per
  // thread (ranges aligned to `grain`), one call per thread (callers index
  // per-thread scratch by call). Returns when all are done.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // The same work split into chunks of `chunk` indices, balanced: each
  // thread runs its own contiguous range front to back, then takes what
  // another has not yet started from that range's back end. A thread slowed
  // by the machine (a hypervisor's interrupt, a neighbour on the core) no
  // longer holds the others waiting at the end of every product; each
  // stream of reads stays long and forward, which the prefetchers need. fn
  // may run several times on one thread, each time on a disjoint run of
  // whole chunks (the last one may be short where n is not a multiple).
  void parallel_chunks(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn);

  // How long a thread polls for the next job (or for the others to finish)
  // before it sleeps.
  static constexpr std::chrono::microseconds kSpin{100};

 private:
  void worker(int index);
  void run_job(int64_t n, int64_t grain, bool chunked, const std::function<void(int64_t, int64_t)>& fn);
  void run_share(int index);
  // One thread's range of chunks [front, back) as one word: the owner takes
  // from the front, the others from the back, both by compare-and-swap.
  struct alignas(64) Range {
    std::atomic<uint64_t> front_back{0};
  };
  // Chunks [first, first + count); count 0 when none was left.
  struct Claim {
    int64_t first = 0, count = 0;
  };
  // The owner takes 1 / kOwnerShare of what is left of its range (at least
  // one chunk), another thread one chunk from the back. Each take is a
  // locked compare-and-swap, which on x86 waits for the core's earlier
  // loads and holds back its later ones. With one take per 32 KB chunk,
  // run_share held ~8% of a 1B Q4_0 decode's samples, 87% of them on the
  // cmpxchg (perf, while the machine read fast); an eighth of the rest makes
  // ~8 ln(chunks) takes a job instead of one a chunk and leaves at least
  // seven eighths of a held-up thread's range to the others. Decode, the
  // two alternating token by token, moved by +1% on average, within the
  // noise (session 19): the stall mostly moves to the next load.
  static constexpr uint32_t kOwnerShare = 8;
  static Claim take(Range& r, bool from_front);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  // Written by run_job before it publishes the job by bumping generation_.
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t n_ = 0, grain_ = 1;
  bool chunked_ = false;            // parallel_chunks: ranges_ hold the work
  std::vector<Range> ranges_;       // one per thread
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace umi::cpu
