#include "engine/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "engine/sequence.h"
#include "engine/text_stream.h"

namespace umi {

namespace {
double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::vector<int32_t> default_stop_tokens(const Tokenizer& tok) {
  std::vector<int32_t> out;
  if (tok.eos_id()) out.push_back(*tok.eos_id());
  for (const char* name : {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>", "<end_of_turn>", "</s>"})
    if (auto id = tok.token_id(name); id && tok.is_special(*id) && std::find(out.begin(), out.end(), *id) == out.end())
      out.push_back(*id);
  return out;
}

GenerateResult generate(Model& model, const Tokenizer& tok, std::span<const int32_t> prompt, const GenerateOptions& o,
                        const std::function<bool(std::string_view)>& on_text) {
  if (o.max_tokens < 0) throw InputError("max tokens must be >= 0");
  TextStream stream(tok, o.stop_strings);  // checks the stop strings before any work
  GenerateResult r;
  r.prompt_tokens = static_cast<int64_t>(prompt.size());
  const int64_t context = model.config().max_context;
  if (r.prompt_tokens >= context)
    throw InputError("the prompt has " + std::to_string(r.prompt_tokens) + " tokens; the model's context is " + std::to_string(context));
  Sampler sampler(o.sampling);
  Sequence seq(model);
  std::vector<int32_t> history(prompt.begin(), prompt.end());

  // Runs tokens and draws the next one, bringing back from the backend only
  // what the draw needs: the argmax (greedy), the top-k candidates, the
  // token drawn from the whole row (top-k off), or the row (penalties;
  // top-k above kMaxTopK).
  TopK top;
  TokenDraw draw;
  auto feed_and_draw = [&](std::span<const int32_t> tokens) -> int32_t {
    if (sampler.greedy()) return seq.feed_argmax(tokens);
    if (const int k = sampler.candidates_needed(); k > 0) {
      top.k = k, top.temperature = sampler.temperature();
      seq.feed_top_k(tokens, top);
      return sampler.sample(top);
    }
    if (sampler.draws_whole_row()) {
      draw = sampler.next_draw();
      seq.feed_draw(tokens, draw);
      return sampler.sample(draw);
    }
    std::vector<float> logits = seq.feed(tokens);
    return sampler.sample(logits, history);
  };
  auto t0 = std::chrono::steady_clock::now();
  int32_t next = feed_and_draw(prompt);
  r.prefill_seconds = since(t0);
  auto t_decode = std::chrono::steady_clock::now();
  r.finish_reason = "length";
  for (int i = 0; i < o.max_tokens; ++i) {
    if (i > 0) next = feed_and_draw(std::span<const int32_t>(&history.back(), 1));
    if (i == 0) r.first_token_seconds = since(t0);
    if (std::find(o.stop_tokens.begin(), o.stop_tokens.end(), next) != o.stop_tokens.end()) {
      r.finish_reason = "stop";
      break;
    }
    r.tokens.push_back(next);
    history.push_back(next);
    const std::string piece = stream.push(next);
    if (!piece.empty() && !on_text(piece)) {
      r.finish_reason = "cancelled";
      break;
    }
    if (stream.stopped()) {
      r.finish_reason = "stop";
      break;
    }
    if (seq.position() + 1 > context) break;  // "length": the context is full
  }
  if (r.finish_reason != "cancelled")
    if (std::string rest = stream.finish(); !rest.empty()) on_text(rest);
  r.text = stream.text();
  r.decode_seconds = since(t_decode);
  return r;
}

}  // namespace umi
