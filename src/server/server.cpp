#include "server/server.h"

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace umi {

namespace {
using json = nlohmann::ordered_json;

std::string error_body(const std::string& message, const std::string& type, const std::string& param) {
  return json{{"error", {{"message", message}, {"type", type}, {"param", param.empty() ? json(nullptr) : json(param)}, {"code", nullptr}}}}
      .dump();
}

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& type = "invalid_request_error",
                const std::string& param = {}) {
  res.status = status;
  res.set_content(error_body(message, type, param), "application/json");
}

// Constant-time comparison: the time taken does not say how much of a guess was right.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// One request's events, from the engine thread to the HTTP thread.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> pieces;
  bool done = false;
  RequestOutput out;
};

std::string finish_reason(const RequestOutput& o) { return o.finish_reason == "length" ? "length" : "stop"; }
}  // namespace

struct Server::Impl {
  EngineLoop& loop;
  ServedModel model;
  ServerOptions options;
  httplib::Server http;
  uint64_t next_id = 1;
  std::mutex id_mu;

  std::string new_id(const char* prefix) {
    std::lock_guard lock(id_mu);
    return std::string(prefix) + std::to_string(next_id++);
  }

  void completions(const httplib::Request& req, httplib::Response& res, bool chat) {
    ParsedRequest p;
    try {
      p = parse_openai_request(req.body, model, chat);
    } catch (const ApiError& e) {
      return send_error(res, e.status, e.message, e.type, e.param);
    }
    auto ch = std::make_shared<Channel>();
    RequestCallbacks cb{[ch](uint64_t, int32_t, std::string_view piece) {
                          if (piece.empty()) return;
                          std::lock_guard lock(ch->mu);
                          ch->pieces.emplace_back(piece);
                          ch->cv.notify_all();
                        },
                        [ch](const RequestOutput& o) {
                          std::lock_guard lock(ch->mu);
                          ch->out = o;
                          ch->done = true;
                          ch->cv.notify_all();
                        }};
    const int64_t prompt_tokens = static_cast<int64_t>(p.prompt.size());
    uint64_t id;
    try {
      id = loop.submit(std::move(p.prompt), p.options, cb);
    } catch (const EngineBusy& e) {
      res.set_header("Retry-After", "1");
      return send_error(res, 503, e.what(), "server_busy");
    } catch (const InputError& e) {
      return send_error(res, 400, e.what());
    }
    const std::string rid = new_id(chat ? "chatcmpl-" : "cmpl-");
    const int64_t created = now_seconds();
    const std::string object = chat ? "chat.completion" : "text_completion";
    auto usage = [prompt_tokens](const RequestOutput& o) {
      return json{{"prompt_tokens", prompt_tokens}, {"completion_tokens", o.completion_tokens},
                  {"total_tokens", prompt_tokens + o.completion_tokens}};
    };
    if (!p.stream) {
      std::unique_lock lock(ch->mu);
      ch->cv.wait(lock, [&] { return ch->done; });
      if (ch->out.finish_reason == "error") return send_error(res, 400, ch->out.error, "insufficient_memory");
      std::string text;
      for (const std::string& s : ch->pieces) text += s;
      text += ch->out.tail;
      json choice = {{"index", 0}};
      if (chat) choice["message"] = {{"role", "assistant"}, {"content", text}};
      else choice["text"] = text;
      choice["logprobs"] = nullptr;
      choice["finish_reason"] = finish_reason(ch->out);
      json body = {{"id", rid}, {"object", object}, {"created", created}, {"model", model.id},
                   {"choices", json::array({choice})}, {"usage", usage(ch->out)}};
      res.set_content(body.dump(), "application/json");
      return;
    }
    const bool include_usage = p.include_usage;
    const std::string model_id = model.id;
    EngineLoop* lp = &loop;
    auto chunk = [=](const json& delta_or_text, const json& reason) {
      json choice = {{"index", 0}};
      if (chat) choice["delta"] = delta_or_text;
      else choice["text"] = delta_or_text;
      choice["logprobs"] = nullptr;
      choice["finish_reason"] = reason;
      json c = {{"id", rid}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
                {"model", model_id}, {"choices", json::array({choice})}};
      return "data: " + c.dump() + "\n\n";
    };
    auto started = std::make_shared<bool>(false);
    res.set_chunked_content_provider(
        "text/event-stream",
        [=](size_t, httplib::DataSink& sink) {
          auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
          if (!*started) {
            *started = true;
            if (chat && !write(chunk(json{{"role", "assistant"}, {"content", ""}}, nullptr))) return false;
          }
          std::unique_lock lock(ch->mu);
          while (true) {
            ch->cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return ch->done || !ch->pieces.empty(); });
            while (!ch->pieces.empty()) {
              std::string piece = std::move(ch->pieces.front());
              ch->pieces.pop_front();
              lock.unlock();
              const bool ok = write(chunk(chat ? json{{"content", piece}} : json(piece), nullptr));
              lock.lock();
              if (!ok) return false;  // the client went away: the releaser cancels
            }
            if (ch->done) break;
            if (!sink.is_writable()) return false;
          }
          const RequestOutput out = ch->out;
          lock.unlock();
          if (out.finish_reason == "error") {
            write("data: " + error_body(out.error, "insufficient_memory", "") + "\n\n");
          } else {
            if (!out.tail.empty()) write(chunk(chat ? json{{"content", out.tail}} : json(out.tail), nullptr));
            write(chunk(chat ? json::object() : json(""), finish_reason(out)));
            if (include_usage) {
              json u = {{"id", rid}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
                        {"model", model_id}, {"choices", json::array()},
                        {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", out.completion_tokens},
                                   {"total_tokens", prompt_tokens + out.completion_tokens}}}};
              write("data: " + u.dump() + "\n\n");
            }
          }
          write("data: [DONE]\n\n");
          sink.done();
          return true;
        },
        [=](bool success) {
          if (!success) lp->cancel(id);  // disconnected mid-stream: free its blocks
        });
  }

  void routes() {
    http.set_payload_max_length(options.max_body_bytes);
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (options.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
      const std::string auth = req.get_header_value("Authorization");
      const std::string given = auth.rfind("Bearer ", 0) == 0 ? auth.substr(7) : std::string();
      if (same_secret(given, options.api_key)) return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, 401, "invalid or missing API key", "authentication_error");
      return httplib::Server::HandlerResponse::Handled;
    });
    http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"ok"})", "application/json");
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      json m = {{"id", model.id}, {"object", "model"}, {"created", 0}, {"owned_by", "umi"}};
      res.set_content(json{{"object", "list"}, {"data", json::array({m})}}.dump(), "application/json");
    });
    http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, true); });
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, false); });
    http.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
      json body = json::parse(req.body, nullptr, false);
      if (!body.is_object() || !body.contains("content") || !body["content"].is_string())
        return send_error(res, 400, "'content' must be a string", "invalid_request_error", "content");
      res.set_content(json{{"tokens", model.tokenizer->encode(body["content"].get<std::string>(), false)}}.dump(), "application/json");
    });
    http.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
      json body = json::parse(req.body, nullptr, false);
      if (!body.is_object() || !body.contains("tokens") || !body["tokens"].is_array())
        return send_error(res, 400, "'tokens' must be an array of token ids", "invalid_request_error", "tokens");
      std::vector<int32_t> ids;
      for (const json& t : body["tokens"]) {
        if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= model.vocab)
          return send_error(res, 400, "token ids must be integers in 0.." + std::to_string(model.vocab - 1), "invalid_request_error", "tokens");
        ids.push_back(t.get<int32_t>());
      }
      res.set_content(json{{"content", model.tokenizer->decode(ids)}}.dump(), "application/json");
    });
    http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string msg = res.status == 404 ? "no such route" : res.status == 413 ? "the body is too large" : "request failed";
      res.set_content(error_body(msg, "invalid_request_error", ""), "application/json");
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
  }

  Impl(EngineLoop& l, ServedModel m, ServerOptions o) : loop(l), model(std::move(m)), options(std::move(o)) { routes(); }
};

Server::Server(EngineLoop& loop, ServedModel model, ServerOptions options)
    : impl_(std::make_unique<Impl>(loop, std::move(model), std::move(options))) {}

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

bool Server::listen() {
  if (!bind()) return false;
  run();
  return true;
}

void Server::stop() { impl_->http.stop(); }

}  // namespace umi
