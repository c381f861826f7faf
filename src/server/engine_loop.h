// Runs an Engine's steps on a thread of its own, sleeping (not spinning)
// while there is nothing to do; submit() and cancel() wake it. What the
// HTTP server uses: handler threads submit and wait on their request's
// events, the loop thread computes.
#pragma once

#include <condition_variable>
#include <mutex>
#include <thread>

#include "engine/engine.h"

namespace umi {

class EngineLoop {
 public:
  explicit EngineLoop(Engine& engine);
  ~EngineLoop();  // stops the thread; requests still queued end as "cancelled"
  EngineLoop(const EngineLoop&) = delete;
  EngineLoop& operator=(const EngineLoop&) = delete;

  uint64_t submit(std::vector<int32_t> prompt, RequestOptions options, RequestCallbacks callbacks);
  void cancel(uint64_t id);
  void cancel_all();
  // Gives back the engine's cached prefix KV and the pool's freed buffers,
  // and returns once the loop thread has done so.
  void release_cached();
  Engine& engine() { return engine_; }

 private:
  void run();
  void wake();

  Engine& engine_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t wakeups_ = 0;
  uint64_t iterations_ = 0;  // step() calls finished
  std::condition_variable iterated_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace umi
