// `umi serve [-m MODEL | --models-dir DIR] [--host H] [--port P] [--api-key KEY]
//            [--keep-alive D] [--shutdown-grace D]`: the OpenAI-compatible
// server. SIGINT/SIGTERM stop accepting, let requests in flight finish within
// the grace period, cancel the rest and exit 0.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/model_options.h"
#include "core/error.h"
#include "core/units.h"
#include "server/server.h"

namespace umi::cli {

namespace {
struct ServeArgs {
  ModelArgs model;
  std::string models_dir;
  ServerOptions server;
  int64_t max_batch = 16;
  int64_t max_waiting = 256;
  std::string model_id;
  std::string keep_alive;  // default: forever for -m, 5m for --models-dir
  std::string shutdown_grace = "30s";
};

// Set by the signal handler, read by a watcher thread: a signal handler may
// only touch a lock-free atomic, so this one flag is process-wide.
volatile std::sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

double seconds_option(const std::string& text, const char* name, bool allow_forever) {
  if (allow_forever && (text == "-1" || text == "forever")) return -1;
  auto v = parse_seconds(text);
  if (!v) throw InputError(std::string(name) + ": \"" + text + "\" is not a duration such as 30s, 5m or 1h" + (allow_forever ? " (or -1: forever)" : ""));
  return *v;
}
}  // namespace

Action add_serve(CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand("serve", "serve the OpenAI-compatible HTTP API");
  auto a = std::make_shared<ServeArgs>();
  a->model.add_to(*cmd);
  cmd->add_option("--models-dir", a->models_dir, "serve every model folder and .gguf file in DIR, loading on demand");
  cmd->add_option("--host", a->server.host, "address to listen on");
  cmd->add_option("--port", a->server.port, "port (0: any free one)")->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", a->server.api_key, "require 'Authorization: Bearer KEY' on every route but /health");
  cmd->add_option("--max-batch", a->max_batch, "most sequences per forward pass")->check(CLI::Range(1, 512));
  cmd->add_option("--max-waiting", a->max_waiting, "queued requests beyond this get 503")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--http-threads", a->server.http_threads, "connections served at once")->check(CLI::Range(1, 4096));
  cmd->add_option("--model-id", a->model_id, "with -m: the model's name in the API (default: the file or folder name)");
  cmd->add_option("--keep-alive", a->keep_alive, "unload a model idle this long (30s, 5m, 1h; -1: never; default: never with -m, 5m with --models-dir)");
  cmd->add_option("--shutdown-grace", a->shutdown_grace, "on SIGTERM, how long requests in flight may take to finish");
  return [a, &global] {
    if (!a->models_dir.empty() && !a->model.model.empty()) throw InputError("give -m or --models-dir, not both");
    std::vector<ModelSource> sources =
        a->models_dir.empty() ? std::vector<ModelSource>{model_source(a->model.path(), a->model_id)} : scan_models_dir(a->models_dir);
    RegistryOptions ro;
    ro.model = a->model.options();
    ro.model.max_batch = std::min(a->max_batch, ro.model.prefill_chunk);
    ro.engine.max_waiting = a->max_waiting;
    ro.keep_alive_seconds = a->keep_alive.empty() ? (a->models_dir.empty() ? -1 : 300) : seconds_option(a->keep_alive, "--keep-alive", true);
    ro.log = [](const std::string& line) { std::fprintf(stderr, "umi: %s\n", line.c_str()); };
    const double grace = seconds_option(a->shutdown_grace, "--shutdown-grace", false);

    Pool pool(a->model.pool_options(global));
    // On a GPU every model draws on one device pool, under one limit.
    std::unique_ptr<DeviceMemory> device_memory = make_device_memory(ro.model.device, a->model.device_limit());
    ro.model.device_memory = device_memory ? &device_memory->pool() : nullptr;
    ModelRegistry registry(pool, sources, ro);
    Server server(registry, a->server);
    // One model: load it now, not on the first request; it is marked as
    // loading before the port opens, so /health never says "ok" before it is.
    std::thread preload;
    std::string load_error;
    std::atomic<bool> preload_done{false};
    if (a->models_dir.empty()) {
      preload = std::thread([&] {
        try {
          registry.acquire("");
        } catch (const std::exception& e) {
          load_error = e.what();
          g_stop = 1;
        }
        preload_done = true;
      });
      while (!preload_done && registry.status()[0].state == ModelState::unloaded) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (!server.bind()) {
      if (preload.joinable()) preload.join();
      throw InputError("cannot listen on " + a->server.host + ":" + std::to_string(a->server.port));
    }
    std::signal(SIGINT, on_stop);
    std::signal(SIGTERM, on_stop);
    std::fprintf(stderr, "umi: listening on http://%s:%d (%zu model%s, %s)\n", a->server.host.c_str(), server.port(), sources.size(),
                 sources.size() == 1 ? "" : "s", a->server.api_key.empty() ? "no API key" : "API key required");
    std::thread watcher([&] {
      while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::fprintf(stderr, "umi: stopping: finishing requests in flight (up to %.0f s)\n", grace);
      server.shutdown(grace);
    });
    server.run();
    g_stop = 1;
    watcher.join();
    if (preload.joinable()) preload.join();
    if (!load_error.empty()) throw InputError("cannot load " + sources[0].path + ": " + load_error);
    std::fprintf(stderr, "umi: stopped\n");
  };
}

}  // namespace umi::cli
