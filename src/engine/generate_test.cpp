// Generation on the bundled model: parity with transformers (reference.json
// written by tools/train_tiny.py), stop strings, stop tokens, streaming.
#include "engine/generate.h"

#include <gtest/gtest.h>

#include "support/fixtures.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/sequence.h"

namespace umi {
namespace {

std::string bundled() { return std::string(UMI_SOURCE_DIR) + "/models/tiny-shakespeare"; }

nlohmann::json reference() {
  std::ifstream in(bundled() + "/reference.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

TEST(BundledModel, MatchesTransformers) {
  Pool pool({.limit = 1ull << 30});
  Model model(bundled(), pool, {.kv_dtype = DType::F32});
  Tokenizer tok = load_tokenizer(bundled());
  const nlohmann::json ref = reference();
  for (const auto& p : ref["prompts"]) {
    auto ids = tok.encode(p["prompt"].get<std::string>(), true);
    EXPECT_EQ(ids, p["ids"].get<std::vector<int32_t>>());
    Sequence seq(model);
    auto logits = seq.feed(ids);
    EXPECT_LT(test::rel_error(logits, p["logits_f32_compute"].get<std::vector<float>>()), 1e-4);
    GenerateOptions o;
    o.max_tokens = 32;
    o.sampling.temperature = 0;
    std::string streamed;
    GenerateResult r = generate(model, tok, ids, o, [&](std::string_view t) {
      streamed += t;
      return true;
    });
    EXPECT_EQ(r.tokens, p["greedy"].get<std::vector<int32_t>>());
    EXPECT_EQ(r.text, p["greedy_text"].get<std::string>());
    EXPECT_EQ(streamed, r.text);
    EXPECT_EQ(r.finish_reason, "length");
  }
}

TEST(Generate, StopStringsEndTheTextAndAreNotEmitted) {
  Pool pool({.limit = 1ull << 30});
  Model model(bundled(), pool);
  Tokenizer tok = load_tokenizer(bundled());
  GenerateOptions o;
  o.max_tokens = 64;
  o.sampling.temperature = 0;
  o.stop_strings = {"man of"};
  std::string streamed;
  auto ids = tok.encode("First Citizen:\nBefore we proceed any further, hear me speak.", true);
  GenerateResult r = generate(model, tok, ids, o, [&](std::string_view t) {
    streamed += t;
    return true;
  });
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.text, "\n\nSecond Citizen:\nI am a man, I am a ");
  EXPECT_EQ(streamed, r.text);
}

TEST(Generate, CallbackCanCancelAndSeedsRepeat) {
  Pool pool({.limit = 1ull << 30});
  Model model(bundled(), pool);
  Tokenizer tok = load_tokenizer(bundled());
  auto ids = tok.encode("ROMEO:\n", true);
  GenerateOptions o;
  o.max_tokens = 40;
  o.sampling.seed = 5;
  int calls = 0;
  GenerateResult cancelled = generate(model, tok, ids, o, [&](std::string_view) { return ++calls < 3; });
  EXPECT_EQ(cancelled.finish_reason, "cancelled");
  EXPECT_EQ(calls, 3);
  auto a = generate(model, tok, ids, o, [](std::string_view) { return true; });
  auto b = generate(model, tok, ids, o, [](std::string_view) { return true; });
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(model.kv_pool().in_use(), 0);  // every sequence gave its blocks back
}

// generate() brings back only what the draw needs (the argmax; the top-k
// candidates): the tokens are those of drawing from the whole row.
TEST(Generate, DrawsFromCandidatesWhatTheRowDraws) {
  Pool pool({.limit = 1ull << 30});
  Model model(bundled(), pool, {.kv_dtype = DType::F32});
  Tokenizer tok = load_tokenizer(bundled());
  const std::vector<int32_t> prompt = tok.encode("JULIET:", true);
  for (SamplingParams p : {SamplingParams{.temperature = 0.0f}, SamplingParams{.temperature = 0.9f, .top_k = 40, .seed = 5},
                           SamplingParams{.temperature = 1.2f, .top_k = 0, .seed = 6}}) {
    GenerateOptions o;
    o.max_tokens = 40;
    o.sampling = p;
    const GenerateResult r = generate(model, tok, prompt, o, [](std::string_view) { return true; });
    // The same draws from rows.
    Sampler sampler(p);
    Sequence seq(model);
    std::vector<int32_t> history = prompt, want;
    std::vector<float> logits = seq.feed(prompt);
    for (int i = 0; i < 40; ++i) {
      const int32_t next = sampler.sample(logits, history);
      want.push_back(next), history.push_back(next);
      logits = seq.feed(std::vector<int32_t>{next});
    }
    EXPECT_EQ(r.tokens, want) << "temperature " << p.temperature << ", top_k " << p.top_k;
  }
}

TEST(Generate, StopTokensAreKnown) {
  Tokenizer q = load_tokenizer(std::string(UMI_SOURCE_DIR) + "/../shared/data/tokenizers/qwen3");
  auto stops = default_stop_tokens(q);
  EXPECT_NE(std::find(stops.begin(), stops.end(), *q.token_id("<|im_end|>")), stops.end());
  Tokenizer l = load_tokenizer(std::string(UMI_SOURCE_DIR) + "/../shared/data/tokenizers/llama3");
  auto lstops = default_stop_tokens(l);
  EXPECT_NE(std::find(lstops.begin(), lstops.end(), *l.token_id("<|eot_id|>")), lstops.end());
}

}  // namespace
}  // namespace umi
