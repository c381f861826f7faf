// The models one server can serve, and which of them are in memory.
//
// Sources come from `-m` (one model) or a scan of --models-dir. A request for
// a model that is not in memory loads it (other requests for it wait for that
// load; /health says a load is under way). Every model draws on one Pool, so
// one memory limit covers them all (on a GPU, one device pool too, given as
// RegistryOptions::model.device_memory): when a load does not fit, the other
// models' cached prefix KV and the pool's freed buffers are given back first,
// then the least recently used idle model (no request in flight) is unloaded,
// until the new model fits with room for some KV or nothing idle is left.
// The same goes for a loaded model's KV cache: before one of its requests
// waits for KV memory, is refused for it or preempts another, the least
// recently used idle model is unloaded (EngineOptions::free_memory). A
// model unused for longer than the keep-alive is unloaded by a reaper thread,
// and its memory goes back to the operating system.
//
// A Lease keeps its model in memory while a request uses it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "engine/engine.h"
#include "model/model.h"
#include "server/engine_loop.h"
#include "server/openai_request.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace umi {

struct ModelSource {
  std::string id;    // the name clients use
  std::string path;  // a Hugging Face folder or a GGUF file
};

// `path` under the name `id` (default: the folder or file name, without .gguf).
ModelSource model_source(const std::string& path, std::string id = {});
// Every model folder (with config.json) and .gguf file directly inside `dir`,
// sorted by id. InputError when `dir` cannot be read or holds no model.
std::vector<ModelSource> scan_models_dir(const std::string& dir);

// One model in memory with everything that serves it.
struct LoadedModel {
  LoadedModel(const ModelSource& source, Pool& pool, const ModelOptions& model_options, const EngineOptions& engine_options);
  Model model;
  Tokenizer tokenizer;
  std::unique_ptr<ChatTemplate> chat_template;  // null when the model has none
  Engine engine;
  EngineLoop loop;  // declared last: its thread stops first
  ServedModel served;
};

enum class ModelState { unloaded, loading, loaded, unloading };
const char* to_string(ModelState state);

struct ModelStatus {
  std::string id, path;
  ModelState state = ModelState::unloaded;
  int64_t leases = 0;         // requests using it now
  double idle_seconds = 0;    // loaded and unused for this long
  double load_seconds = 0;    // its last load took this long
  std::string last_error;     // why its last load failed
};

struct ModelNotFound : InputError {
  using InputError::InputError;
};

// The model cannot be loaded now. `retry`: memory is held by other models'
// requests in flight, so a later attempt may work; otherwise it never fits.
struct ModelUnavailable : Error {
  ModelUnavailable(const std::string& message, bool retry_later) : Error(message), retry(retry_later) {}
  bool retry;
};

struct RegistryOptions {
  ModelOptions model;
  EngineOptions engine;
  double keep_alive_seconds = -1;  // idle models are unloaded after this; < 0: never
  int64_t min_kv_tokens = 512;     // a load must leave KV room for this many tokens
  std::function<void(const std::string&)> log;  // one line per load/unload
};

class ModelRegistry {
 public:
  class Lease {
   public:
    // `is_use`: a request's lease (ending it restarts the keep-alive clock),
    // not a look by metrics or shutdown.
    Lease(ModelRegistry& registry, size_t index, std::shared_ptr<LoadedModel> model, bool is_use = true);
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    LoadedModel& operator*() const { return *model_; }
    LoadedModel* operator->() const { return model_.get(); }

   private:
    ModelRegistry& registry_;
    size_t index_;
    std::shared_ptr<LoadedModel> model_;
    bool is_use_;
  };

  ModelRegistry(Pool& pool, std::vector<ModelSource> sources, RegistryOptions options);
  ~ModelRegistry();  // unloads everything; leases must be gone
  ModelRegistry(const ModelRegistry&) = delete;
  ModelRegistry& operator=(const ModelRegistry&) = delete;

  // The model `id` ("" names the only one when there is one), loaded if it
  // is not. Throws ModelNotFound, ModelUnavailable, or the load's own error
  // (FormatError for a broken file).
  std::shared_ptr<Lease> acquire(const std::string& id);

  enum class Unloaded { done, not_loaded, busy };
  // Unloads `id` now if no request uses it. Throws ModelNotFound.
  Unloaded unload(const std::string& id);

  // Every model, in source order.
  std::vector<ModelStatus> status() const;
  bool loading() const;
  const std::vector<ModelSource>& sources() const { return sources_; }
  Pool& pool() { return pool_; }
  // The GPU's pool that every model on it shares; null on the CPU.
  Pool* device_memory() { return options_.model.device_memory; }

  // Runs `fn` on each model in memory, leased while it runs (metrics, shutdown).
  void for_each_loaded(const std::function<void(const std::string& id, LoadedModel&)>& fn);

 private:
  struct Entry {
    ModelState state = ModelState::unloaded;
    std::shared_ptr<LoadedModel> loaded;
    int64_t leases = 0;
    std::chrono::steady_clock::time_point last_used;
    double load_seconds = 0;
    std::string last_error;
  };
  size_t index_of(const std::string& id) const;
  std::shared_ptr<LoadedModel> load(size_t index);
  EngineOptions engine_options(size_t index);
  bool make_room(size_t except, int attempt);
  // Unloads the least recently used idle model other than `except`; false when there is none.
  bool unload_idle(size_t except, const char* why);
  void release(size_t index, bool is_use);
  void finish_unload(size_t index, std::shared_ptr<LoadedModel> victim, const char* why);
  void release_caches();  // the host pool's and the device pool's freed buffers, back to the system
  void reap();
  void say(const std::string& line) const;

  Pool& pool_;
  const std::vector<ModelSource> sources_;
  const RegistryOptions options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Entry> entries_;  // by source index
  bool stop_ = false;
  std::thread reaper_;
};

}  // namespace umi
