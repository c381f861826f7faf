// The HTTP server on the bundled model, over loopback with raw HTTP: the
// routes, SSE streams ending in [DONE], n choices and logprobs, OpenAI-format
// errors with the right status, the API key, disconnects, the bounded queue,
// metrics, graceful shutdown, and that a bad request leaves the next one working.
#include "server/server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "engine/json_recognizer.h"

namespace umi {
namespace {

using json = nlohmann::json;

std::string bundled() { return std::string(UMI_SOURCE_DIR) + "/models/tiny-shakespeare"; }

RegistryOptions small_options(int64_t max_batch = 4, int64_t max_waiting = 8) {
  RegistryOptions o;
  o.model = {.prefill_chunk = 64, .max_batch = max_batch, .threads = 2};
  o.engine.max_waiting = max_waiting;
  return o;
}

struct Running {
  explicit Running(std::string key = {}, RegistryOptions ro = small_options(), std::vector<ModelSource> sources = {},
                   uint64_t limit = 1ull << 30)
      : pool({.limit = limit}),
        registry(pool, sources.empty() ? std::vector<ModelSource>{{"tiny", bundled()}} : sources, std::move(ro)),
        server(registry, {.host = "127.0.0.1", .port = 0, .api_key = std::move(key), .max_body_bytes = 4096}) {
    EXPECT_TRUE(server.bind());
    thread = std::thread([this] { server.run(); });
  }
  ~Running() {
    server.stop();
    thread.join();
  }
  httplib::Client client() {
    httplib::Client c("127.0.0.1", server.port());
    c.set_read_timeout(60, 0);
    return c;
  }
  Pool pool;
  ModelRegistry registry;
  Server server;
  std::thread thread;
};

json body(const httplib::Result& r) { return json::parse(r->body); }

// POSTs `payload` and hands each piece of the answer to `receive` (false: hang up).
bool post_streaming(httplib::Client& c, const std::string& path, const std::string& payload,
                    std::function<bool(const char*, size_t)> receive) {
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = payload;
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [receive](const char* d, size_t n, uint64_t, uint64_t) { return receive(d, n); };
  return static_cast<bool>(c.send(req));
}

// The JSON events of an SSE body, up to and without [DONE]; `done` says it came.
std::vector<json> events(const std::string& sse, bool* done = nullptr) {
  std::vector<json> out;
  size_t at = 0;
  if (done) *done = false;
  while ((at = sse.find("data: ", at)) != std::string::npos) {
    const size_t end = sse.find("\n\n", at);
    const std::string data = sse.substr(at + 6, end - at - 6);
    at = end;
    if (data == "[DONE]") {
      if (done) *done = true;
      break;
    }
    out.push_back(json::parse(data));
  }
  return out;
}

TEST(Server, CompletionsModelsHealthAndStreams) {
  Running s;
  auto c = s.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(body(c.Get("/v1/models"))["data"][0]["id"], "tiny");
  EXPECT_EQ(body(c.Get("/v1/models/tiny"))["id"], "tiny");
  EXPECT_EQ(c.Get("/v1/models/nope")->status, 404);
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
  bool done = false;
  std::string streamed;
  bool usage = false;
  for (const json& e : events(st->body, &done)) {
    if (e.contains("usage")) usage = true;
    else streamed += e["choices"][0]["text"].get<std::string>();
  }
  EXPECT_TRUE(done);
  EXPECT_TRUE(usage);
  EXPECT_EQ(streamed, text);
  // Tokenize and detokenize round-trip.
  auto ids = body(c.Post("/tokenize", R"({"content":"ROMEO: O"})", "application/json"))["tokens"];
  EXPECT_EQ(body(c.Post("/detokenize", json{{"tokens", ids}}.dump(), "application/json"))["content"], "ROMEO: O");
}

TEST(Server, ChatThroughTheModelsTemplateWholeAndStreamed) {
  Running s;
  auto c = s.client();
  const std::string req = R"({"model":"tiny","messages":[{"role":"user","content":"Speak, fair maid."}],"max_tokens":12,"temperature":0)";
  auto r = c.Post("/v1/chat/completions", req + "}", "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  auto j = body(r);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  const std::string text = j["choices"][0]["message"]["content"];
  EXPECT_FALSE(text.empty());
  // The template's prompt ("ROMEO:\n...\n\nJULIET:\n") is what was counted.
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 8);
  auto st = c.Post("/v1/chat/completions", req + R"(,"stream":true})", "application/json");
  bool done = false;
  auto ev = events(st->body, &done);
  ASSERT_TRUE(done);
  ASSERT_GE(ev.size(), 2u);
  EXPECT_EQ(ev[0]["choices"][0]["delta"]["role"], "assistant");
  std::string streamed;
  for (const json& e : ev)
    if (e["choices"][0]["delta"].contains("content")) streamed += e["choices"][0]["delta"]["content"].get<std::string>();
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(ev.back()["choices"][0]["finish_reason"], "length");
}

// response_format json_object: the content is one JSON object, whole and
// streamed alike; "text" is the plain default.
TEST(Server, JsonModeAnswersWithAJsonObject) {
  Running s;
  auto c = s.client();
  const std::string req = R"({"model":"tiny","messages":[{"role":"user","content":"Your name, as JSON."}],"max_tokens":300,)"
                          R"("temperature":1,"response_format":{"type":"json_object"},"seed":)";
  std::string finish;
  std::string text;
  for (int seed = 1; seed <= 12 && finish != "stop"; ++seed) {  // the tiny model closes an object in some draws
    auto r = c.Post("/v1/chat/completions", req + std::to_string(seed) + "}", "application/json");
    ASSERT_EQ(r->status, 200) << r->body;
    auto j = body(r);
    finish = j["choices"][0]["finish_reason"];
    text = j["choices"][0]["message"]["content"];
    JsonRecognizer prefix;
    EXPECT_TRUE(prefix.feed(text)) << text;
  }
  ASSERT_EQ(finish, "stop");
  EXPECT_TRUE(json::parse(text).is_object()) << text;
  auto plain = c.Post("/v1/chat/completions", R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"response_format":{"type":"text"}})",
                      "application/json");
  EXPECT_EQ(plain->status, 200) << plain->body;
}

// response_format json_schema: the content is a value of the schema; a
// schema asking for what umi cannot keep to is a 400 that names the keyword.
TEST(Server, StructuredOutputsKeepToTheSchema) {
  Running s;
  auto c = s.client();
  const std::string schema = R"({"type":"object","properties":{"speaker":{"enum":["ROMEO","JULIET"]},"act":{"type":"integer"},)"
                             R"("aside":{"type":["boolean","null"]}},"required":["speaker","act","aside"],"additionalProperties":false})";
  const std::string req = R"({"model":"tiny","messages":[{"role":"user","content":"Who speaks?"}],"max_tokens":400,"temperature":1,)"
                          R"("response_format":{"type":"json_schema","json_schema":{"name":"line","strict":true,"schema":)" +
                          schema + R"(}},"seed":)";
  std::string finish, text;
  for (int seed = 1; seed <= 12 && finish != "stop"; ++seed) {
    auto r = c.Post("/v1/chat/completions", req + std::to_string(seed) + "}", "application/json");
    ASSERT_EQ(r->status, 200) << r->body;
    auto j = body(r);
    finish = j["choices"][0]["finish_reason"];
    text = j["choices"][0]["message"]["content"];
  }
  ASSERT_EQ(finish, "stop");
  const auto v = nlohmann::ordered_json::parse(text);
  ASSERT_EQ(v.size(), 3u) << text;
  EXPECT_EQ(v.begin().key(), "speaker");
  EXPECT_TRUE(v["speaker"] == "ROMEO" || v["speaker"] == "JULIET") << text;
  EXPECT_TRUE(v["act"].is_number_integer()) << text;
  EXPECT_TRUE(v["aside"].is_boolean() || v["aside"].is_null()) << text;
  auto bad = c.Post("/v1/chat/completions",
                    R"({"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x",)"
                    R"("schema":{"type":"object","properties":{"s":{"type":"string","pattern":"^a"}}}}}})",
                    "application/json");
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("/properties/s: 'pattern' is not supported"), std::string::npos) << bad->body;
}

TEST(Server, SeveralChoicesAndLogprobs) {
  Running s;
  auto c = s.client();
  auto r = c.Post("/v1/completions", R"({"prompt":"ROMEO:","max_tokens":6,"n":3,"temperature":1.0,"seed":5,"logprobs":2})",
                  "application/json");
  ASSERT_EQ(r->status, 200) << r->body;
  auto j = body(r);
  ASSERT_EQ(j["choices"].size(), 3u);
  std::set<std::string> texts;
  for (int i = 0; i < 3; ++i) {
    const json& ch = j["choices"][i];
    EXPECT_EQ(ch["index"], i);
    texts.insert(ch["text"].get<std::string>());
    const json& lp = ch["logprobs"];
    ASSERT_EQ(lp["tokens"].size(), 6u);
    ASSERT_EQ(lp["token_logprobs"].size(), 6u);
    ASSERT_EQ(lp["top_logprobs"][0].size(), 2u);
    std::string joined;
    for (size_t k = 0; k < 6; ++k) {
      EXPECT_EQ(lp["text_offset"][k], joined.size());
      joined += lp["tokens"][k].get<std::string>();
      EXPECT_LE(lp["token_logprobs"][k].get<double>(), 0.0);
    }
    EXPECT_EQ(joined, ch["text"]);
  }
  EXPECT_GT(texts.size(), 1u);  // different seeds per choice
  EXPECT_EQ(j["usage"]["completion_tokens"], 18);
  // Chat: logprobs true with top_logprobs; greedy picks the most likely token.
  auto cr = c.Post("/v1/chat/completions",
                   R"({"messages":[{"role":"user","content":"Hark"}],"max_tokens":5,"temperature":0,"logprobs":true,"top_logprobs":3})",
                   "application/json");
  ASSERT_EQ(cr->status, 200) << cr->body;
  const json content = body(cr)["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 5u);
  for (const json& t : content) {
    ASSERT_EQ(t["top_logprobs"].size(), 3u);
    EXPECT_EQ(t["top_logprobs"][0]["token"], t["token"]);
    EXPECT_DOUBLE_EQ(t["top_logprobs"][0]["logprob"].get<double>(), t["logprob"].get<double>());
    EXPECT_FALSE(t["bytes"].empty());
  }
  // Streamed n=2: every event names its choice; each choice finishes once.
  auto st = c.Post("/v1/chat/completions",
                   R"({"messages":[{"role":"user","content":"Hark"}],"max_tokens":4,"n":2,"stream":true,"seed":1})", "application/json");
  bool done = false;
  std::map<int, int> finishes;
  for (const json& e : events(st->body, &done))
    if (!e["choices"][0]["finish_reason"].is_null()) ++finishes[e["choices"][0]["index"].get<int>()];
  EXPECT_TRUE(done);
  EXPECT_EQ(finishes, (std::map<int, int>{{0, 1}, {1, 1}}));
}

TEST(Server, BadRequestsGetOpenAiErrorsAndTheNextRequestWorks) {
  Running s;
  auto c = s.client();
  auto expect = [&](const std::string& path, const std::string& req, int status, const char* code = nullptr) {
    auto r = c.Post(path, req, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, status) << req << " -> " << r->body;
    auto j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object()) << r->body;
    ASSERT_TRUE(j["error"]["message"].is_string()) << r->body;
    if (code) EXPECT_EQ(j["error"]["code"], code) << req;
  };
  const std::string cmpl = "/v1/completions", chat = "/v1/chat/completions";
  expect(cmpl, R"({"prompt":)", 400);
  expect(cmpl, R"([1,2])", 400);
  expect(cmpl, R"({"prompt":"x","max_tokens":-3})", 400);
  expect(cmpl, R"({"prompt":"x","max_tokens":100000000})", 400);
  expect(cmpl, R"({"prompt":"x","temperature":"hot"})", 400);
  expect(cmpl, R"({"prompt":"x","temperature":NaN})", 400);
  expect(cmpl, R"({"prompt":"x","n":9})", 400);
  expect(cmpl, R"({"prompt":"x","logprobs":6})", 400);
  expect(cmpl, R"({"prompt":[1,999999]})", 400);
  expect(cmpl, R"({"model":7,"prompt":"x"})", 400);
  expect(cmpl, R"({"model":"gpt-4","prompt":"x"})", 404, "model_not_found");
  expect(cmpl, R"({"prompt":")" + std::string(1500, 'a') + R"("})", 400, "context_length_exceeded");
  expect(chat, R"({"messages":[]})", 400);
  expect(chat, R"({"messages":[{"content":"hi"}]})", 400);
  expect(chat, R"({"messages":[{"role":"user","content":"hi"}],"logprobs":"yes"})", 400);
  expect(chat, R"({"messages":[{"role":"user","content":"hi"}],"top_logprobs":2})", 400);
  expect(chat, R"({"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":21})", 400);
  expect(chat, R"({"messages":[{"role":"user","content":"hi"}],"response_format":"json"})", 400);
  expect(chat, R"({"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"yaml"}})", 400);
  expect(chat, R"({"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{}}})", 400);
  expect("/detokenize", R"({"tokens":[-1]})", 400);
  std::string huge(3000, 'a');
  expect(cmpl, R"({"prompt":")" + huge + huge + R"("})", 413);
  EXPECT_EQ(c.Get("/no/such/route")->status, 404);
  auto ok = c.Post(cmpl, R"({"prompt":"ROMEO:","max_tokens":3})", "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

TEST(Server, APromptTooLongForTheMemoryLimitIsRefusedWithWhatFits) {
  // Room for the weights and scratch, but little KV.
  Pool probe({.limit = 1ull << 30});
  uint64_t fixed = 0;
  {
    LoadedModel m({"tiny", bundled()}, probe, small_options().model, {});
    fixed = probe.stats().active;
  }
  RegistryOptions ro = small_options();
  ro.min_kv_tokens = 0;
  Running s({}, ro, {}, fixed + (96u << 10));
  auto c = s.client();
  std::string prompt;
  for (int i = 0; i < 40; ++i) prompt += "ROMEO: O Romeo, wherefore art thou. ";
  auto r = c.Post("/v1/completions", json{{"prompt", prompt}, {"max_tokens", 4}}.dump(), "application/json");
  ASSERT_EQ(r->status, 400) << r->body;
  EXPECT_NE(body(r)["error"]["message"].get<std::string>().find("leaves room for"), std::string::npos) << r->body;
  EXPECT_EQ(c.Post("/v1/completions", R"({"prompt":"ROMEO:","max_tokens":3})", "application/json")->status, 200);
}

TEST(Server, ApiKeyGuardsEverythingButHealth) {
  Running s("sekrit");
  auto c = s.client();
  EXPECT_EQ(c.Get("/health")->status, 200);
  EXPECT_EQ(c.Get("/v1/models")->status, 401);
  EXPECT_EQ(c.Get("/metrics")->status, 401);
  c.set_bearer_token_auth("wrong!");
  EXPECT_EQ(c.Get("/v1/models")->status, 401);
  c.set_bearer_token_auth("sekrit");
  EXPECT_EQ(c.Get("/v1/models")->status, 200);
}

int64_t running_requests(ModelRegistry& r) {
  int64_t n = 0;
  r.for_each_loaded([&](const std::string&, LoadedModel& m) { n += m.engine.stats().running + m.engine.stats().waiting; });
  return n;
}

TEST(Server, AClientThatGoesAwayMidStreamIsCancelledAndItsBlocksFreed) {
  Running s;
  auto c = s.client();
  int chunks = 0;
  const bool r = post_streaming(c, "/v1/completions", R"({"prompt":"ROMEO:","max_tokens":900,"ignore_eos":true,"stream":true})",
                  [&](const char*, size_t) { return ++chunks < 3; });
  EXPECT_FALSE(r);  // we hung up
  for (int i = 0; i < 2000 && running_requests(s.registry) > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(running_requests(s.registry), 0);
  int64_t in_use = -1;
  s.registry.for_each_loaded([&](const std::string&, LoadedModel& m) { in_use = m.model.kv_pool().in_use(); });
  EXPECT_EQ(in_use, 0);
  const std::string metrics = c.Get("/metrics")->body;
  EXPECT_NE(metrics.find(R"(umi_requests_total{model="tiny",finish_reason="cancelled"} 1)"), std::string::npos) << metrics;
}

TEST(Server, AFullQueueAnswers503WithRetryAfter) {
  // Admission paused (the engine sees too little free memory), so the first
  // request stays queued, deterministically, and fills a queue of one.
  RegistryOptions ro = small_options(/*max_batch=*/1, /*max_waiting=*/1);
  ro.engine.low_memory_bytes = 1ull << 40;
  ro.engine.available_memory = [] { return std::optional<uint64_t>(1u << 20); };
  Running s({}, ro);
  auto c1 = s.client(), c2 = s.client();
  auto waiting = [&] {
    int64_t n = 0;
    s.registry.for_each_loaded([&](const std::string&, LoadedModel& m) { n = m.engine.stats().waiting; });
    return n;
  };
  std::thread queued([&] {
    auto r = c1.Post("/v1/completions", R"({"prompt":"JULIET:","max_tokens":2})", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);  // cancelled at the end: an empty completion
  });
  // However the checks below end, the queued request is cancelled and its
  // client joined (a failed ASSERT must not leave the thread running).
  struct Release {
    Running& s;
    std::thread& t;
    ~Release() {
      s.registry.for_each_loaded([](const std::string&, LoadedModel& m) { m.loop.cancel_all(); });
      t.join();
    }
  } release{s, queued};
  for (int i = 0; i < 5000 && waiting() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(waiting(), 1);
  auto r = c2.Post("/v1/completions", R"({"prompt":"KING:","max_tokens":2})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  EXPECT_EQ(json::parse(r->body)["error"]["type"], "server_busy");
}

TEST(Server, MetricsAreValidPrometheusText) {
  Running s;
  auto c = s.client();
  for (int i = 0; i < 3; ++i) c.Post("/v1/completions", R"({"prompt":"ROMEO:","max_tokens":4})", "application/json");
  c.Post("/v1/completions", R"({"prompt":)", "application/json");
  // HTTP errors are counted once the answer is written, and the engine's running count is updated once the
  // step that finished a request is over: each a moment after the client has its answer.
  auto settled = [](const std::string& body) {
    return body.find(R"(umi_http_errors_total{status="400"} 1)") != std::string::npos &&
           body.find(R"(umi_requests_running{model="tiny"} 0)") != std::string::npos;
  };
  auto r = c.Get("/metrics");
  for (int i = 0; i < 2000 && !settled(r->body); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    r = c.Get("/metrics");
  }
  ASSERT_EQ(r->status, 200);
  const std::string m = r->body;
  for (const char* want : {R"(umi_requests_total{model="tiny",finish_reason="length"} 3)",
                           R"(umi_generation_tokens_total{model="tiny"} 12)", R"(umi_http_errors_total{status="400"} 1)",
                           R"(umi_time_to_first_token_seconds_count{model="tiny"} 3)",
                           R"(umi_time_to_first_token_seconds_bucket{model="tiny",le="+Inf"} 3)",
                           R"(umi_time_per_output_token_seconds_count{model="tiny"} 3)", R"(umi_model_loaded{model="tiny"} 1)",
                           R"(umi_requests_running{model="tiny"} 0)", R"(umi_kv_blocks{model="tiny",state="used"} 0)",
                           R"(umi_pool_bytes{kind="limit"} 1073741824)", "# TYPE umi_e2e_request_latency_seconds histogram"})
    EXPECT_NE(m.find(want), std::string::npos) << want << "\n" << m;
  // Every sample line is "name{labels} number".
  std::istringstream lines(m);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t sp = line.rfind(' ');
    ASSERT_NE(sp, std::string::npos) << line;
    char* end = nullptr;
    std::strtod(line.c_str() + sp + 1, &end);
    EXPECT_EQ(*end, '\0') << line;
  }
}

// A streamed completion on a thread of its own, collecting the SSE text;
// returns once the first bytes have come.
struct BackgroundStream {
  BackgroundStream(Running& s, const std::string& body) : c(s.client()) {
    thread = std::thread([this, body] {
      post_streaming(c, "/v1/completions", body, [this](const char* d, size_t n) {
        std::lock_guard lock(mu);
        got.append(d, n);
        started = true;
        return true;
      });
    });
    while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::string join() {
    thread.join();
    return got;
  }
  httplib::Client c;
  std::mutex mu;
  std::string got;
  std::atomic<bool> started{false};
  std::thread thread;
};

TEST(Server, ShutdownLetsStreamsInFlightFinishThenStops) {
  Running s;
  BackgroundStream stream(s, R"({"prompt":"ROMEO:","max_tokens":200,"ignore_eos":true,"stream":true})");
  s.server.shutdown(60);
  const std::string got = stream.join();
  bool done = false;
  auto ev = events(got, &done);
  EXPECT_TRUE(done);
  EXPECT_EQ(ev.back()["choices"][0]["finish_reason"], "length");  // all 200 tokens, not cut short
  httplib::Client late("127.0.0.1", s.server.port());
  EXPECT_FALSE(late.Get("/health"));  // no longer accepting
}

TEST(Server, ShutdownPastItsGraceCancelsWhatIsLeft) {
  Running s;
  BackgroundStream stream(s, R"({"prompt":"ROMEO:","max_tokens":1000,"ignore_eos":true,"stream":true})");
  const auto t0 = std::chrono::steady_clock::now();
  s.server.shutdown(0.05);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  const std::string got = stream.join();
  bool done = false;
  events(got, &done);
  EXPECT_TRUE(done);  // the stream still ends properly
}

TEST(Server, HealthSays503WhileAModelLoadsAndModelsLoadOnDemand) {
  // Two names for the bundled model; the registry's log line "loading ..."
  // is held until the test has seen /health answer 503.
  std::mutex mu;
  std::condition_variable cv;
  bool seen_loading = false;
  RegistryOptions ro = small_options();
  ro.log = [&](const std::string& line) {
    if (line.rfind("loading", 0) != 0) return;
    std::unique_lock lock(mu);
    cv.wait_for(lock, std::chrono::seconds(10), [&] { return seen_loading; });
  };
  Running s({}, ro, {{"a", bundled()}, {"b", bundled()}});
  auto c = s.client();
  auto h = c.Get("/health");
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(body(h)["models"][0]["state"], "unloaded");
  auto models = body(c.Get("/v1/models"))["data"];
  ASSERT_EQ(models.size(), 2u);
  EXPECT_EQ(models[1]["status"], "unloaded");
  std::thread request([&] {
    auto c2 = s.client();
    auto r = c2.Post("/v1/completions", R"({"model":"b","prompt":"ROMEO:","max_tokens":2})", "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  });
  httplib::Result during = c.Get("/health");
  for (int i = 0; i < 5000 && during->status != 503; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    during = c.Get("/health");
  }
  EXPECT_EQ(during->status, 503);
  EXPECT_EQ(body(during)["status"], "loading");
  EXPECT_EQ(body(during)["models"][1]["state"], "loading");
  {
    std::lock_guard lock(mu);
    seen_loading = true;
  }
  cv.notify_all();
  request.join();
  EXPECT_EQ(c.Get("/health")->status, 200);
  EXPECT_EQ(body(c.Get("/v1/models/b"))["status"], "loaded");
  EXPECT_EQ(body(c.Get("/v1/models/a"))["status"], "unloaded");
  // A request without "model" is refused when there are several.
  auto r = c.Post("/v1/completions", R"({"prompt":"x"})", "application/json");
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(c.Post("/v1/models/b/unload", "", "application/json")->status, 200);
  EXPECT_EQ(body(c.Get("/v1/models/b"))["status"], "unloaded");
  EXPECT_EQ(c.Post("/v1/models/zzz/unload", "", "application/json")->status, 404);
  EXPECT_EQ(s.pool.stats().active, 0u);  // nothing left behind
}

}  // namespace
}  // namespace umi
