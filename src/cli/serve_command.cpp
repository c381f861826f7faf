// `umi serve [-m MODEL] [--host H] [--port P] [--api-key KEY]`: the
// OpenAI-compatible server. SIGINT/SIGTERM stop it.
#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/model_options.h"
#include "core/error.h"
#include "engine/engine.h"
#include "server/server.h"
#include "template/chat_template.h"

namespace umi::cli {

namespace {
struct ServeArgs {
  ModelArgs model;
  ServerOptions server;
  int64_t max_batch = 16;
  int64_t max_waiting = 256;
  std::string model_id;
};

volatile std::sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }
}  // namespace

Action add_serve(CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand("serve", "serve the OpenAI-compatible HTTP API");
  auto a = std::make_shared<ServeArgs>();
  a->model.add_to(*cmd);
  cmd->add_option("--host", a->server.host, "address to listen on");
  cmd->add_option("--port", a->server.port, "port (0: any free one)")->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", a->server.api_key, "require 'Authorization: Bearer KEY' on every route but /health");
  cmd->add_option("--max-batch", a->max_batch, "most sequences per forward pass")->check(CLI::Range(1, 512));
  cmd->add_option("--max-waiting", a->max_waiting, "queued requests beyond this get 503")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--model-id", a->model_id, "the model's name in the API (default: the file or folder name)");
  return [a, &global] {
    Pool pool(a->model.pool_options(global));
    ModelOptions mo = a->model.options();
    mo.max_batch = std::min(a->max_batch, mo.prefill_chunk);
    Model model(a->model.path(), pool, mo);
    Tokenizer tok = load_tokenizer(a->model.path());
    std::unique_ptr<ChatTemplate> tpl;
    if (auto source = find_chat_template(a->model.path())) {
      auto name = [&](std::optional<int32_t> id) { return id ? tok.token_text(*id) : std::string(); };
      tpl = std::make_unique<ChatTemplate>(*source, name(tok.bos_id()), name(tok.eos_id()));
    }
    std::string id = a->model_id;
    if (id.empty()) {
      std::string p = a->model.path();
      while (p.size() > 1 && p.back() == '/') p.pop_back();
      id = p.substr(p.find_last_of('/') + 1);
    }
    Engine engine(model, tok, {.max_waiting = a->max_waiting});
    EngineLoop loop(engine);
    Server server(loop, {id, &tok, tpl.get(), model.config().max_context, model.config().vocab_size}, a->server);
    if (!server.bind()) throw InputError("cannot listen on " + a->server.host + ":" + std::to_string(a->server.port));
    std::signal(SIGINT, on_stop);
    std::signal(SIGTERM, on_stop);
    std::thread watcher([&] {
      while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      server.stop();
    });
    std::fprintf(stderr, "umi: serving %s on http://%s:%d (%s)\n", id.c_str(), a->server.host.c_str(), server.port(),
                 a->server.api_key.empty() ? "no API key" : "API key required");
    server.run();
    g_stop = 1;
    watcher.join();
    std::fprintf(stderr, "umi: stopped\n");
  };
}

}  // namespace umi::cli
