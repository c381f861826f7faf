#include "backend/cpu/thread_pool.h"

#include <algorithm>

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
}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker(i); });
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
  while (true) {
    const std::function<void(int64_t, int64_t)>* job;
    int64_t n, grain;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      n = n_;
      grain = grain_;
    }
    auto [b, e] = slice_of(n, grain, index, size());
    if (b < e) (*job)(b, e);
    {
      std::lock_guard lock(mu_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (workers_.empty() || n <= grain) {
    fn(0, n);
    return;
  }
  {
    std::lock_guard lock(mu_);
    job_ = &fn;
    n_ = n;
    grain_ = grain;
    pending_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  wake_.notify_all();
  auto [b, e] = slice_of(n, grain, 0, size());
  if (b < e) fn(b, e);
  std::unique_lock lock(mu_);
  done_.wait(lock, [&] { return pending_ == 0; });
}

}  // namespace umi::cpu
