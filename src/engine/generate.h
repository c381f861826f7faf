// Generation on one sequence: prefill the prompt, then sample token by token,
// streaming text as it becomes valid UTF-8, until a stop token, a stop string,
// max_tokens, the context's end, or the caller says stop.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampler.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace umi {

struct GenerateOptions {
  int max_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_tokens;  // EOS and end-of-turn tokens
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated, without a final stop token
  std::string text;
  std::string finish_reason;    // "stop", "length", "cancelled"
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0;   // also the time to first token's logits
  double first_token_seconds = 0;
  double decode_seconds = 0;
};

// The end-of-sequence and end-of-turn tokens a tokenizer knows: its EOS and
// the usual end-of-turn specials (<|eot_id|>, <|im_end|>, <end_of_turn>...).
std::vector<int32_t> default_stop_tokens(const Tokenizer& tok);

// `on_text` receives each new piece of text; returning false stops (as
// "cancelled"). Throws InputError/OutOfMemory before any work for a prompt
// that cannot run.
GenerateResult generate(Model& model, const Tokenizer& tok, std::span<const int32_t> prompt, const GenerateOptions& options,
                        const std::function<bool(std::string_view)>& on_text);

}  // namespace umi
