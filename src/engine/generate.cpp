#include "engine/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "engine/sequence.h"

namespace umi {

namespace {
double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Bytes at the end of `s` that may be the start of a stop string: held back
// until the next token shows whether the stop string completes.
size_t stop_prefix_length(std::string_view s, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& stop : stops)
    for (size_t k = std::min(stop.size() - 1, s.size()); k > hold; --k)
      if (s.substr(s.size() - k) == std::string_view(stop).substr(0, k)) {
        hold = k;
        break;
      }
  return hold;
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
  for (const std::string& s : o.stop_strings)
    if (s.empty()) throw InputError("stop strings must not be empty");
  GenerateResult r;
  r.prompt_tokens = static_cast<int64_t>(prompt.size());
  const int64_t context = model.config().max_context;
  if (r.prompt_tokens >= context)
    throw InputError("the prompt has " + std::to_string(r.prompt_tokens) + " tokens; the model's context is " + std::to_string(context));
  Sampler sampler(o.sampling);
  Sequence seq(model);
  std::vector<int32_t> history(prompt.begin(), prompt.end());

  auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits = seq.feed(prompt);
  r.prefill_seconds = since(t0);
  size_t emitted = 0;  // bytes of r.text already given to on_text
  auto t_decode = std::chrono::steady_clock::now();
  r.finish_reason = "length";
  for (int i = 0; i < o.max_tokens; ++i) {
    int32_t next = sampler.sample(logits, history);
    if (i == 0) r.first_token_seconds = since(t0);
    if (std::find(o.stop_tokens.begin(), o.stop_tokens.end(), next) != o.stop_tokens.end()) {
      r.finish_reason = "stop";
      break;
    }
    r.tokens.push_back(next);
    history.push_back(next);
    std::string text = tok.decode(r.tokens, /*skip_special_tokens=*/true);
    // A token may end inside a UTF-8 character: wait for the rest.
    bool incomplete = text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0;
    bool stopped = false;
    for (const std::string& s : o.stop_strings) {
      size_t at = text.find(s, emitted > s.size() ? emitted - s.size() : 0);
      if (at != std::string::npos) {
        text.resize(at);
        stopped = true;
      }
    }
    r.text = text;
    size_t ready = stopped ? text.size() : text.size() - stop_prefix_length(text, o.stop_strings);
    if ((!incomplete || stopped) && ready > emitted) {
      if (!on_text(std::string_view(text).substr(emitted, ready - emitted))) {
        r.finish_reason = "cancelled";
        emitted = ready;
        break;
      }
      emitted = ready;
    }
    if (stopped) {
      r.finish_reason = "stop";
      break;
    }
    if (seq.position() + 1 > context) break;  // "length": the context is full
    if (i + 1 < o.max_tokens) logits = seq.feed(std::vector<int32_t>{next});
  }
  if (emitted < r.text.size() && r.finish_reason != "cancelled") on_text(std::string_view(r.text).substr(emitted));
  r.decode_seconds = since(t_decode);
  return r;
}

}  // namespace umi
