#include "server/server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "core/error.h"
#include "server/metrics.h"
#include "server/openai_response.h"

namespace umi {

namespace {

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& type = "invalid_request_error",
                const std::string& param = {}, const std::string& code = {}) {
  res.status = status;
  res.set_content(error_json(message, type, param, code), "application/json");
}

// Constant-time comparison: the time taken does not say how much of a guess was right.
bool same_secret(const std::string& given, const std::string& key) {
  unsigned char diff = given.size() == key.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ key[i % (key.empty() ? 1 : key.size())]);
  return diff == 0 && !key.empty();
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One choice's events, from the engine thread to the HTTP thread.
struct Choice {
  uint64_t request = 0;
  std::string text;                // ready, not yet sent
  std::vector<TokenLogprobs> lps;  // not yet sent
  int64_t text_offset = 0;         // completions' logprobs text_offset
  bool done = false, reported = false;
  RequestOutput out;
};

struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Choice> choices;
  int open = 0;  // choices not done

  bool has_news() const {
    for (const Choice& c : choices)
      if (!c.text.empty() || !c.lps.empty() || (c.done && !c.reported)) return true;
    return false;
  }
};

std::string finish_reason(const RequestOutput& o) { return o.finish_reason == "length" ? "length" : "stop"; }

}  // namespace

struct Server::Impl {
  ModelRegistry& registry;
  ServerOptions options;
  httplib::Server http;
  std::shared_ptr<ServerMetrics> metrics = std::make_shared<ServerMetrics>();
  std::atomic<uint64_t> next_id{1};
  std::atomic<bool> draining{false};
  std::mutex flight_mu;
  std::condition_variable flight_cv;
  int64_t in_flight = 0;

  // Counts a request from acceptance until its last byte is written.
  struct Flight {
    explicit Flight(Impl& s) : server(s) {
      std::lock_guard lock(server.flight_mu);
      ++server.in_flight;
    }
    ~Flight() {
      {
        std::lock_guard lock(server.flight_mu);
        --server.in_flight;
      }
      server.flight_cv.notify_all();
    }
    Impl& server;
  };

  Impl(ModelRegistry& r, ServerOptions o) : registry(r), options(std::move(o)) {}

  // The model a request names, loaded; or an error answer and nullptr.
  std::shared_ptr<ModelRegistry::Lease> lease(const std::string& id, httplib::Response& res) {
    try {
      return registry.acquire(id);
    } catch (const ModelNotFound& e) {
      send_error(res, 404, e.what(), "invalid_request_error", "model", "model_not_found");
    } catch (const ModelUnavailable& e) {
      if (e.retry) res.set_header("Retry-After", "5");
      send_error(res, e.retry ? 503 : 400, e.what(), e.retry ? "server_busy" : "insufficient_memory", "model");
    } catch (const std::exception& e) {  // a broken model file: the server's problem, said plainly
      send_error(res, 500, std::string("cannot load the model: ") + e.what(), "server_error", "model");
    }
    return nullptr;
  }

  void completions(const httplib::Request& req, httplib::Response& res, bool chat) {
    if (draining) return send_error(res, 503, "the server is shutting down", "server_busy");
    auto flight = std::make_shared<Flight>(*this);
    std::shared_ptr<ModelRegistry::Lease> model;
    ParsedRequest p;
    try {
      const ojson body = parse_json_object(req.body);
      model = lease(requested_model(body), res);
      if (!model) return;
      p = parse_openai_request(body, (*model)->served, chat);
    } catch (const ApiError& e) {
      return send_error(res, e.status, e.message, e.type, e.param, e.code);
    }
    auto ch = std::make_shared<Channel>();
    ch->choices.resize(static_cast<size_t>(p.n));
    ch->open = p.n;
    if (!submit_all(**model, p, ch, res)) return;

    const ResponseHead head{std::string(chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++), now_seconds(), (*model)->served.id, chat};
    const int64_t prompt_tokens = static_cast<int64_t>(p.prompt.size());
    if (!p.stream) return answer_whole(res, head, **model, ch, prompt_tokens, p.options.logprobs >= 0);
    stream(res, head, model, ch, prompt_tokens, p.options.logprobs >= 0, p.include_usage, flight);
  }

  // One engine request per choice (seed + index, so choices differ).
  bool submit_all(LoadedModel& m, const ParsedRequest& p, const std::shared_ptr<Channel>& ch, httplib::Response& res) {
    for (int i = 0; i < p.n; ++i) {
      RequestOptions o = p.options;
      o.sampling.seed += static_cast<uint64_t>(i);
      const size_t k = static_cast<size_t>(i);
      RequestCallbacks cb;
      cb.on_logprobs = [ch, k](uint64_t, const TokenLogprobs& lp) {
        std::lock_guard lock(ch->mu);
        ch->choices[k].lps.push_back(lp);
      };
      cb.on_token = [ch, k](uint64_t, int32_t, std::string_view piece) {
        std::lock_guard lock(ch->mu);
        ch->choices[k].text += piece;
        ch->cv.notify_all();
      };
      cb.on_done = [ch, k, metrics = metrics, id = m.served.id](const RequestOutput& result) {
        metrics->request_finished(id, result);
        std::lock_guard lock(ch->mu);
        ch->choices[k].out = result;
        ch->choices[k].text += result.tail;
        ch->choices[k].done = true;
        --ch->open;
        ch->cv.notify_all();
      };
      try {
        const uint64_t id = m.loop.submit(p.prompt, o, cb);
        std::lock_guard lock(ch->mu);
        ch->choices[k].request = id;
      } catch (const Error& e) {
        cancel_all(m, *ch);  // the choices already queued go too
        if (dynamic_cast<const EngineBusy*>(&e)) {
          res.set_header("Retry-After", "1");
          send_error(res, 503, e.what(), "server_busy");
        } else {
          send_error(res, 400, e.what());
        }
        return false;
      }
    }
    return true;
  }

  static void cancel_all(LoadedModel& m, Channel& ch) {
    std::vector<uint64_t> ids;
    {
      std::lock_guard lock(ch.mu);
      for (const Choice& c : ch.choices)
        if (c.request) ids.push_back(c.request);
    }
    for (uint64_t id : ids) m.loop.cancel(id);
  }

  void answer_whole(httplib::Response& res, const ResponseHead& head, LoadedModel& m, const std::shared_ptr<Channel>& ch,
                    int64_t prompt_tokens, bool logprobs) {
    std::unique_lock lock(ch->mu);
    ch->cv.wait(lock, [&] { return ch->open == 0; });
    ojson choices = ojson::array();
    int64_t completion = 0;
    for (size_t i = 0; i < ch->choices.size(); ++i) {
      Choice& c = ch->choices[i];
      if (c.out.finish_reason == "error") return send_error(res, 400, c.out.error, "insufficient_memory");
      ojson lp = logprobs ? logprobs_json(head.chat, m.tokenizer, c.lps, c.text_offset) : ojson(nullptr);
      choices.push_back(choice_json(head, static_cast<int>(i), c.text, std::move(lp), finish_reason(c.out), false));
      completion += c.out.completion_tokens;
    }
    res.set_content(dump(response_json(head, std::move(choices), usage_json(prompt_tokens, completion))), "application/json");
  }

  void stream(httplib::Response& res, const ResponseHead& head, std::shared_ptr<ModelRegistry::Lease> model,
              const std::shared_ptr<Channel>& ch, int64_t prompt_tokens, bool logprobs, bool include_usage,
              std::shared_ptr<Flight> flight) {
    auto started = std::make_shared<bool>(false);
    res.set_chunked_content_provider(
        "text/event-stream",
        [=](size_t, httplib::DataSink& sink) {
          auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
          LoadedModel& m = **model;
          if (!*started) {
            *started = true;
            if (head.chat)
              for (size_t i = 0; i < ch->choices.size(); ++i)
                if (!write(sse_chunk(head, ojson::array({choice_json(head, static_cast<int>(i), "", nullptr, nullptr, true, true)}))))
                  return false;
          }
          std::unique_lock lock(ch->mu);
          while (true) {
            ch->cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return ch->has_news(); });
            std::string out;
            for (size_t i = 0; i < ch->choices.size(); ++i) {
              Choice& c = ch->choices[i];
              if (c.done && !c.reported && c.out.finish_reason == "error") {
                c.reported = true;
                out += "data: " + error_json(c.out.error, "insufficient_memory") + "\n\n";
                continue;
              }
              if (!c.text.empty() || !c.lps.empty()) {
                ojson lp = logprobs ? logprobs_json(head.chat, m.tokenizer, c.lps, c.text_offset) : ojson(nullptr);
                out += sse_chunk(head, ojson::array({choice_json(head, static_cast<int>(i), c.text, std::move(lp), nullptr, true)}));
                c.text.clear();
                c.lps.clear();
              }
              if (c.done && !c.reported) {
                c.reported = true;
                out += sse_chunk(head, ojson::array({choice_json(head, static_cast<int>(i), "", nullptr, finish_reason(c.out), true)}));
              }
            }
            const bool finished = ch->open == 0 && !ch->has_news();
            int64_t completion = 0;
            for (const Choice& c : ch->choices) completion += c.out.completion_tokens;
            lock.unlock();
            if (!out.empty() && !write(out)) return false;  // the client went away: the releaser cancels
            if (finished) {
              if (include_usage) write(sse_chunk(head, ojson::array(), usage_json(prompt_tokens, completion)));
              write("data: [DONE]\n\n");
              sink.done();
              return true;
            }
            if (!sink.is_writable()) return false;
            lock.lock();
          }
        },
        [=](bool success) {
          if (!success) cancel_all(**model, *ch);  // disconnected mid-stream: free its blocks
          (void)flight;                            // in flight until the provider is gone
        });
  }

  void models_list(httplib::Response& res) {
    ojson data = ojson::array();
    for (const ModelStatus& s : registry.status()) data.push_back(model_json(s));
    res.set_content(dump({{"object", "list"}, {"data", std::move(data)}}), "application/json");
  }

  static ojson model_json(const ModelStatus& s) {
    return {{"id", s.id}, {"object", "model"}, {"created", 0}, {"owned_by", "umi"}, {"status", to_string(s.state)}};
  }

  void health(httplib::Response& res) {
    ojson models = ojson::array();
    bool loading = false;
    for (const ModelStatus& s : registry.status()) {
      loading |= s.state == ModelState::loading;
      ojson m = {{"id", s.id}, {"state", to_string(s.state)}, {"requests", s.leases}};
      if (!s.last_error.empty()) m["last_error"] = s.last_error;
      models.push_back(std::move(m));
    }
    const char* status = draining ? "shutting_down" : loading ? "loading" : "ok";
    res.status = draining || loading ? 503 : 200;
    res.set_content(dump({{"status", status}, {"models", std::move(models)}}), "application/json");
  }

  void tokenize(const httplib::Request& req, httplib::Response& res, bool encode) {
    try {
      const ojson body = parse_json_object(req.body);
      auto model = lease(requested_model(body), res);
      if (!model) return;
      const Tokenizer& tok = (*model)->tokenizer;
      if (encode) {
        if (!body.contains("content") || !body["content"].is_string())
          return send_error(res, 400, "'content' must be a string", "invalid_request_error", "content");
        res.set_content(dump({{"tokens", tok.encode(body["content"].get<std::string>(), false)}}), "application/json");
        return;
      }
      if (!body.contains("tokens") || !body["tokens"].is_array())
        return send_error(res, 400, "'tokens' must be an array of token ids", "invalid_request_error", "tokens");
      std::vector<int32_t> ids;
      for (const ojson& t : body["tokens"]) {
        if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= tok.vocab_size())
          return send_error(res, 400, "token ids must be integers in 0.." + std::to_string(tok.vocab_size() - 1), "invalid_request_error", "tokens");
        ids.push_back(t.get<int32_t>());
      }
      res.set_content(dump({{"content", tok.decode(ids)}}), "application/json");
    } catch (const ApiError& e) {
      send_error(res, e.status, e.message, e.type, e.param, e.code);
    }
  }

  void routes() {
    http.new_task_queue = [n = options.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(std::max(1, n))); };
    http.set_payload_max_length(options.max_body_bytes);
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (options.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
      const std::string auth = req.get_header_value("Authorization");
      const std::string given = auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : std::string();
      if (same_secret(given, options.api_key)) return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, 401, "invalid or missing API key", "authentication_error");
      return httplib::Server::HandlerResponse::Handled;
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) { health(res); });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics->render(registry), "text/plain; version=0.0.4");
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) { models_list(res); });
    http.Get(R"(/v1/models/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
      for (const ModelStatus& s : registry.status())
        if (s.id == req.matches[1].str()) return res.set_content(dump(model_json(s)), "application/json");
      send_error(res, 404, "the model '" + req.matches[1].str() + "' does not exist", "invalid_request_error", "model", "model_not_found");
    });
    http.Post(R"(/v1/models/([^/]+)/unload)", [this](const httplib::Request& req, httplib::Response& res) {
      const std::string id = req.matches[1].str();
      try {
        switch (registry.unload(id)) {
          case ModelRegistry::Unloaded::busy:
            return send_error(res, 409, "the model '" + id + "' is serving requests or loading; try again when idle", "conflict");
          case ModelRegistry::Unloaded::done:
          case ModelRegistry::Unloaded::not_loaded:
            return res.set_content(dump({{"id", id}, {"object", "model"}, {"status", "unloaded"}}), "application/json");
        }
      } catch (const ModelNotFound& e) {
        send_error(res, 404, e.what(), "invalid_request_error", "model", "model_not_found");
      }
    });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, true); });
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, false); });
    http.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) { tokenize(req, res, true); });
    http.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) { tokenize(req, res, false); });
    http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string msg = res.status == 404 ? "no such route" : res.status == 413 ? "the body is too large" : "request failed";
      res.set_content(error_json(msg, "invalid_request_error"), "application/json");
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string msg = "internal error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        msg = e.what();
      } catch (...) {
      }
      send_error(res, 500, msg, "server_error");
    });
    http.set_logger([m = metrics](const httplib::Request&, const httplib::Response& res) {
      if (res.status >= 400) m->http_error(res.status);
    });
  }
};

Server::Server(ModelRegistry& registry, ServerOptions options) : impl_(std::make_shared<Impl>(registry, std::move(options))) {
  impl_->routes();
}

Server::~Server() { stop(); }

bool Server::bind() {
  if (impl_->options.port == 0) {
    port_ = impl_->http.bind_to_any_port(impl_->options.host);
    return port_ > 0;
  }
  port_ = impl_->options.port;
  return impl_->http.bind_to_port(impl_->options.host, port_);
}

void Server::run() { impl_->http.listen_after_bind(); }

void Server::stop() { impl_->http.stop(); }

void Server::shutdown(double grace_seconds) {
  Impl& s = *impl_;
  s.draining = true;
  s.http.stop();
  std::unique_lock lock(s.flight_mu);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                                std::chrono::duration<double>(std::max(0.0, grace_seconds)));
  if (s.flight_cv.wait_until(lock, deadline, [&] { return s.in_flight == 0; })) return;
  lock.unlock();
  s.registry.for_each_loaded([](const std::string&, LoadedModel& m) { m.loop.cancel_all(); });
  lock.lock();
  s.flight_cv.wait(lock, [&] { return s.in_flight == 0; });
}

}  // namespace umi
