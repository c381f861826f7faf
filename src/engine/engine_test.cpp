// The engine on the bundled model: batched results equal single-sequence
// ones, the prefix cache hits, preemption under a tight memory limit loses
// nothing, cancellation frees blocks, the queue is bounded, and the pool goes
// back to its idle figures.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <random>

#include <nlohmann/json.hpp>

#include "engine/generate.h"
#include "engine/json_recognizer.h"
#include "engine/schema_recognizer.h"

namespace umi {
namespace {

std::string bundled() { return std::string(UMI_SOURCE_DIR) + "/models/tiny-shakespeare"; }

struct Collected {
  std::map<uint64_t, std::vector<int32_t>> tokens;
  std::map<uint64_t, std::string> text;
  std::map<uint64_t, RequestOutput> done;
  RequestCallbacks callbacks() {
    return {[this](uint64_t id, int32_t t, std::string_view s) { tokens[id].push_back(t), text[id] += s; },
            [this](const RequestOutput& o) { done[o.id] = o, text[o.id] += o.tail; }};
  }
};

RequestOptions greedy(int n) {
  RequestOptions o;
  o.max_tokens = n;
  o.sampling.temperature = 0;
  return o;
}

std::vector<int32_t> alone(Model& m, const Tokenizer& tok, const std::vector<int32_t>& prompt, int n) {
  GenerateOptions o;
  o.max_tokens = n;
  o.sampling.temperature = 0;
  return generate(m, tok, prompt, o, [](std::string_view) { return true; }).tokens;
}

const char* kPrompts[] = {"ROMEO:", "First Citizen:\nBefore we proceed", "JULIET:\nO Romeo, Romeo", "KING HENRY:",
                          "To be, or not", "MENENIUS:\nWhat work's, my countrymen", "Good morrow", "LADY CAPULET:"};

TEST(Engine, ConcurrentRequestsGetWhatEachGetsAlone) {
  Pool pool({.limit = 1ull << 30});
  Model m(bundled(), pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 8, .threads = 2});
  Tokenizer tok = load_tokenizer(bundled());
  Engine e(m, tok);
  Collected c;
  std::map<uint64_t, std::vector<int32_t>> prompts;
  for (const char* p : kPrompts) {
    auto ids = tok.encode(p, true);
    prompts[e.submit(ids, greedy(24), c.callbacks())] = ids;
  }
  e.run_until_idle();
  ASSERT_EQ(c.done.size(), 8u);
  for (auto& [id, ids] : prompts) {
    EXPECT_EQ(c.tokens[id], alone(m, tok, ids, 24)) << id;
    EXPECT_EQ(c.done[id].finish_reason, "length");
    EXPECT_EQ(c.text[id], tok.decode(c.tokens[id], true));
  }
  // One pass prefilled all eight prompts and sampled their first tokens; each
  // later pass decoded one token of all eight: 1 + 23 steps, not 8 x 24.
  EXPECT_EQ(e.stats().steps, 24);
  EXPECT_EQ(m.kv_pool().in_use(), 0);
}

TEST(Engine, APromptSeenBeforeComesFromThePrefixCache) {
  Pool pool({.limit = 1ull << 30});
  Model m(bundled(), pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 4, .threads = 2});
  Tokenizer tok = load_tokenizer(bundled());
  Engine e(m, tok);
  Collected c;
  auto shared = tok.encode(
      "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
      "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\n",
      true);
  const int64_t n = static_cast<int64_t>(shared.size());
  ASSERT_GT(n, 33);
  uint64_t a = e.submit(shared, greedy(8), c.callbacks());
  e.run_until_idle();
  EXPECT_EQ(c.done[a].cached_tokens, 0);
  EXPECT_GT(m.kv_pool().stats().cached, 0);  // its full blocks stayed behind
  // Same prompt: every full block but the one holding the last token is a hit.
  uint64_t b = e.submit(shared, greedy(8), c.callbacks());
  // A longer prompt with the same start shares the blocks of the common part.
  auto longer = shared;
  longer.insert(longer.end(), {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20});
  uint64_t d = e.submit(longer, greedy(8), c.callbacks());
  e.run_until_idle();
  EXPECT_EQ(c.done[b].cached_tokens, (n - 1) / 16 * 16);
  EXPECT_GE(c.done[d].cached_tokens, n / 16 * 16);
  EXPECT_EQ(c.tokens[b], c.tokens[a]);  // cached KV gives the same tokens
  EXPECT_EQ(c.tokens[d], alone(m, tok, longer, 8));
  // Another salt shares nothing.
  RequestOptions salted = greedy(8);
  salted.cache_salt = 42;
  uint64_t s = e.submit(shared, salted, c.callbacks());
  e.run_until_idle();
  EXPECT_EQ(c.done[s].cached_tokens, 0);
}

TEST(Engine, PreemptionUnderATightLimitLosesNothingAndNeverPassesTheLimit) {
  Tokenizer tok = load_tokenizer(bundled());
  // Reference outputs with plenty of memory.
  std::vector<std::vector<int32_t>> expected;
  {
    Pool pool({.limit = 1ull << 30});
    Model m(bundled(), pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 8, .threads = 2});
    for (const char* p : kPrompts) expected.push_back(alone(m, tok, tok.encode(p, true), 60));
  }
  // Weights + activations + room for about 12 blocks of 16 tokens: 8 requests
  // of ~70 tokens need 40.
  Pool probe({.limit = 1ull << 30});
  uint64_t fixed, block;
  {
    Model m(bundled(), probe, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 8, .threads = 2});
    Engine e(m, tok);
    fixed = probe.stats().active;
    block = m.kv_pool().block_bytes();
  }
  Pool pool({.limit = fixed + 12 * block, .max_cached = 0});
  Model m(bundled(), pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 8, .threads = 2});
  Engine e(m, tok);
  Collected c;
  std::vector<uint64_t> ids;
  for (const char* p : kPrompts) ids.push_back(e.submit(tok.encode(p, true), greedy(60), c.callbacks()));
  while (e.step()) ASSERT_LE(pool.stats().active, pool.limit());
  EXPECT_LE(pool.stats().peak, pool.limit());
  EXPECT_GT(e.stats().preemptions, 0);
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(c.done[ids[i]].finish_reason, "length") << i;
    EXPECT_EQ(c.tokens[ids[i]], expected[i]) << i;  // streamed once each, identical despite recomputation
  }
  EXPECT_EQ(m.kv_pool().in_use(), 0);
}

// The same tight limit, but with memory held outside the engine that its
// owner can free (the server's idle models): the engine asks before it
// preempts, and nothing is preempted.
TEST(Engine, AsksItsOwnerToFreeMemoryBeforePreempting) {
  Tokenizer tok = load_tokenizer(bundled());
  const ModelOptions mo{.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 8, .threads = 2};
  Pool probe({.limit = 1ull << 30});
  uint64_t fixed, block;
  {
    Model m(bundled(), probe, mo);
    Engine e(m, tok);
    fixed = probe.stats().active;
    block = m.kv_pool().block_bytes();
  }
  Pool pool({.limit = fixed + 42 * block, .max_cached = 0});
  std::vector<Buffer> outside;  // 30 of the 42 blocks' room, held elsewhere
  Model m(bundled(), pool, mo);
  for (int i = 0; i < 30; ++i) outside.push_back(pool.allocate(block, MemoryUse::other));
  int asked = 0;
  EngineOptions eo;
  eo.free_memory = [&] {
    ++asked;
    const bool freed = !outside.empty();
    outside.clear();
    return freed;
  };
  Engine e(m, tok, eo);
  Collected c;
  std::vector<uint64_t> ids;
  for (const char* p : kPrompts) ids.push_back(e.submit(tok.encode(p, true), greedy(60), c.callbacks()));
  while (e.step()) ASSERT_LE(pool.stats().active, pool.limit());
  EXPECT_GE(asked, 1);
  EXPECT_TRUE(outside.empty());
  EXPECT_EQ(e.stats().preemptions, 0);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(c.done[ids[i]].finish_reason, "length") << i;
}

// JSON mode on a model that has never seen JSON: whatever it draws, greedy
// or sampled, is one JSON object that ends the request when it closes; cut
// short by max_tokens it is a prefix of one.
TEST(Engine, JsonModeGivesOneJsonObject) {
  Pool pool({.limit = 1ull << 30});
  Model m(bundled(), pool, {.prefill_chunk = 64, .max_batch = 8, .threads = 2});
  Tokenizer tok = load_tokenizer(bundled());
  Engine e(m, tok);
  Collected c;
  std::vector<uint64_t> ids;
  for (int i = 0; i < 10; ++i) {
    RequestOptions o = greedy(300);
    o.json_object = true;
    if (i > 0) o.sampling = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = static_cast<uint64_t>(i)};
    if (i == 9) o.max_tokens = 5;
    ids.push_back(e.submit(tok.encode(kPrompts[i % 8], true), o, c.callbacks()));
  }
  e.run_until_idle();
  int objects = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const RequestOutput& out = c.done[ids[i]];
    const std::string& text = c.text[ids[i]];
    JsonRecognizer j;
    EXPECT_TRUE(j.feed(text)) << i << ": " << text;
    if (out.finish_reason == "stop") {
      EXPECT_TRUE(j.done()) << i << ": " << text;
      const nlohmann::json parsed = nlohmann::json::parse(text);
      EXPECT_TRUE(parsed.is_object()) << text;
      ++objects;
    } else {
      EXPECT_EQ(out.finish_reason, "length") << i << ": " << out.error;
    }
  }
  EXPECT_EQ(c.done[ids[9]].finish_reason, "length");
  EXPECT_EQ(c.done[ids[9]].completion_tokens, 5);
  EXPECT_GE(objects, 1);  // a Shakespeare model rambles inside strings; some draws close the object
}

// A schema in place of JSON mode: every output a prefix of a value of the
// schema, each closed one exactly the properties asked for, in order.
TEST(Engine, JsonSchemaGivesValuesOfTheSchema) {
  Pool pool({.limit = 1ull << 30});
  Model m(bundled(), pool, {.prefill_chunk = 64, .max_batch = 8, .threads = 2});
  Tokenizer tok = load_tokenizer(bundled());
  Engine e(m, tok);
  const auto schema = compile_json_schema(nlohmann::ordered_json::parse(R"({"type": "object", "properties": {
      "speaker": {"enum": ["ROMEO", "JULIET", "NURSE"]}, "lines": {"type": "integer"}, "aside": {"type": "boolean"},
      "words": {"type": "array", "items": {"type": "string"}, "maxItems": 2}}, "required": ["speaker", "lines", "aside"]})"));
  Collected c;
  std::vector<uint64_t> ids;
  for (int i = 0; i < 8; ++i) {
    RequestOptions o = greedy(400);
    o.json_object = true;  // the schema takes precedence
    o.json_schema = schema;
    if (i > 0) o.sampling = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = static_cast<uint64_t>(i)};
    ids.push_back(e.submit(tok.encode(kPrompts[i % 8], true), o, c.callbacks()));
  }
  e.run_until_idle();
  int closed = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const RequestOutput& out = c.done[ids[i]];
    const std::string& text = c.text[ids[i]];
    SchemaRecognizer r(*schema);
    EXPECT_TRUE(r.feed(text)) << i << ": " << text;
    if (out.finish_reason != "stop") {
      EXPECT_EQ(out.finish_reason, "length") << i << ": " << out.error;
      continue;
    }
    EXPECT_TRUE(r.done()) << text;
    const nlohmann::ordered_json v = nlohmann::ordered_json::parse(text);
    std::vector<std::string> keys;
    for (const auto& [k, _] : v.items()) keys.push_back(k);
    EXPECT_GE(keys.size(), 3u);
    EXPECT_EQ(std::vector<std::string>(keys.begin(), keys.begin() + 3), (std::vector<std::string>{"speaker", "lines", "aside"})) << text;
    EXPECT_TRUE(v["speaker"] == "ROMEO" || v["speaker"] == "JULIET" || v["speaker"] == "NURSE") << text;
    EXPECT_TRUE(v["lines"].is_number_integer()) << text;
    EXPECT_TRUE(v["aside"].is_boolean()) << text;
    if (v.contains("words")) EXPECT_LE(v["words"].size(), 2u) << text;
    ++closed;
  }
  EXPECT_GE(closed, 1);  // a Shakespeare model rambles in whitespace and strings; some draws close the object
}

// Greedy and top-k JSON requests are masked where the logits are
// (Backend::mask_logits) and only their token or candidates come back; with
// logprobs the row comes to the host and is masked there. Both ways draw the
// same tokens.
TEST(Engine, JsonMaskedByTheBackendDrawsWhatTheHostMaskDraws) {
  Pool pool({.limit = 1ull << 30});
  Model m(bundled(), pool, {.prefill_chunk = 64, .max_batch = 8, .threads = 2});
  Tokenizer tok = load_tokenizer(bundled());
  Engine e(m, tok);
  const auto schema = compile_json_schema(nlohmann::ordered_json::parse(
      R"({"type": "object", "properties": {"who": {"enum": ["ROMEO", "JULIET"]}, "n": {"type": "integer", "maximum": 99}}})"));
  Collected c;
  std::vector<std::pair<uint64_t, uint64_t>> pairs;  // (on the backend, on the host)
  for (int i = 0; i < 6; ++i) {
    RequestOptions o = greedy(60);
    if (i % 2) o.json_schema = schema;
    else o.json_object = true;
    if (i >= 2) o.sampling = {.temperature = 0.8f, .top_k = 20, .top_p = 1.0f, .min_p = 0.0f, .seed = static_cast<uint64_t>(i)};
    const uint64_t backend = e.submit(tok.encode(kPrompts[i], true), o, c.callbacks());
    o.logprobs = 0;     // the row comes to the host
    o.cache_salt = 1;   // and its prompt is computed as the first one's was, not taken from the prefix cache
    pairs.emplace_back(backend, e.submit(tok.encode(kPrompts[i], true), o, c.callbacks()));
  }
  e.run_until_idle();  // all in one batch
  for (const auto& [backend, host] : pairs) {
    EXPECT_EQ(c.tokens[backend], c.tokens[host]) << testing::PrintToString(c.text[backend]) << " | " << testing::PrintToString(c.text[host]);
    EXPECT_GT(c.tokens[backend].size(), 3u);
    EXPECT_EQ(c.done[backend].finish_reason, c.done[host].finish_reason);
  }
}

// Sampling with top-k off: the backend draws from the whole row where it
// is (Backend::draw) and only the token comes back; with logprobs the row
// comes to the host and the sampler draws there. Same seeds: the same
// tokens either way, for top-p, min-p, both, neither, and a JSON output.
TEST(Engine, WholeRowDrawsOnTheBackendDrawWhatTheHostDraws) {
  Pool pool({.limit = 1ull << 30});
  Model m(bundled(), pool, {.prefill_chunk = 64, .max_batch = 10, .threads = 2});
  Tokenizer tok = load_tokenizer(bundled());
  Engine e(m, tok);
  Collected c;
  std::vector<std::pair<uint64_t, uint64_t>> pairs;  // (on the backend, on the host)
  const SamplingParams settings[] = {{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f},
                                     {.temperature = 0.8f, .top_k = 0, .top_p = 0.9f, .min_p = 0.0f},
                                     {.temperature = 1.2f, .top_k = 0, .top_p = 1.0f, .min_p = 0.1f},
                                     {.temperature = 1.0f, .top_k = 0, .top_p = 0.5f, .min_p = 0.05f},
                                     {.temperature = 0.7f, .top_k = 0, .top_p = 0.95f, .min_p = 0.0f}};
  for (int i = 0; i < 5; ++i) {
    RequestOptions o;
    o.max_tokens = 40;
    o.sampling = settings[i];
    o.sampling.seed = static_cast<uint64_t>(100 + i);
    o.json_object = i == 4;
    const uint64_t backend = e.submit(tok.encode(kPrompts[i], true), o, c.callbacks());
    o.logprobs = 0;    // the row comes to the host
    o.cache_salt = 1;  // and its prompt is computed as the first one's was
    pairs.emplace_back(backend, e.submit(tok.encode(kPrompts[i], true), o, c.callbacks()));
  }
  e.run_until_idle();  // all in one batch
  std::set<std::vector<int32_t>> outputs;
  for (const auto& [backend, host] : pairs) {
    EXPECT_EQ(c.tokens[backend], c.tokens[host]) << testing::PrintToString(c.text[backend]) << " | " << testing::PrintToString(c.text[host]);
    EXPECT_GT(c.tokens[backend].size(), 3u);
    outputs.insert(c.tokens[backend]);
  }
  EXPECT_EQ(outputs.size(), 5u);  // the draws differ: the seeds and settings matter
}

TEST(Engine, CancellationFreesBlocksWithinAStep) {
  Pool pool({.limit = 1ull << 30});
  Model m(bundled(), pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 2, .threads = 2});
  Tokenizer tok = load_tokenizer(bundled());
  Engine e(m, tok);
  const uint64_t idle = pool.stats().active;
  Collected c;
  uint64_t a = e.submit(tok.encode("ROMEO:", true), greedy(500), c.callbacks());
  uint64_t b = e.submit(tok.encode("JULIET:", true), greedy(500), c.callbacks());
  uint64_t q = e.submit(tok.encode("queued", true), greedy(5), c.callbacks());  // max_batch 2: it waits
  for (int i = 0; i < 40; ++i) e.step();
  EXPECT_EQ(e.stats().waiting, 1);
  const int64_t b_blocks = static_cast<int64_t>((tok.encode("JULIET:", true).size() + 40 + 15) / 16);
  EXPECT_EQ(m.kv_pool().in_use(), b_blocks + static_cast<int64_t>((tok.encode("ROMEO:", true).size() + 40 + 15) / 16));
  e.cancel(a);
  e.cancel(q);
  e.step();
  EXPECT_EQ(c.done[a].finish_reason, "cancelled");
  EXPECT_EQ(c.done[q].finish_reason, "cancelled");
  EXPECT_EQ(c.done[q].completion_tokens, 0);
  EXPECT_EQ(m.kv_pool().in_use(), b_blocks);  // b grew by one token in that step, still within its blocks
  e.cancel(b);
  e.step();
  EXPECT_EQ(c.done[b].finish_reason, "cancelled");
  EXPECT_EQ(m.kv_pool().in_use(), 0);
  e.cancel(12345);  // unknown: ignored
  EXPECT_FALSE(e.step());
  m.kv_pool().evict(1 << 20);
  pool.release_cache();
  EXPECT_EQ(pool.stats().active, idle);
}

TEST(Engine, BadRequestsAreRefusedAndTheQueueIsBounded) {
  Pool pool({.limit = 1ull << 30});
  Model m(bundled(), pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 4, .threads = 2});
  Tokenizer tok = load_tokenizer(bundled());
  Engine e(m, tok, {.max_waiting = 2});
  Collected c;
  EXPECT_THROW(e.submit({}, greedy(4), c.callbacks()), InputError);
  EXPECT_THROW(e.submit({1, 999999}, greedy(4), c.callbacks()), InputError);
  EXPECT_THROW(e.submit(std::vector<int32_t>(static_cast<size_t>(m.config().max_context), 5), greedy(4), c.callbacks()), InputError);
  RequestOptions nan = greedy(4);
  nan.sampling.temperature = std::nanf("");
  EXPECT_THROW(e.submit({1, 2}, nan, c.callbacks()), InputError);
  e.submit({1, 2}, greedy(4), c.callbacks());
  e.submit({1, 3}, greedy(4), c.callbacks());
  EXPECT_THROW(e.submit({1, 4}, greedy(4), c.callbacks()), EngineBusy);
  e.run_until_idle();
  EXPECT_EQ(c.done.size(), 2u);
  e.submit({1, 4}, greedy(4), c.callbacks());  // room again
  e.run_until_idle();
  EXPECT_EQ(c.done.size(), 3u);
}

// The engine thread takes new requests out of the submit queue at the start of
// a step and recounts its queue at the end: in between, another thread's
// submit must still find the queue full and stats() must still count them.
// The memory probe runs inside that window, so it stands in for the other thread.
TEST(Engine, AQueuedRequestStaysCountedWhileAStepRuns) {
  Pool pool({.limit = 1ull << 30});
  Model m(bundled(), pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 1, .threads = 2});
  Tokenizer tok = load_tokenizer(bundled());
  Engine* engine = nullptr;
  Collected c;
  std::vector<int64_t> waiting_seen;
  int refused = 0, accepted = 0;
  auto probe = [&] {
    waiting_seen.push_back(engine->stats().waiting);
    try {
      engine->submit({1, 5}, greedy(2), c.callbacks());
      ++accepted;
    } catch (const EngineBusy&) {
      ++refused;
    }
    return std::optional<uint64_t>(1u << 20);  // too little: nothing is admitted
  };
  Engine e(m, tok, {.max_waiting = 1, .low_memory_bytes = 1ull << 40, .available_memory = probe});
  engine = &e;
  e.submit({1, 4}, greedy(2), c.callbacks());
  EXPECT_FALSE(e.step());
  EXPECT_FALSE(e.step());
  EXPECT_EQ(waiting_seen, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(accepted, 0);
  EXPECT_EQ(refused, 2);
  EXPECT_EQ(e.stats().waiting, 1);
  e.cancel_all();
  e.step();
  EXPECT_EQ(c.done.size(), 1u);
  EXPECT_EQ(e.stats().waiting, 0);
}

TEST(Engine, APromptThatCanNeverFitIsAnErrorSayingWhatFits) {
  Tokenizer tok = load_tokenizer(bundled());
  Pool probe({.limit = 1ull << 30});
  uint64_t fixed, block;
  {
    Model m(bundled(), probe, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 2, .threads = 2});
    Engine e(m, tok);
    fixed = probe.stats().active;
    block = m.kv_pool().block_bytes();
  }
  Pool pool({.limit = fixed + 3 * block, .max_cached = 0});
  Model m(bundled(), pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 2, .threads = 2});
  Engine e(m, tok);
  Collected c;
  uint64_t big = e.submit(std::vector<int32_t>(100, 7), greedy(4), c.callbacks());
  uint64_t ok = e.submit(std::vector<int32_t>(10, 7), greedy(4), c.callbacks());
  e.run_until_idle();
  EXPECT_EQ(c.done[big].finish_reason, "error");
  EXPECT_NE(c.done[big].error.find("room for 48 tokens"), std::string::npos) << c.done[big].error;
  EXPECT_EQ(c.done[ok].finish_reason, "length");  // the next request runs
}

// Many requests of random lengths, random cancellations, a limit that forces
// waiting and preemption: the limit is never passed, every request ends
// exactly once, and afterwards no block and no byte is left behind.
TEST(Engine, StressUnderALimitWithCancellationsLeavesNothingBehind) {
  Tokenizer tok = load_tokenizer(bundled());
  Pool probe({.limit = 1ull << 30});
  uint64_t fixed, block;
  {
    Model m(bundled(), probe, {.kv_dtype = DType::F16, .prefill_chunk = 48, .max_batch = 8, .threads = 2});
    Engine e(m, tok);
    fixed = probe.stats().active;
    block = m.kv_pool().block_bytes();
  }
  Pool pool({.limit = fixed + 10 * block});
  Model m(bundled(), pool, {.kv_dtype = DType::F16, .prefill_chunk = 48, .max_batch = 8, .threads = 2});
  Engine e(m, tok, {.max_waiting = 1000});
  const uint64_t idle = pool.stats().active;
  std::mt19937 rng(11);
  std::map<uint64_t, int> done_count;
  std::map<uint64_t, std::string> reason;
  RequestCallbacks cb{nullptr, [&](const RequestOutput& o) { ++done_count[o.id], reason[o.id] = o.finish_reason; }};
  std::vector<uint64_t> ids;
  for (int i = 0; i < 40; ++i) {
    std::vector<int32_t> prompt(1 + rng() % 60);
    for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % 2000);
    if (i % 3 == 0) prompt.assign(33, 42);  // a shared prefix now and then
    RequestOptions o = greedy(1 + static_cast<int>(rng() % 40));
    o.sampling.temperature = 0.8f;
    o.sampling.seed = rng();
    ids.push_back(e.submit(prompt, o, cb));
  }
  int steps = 0;
  while (e.step()) {
    ASSERT_LE(pool.stats().active, pool.limit());
    if (++steps % 5 == 0) e.cancel(ids[rng() % ids.size()]);
    ASSERT_LT(steps, 5000);
  }
  EXPECT_LE(pool.stats().peak, pool.limit());
  int cancelled = 0;
  for (uint64_t id : ids) {
    EXPECT_EQ(done_count[id], 1) << id;
    EXPECT_TRUE(reason[id] == "length" || reason[id] == "cancelled") << reason[id];
    cancelled += reason[id] == "cancelled";
  }
  EXPECT_GT(cancelled, 0);
  EXPECT_GT(e.stats().preemptions, 0);
  EXPECT_EQ(m.kv_pool().in_use(), 0);
  m.kv_pool().evict(1 << 20);
  pool.release_cache();
  EXPECT_EQ(pool.stats().active, idle);
}

TEST(Engine, UnderOutsideMemoryPressureItGivesBackCachesAndStopsAdmitting) {
  Pool pool({.limit = 1ull << 30});
  Model m(bundled(), pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 4, .threads = 2});
  Tokenizer tok = load_tokenizer(bundled());
  uint64_t available = 8ull << 30;
  Engine e(m, tok, {.low_memory_bytes = 1ull << 30, .available_memory = [&] { return std::optional<uint64_t>(available); }});
  Collected c;
  uint64_t a = e.submit(std::vector<int32_t>(40, 9), greedy(4), c.callbacks());
  e.run_until_idle();
  EXPECT_GT(m.kv_pool().stats().cached, 0);
  EXPECT_GT(pool.stats().cached, 0u);
  available = 512ull << 20;  // another program took the memory
  uint64_t b = e.submit(std::vector<int32_t>(40, 8), greedy(4), c.callbacks());
  e.step();
  EXPECT_TRUE(e.stats().memory_pressure);
  EXPECT_EQ(m.kv_pool().stats().cached, 0);
  EXPECT_EQ(pool.stats().cached, 0u);
  EXPECT_EQ(e.stats().waiting, 1);  // not admitted, not refused
  available = 8ull << 30;
  e.run_until_idle();
  EXPECT_EQ(c.done[a].finish_reason, "length");
  EXPECT_EQ(c.done[b].finish_reason, "length");
}

TEST(Engine, LogprobsDescribeTheRawDistributionAndGreedyPicksTheTopOne) {
  Pool pool({.limit = 1ull << 30});
  Model m(bundled(), pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 4, .threads = 2});
  Tokenizer tok = load_tokenizer(bundled());
  Engine e(m, tok);
  Collected c;
  std::vector<TokenLogprobs> lps;
  RequestOptions o = greedy(6);
  o.logprobs = 3;
  RequestCallbacks cb = c.callbacks();
  cb.on_logprobs = [&](uint64_t, const TokenLogprobs& lp) { lps.push_back(lp); };
  uint64_t id = e.submit(tok.encode("ROMEO:", true), o, cb);
  e.run_until_idle();
  ASSERT_EQ(lps.size(), 6u);
  for (size_t i = 0; i < lps.size(); ++i) {
    EXPECT_EQ(lps[i].token, c.tokens[id][i]);
    ASSERT_EQ(lps[i].top.size(), 3u);
    EXPECT_EQ(lps[i].top[0].first, lps[i].token);  // greedy
    EXPECT_FLOAT_EQ(lps[i].top[0].second, lps[i].logprob);
    EXPECT_LE(lps[i].logprob, 0.f);
    EXPECT_GE(lps[i].top[1].second, lps[i].top[2].second);
  }
  o.logprobs = 21;
  EXPECT_THROW(e.submit(tok.encode("x", true), o, {}), InputError);
}

// Top-k sampling takes only the backend's candidates (Backend::top_k);
// asking for logprobs brings the whole row back instead. Same seeds, same
// batch shapes: the same tokens either way.
TEST(Engine, SamplingFromTheBackendsCandidatesDrawsWhatTheRowDraws) {
  Pool pool({.limit = 1ull << 30});
  Model m(bundled(), pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 4, .threads = 2});
  Tokenizer tok = load_tokenizer(bundled());
  std::vector<std::vector<int32_t>> runs;
  for (int logprobs : {-1, 0}) {
    Engine e(m, tok);
    Collected c;
    std::vector<uint64_t> ids;
    for (uint64_t seed : {1, 2, 3}) {
      RequestOptions o;
      o.max_tokens = 30;
      o.sampling = {.temperature = 0.9f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .seed = seed};
      o.logprobs = logprobs;
      ids.push_back(e.submit(tok.encode(kPrompts[seed], true), o, c.callbacks()));
    }
    e.run_until_idle();
    for (uint64_t id : ids) runs.push_back(c.tokens[id]);
  }
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(runs[i].size(), 30u);
    EXPECT_EQ(runs[i], runs[i + 3]) << "seed " << i + 1;
  }
  EXPECT_NE(runs[0], runs[1]);
}

TEST(Engine, CancelAllEndsEveryRequestAndReleaseCachedEmptiesThePrefixCache) {
  Pool pool({.limit = 1ull << 30});
  Model m(bundled(), pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .max_batch = 4, .threads = 2});
  Tokenizer tok = load_tokenizer(bundled());
  Engine e(m, tok);
  Collected c;
  e.submit(std::vector<int32_t>(40, 9), greedy(2), c.callbacks());
  e.run_until_idle();
  EXPECT_GT(m.kv_pool().stats().cached, 0);
  for (int i = 0; i < 6; ++i) e.submit(std::vector<int32_t>(20, 5 + i), greedy(100), c.callbacks());
  e.step();
  e.cancel_all();
  e.release_cached();
  e.step();
  EXPECT_EQ(c.done.size(), 7u);
  for (auto& [id, out] : c.done)
    if (id != 1) EXPECT_EQ(out.finish_reason, "cancelled");
  EXPECT_EQ(m.kv_pool().in_use(), 0);
  EXPECT_EQ(m.kv_pool().stats().cached, 0);
  EXPECT_EQ(pool.stats().cached, 0u);
}

}  // namespace
}  // namespace umi
