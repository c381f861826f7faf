// Multi-model residency on copies of the bundled model: loading on demand,
// unloading the least recently used idle model when the limit needs it,
// keep-alive expiry, explicit unload, and memory back to its idle figure.
#include "server/model_registry.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "support/temp_dir.h"

namespace umi {
namespace {

namespace fs = std::filesystem;
std::string bundled() { return std::string(UMI_SOURCE_DIR) + "/models/tiny-shakespeare"; }

RegistryOptions options(double keep_alive = -1) {
  RegistryOptions o;
  o.model = {.prefill_chunk = 32, .max_batch = 2, .threads = 1};
  o.keep_alive_seconds = keep_alive;
  o.min_kv_tokens = 64;
  return o;
}

// A models folder: `n` links to the bundled model, a stray file, an empty folder.
struct ModelsDir {
  explicit ModelsDir(int n) {
    for (int i = 0; i < n; ++i) fs::create_directory_symlink(bundled(), dir.path() / ("m" + std::to_string(i)));
    std::ofstream(dir.file("notes.txt")) << "not a model";
    fs::create_directory(dir.path() / "empty");
  }
  test::TempDir dir;
};

// Bytes one loaded copy holds (weights mapped + scratch + engine buffers).
uint64_t one_model_bytes() {
  Pool p({.limit = 1ull << 30});
  LoadedModel m({"x", bundled()}, p, options().model, {});
  return p.stats().active;
}

std::vector<ModelState> states(const ModelRegistry& r) {
  std::vector<ModelState> out;
  for (const ModelStatus& s : r.status()) out.push_back(s.state);
  return out;
}

using S = ModelState;

TEST(ModelRegistry, ScansAFolderForModels) {
  ModelsDir d(3);
  auto sources = scan_models_dir(d.dir.path().string());
  ASSERT_EQ(sources.size(), 3u);
  EXPECT_EQ(sources[0].id, "m0");
  EXPECT_EQ(sources[2].id, "m2");
  EXPECT_EQ(model_source("/x/y/llama-q4_0.gguf").id, "llama-q4_0");
  EXPECT_EQ(model_source("/x/folder/").id, "folder");
  EXPECT_THROW(scan_models_dir(d.dir.file("nope")), InputError);
  EXPECT_THROW(scan_models_dir((d.dir.path() / "empty").string()), InputError);
}

TEST(ModelRegistry, LoadsOnDemandAndUnloadsTheLeastRecentlyUsedIdleModelForRoom) {
  ModelsDir d(3);
  const uint64_t one = one_model_bytes();
  // Room for two models with their minimum KV, not three.
  Pool pool({.limit = 2 * one + one / 2});
  ModelRegistry r(pool, scan_models_dir(d.dir.path().string()), options());
  EXPECT_EQ(states(r), (std::vector<S>{S::unloaded, S::unloaded, S::unloaded}));
  EXPECT_EQ(pool.stats().active, 0u);
  { auto a = r.acquire("m0"); }
  { auto b = r.acquire("m1"); }
  EXPECT_EQ(states(r), (std::vector<S>{S::loaded, S::loaded, S::unloaded}));
  { auto a = r.acquire("m0"); }  // m1 is now the least recently used
  {
    auto c = r.acquire("m2");
    EXPECT_EQ(states(r), (std::vector<S>{S::loaded, S::unloaded, S::loaded}));
    EXPECT_LE(pool.stats().peak, pool.stats().limit);
    // m0 and m2 busy: m1 cannot be loaded now, but may be later.
    auto a = r.acquire("m0");
    try {
      r.acquire("m1");
      ADD_FAILURE() << "m1 loaded past the limit";
    } catch (const ModelUnavailable& e) {
      EXPECT_TRUE(e.retry) << e.what();
    }
    EXPECT_EQ(r.unload("m2"), ModelRegistry::Unloaded::busy);
  }
  EXPECT_THROW(r.acquire("m9"), ModelNotFound);
  EXPECT_THROW(r.acquire(""), ModelNotFound);  // three models: the name is required
}

TEST(ModelRegistry, UnloadingGivesEveryByteBack) {
  ModelsDir d(2);
  Pool pool({.limit = 1ull << 30});
  ModelRegistry r(pool, scan_models_dir(d.dir.path().string()), options());
  const PoolStats idle = pool.stats();
  for (int round = 0; round < 5; ++round) {
    for (const char* id : {"m0", "m1"}) {
      auto lease = r.acquire(id);
      std::atomic<int> done{0};
      RequestOptions o;
      o.max_tokens = 8;
      (*lease)->loop.submit((*lease)->tokenizer.encode("ROMEO: O Romeo, Romeo, wherefore art thou", true), o,
                           {nullptr, [&](const RequestOutput&) { ++done; }});
      while (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_EQ(r.unload("m0"), ModelRegistry::Unloaded::done);
    EXPECT_EQ(r.unload("m1"), ModelRegistry::Unloaded::done);
    EXPECT_EQ(r.unload("m1"), ModelRegistry::Unloaded::not_loaded);
    const PoolStats now = pool.stats();
    EXPECT_EQ(now.active, idle.active) << "round " << round;
    EXPECT_EQ(now.cached, 0u);
    EXPECT_EQ(now.live_buffers, idle.live_buffers);
  }
}

TEST(ModelRegistry, KeepAliveUnloadsIdleModels) {
  ModelsDir d(1);
  Pool pool({.limit = 1ull << 30});
  ModelRegistry r(pool, scan_models_dir(d.dir.path().string()), options(0.05));
  {
    auto lease = r.acquire("m0");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(states(r)[0], S::loaded);  // in use: never reaped
  }
  for (int i = 0; i < 2000 && states(r)[0] != S::unloaded; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(states(r)[0], S::unloaded);
  EXPECT_EQ(pool.stats().active, 0u);
  { auto again = r.acquire(""); }  // one model: the name may be left out
}

TEST(ModelRegistry, ABrokenModelFileIsAnErrorAndTheOthersStillServe) {
  ModelsDir d(1);
  std::ofstream(d.dir.file("broken.gguf")) << "GGUF but not really";
  Pool pool({.limit = 1ull << 30});
  ModelRegistry r(pool, scan_models_dir(d.dir.path().string()), options());
  EXPECT_THROW(r.acquire("broken"), InputError);
  EXPECT_FALSE(r.status()[0].last_error.empty());
  EXPECT_EQ(r.status()[0].state, S::unloaded);
  EXPECT_NO_THROW(r.acquire("m0"));
  EXPECT_EQ(pool.stats().active > 0, true);
}

// A request whose KV cache does not fit beside two models: while the other
// model is in use the request is refused (nothing of its own engine will
// free memory), once that model is idle it is unloaded and the request runs.
TEST(ModelRegistry, AnIdleModelMakesWayForAnotherModelsKvCache) {
  ModelsDir d(2);
  const uint64_t one = one_model_bytes();
  Pool pool({.limit = 2 * one + (256u << 10)});  // both models and KV for ~128 tokens (2 KiB a token)
  ModelRegistry r(pool, scan_models_dir(d.dir.path().string()), options());
  std::shared_ptr<ModelRegistry::Lease> other = r.acquire("m1");
  auto run = [&](const std::vector<int32_t>& prompt) {
    auto lease = r.acquire("m0");
    std::promise<RequestOutput> done;
    RequestOptions o;
    o.max_tokens = 4;
    (*lease)->loop.submit(prompt, o, {nullptr, [&](const RequestOutput& out) { done.set_value(out); }});
    return done.get_future().get();
  };
  std::vector<int32_t> prompt(400);  // 800 KiB of KV
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(1 + i * 7 % 2000);
  const RequestOutput refused = run(prompt);
  EXPECT_EQ(refused.finish_reason, "error");
  EXPECT_NE(refused.error.find("tokens"), std::string::npos) << refused.error;
  EXPECT_EQ(states(r), (std::vector<S>{S::loaded, S::loaded}));
  other.reset();  // m1 idle
  const RequestOutput ran = run(prompt);
  EXPECT_EQ(ran.finish_reason, "length") << ran.error;
  EXPECT_EQ(ran.completion_tokens, 4);
  EXPECT_EQ(states(r), (std::vector<S>{S::loaded, S::unloaded}));
  EXPECT_LE(pool.stats().peak, pool.stats().limit);
}

TEST(ModelRegistry, AModelThatCanNeverFitSaysSo) {
  ModelsDir d(1);
  Pool pool({.limit = 1u << 20});
  ModelRegistry r(pool, scan_models_dir(d.dir.path().string()), options());
  try {
    r.acquire("m0");
    ADD_FAILURE();
  } catch (const ModelUnavailable& e) {
    EXPECT_FALSE(e.retry);
  }
  EXPECT_EQ(pool.stats().active, 0u);
}

// On a GPU the models share one device pool (as `umi serve --device cuda`
// makes it): its limit decides which stay resident, and an unload gives its
// device memory back. Runs where a CUDA device is visible (the device tool).
TEST(ModelRegistryCuda, ModelsOnTheGpuShareOneDeviceLimit) {
  if (!device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device";
  ModelsDir d(3);
  RegistryOptions o = options();
  o.model.device = Device::cuda;
  uint64_t one = 0;
  {
    auto measure = make_device_memory(Device::cuda, 1ull << 30);
    o.model.device_memory = &measure->pool();
    Pool host({.limit = 1ull << 30});
    LoadedModel m({"x", bundled()}, host, o.model, {});
    one = measure->pool().stats().active;
  }
  ASSERT_GT(one, 0u);
  auto device = make_device_memory(Device::cuda, 2 * one + one / 2);  // two models with their KV, not three
  o.model.device_memory = &device->pool();
  Pool host({.limit = 4ull << 30});  // room for all three on the host side
  ModelRegistry r(host, scan_models_dir(d.dir.path().string()), o);
  ASSERT_EQ(r.device_memory(), &device->pool());
  auto generate = [&](const char* id) {
    auto lease = r.acquire(id);
    std::atomic<int> done{0};
    RequestOptions ro;
    ro.max_tokens = 8;
    std::vector<int32_t> tokens;
    (*lease)->loop.submit((*lease)->tokenizer.encode("ROMEO: O Romeo, Romeo, wherefore art thou", true), ro,
                         {[&](uint64_t, int32_t token, std::string_view) { tokens.push_back(token); }, [&](const RequestOutput&) { ++done; }});
    while (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return tokens;
  };
  const std::vector<int32_t> first = generate("m0");
  EXPECT_EQ(first.size(), 8u);
  EXPECT_EQ(generate("m1"), first);  // the same model twice: the same greedy text
  EXPECT_EQ(states(r), (std::vector<S>{S::loaded, S::loaded, S::unloaded}));
  EXPECT_GE(device->pool().stats().active, 2 * one - one / 8);
  generate("m0");  // m1 is now the least recently used
  EXPECT_EQ(generate("m2"), first);
  EXPECT_EQ(states(r), (std::vector<S>{S::loaded, S::unloaded, S::loaded}));
  EXPECT_LE(device->pool().stats().peak, device->pool().stats().limit);
  EXPECT_EQ(r.unload("m0"), ModelRegistry::Unloaded::done);
  EXPECT_EQ(r.unload("m2"), ModelRegistry::Unloaded::done);
  EXPECT_EQ(device->pool().stats().active, 0u);
  EXPECT_EQ(device->pool().stats().cached, 0u);  // back to the driver, not kept
}

}  // namespace
}  // namespace umi
