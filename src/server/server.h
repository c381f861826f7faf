// The OpenAI-compatible HTTP server over one model's engine:
//   POST /v1/chat/completions, POST /v1/completions (JSON or SSE streams),
//   GET /v1/models, GET /health, POST /tokenize, POST /detokenize.
// A client that goes away mid-stream has its request cancelled (its KV
// blocks are freed within a step); a full queue answers 503 with Retry-After;
// with an API key every route but /health needs "Authorization: Bearer KEY".
#pragma once

#include <memory>
#include <string>

#include "server/engine_loop.h"
#include "server/openai_request.h"

namespace umi {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see port())
  std::string api_key;  // empty: no authentication
  size_t max_body_bytes = 8u << 20;
};

class Server {
 public:
  Server(EngineLoop& loop, ServedModel model, ServerOptions options);
  ~Server();
  // Binds and serves until stop(); returns false if the address cannot be bound.
  bool listen();
  // Binds now (for tests and port 0); then run() serves.
  bool bind();
  void run();
  void stop();
  int port() const { return port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace umi
