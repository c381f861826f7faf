#include "server/engine_loop.h"

#include <chrono>
#include <cstdio>

namespace umi {

EngineLoop::EngineLoop(Engine& engine) : engine_(engine), thread_([this] { run(); }) {}

EngineLoop::~EngineLoop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  iterated_.notify_all();
  thread_.join();
}

uint64_t EngineLoop::submit(std::vector<int32_t> prompt, RequestOptions options, RequestCallbacks callbacks) {
  const uint64_t id = engine_.submit(std::move(prompt), std::move(options), std::move(callbacks));
  wake();
  return id;
}

void EngineLoop::cancel(uint64_t id) {
  engine_.cancel(id);
  wake();
}

void EngineLoop::cancel_all() {
  engine_.cancel_all();
  wake();
}

void EngineLoop::release_cached() {
  engine_.release_cached();
  std::unique_lock lock(mu_);
  // The flag is read at the start of a step: two finished iterations from now
  // include one that started after it was set.
  const uint64_t target = iterations_ + 2;
  ++wakeups_;
  cv_.notify_all();
  iterated_.wait(lock, [&] { return stop_ || iterations_ >= target; });
}

void EngineLoop::wake() {
  {
    std::lock_guard lock(mu_);
    ++wakeups_;
  }
  cv_.notify_all();
}

void EngineLoop::run() {
  uint64_t seen = 0;
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      seen = wakeups_;
    }
    bool busy = false;
    try {
      busy = engine_.step();
    } catch (const std::exception& e) {  // a bug, not a request's fault: say so, keep serving
      std::fprintf(stderr, "umi: engine step failed: %s\n", e.what());
    }
    {
      std::lock_guard lock(mu_);
      ++iterations_;
    }
    iterated_.notify_all();
    if (busy) continue;
    // Idle: sleep until a submit/cancel, or recheck now and then (requests
    // waiting for memory, outside memory pressure easing).
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop_ || wakeups_ != seen; });
  }
}

}  // namespace umi
