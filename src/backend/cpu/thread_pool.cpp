#include "backend/cpu/thread_pool.h"

#include <algorithm>
#include <stdexcept>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace umi::cpu {

namespace {
// The slice of [0, n) that participant `part` of `parts` runs.
std::pair<int64_t, int64_t> slice_of(int64_t n, int64_t grain, int part, int parts) {
  int64_t units = (n + grain - 1) / grain;
  int64_t per = units / parts, extra = units % parts;
  int64_t b = part * per + std::min<int64_t>(part, extra);
  int64_t e = b + per + (part < extra ? 1 : 0);
  return {std::min(n, b * grain), std::min(n, e * grain)};
}

// threads <= 0: the hardware's concurrency.
int thread_count(int threads) {
  return threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Polls `ready` for up to `limit`; whether it became true.
template <typename Ready>
bool spin_until(Ready ready, std::chrono::microseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (true) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= until) return ready();
  }
}
}  // namespace

ThreadPool::ThreadPool(int threads) : ranges_(static_cast<size_t>(thread_count(threads))) {
  for (int i = 1; i < thread_count(threads); ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  const auto has_work = [&] { return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; };
  while (true) {
    if (!spin_until(has_work, kSpin)) {
      std::unique_lock lock(mu_);
      wake_.wait(lock, has_work);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    run_share(index);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard lock(mu_);  // parallel_for may be between its check and its wait
      done_.notify_one();
    }
  }
}

ThreadPool::Claim ThreadPool::take(Range& r, bool from_front) {
  uint64_t v = r.front_back.load(std::memory_order_relaxed);
  while (true) {
    const uint32_t front = static_cast<uint32_t>(v >> 32), back = static_cast<uint32_t>(v);
    if (front >= back) return {};
    const uint32_t count = from_front ? std::max<uint32_t>(1, (back - front) / kOwnerShare) : 1;
    const uint64_t rest = from_front ? (static_cast<uint64_t>(front + count) << 32) | back : (static_cast<uint64_t>(front) << 32) | (back - 1);
    if (r.front_back.compare_exchange_weak(v, rest, std::memory_order_relaxed)) return {from_front ? front : back - 1, count};
  }
}

// Thread `index`'s part of the published job.
void ThreadPool::run_share(int index) {
  if (!chunked_) {
    auto [b, e] = slice_of(n_, grain_, index, size());
    if (b < e) (*job_)(b, e);
    return;
  }
  auto run = [&](Claim c) { (*job_)(c.first * grain_, std::min(n_, (c.first + c.count) * grain_)); };
  for (Claim c; (c = take(ranges_[static_cast<size_t>(index)], true)).count > 0;) run(c);
  for (int k = 1; k < size(); ++k)
    for (Claim c; (c = take(ranges_[static_cast<size_t>((index + k) % size())], false)).count > 0;) run(c);
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  run_job(n, grain, false, fn);
}

void ThreadPool::parallel_chunks(int64_t n, int64_t chunk, const std::function<void(int64_t, int64_t)>& fn) {
  run_job(n, chunk, true, fn);
}

void ThreadPool::run_job(int64_t n, int64_t grain, bool chunked, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (workers_.empty() || n <= grain) {
    fn(0, n);
    return;
  }
  const int64_t chunks = (n + grain - 1) / grain;
  if (chunked && chunks > UINT32_MAX) throw std::length_error("parallel_chunks: more than 2^32 chunks");
  {
    std::lock_guard lock(mu_);  // a sleeping worker checks generation_ under it
    job_ = &fn;
    n_ = n;
    grain_ = grain;
    chunked_ = chunked;
    if (chunked)
      for (int p = 0; p < size(); ++p) {
        auto [b, e] = slice_of(chunks, 1, p, size());
        ranges_[static_cast<size_t>(p)].front_back.store((static_cast<uint64_t>(b) << 32) | static_cast<uint64_t>(e),
                                                          std::memory_order_relaxed);
      }
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  run_share(0);
  const auto all_done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
  if (spin_until(all_done, kSpin)) return;
  std::unique_lock lock(mu_);
  done_.wait(lock, all_done);
}

}  // namespace umi::cpu
