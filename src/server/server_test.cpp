// The HTTP server on the bundled model, over loopback with raw HTTP: the
// routes, SSE streams ending in [DONE], OpenAI-format errors with the right
// status, the API key, and that a bad request leaves the next one working.
#include "server/server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <thread>

namespace umi {
namespace {

std::string bundled() { return std::string(UMI_SOURCE_DIR) + "/models/tiny-shakespeare"; }

struct Running {
  explicit Running(std::string key = {})
      : pool({.limit = 1ull << 30}),
        model(bundled(), pool, {.prefill_chunk = 64, .max_batch = 4, .threads = 2}),
        tok(load_tokenizer(bundled())),
        engine(model, tok, {.max_waiting = 8}),
        loop(engine),
        server(loop, {"tiny", &tok, nullptr, model.config().max_context, model.config().vocab_size},
               {.host = "127.0.0.1", .port = 0, .api_key = std::move(key), .max_body_bytes = 4096}) {
    EXPECT_TRUE(server.bind());
    thread = std::thread([this] { server.run(); });
  }
  ~Running() {
    server.stop();
    thread.join();
  }
  httplib::Client client() { return httplib::Client("127.0.0.1", server.port()); }
  Pool pool;
  Model model;
  Tokenizer tok;
  Engine engine;
  EngineLoop loop;
  Server server;
  std::thread thread;
};

nlohmann::json body(const httplib::Result& r) { return nlohmann::json::parse(r->body); }

TEST(Server, CompletionsModelsHealthAndStreams) {
  Running s;
  auto c = s.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(body(c.Get("/v1/models"))["data"][0]["id"], "tiny");
  auto r = c.Post("/v1/completions", R"({"model":"tiny","prompt":"ROMEO:","max_tokens":8,"temperature":0})", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto j = body(r);
  EXPECT_EQ(j["usage"]["completion_tokens"], 8);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  const std::string text = j["choices"][0]["text"];
  // The stream carries the same greedy text, then a usage chunk and [DONE].
  auto st = c.Post("/v1/completions",
                   R"({"prompt":"ROMEO:","max_tokens":8,"temperature":0,"stream":true,"stream_options":{"include_usage":true}})",
                   "application/json");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->get_header_value("Content-Type"), "text/event-stream");
  std::string streamed;
  bool usage = false;
  size_t at = 0;
  std::string last;
  while ((at = st->body.find("data: ", at)) != std::string::npos) {
    size_t end = st->body.find("\n\n", at);
    last = st->body.substr(at + 6, end - at - 6);
    at = end;
    if (last == "[DONE]") break;
    auto chunk = nlohmann::json::parse(last);
    if (chunk.contains("usage")) usage = true;
    else streamed += chunk["choices"][0]["text"].get<std::string>();
  }
  EXPECT_EQ(last, "[DONE]");
  EXPECT_TRUE(usage);
  EXPECT_EQ(streamed, text);
  // Tokenize and detokenize round-trip.
  auto ids = body(c.Post("/tokenize", R"({"content":"ROMEO: O"})", "application/json"))["tokens"];
  EXPECT_EQ(body(c.Post("/detokenize", nlohmann::json{{"tokens", ids}}.dump(), "application/json"))["content"], "ROMEO: O");
}

TEST(Server, BadRequestsGetOpenAiErrorsAndTheNextRequestWorks) {
  Running s;
  auto c = s.client();
  auto expect = [&](const std::string& req, int status, const char* type) {
    auto r = c.Post("/v1/completions", req, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << req << " -> " << r->body;
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r->body;
    EXPECT_EQ(j["error"]["type"], type) << req;
  };
  expect(R"({"prompt":)", 400, "invalid_request_error");
  expect(R"([1,2])", 400, "invalid_request_error");
  expect(R"({"prompt":"x","max_tokens":-3})", 400, "invalid_request_error");
  expect(R"({"prompt":"x","max_tokens":100000000})", 400, "invalid_request_error");
  expect(R"({"prompt":"x","temperature":"hot"})", 400, "invalid_request_error");
  expect(R"({"prompt":"x","n":5})", 400, "invalid_request_error");
  expect(R"({"prompt":[1,999999]})", 400, "invalid_request_error");
  expect(R"({"model":"gpt-4","prompt":"x"})", 404, "model_not_found");
  std::string huge(3000, 'a');
  expect(R"({"prompt":")" + huge + huge + R"("})", 413, "invalid_request_error");
  auto chat = c.Post("/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}]})", "application/json");
  EXPECT_EQ(chat->status, 400);  // this model has no chat template
  auto ok = c.Post("/v1/completions", R"({"prompt":"ROMEO:","max_tokens":3})", "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST(Server, ApiKeyGuardsEverythingButHealth) {
  Running s("sekrit");
  auto c = s.client();
  EXPECT_EQ(c.Get("/health")->status, 200);
  EXPECT_EQ(c.Get("/v1/models")->status, 401);
  c.set_bearer_token_auth("wrong!");
  EXPECT_EQ(c.Get("/v1/models")->status, 401);
  c.set_bearer_token_auth("sekrit");
  EXPECT_EQ(c.Get("/v1/models")->status, 200);
}

}  // namespace
}  // namespace umi
