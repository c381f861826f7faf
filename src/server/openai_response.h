// OpenAI response bodies: completions and chat completions, whole or as SSE
// chunks, with logprobs in each endpoint's own shape, and error bodies.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "engine/logprobs.h"
#include "tokenizer/tokenizer.h"

namespace umi {

using ojson = nlohmann::ordered_json;

struct ResponseHead {
  std::string id;     // "chatcmpl-7" / "cmpl-7"
  int64_t created = 0;
  std::string model;
  bool chat = false;
};

// The logprobs of `tokens`, the next ones of a choice: chat's
// {"content": [{token, logprob, bytes, top_logprobs}]} or completions'
// {tokens, token_logprobs, top_logprobs, text_offset}. `text_offset` is the
// choice's generated text length so far (advanced here).
ojson logprobs_json(bool chat, const Tokenizer& tok, std::span<const TokenLogprobs> tokens, int64_t& text_offset);

// One choice: chat's "message" (whole) or "delta" (stream), or completions' "text".
ojson choice_json(const ResponseHead& h, int index, const std::string& text, ojson logprobs, ojson finish_reason, bool stream,
                  bool first_delta = false);
ojson usage_json(int64_t prompt_tokens, int64_t completion_tokens);
// The whole (non-stream) body.
ojson response_json(const ResponseHead& h, ojson choices, ojson usage);
// One SSE event: "data: {chunk}\n\n" for `choices` (and usage when not null).
std::string sse_chunk(const ResponseHead& h, ojson choices, ojson usage = nullptr);

std::string error_json(const std::string& message, const std::string& type, const std::string& param = {},
                       const std::string& code = {});
// JSON text; invalid UTF-8 (a token that is part of a character) becomes U+FFFD.
std::string dump(const ojson& j);

}  // namespace umi
