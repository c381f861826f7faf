// OpenAI request bodies (POST /v1/chat/completions, /v1/completions) to an
// engine request: every field checked, each error an ApiError carrying the
// HTTP status and OpenAI's error type and parameter name.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace umi {

struct ApiError : std::exception {
  ApiError(int http_status, std::string text, std::string parameter = {}, std::string error_code = {},
           std::string error_type = "invalid_request_error")
      : status(http_status), message(std::move(text)), param(std::move(parameter)), code(std::move(error_code)), type(std::move(error_type)) {}
  const char* what() const noexcept override { return message.c_str(); }
  int status;
  std::string message, param, code, type;
};

inline constexpr int kMaxChoices = 8;  // the most `n` allows

struct ParsedRequest {
  std::vector<int32_t> prompt;
  RequestOptions options;   // options.logprobs: -1, or how many alternatives per token
  int n = 1;                // choices, each its own engine request (seed + index)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// What a served model brings to request parsing.
struct ServedModel {
  std::string id;
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;  // null: no chat endpoint
  int64_t context = 0;
  int64_t vocab = 0;
};

// The body as a JSON object. Throws ApiError (400).
nlohmann::ordered_json parse_json_object(const std::string& body);
// Its "model": "" when absent. Throws ApiError for a non-string.
std::string requested_model(const nlohmann::ordered_json& body);

// `chat`: messages through the chat template; otherwise `prompt` (a string
// or an array of token ids). Throws ApiError.
ParsedRequest parse_openai_request(const nlohmann::ordered_json& body, const ServedModel& model, bool chat);

}  // namespace umi
