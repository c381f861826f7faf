// The OpenAI-compatible HTTP server over a ModelRegistry:
//   POST /v1/chat/completions, POST /v1/completions (JSON or SSE streams,
//        n choices, logprobs), GET /v1/models, GET /v1/models/{id},
//   POST /v1/models/{id}/unload, GET /health (503 while a model loads or the
//   server drains), GET /metrics (Prometheus), POST /tokenize, /detokenize.
// A client that goes away mid-stream has its request cancelled (its KV
// blocks are freed within a step); a full queue answers 503 with Retry-After;
// with an API key every route but /health needs "Authorization: Bearer KEY".
#pragma once

#include <memory>
#include <string>

#include "server/model_registry.h"

namespace umi {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see port())
  std::string api_key;  // empty: no authentication
  size_t max_body_bytes = 8u << 20;
  int http_threads = 64;  // connections served at once (each stream holds one)
};

class Server {
 public:
  Server(ModelRegistry& registry, ServerOptions options);
  ~Server();
  // Binds now (port 0 picks a free one); false if the address cannot be bound.
  bool bind();
  // Serves until stop() or shutdown(), and returns once every request in
  // flight has been answered.
  void run();
  // Stops accepting at once; requests in flight go on.
  void stop();
  // Graceful stop (SIGTERM): stop accepting, let requests in flight finish
  // for up to `grace_seconds`, then cancel what is left (streams end with
  // finish_reason "stop" after their last token). Returns when nothing is in
  // flight; run() then returns.
  void shutdown(double grace_seconds);
  int port() const { return port_; }

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace umi
