// Log-probabilities of a model's next-token distribution, as OpenAI's
// `logprobs` report them: of the raw logits (before sampling's penalties,
// temperature and truncation), so they describe the model, not the sampler.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace umi {

struct TokenLogprobs {
  int32_t token = 0;
  float logprob = 0;                             // log p(token)
  std::vector<std::pair<int32_t, float>> top;    // the most likely tokens, most likely first (ties: lower id first)
};

// log-softmax of `logits` at `token`, and its `top` most likely entries.
// Throws InputError when `token` is out of range or `top` is negative.
TokenLogprobs token_logprobs(std::span<const float> logits, int32_t token, int top);

}  // namespace umi
