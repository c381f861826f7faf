#include "server/model_registry.h"

#include <algorithm>
#include <filesystem>

#include "core/units.h"
#include "model/memory_plan.h"

namespace umi {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

ModelSource model_source(const std::string& path, std::string id) {
  if (id.empty()) {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    id = p.substr(p.find_last_of('/') + 1);
    if (id.size() > 5 && id.ends_with(".gguf")) id.resize(id.size() - 5);
  }
  return {id, path};
}

std::vector<ModelSource> scan_models_dir(const std::string& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) throw InputError("--models-dir " + dir + ": " + ec.message());
  std::vector<ModelSource> out;
  for (const fs::directory_entry& e : it) {
    const fs::path p = e.path();
    const bool folder = e.is_directory(ec) && fs::exists(p / "config.json", ec);
    const bool gguf = e.is_regular_file(ec) && p.extension() == ".gguf";
    if (folder || gguf) out.push_back(model_source(p.string()));
  }
  if (out.empty()) throw InputError("--models-dir " + dir + ": no model folders (with config.json) or .gguf files in it");
  std::sort(out.begin(), out.end(), [](const ModelSource& a, const ModelSource& b) { return a.id < b.id; });
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i].id == out[i - 1].id)
      throw InputError("--models-dir " + dir + ": two models are named '" + out[i].id + "' (" + out[i - 1].path + ", " + out[i].path + ")");
  return out;
}

namespace {
std::unique_ptr<ChatTemplate> chat_template_of(const std::string& path, const Tokenizer& tok) {
  auto source = find_chat_template(path);
  if (!source) return nullptr;
  auto name = [&](std::optional<int32_t> id) { return id ? tok.token_text(*id) : std::string(); };
  return std::make_unique<ChatTemplate>(*source, name(tok.bos_id()), name(tok.eos_id()));
}
}  // namespace

LoadedModel::LoadedModel(const ModelSource& source, Pool& pool, const ModelOptions& model_options,
                         const EngineOptions& engine_options)
    : model(source.path, pool, model_options),
      tokenizer(load_tokenizer(source.path)),
      chat_template(chat_template_of(source.path, tokenizer)),
      engine(model, tokenizer, engine_options),
      loop(engine),
      served{source.id, &tokenizer, chat_template.get(), model.config().max_context, model.config().vocab_size} {}

const char* to_string(ModelState state) {
  switch (state) {
    case ModelState::unloaded: return "unloaded";
    case ModelState::loading: return "loading";
    case ModelState::loaded: return "loaded";
    case ModelState::unloading: return "unloading";
  }
  return "?";
}

ModelRegistry::Lease::Lease(ModelRegistry& registry, size_t index, std::shared_ptr<LoadedModel> model, bool is_use)
    : registry_(registry), index_(index), model_(std::move(model)), is_use_(is_use) {}

ModelRegistry::Lease::~Lease() { registry_.release(index_, is_use_); }

ModelRegistry::ModelRegistry(Pool& pool, std::vector<ModelSource> sources, RegistryOptions options)
    : pool_(pool), sources_(std::move(sources)), options_(std::move(options)), entries_(sources_.size()) {
  if (sources_.empty()) throw InputError("no models to serve");
  reaper_ = std::thread([this] { reap(); });
}

ModelRegistry::~ModelRegistry() {
  std::vector<std::shared_ptr<LoadedModel>> gone;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    for (Entry& e : entries_) gone.push_back(std::move(e.loaded));
  }
  cv_.notify_all();
  reaper_.join();
  gone.clear();  // engines cancel what is left; loops stop
}

void ModelRegistry::say(const std::string& line) const {
  if (options_.log) options_.log(line);
}

size_t ModelRegistry::index_of(const std::string& id) const {
  if (id.empty() && sources_.size() == 1) return 0;
  for (size_t i = 0; i < sources_.size(); ++i)
    if (sources_[i].id == id) return i;
  std::string names;
  for (const ModelSource& s : sources_) names += (names.empty() ? "" : ", ") + s.id;
  if (id.empty()) throw ModelNotFound("'model' is required; this server has: " + names);
  throw ModelNotFound("the model '" + id + "' does not exist; this server has: " + names);
}

std::shared_ptr<ModelRegistry::Lease> ModelRegistry::acquire(const std::string& id) {
  const size_t i = index_of(id);
  std::unique_lock lock(mu_);
  while (true) {
    Entry& e = entries_[i];
    if (stop_) throw ModelUnavailable("the server is shutting down", false);
    if (e.state == ModelState::loaded) {
      ++e.leases;
      return std::make_shared<Lease>(*this, i, e.loaded);
    }
    if (e.state == ModelState::loading || e.state == ModelState::unloading) {
      cv_.wait(lock);
      continue;
    }
    e.state = ModelState::loading;  // this thread loads it; others wait
    lock.unlock();
    std::shared_ptr<LoadedModel> m;
    std::exception_ptr failure;
    try {
      m = load(i);
    } catch (const std::exception& ex) {
      failure = std::current_exception();
      lock.lock();
      e.last_error = ex.what();
      lock.unlock();
    }
    lock.lock();
    if (!m) {
      e.state = ModelState::unloaded;
      cv_.notify_all();
      std::rethrow_exception(failure);
    }
    e.loaded = std::move(m);
    e.state = ModelState::loaded;
    e.last_used = Clock::now();
    e.last_error.clear();
    ++e.leases;
    cv_.notify_all();
    return std::make_shared<Lease>(*this, i, e.loaded);
  }
}

std::shared_ptr<LoadedModel> ModelRegistry::load(size_t index) {
  const ModelSource& src = sources_[index];
  say("loading " + src.id + " from " + src.path);
  const auto t0 = Clock::now();
  const uint64_t before = pool_.stats().active;
  std::shared_ptr<LoadedModel> m;
  for (int attempt = 0; !m; ++attempt) {
    try {
      m = std::make_shared<LoadedModel>(src, pool_, options_.model, engine_options(index));
    } catch (const OutOfMemory& e) {
      if (!make_room(index, attempt)) {
        bool busy = false;
        {
          std::lock_guard lock(mu_);
          for (size_t j = 0; j < entries_.size(); ++j) busy |= j != index && entries_[j].leases > 0;
        }
        throw ModelUnavailable("cannot load '" + src.id + "': " + e.what() +
                                   (busy ? " (other models are serving requests; retry later)" : ""),
                               busy);
      }
    }
  }
  // Room for some KV too, or the model is loaded only to refuse every prompt
  // (in the pool its KV blocks come from: the host's, or the device's).
  const uint64_t kv_needed = kv_bytes_per_token(m->model.config(), options_.model.kv_dtype) *
                             static_cast<uint64_t>(std::max<int64_t>(options_.min_kv_tokens, 0));
  Pool& kv_memory = m->model.kv_pool().memory();
  for (int attempt = 0;; ++attempt) {
    const PoolStats s = kv_memory.stats();
    if (s.limit - std::min(s.limit, s.active) >= kv_needed || !make_room(index, attempt)) break;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  {
    std::lock_guard lock(mu_);
    entries_[index].load_seconds = seconds;
  }
  char line[160];
  std::snprintf(line, sizeof line, "loaded %s in %.2f s (%s accounted)", src.id.c_str(), seconds,
                format_bytes(pool_.stats().active - std::min(before, pool_.stats().active)).c_str());
  say(line);
  return m;
}

// The engine of sources_[index] asks for memory when its KV cache cannot
// grow: an idle model goes before a request of this one waits, is refused
// or preempted. Only idle models: a busy one's loop may itself be waiting
// here, and this runs on the asking engine's loop thread.
EngineOptions ModelRegistry::engine_options(size_t index) {
  EngineOptions o = options_.engine;
  o.free_memory = [this, index] { return unload_idle(index, "least recently used; another model's KV cache needs its memory"); };
  return o;
}

// Frees memory for loading sources_[except]: the first attempt gives back
// every model's cached prefix KV and freed buffers; each later one unloads
// the least recently used idle model. False when there is nothing left to free.
bool ModelRegistry::make_room(size_t except, int attempt) {
  if (attempt == 0) {
    for_each_loaded([](const std::string&, LoadedModel& m) { m.loop.release_cached(); });
    release_caches();
    return true;
  }
  return unload_idle(except, "least recently used; its memory is needed");
}

bool ModelRegistry::unload_idle(size_t except, const char* why) {
  std::shared_ptr<LoadedModel> victim;
  size_t index = 0;
  {
    std::lock_guard lock(mu_);
    if (stop_) return false;
    Entry* oldest = nullptr;
    for (size_t j = 0; j < entries_.size(); ++j) {
      Entry& e = entries_[j];
      if (j == except || e.state != ModelState::loaded || e.leases > 0) continue;
      if (!oldest || e.last_used < oldest->last_used) oldest = &e;
    }
    if (!oldest) return false;
    victim = std::move(oldest->loaded);
    oldest->state = ModelState::unloading;
    index = static_cast<size_t>(oldest - entries_.data());
  }
  finish_unload(index, std::move(victim), why);
  return true;
}

void ModelRegistry::release_caches() {
  pool_.release_cache();
  if (options_.model.device_memory) options_.model.device_memory->release_cache();
}

// The second half of an unload, outside the lock: the model's loop stops and
// its memory goes back to the pool and from there to the operating system.
void ModelRegistry::finish_unload(size_t index, std::shared_ptr<LoadedModel> victim, const char* why) {
  victim.reset();
  release_caches();
  {
    std::lock_guard lock(mu_);
    entries_[index].state = ModelState::unloaded;
  }
  cv_.notify_all();
  say("unloaded " + sources_[index].id + " (" + why + ")");
}

void ModelRegistry::release(size_t index, bool is_use) {
  {
    std::lock_guard lock(mu_);
    Entry& e = entries_[index];
    --e.leases;
    if (is_use) e.last_used = Clock::now();
  }
  cv_.notify_all();
}

ModelRegistry::Unloaded ModelRegistry::unload(const std::string& id) {
  const size_t i = index_of(id);
  std::shared_ptr<LoadedModel> victim;
  {
    std::lock_guard lock(mu_);
    Entry& e = entries_[i];
    if (e.state != ModelState::loaded) return e.state == ModelState::loading ? Unloaded::busy : Unloaded::not_loaded;
    if (e.leases > 0) return Unloaded::busy;
    victim = std::move(e.loaded);
    e.state = ModelState::unloading;
  }
  finish_unload(i, std::move(victim), "asked to");
  return Unloaded::done;
}

void ModelRegistry::reap() {
  if (options_.keep_alive_seconds < 0) return;
  const auto keep = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options_.keep_alive_seconds));
  const auto tick = std::clamp<Clock::duration>(keep / 4, std::chrono::milliseconds(10), std::chrono::seconds(1));
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, tick);
    for (size_t j = 0; j < entries_.size() && !stop_; ++j) {
      Entry& e = entries_[j];
      if (e.state != ModelState::loaded || e.leases > 0 || Clock::now() - e.last_used < keep) continue;
      std::shared_ptr<LoadedModel> victim = std::move(e.loaded);
      e.state = ModelState::unloading;
      lock.unlock();
      finish_unload(j, std::move(victim), "idle longer than the keep-alive");
      lock.lock();
    }
  }
}

std::vector<ModelStatus> ModelRegistry::status() const {
  std::lock_guard lock(mu_);
  std::vector<ModelStatus> out;
  const auto now = Clock::now();
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    ModelStatus s{sources_[i].id, sources_[i].path, e.state, e.leases, 0, e.load_seconds, e.last_error};
    if (e.state == ModelState::loaded && e.leases == 0) s.idle_seconds = std::chrono::duration<double>(now - e.last_used).count();
    out.push_back(std::move(s));
  }
  return out;
}

bool ModelRegistry::loading() const {
  std::lock_guard lock(mu_);
  return std::any_of(entries_.begin(), entries_.end(), [](const Entry& e) { return e.state == ModelState::loading; });
}

void ModelRegistry::for_each_loaded(const std::function<void(const std::string&, LoadedModel&)>& fn) {
  std::vector<std::shared_ptr<Lease>> leased;
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < entries_.size(); ++i)
      if (entries_[i].state == ModelState::loaded) {
        ++entries_[i].leases;
        leased.push_back(std::make_shared<Lease>(*this, i, entries_[i].loaded, /*is_use=*/false));
      }
  }
  for (const auto& l : leased) fn((*l)->served.id, **l);
}

}  // namespace umi
