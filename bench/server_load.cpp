// Load against a running `umi serve` over HTTP, one JSON line of results.
//
//   umi_bench_server_load --port P [--concurrency 16] [--requests N]
//       [--prompt-tokens 64] [--max-tokens 64] [--cancel 0.1] [--malformed 0.01]
//       [--warmup W] [--api-key K] [--model M] [--vocab V] [--seed S]
//
// Each of `concurrency` clients sends streamed /v1/completions requests
// (random token-id prompts, greedy, ignore_eos, usage in the last chunk)
// until `requests` have gone. A `cancel` share hangs up
// mid-stream; a `malformed` share sends broken bodies and must get a 4xx.
// Anything else that is not a complete 200 stream is "unexpected". A
// request whose connection closed before any answer is retried once and
// counted ("reconnects"; more than 1% of the requests fails the run).
//
// Throughput is measured as `umi bench` does: tokens received after every
// stream of the first round had its first token, over that time.
// Resident memory comes from the server's /metrics: after `warmup` requests,
// and at the end once the server is idle; exit 1 on any unexpected answer or
// when resident memory grew by more than --max-rss-growth percent.
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::ordered_json;

struct Args {
  std::string host = "127.0.0.1", api_key, model;
  int port = 8080, concurrency = 16, requests = 0, prompt_tokens = 64, max_tokens = 64, warmup = 0, vocab = 1000;
  double cancel = 0, malformed = 0, max_rss_growth = 2.0;
  unsigned seed = 1;
};

struct Totals {
  std::mutex mu;
  int64_t ok = 0, cancelled = 0, malformed_4xx = 0, unexpected = 0, tokens = 0, reconnects = 0;
  std::vector<std::string> unexpected_samples;
  double ttft_sum = 0;
  int64_t ttft_n = 0;
  // First round: when each stream got its first token, and tokens after all did.
  int64_t first_round_started = 0, tokens_after_all_started = 0;
  Clock::time_point all_started{}, last_token{};
};

httplib::Client client(const Args& a) {
  httplib::Client c(a.host, a.port);
  c.set_read_timeout(600, 0);
  if (!a.api_key.empty()) c.set_bearer_token_auth(a.api_key);
  return c;
}

std::string metric(const Args& a, const std::string& name) {
  auto c = client(a);
  auto r = c.Get("/metrics");
  if (!r || r->status != 200) return {};
  size_t at = r->body.find("\n" + name + " ");
  if (at == std::string::npos) return {};
  at += name.size() + 2;
  return r->body.substr(at, r->body.find('\n', at) - at);
}

double rss(const Args& a) {
  const std::string v = metric(a, "umi_resident_memory_bytes");
  return v.empty() ? 0 : std::stod(v);
}

const char* kMalformed[] = {R"({"prompt":)", R"([1,2,3])", R"({"prompt":"x","max_tokens":-5})", R"({"prompt":"x","temperature":"hot"})",
                            R"({"prompt":"x","n":1000})", R"({"prompt":[1,99999999]})", "not json at all", R"({"prompt":"x","stop":[1]})"};

void one_request(const Args& a, Totals& t, std::mt19937& rng, bool first_round) {
  std::uniform_real_distribution<double> u(0, 1);
  const double kind = u(rng);
  auto c = client(a);
  if (kind < a.malformed) {
    auto r = c.Post("/v1/completions", kMalformed[rng() % std::size(kMalformed)], "application/json");
    std::lock_guard lock(t.mu);
    if (r && r->status >= 400 && r->status < 500) ++t.malformed_4xx;
    else ++t.unexpected, t.unexpected_samples.push_back("malformed got " + (r ? std::to_string(r->status) : std::string("no answer")));
    return;
  }
  const bool cancel = kind < a.malformed + a.cancel;
  const int hang_up_after = 1 + static_cast<int>(rng() % 8);
  std::uniform_int_distribution<int> tok(100, std::max(101, a.vocab - 1));
  json prompt = json::array();
  for (int i = 0; i < a.prompt_tokens; ++i) prompt.push_back(tok(rng));
  json body = {{"prompt", prompt}, {"max_tokens", a.max_tokens}, {"temperature", 0}, {"ignore_eos", true},
               {"stream", true}, {"stream_options", {{"include_usage", true}}}};
  if (!a.model.empty()) body["model"] = a.model;

  const auto t0 = Clock::now();
  std::string buffer;
  int events = 0;
  int64_t tokens = 0, completion = -1;
  bool done = false, got_first = false;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
    buffer.append(d, n);
    size_t end;
    while ((end = buffer.find("\n\n")) != std::string::npos) {
      std::string ev = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      if (ev.rfind("data: ", 0) != 0) continue;
      ev.erase(0, 6);
      if (ev == "[DONE]") {
        done = true;
        continue;
      }
      json j = json::parse(ev, nullptr, false);
      if (j.contains("usage") && j["usage"].is_object()) completion = j["usage"]["completion_tokens"].get<int64_t>();
      if (!j.contains("choices") || j["choices"].empty()) continue;
      // A chunk is one token at this pace (each step's token is sent as it
      // comes); a token whose text is not complete yet (part of a UTF-8
      // character) rides with the next. The usage line gives the exact total.
      const json& text = j["choices"][0]["text"];
      const int64_t k = text.is_string() && !text.get<std::string>().empty() ? 1 : 0;
      if (k == 0) continue;
      tokens += k;
      const auto now = Clock::now();
      std::lock_guard lock(t.mu);
      if (!got_first) {
        got_first = true;
        t.ttft_sum += std::chrono::duration<double>(now - t0).count(), ++t.ttft_n;
        if (first_round && ++t.first_round_started == a.concurrency) t.all_started = now;
      } else if (t.first_round_started >= a.concurrency && first_round) {
        t.tokens_after_all_started += k;
        t.last_token = now;
      }
      if (cancel && ++events >= hang_up_after) return false;  // hang up
    }
    return true;
  };
  bool any_bytes = false;
  auto body_receiver = req.content_receiver;
  req.content_receiver = [&](const char* d, size_t n, uint64_t off, uint64_t len) {
    any_bytes = true;
    return body_receiver(d, n, off, len);
  };
  auto r = c.send(req);
  // A connection closed before a single byte of answer (seen twice in 2,000
  // requests in one CI run on the distribution's cpp-httplib 0.11.4 server,
  // not reproduced since) is retried once on a new connection, as HTTP
  // clients do (the openai client retries connection errors twice); the
  // retries are counted and reported, and a second failure is unexpected.
  bool retried = false;
  if (!r && !any_bytes && (r.error() == httplib::Error::Read || r.error() == httplib::Error::Connection)) {
    retried = true;
    auto again = client(a);
    r = again.send(req);
  }
  std::lock_guard lock(t.mu);
  t.reconnects += retried;
  t.tokens += completion >= 0 ? completion : tokens;
  if (cancel && !done) {
    ++t.cancelled;
  } else if (r && r->status == 200 && done && completion == a.max_tokens && tokens > 0) {
    ++t.ok;
  } else {
    ++t.unexpected;
    if (t.unexpected_samples.size() < 5)
      t.unexpected_samples.push_back(std::string("status ") + (r ? std::to_string(r->status) : "none: " + httplib::to_string(r.error())) +
                                     " done=" + std::to_string(done) + " tokens=" + std::to_string(tokens));
  }
}

void wait_idle(const Args& a) {
  for (int i = 0; i < 600; ++i) {
    auto c = client(a);
    auto r = c.Get("/metrics");
    bool busy = false;
    if (r && r->status == 200)
      for (const char* g : {"umi_requests_running{", "umi_requests_waiting{"}) {
        size_t at = 0;
        while ((at = r->body.find(g, at)) != std::string::npos) {
          at = r->body.find(' ', at);
          busy |= std::stod(r->body.substr(at + 1)) > 0;
        }
      }
    if (!busy) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void run(const Args& a, int requests, Totals& t, bool first_round_timing) {
  std::atomic<int> next{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < a.concurrency; ++w)
    threads.emplace_back([&, w] {
      std::mt19937 rng(a.seed * 7919u + static_cast<unsigned>(w));
      for (int i; (i = next++) < requests;) one_request(a, t, rng, first_round_timing && i < a.concurrency);
    });
  for (auto& th : threads) th.join();
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app("load against a running umi serve");
  app.add_option("--host", a.host);
  app.add_option("--port", a.port)->required();
  app.add_option("--api-key", a.api_key);
  app.add_option("--model", a.model);
  app.add_option("--concurrency", a.concurrency)->check(CLI::Range(1, 1024));
  app.add_option("--requests", a.requests, "total (default: one per client)");
  app.add_option("--prompt-tokens", a.prompt_tokens)->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-tokens", a.max_tokens)->check(CLI::Range(1, 1 << 20));
  app.add_option("--cancel", a.cancel, "share of requests that hang up mid-stream")->check(CLI::Range(0.0, 1.0));
  app.add_option("--malformed", a.malformed, "share of requests with a broken body")->check(CLI::Range(0.0, 1.0));
  app.add_option("--warmup", a.warmup, "requests before the resident-memory baseline");
  app.add_option("--max-rss-growth", a.max_rss_growth, "percent");
  app.add_option("--vocab", a.vocab, "prompt token ids are drawn below this");
  app.add_option("--seed", a.seed);
  CLI11_PARSE(app, argc, argv);
  if (a.requests <= 0) a.requests = a.concurrency;

  Totals warm;
  if (a.warmup > 0) run(a, a.warmup, warm, false);
  wait_idle(a);
  const double rss_warm = rss(a);
  Totals t;
  const auto t0 = Clock::now();
  run(a, a.requests, t, true);
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  wait_idle(a);
  const double rss_end = rss(a);
  const double growth = rss_warm > 0 ? (rss_end - rss_warm) / rss_warm * 100 : 0;
  const double decode_s = std::chrono::duration<double>(t.last_token - t.all_started).count();
  json out = {{"scenario", "http"},
              {"concurrency", a.concurrency},
              {"requests", a.requests},
              {"prompt_tokens", a.prompt_tokens},
              {"max_tokens", a.max_tokens},
              {"ok", t.ok},
              {"cancelled", t.cancelled},
              {"malformed_4xx", t.malformed_4xx},
              {"unexpected", t.unexpected + warm.unexpected},
              {"reconnects", t.reconnects + warm.reconnects},
              {"wall_s", wall},
              {"tokens", t.tokens},
              {"overall_tok_s", static_cast<double>(t.tokens) / wall},
              {"aggregate_decode_tok_s", decode_s > 0 ? static_cast<double>(t.tokens_after_all_started) / decode_s : 0},
              {"mean_ttft_ms", t.ttft_n ? t.ttft_sum / static_cast<double>(t.ttft_n) * 1e3 : 0},
              {"rss_after_warmup", rss_warm},
              {"rss_end", rss_end},
              {"rss_growth_pct", growth}};
  if (!t.unexpected_samples.empty()) out["unexpected_samples"] = t.unexpected_samples;
  std::printf("%s\n", out.dump().c_str());
  const bool few_reconnects = (t.reconnects + warm.reconnects) * 100 <= a.requests + a.warmup;  // at most 1%
  return t.unexpected + warm.unexpected == 0 && few_reconnects && growth <= a.max_rss_growth ? 0 : 1;
}
