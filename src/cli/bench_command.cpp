// `umi bench [-m MODEL] ...`: the engine's scenarios, one JSON line each.
//   decode   aggregate decode tokens/s at 1, 4, 16, 64 concurrent streams
//   prefix   time to first token of a long prompt, cold and with its shared
//            prefix already in the prefix cache
//   memory   KV bytes per token held; many streams under --memory-limit,
//            which forces preemption: failed requests (must be 0) and peak
//   roofline one stream's decode against the machine's read bandwidth,
//            measured alternately in one process (CPU only)
// Prompts are random token ids (seeded), so any model works.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <unordered_set>

#include "cli/model_options.h"
#include "core/error.h"
#include "engine/engine.h"
#include "memory/read_bandwidth.h"
#include "memory/system_memory.h"

namespace umi::cli {

namespace {
using Clock = std::chrono::steady_clock;

struct BenchArgs {
  ModelArgs model;
  std::vector<int> streams{1, 4, 16, 64};
  int prompt_tokens = 64;
  int gen_tokens = 64;
  bool warmup = true;
  int prefix_prompt = 2048, prefix_shared = 1900;
  int pressure_streams = 64, pressure_prompt = 1024, pressure_gen = 16;
  std::vector<std::string> scenarios{"decode", "prefix", "memory"};
  std::string sampling = "greedy";  // decode: greedy, top-k, row (see add_bench)
  int rounds = 3;                   // roofline
};

std::vector<int32_t> random_prompt(std::mt19937& rng, int n, int32_t vocab) {
  std::uniform_int_distribution<int32_t> d(100, std::max<int32_t>(101, std::min<int32_t>(vocab - 1, 30000)));
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int32_t& t : p) t = d(rng);
  return p;
}

RequestOptions fixed_length(int n, const std::string& sampling = "greedy") {
  RequestOptions o;
  o.max_tokens = n;  // no stop tokens: every request runs to n
  o.sampling.temperature = 0;
  if (sampling != "greedy") {
    o.sampling = {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .seed = 1};
    if (sampling == "row") o.logprobs = 0;  // the whole row comes back (as before candidates did)
  }
  return o;
}

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct DecodeResult {
  double wall_s = 0, decode_tok_s = 0, mean_ttft_s = 0;
  int64_t failed = 0;
};

// N streams at once, after one warm-up request; decode throughput counted
// from the moment the last stream got its first token (prefill excluded)
// to the end.
DecodeResult run_streams(Engine& e, std::mt19937& rng, const BenchArgs& a, int n) {
  const int32_t vocab = static_cast<int32_t>(e.model().config().vocab_size);
  int64_t first_tokens = 0, tokens_after = 0, failed = 0;
  Clock::time_point all_started{};
  double ttft_sum = 0;
  // One request of the same shape first, as llama-bench warms up: library
  // initialisation (cuBLAS loads its kernels on first use) and first-time
  // allocations stay out of the numbers. Its prompt is another random one,
  // so the measured requests find no cached prefix.
  if (a.warmup) {
    e.submit(random_prompt(rng, a.prompt_tokens, vocab), fixed_length(std::min(a.gen_tokens, 2), a.sampling), {});
    e.run_until_idle();
  }
  const auto t0 = Clock::now();
  std::unordered_set<uint64_t> started;
  RequestCallbacks cb{[&](uint64_t id, int32_t, std::string_view) {
                        if (started.insert(id).second) {
                          if (++first_tokens == n) all_started = Clock::now();
                        } else if (first_tokens == n) {
                          ++tokens_after;
                        }
                      },
                      [&](const RequestOutput& o) {
                        ttft_sum += o.first_token_seconds;
                        if (o.finish_reason != "length") ++failed;
                      }};
  for (int i = 0; i < n; ++i) e.submit(random_prompt(rng, a.prompt_tokens, vocab), fixed_length(a.gen_tokens, a.sampling), cb);
  e.run_until_idle();
  const auto t1 = Clock::now();
  return {seconds(t0, t1), static_cast<double>(tokens_after) / seconds(all_started, t1), ttft_sum / n, failed};
}

void decode_scenario(Engine& e, std::mt19937& rng, const BenchArgs& a, int n) {
  Pool& memory = e.model().kv_pool().memory();  // the device's pool on a GPU
  memory.reset_peak();
  const DecodeResult r = run_streams(e, rng, a, n);
  std::printf("{\"scenario\":\"decode\",\"sampling\":\"%s\",\"streams\":%d,\"prompt_tokens\":%d,\"gen_tokens\":%d,\"wall_s\":%.3f,"
              "\"aggregate_decode_tok_s\":%.2f,\"per_stream_tok_s\":%.2f,\"mean_ttft_ms\":%.1f,\"failed\":%lld,"
              "\"memory_peak_bytes\":%llu,\"largest_buffer_bytes\":%llu}\n",
              a.sampling.c_str(), n, a.prompt_tokens, a.gen_tokens, r.wall_s, r.decode_tok_s, r.decode_tok_s / n,
              r.mean_ttft_s * 1e3, static_cast<long long>(r.failed), static_cast<unsigned long long>(memory.stats().peak),
              static_cast<unsigned long long>(memory.stats().largest));
  std::fflush(stdout);
}

// The decode roofline: one stream's step time against the time the machine
// takes to just read the bytes a step needs (Model::weight_bytes_per_pass)
// with the model's threads. The VM's bandwidth moves by 20-30% within
// seconds, so the two alternate token by token: after each token, one read
// of a buffer of that size; each step is compared with the read beside it,
// and a round reports the median and quartiles of those ratios.
void roofline_scenario(Engine& e, Pool& pool, std::mt19937& rng, const BenchArgs& a) {
  if (e.model().device() != Device::cpu) throw InputError("the roofline scenario measures the CPU: run it with --device cpu");
  const uint64_t bytes = e.model().weight_bytes_per_pass();
  const int threads = static_cast<int>(e.model().threads());  // the decode's own thread count
  Buffer probe = pool.allocate(bytes, MemoryUse::scratch, "bandwidth probe");
  advise_huge_pages(probe.data(), bytes);  // as the model's mapping asks: the best the machine reads
  std::memset(probe.data(), 1, bytes);     // touched: its pages exist before the timing
  const int32_t vocab = static_cast<int32_t>(e.model().config().vocab_size);
  e.submit(random_prompt(rng, a.prompt_tokens, vocab), fixed_length(2), {});  // warm-up
  e.run_until_idle();
  for (int round = 0; round < a.rounds; ++round) {
    std::vector<double> step_s, read_s;
    Clock::time_point last{};
    RequestCallbacks cb{[&](uint64_t, int32_t, std::string_view) {
                          const Clock::time_point now = Clock::now();
                          if (last != Clock::time_point{}) step_s.push_back(seconds(last, now));
                          const double rate = read_bandwidth(static_cast<const std::byte*>(probe.data()), bytes, threads, 1);
                          read_s.push_back(static_cast<double>(bytes) / rate);
                          last = Clock::now();
                        },
                        nullptr};
    e.submit(random_prompt(rng, a.prompt_tokens, vocab), fixed_length(a.gen_tokens), cb);
    e.run_until_idle();
    std::vector<double> fraction;
    for (size_t i = 0; i < step_s.size(); ++i) fraction.push_back(read_s[i] / step_s[i]);  // the read just before step i
    auto quantile = [](std::vector<double> v, double q) {
      std::sort(v.begin(), v.end());
      return v.empty() ? 0.0 : v[static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5)];
    };
    std::printf("{\"scenario\":\"roofline\",\"round\":%d,\"threads\":%d,\"steps\":%zu,\"bytes_per_token\":%llu,"
                "\"read_gb_s\":%.2f,\"roofline_tok_s\":%.2f,\"decode_tok_s\":%.2f,\"fraction\":%.3f,\"fraction_p25\":%.3f,"
                "\"fraction_p75\":%.3f}\n",
                round, threads, step_s.size(), static_cast<unsigned long long>(bytes),
                static_cast<double>(bytes) / quantile(read_s, 0.5) / 1e9, 1.0 / quantile(read_s, 0.5),
                1.0 / quantile(step_s, 0.5), quantile(fraction, 0.5), quantile(fraction, 0.25), quantile(fraction, 0.75));
    std::fflush(stdout);
  }
}

void prefix_scenario(Engine& e, std::mt19937& rng, const BenchArgs& a) {
  const int32_t vocab = static_cast<int32_t>(e.model().config().vocab_size);
  std::vector<int32_t> shared = random_prompt(rng, a.prefix_shared, vocab);
  auto with_suffix = [&] {
    auto p = shared;
    auto tail = random_prompt(rng, a.prefix_prompt - a.prefix_shared, vocab);
    p.insert(p.end(), tail.begin(), tail.end());
    return p;
  };
  RequestOutput last;
  RequestCallbacks cb{nullptr, [&](const RequestOutput& o) { last = o; }};
  e.submit(with_suffix(), fixed_length(1), cb);
  e.run_until_idle();
  const RequestOutput cold = last;
  e.submit(with_suffix(), fixed_length(1), cb);
  e.run_until_idle();
  const RequestOutput warm = last;
  std::printf("{\"scenario\":\"prefix\",\"prompt_tokens\":%d,\"shared_tokens\":%d,\"cold_ttft_ms\":%.1f,\"cached_ttft_ms\":%.1f,"
              "\"cached_tokens\":%lld,\"speedup\":%.2f}\n",
              a.prefix_prompt, a.prefix_shared, cold.first_token_seconds * 1e3, warm.first_token_seconds * 1e3,
              static_cast<long long>(warm.cached_tokens), cold.first_token_seconds / warm.first_token_seconds);
  std::fflush(stdout);
}

void memory_scenario(Engine& e, Pool& pool, std::mt19937& rng, const BenchArgs& a) {
  const KvLayout& kv = e.model().kv_pool().layout();
  const int32_t vocab = static_cast<int32_t>(e.model().config().vocab_size);
  int64_t failed = 0, done = 0;
  RequestCallbacks cb{nullptr, [&](const RequestOutput& o) {
                        ++done;
                        if (o.finish_reason != "length") ++failed;
                      }};
  pool.reset_peak();
  const auto t0 = Clock::now();
  for (int i = 0; i < a.pressure_streams; ++i)
    e.submit(random_prompt(rng, a.pressure_prompt, vocab), fixed_length(a.pressure_gen), cb);
  e.run_until_idle();
  const PoolStats s = pool.stats();
  const EngineStats es = e.stats();
  std::printf("{\"scenario\":\"memory\",\"kv_bytes_per_token\":%.1f,\"streams\":%d,\"prompt_tokens\":%d,\"gen_tokens\":%d,"
              "\"limit_bytes\":%llu,\"peak_bytes\":%llu,\"preemptions\":%lld,\"finished\":%lld,\"failed\":%lld,\"wall_s\":%.2f}\n",
              static_cast<double>(kv.block_bytes()) / static_cast<double>(kv.block_tokens), a.pressure_streams,
              a.pressure_prompt, a.pressure_gen, static_cast<unsigned long long>(s.limit),
              static_cast<unsigned long long>(s.peak), static_cast<long long>(es.preemptions),
              static_cast<long long>(done), static_cast<long long>(failed), seconds(t0, Clock::now()));
  std::fflush(stdout);
}
}  // namespace

Action add_bench(CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand("bench", "engine benchmarks (JSON lines): concurrent decode, prefix cache, memory");
  auto a = std::make_shared<BenchArgs>();
  a->model.add_to(*cmd);
  cmd->add_option("--scenario", a->scenarios, "decode, prefix, memory, roofline (repeatable; default: the first three)")
      ->check(CLI::IsMember({"decode", "prefix", "memory", "roofline"}));
  cmd->add_option("--rounds", a->rounds, "roofline: requests, each --gen-tokens steps, each step beside one read of its bytes")->check(CLI::Range(1, 1000));
  cmd->add_option("--streams", a->streams, "concurrent streams for the decode scenario")->delimiter(',');
  cmd->add_option("--prompt-tokens", a->prompt_tokens, "prompt length per stream (decode)")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--gen-tokens", a->gen_tokens, "tokens generated per stream (decode)")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--sampling", a->sampling,
                  "decode: greedy (the token picked where the logits are), top-k (temperature 0.8, top-k 40, top-p 0.95, "
                  "min-p 0.05: only the 40 candidates come back) or row (the same sampling from the whole row, as with logprobs)")
      ->check(CLI::IsMember({"greedy", "top-k", "row"}));
  cmd->add_flag("!--no-warmup", a->warmup, "decode: measure the first request too (no warm-up request of the same shape)");
  cmd->add_option("--prefix-prompt", a->prefix_prompt, "prompt length (prefix)")->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--prefix-shared", a->prefix_shared, "shared leading tokens (prefix)")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--pressure-streams", a->pressure_streams, "streams (memory)")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--pressure-prompt", a->pressure_prompt, "prompt length (memory)")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--pressure-gen", a->pressure_gen, "tokens generated (memory)")->check(CLI::Range(1, 1 << 20));
  return [a, &global] {
    if (a->prefix_shared >= a->prefix_prompt) throw InputError("--prefix-shared must be less than --prefix-prompt");
    int max_streams = 1;
    for (int n : a->streams) {
      if (n < 1 || n > 4096) throw InputError("--streams must be 1..4096");
      max_streams = std::max(max_streams, n);
    }
    Pool pool(a->model.pool_options(global));
    ModelOptions mo = a->model.options();
    mo.max_batch = std::min<int64_t>(std::max(max_streams, a->pressure_streams), mo.prefill_chunk);
    Model model(a->model.path(), pool, mo);
    Tokenizer tok = load_tokenizer(a->model.path());
    Engine engine(model, tok, {.max_waiting = 1 << 16});
    std::mt19937 rng(1);
    std::printf("{\"bench\":\"engine\",\"model\":\"%s\",\"threads\":%d,\"prefill_chunk\":%lld,\"max_batch\":%lld,\"limit_bytes\":%llu}\n",
                a->model.path().c_str(), model.options().threads, static_cast<long long>(mo.prefill_chunk),
                static_cast<long long>(mo.max_batch), static_cast<unsigned long long>(pool.limit()));
    for (const std::string& s : a->scenarios) {
      if (s == "decode")
        for (int n : a->streams) decode_scenario(engine, rng, *a, n);
      if (s == "prefix") prefix_scenario(engine, rng, *a);
      if (s == "memory") memory_scenario(engine, pool, rng, *a);
      if (s == "roofline") roofline_scenario(engine, pool, rng, *a);
    }
  };
}

}  // namespace umi::cli
