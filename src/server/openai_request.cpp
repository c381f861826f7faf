#include "server/openai_request.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "engine/generate.h"
#include "engine/json_schema.h"

namespace umi {

namespace {
using json = nlohmann::ordered_json;

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number(const json& body, const char* name, double def, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number()) throw ApiError(400, std::string("'") + name + "' must be a number", name);
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    throw ApiError(400, std::string("'") + name + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi), name);
  return d;
}

int64_t integer(const json& body, const char* name, int64_t def, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number_integer()) throw ApiError(400, std::string("'") + name + "' must be an integer", name);
  const int64_t i = v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : v->get<int64_t>();
  if (i < lo || i > hi)
    throw ApiError(400, std::string("'") + name + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi), name);
  return i;
}

std::vector<int32_t> chat_prompt(const json& body, const ServedModel& m) {
  if (!m.chat_template) throw ApiError(400, "model '" + m.id + "' has no chat template; use /v1/completions", "messages");
  const json* messages = field(body, "messages");
  if (!messages || !messages->is_array() || messages->empty()) throw ApiError(400, "'messages' must be a non-empty array", "messages");
  ChatRequest r;
  for (const json& msg : *messages) {
    if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string())
      throw ApiError(400, "each message needs a string 'role'", "messages");
    json out = {{"role", msg["role"]}};
    const json* content = field(msg, "content");
    if (content && content->is_string()) {
      out["content"] = *content;
    } else if (content && content->is_array()) {  // [{"type": "text", "text": ...}]: text parts joined
      std::string text;
      for (const json& part : *content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
          throw ApiError(400, "only text content parts are supported", "messages");
        text += part["text"].get<std::string>();
      }
      out["content"] = text;
    } else if (content) {
      throw ApiError(400, "message 'content' must be a string or an array of text parts", "messages");
    } else {
      out["content"] = "";
    }
    r.messages.push_back(std::move(out));
  }
  try {
    return m.tokenizer->encode(m.chat_template->render(r), /*add_special_tokens=*/false);
  } catch (const InputError& e) {
    throw ApiError(400, std::string("chat template: ") + e.what(), "messages");
  }
}

std::vector<int32_t> completion_prompt(const json& body, const ServedModel& m) {
  const json* p = field(body, "prompt");
  if (!p) throw ApiError(400, "'prompt' is required", "prompt");
  if (p->is_string()) return m.tokenizer->encode(p->get<std::string>(), true);
  if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) {
    std::vector<int32_t> ids;
    for (const json& t : *p) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= m.vocab)
        throw ApiError(400, "token ids must be integers in 0.." + std::to_string(m.vocab - 1), "prompt");
      ids.push_back(t.get<int32_t>());
    }
    return ids;
  }
  throw ApiError(400, "'prompt' must be a string or an array of token ids (one prompt per request)", "prompt");
}

// response_format: {"type": "text"} (the default), {"type": "json_object"}
// (JSON mode) or {"type": "json_schema", "json_schema": {"name": ..., "schema":
// {...}}} (structured outputs; "strict" or not, the output keeps to the
// schema). A schema asking for what the recognizer cannot keep to is refused
// rather than loosened: a client that sends one relies on it.
void response_format(const json& body, RequestOptions& o) {
  const json* rf = field(body, "response_format");
  if (!rf) return;
  const json* type = rf->is_object() ? field(*rf, "type") : nullptr;
  if (!type || !type->is_string())
    throw ApiError(400, "'response_format' must be an object with a string 'type'", "response_format");
  const std::string t = type->get<std::string>();
  if (t == "text") return;
  if (t == "json_object") {
    o.json_object = true;
    return;
  }
  if (t != "json_schema") throw ApiError(400, "'response_format' type must be 'text', 'json_object' or 'json_schema'", "response_format");
  const json* js = field(*rf, "json_schema");
  const json* schema = js && js->is_object() ? field(*js, "schema") : nullptr;
  if (!schema) throw ApiError(400, "'response_format' of type 'json_schema' needs 'json_schema': {\"schema\": {...}}", "response_format");
  try {
    o.json_schema = compile_json_schema(*schema);
  } catch (const InputError& e) {
    throw ApiError(400, e.what(), "response_format");
  }
}
}  // namespace

json parse_json_object(const std::string& text) {
  json body;
  try {
    body = json::parse(text);
  } catch (const json::exception& e) {
    throw ApiError(400, std::string("the body is not valid JSON: ") + e.what());
  }
  if (!body.is_object()) throw ApiError(400, "the body must be a JSON object");
  return body;
}

std::string requested_model(const json& body) {
  const json* model = field(body, "model");
  if (!model) return {};
  if (!model->is_string()) throw ApiError(400, "'model' must be a string", "model");
  return model->get<std::string>();
}

ParsedRequest parse_openai_request(const json& body, const ServedModel& m, bool chat) {
  ParsedRequest r;
  r.prompt = chat ? chat_prompt(body, m) : completion_prompt(body, m);
  if (r.prompt.empty()) throw ApiError(400, "the prompt is empty", chat ? "messages" : "prompt");
  if (static_cast<int64_t>(r.prompt.size()) >= m.context)
    throw ApiError(400, "the prompt has " + std::to_string(r.prompt.size()) + " tokens; the model's context is " +
                            std::to_string(m.context) + " (at most " + std::to_string(m.context - 1) + " prompt tokens fit)",
                   chat ? "messages" : "prompt", "context_length_exceeded");
  const int64_t room = m.context - static_cast<int64_t>(r.prompt.size());
  const char* max_name = field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  r.options.max_tokens = static_cast<int>(integer(body, max_name, std::min<int64_t>(room, 4096), 1, room));
  r.n = static_cast<int>(integer(body, "n", 1, 1, kMaxChoices));
  r.options.sampling.temperature = static_cast<float>(number(body, "temperature", 1.0, 0.0, 2.0));
  r.options.sampling.top_p = static_cast<float>(number(body, "top_p", 1.0, 0.0, 1.0));
  if (r.options.sampling.top_p == 0.0f) throw ApiError(400, "'top_p' must be greater than 0", "top_p");
  r.options.sampling.top_k = 0;
  r.options.sampling.min_p = 0;
  r.options.sampling.presence_penalty = static_cast<float>(number(body, "presence_penalty", 0.0, -2.0, 2.0));
  r.options.sampling.frequency_penalty = static_cast<float>(number(body, "frequency_penalty", 0.0, -2.0, 2.0));
  r.options.sampling.seed = static_cast<uint64_t>(integer(body, "seed", 0, INT64_MIN, INT64_MAX));
  if (const json* stop = field(body, "stop")) {
    if (stop->is_string()) r.options.stop_strings.push_back(stop->get<std::string>());
    else if (stop->is_array() && stop->size() <= 4)
      for (const json& s : *stop) {
        if (!s.is_string() || s.get<std::string>().empty()) throw ApiError(400, "'stop' entries must be non-empty strings", "stop");
        r.options.stop_strings.push_back(s.get<std::string>());
      }
    else throw ApiError(400, "'stop' must be a string or an array of up to 4 strings", "stop");
    for (const std::string& s : r.options.stop_strings)
      if (s.empty()) throw ApiError(400, "'stop' strings must not be empty", "stop");
  }
  if (const json* s = field(body, "stream")) {
    if (!s->is_boolean()) throw ApiError(400, "'stream' must be a boolean", "stream");
    r.stream = s->get<bool>();
  }
  if (const json* so = field(body, "stream_options"); so && so->is_object() && so->contains("include_usage"))
    r.include_usage = (*so)["include_usage"].is_boolean() && (*so)["include_usage"].get<bool>();
  if (chat) {  // logprobs: bool; top_logprobs: 0..20 alternatives
    if (const json* lp = field(body, "logprobs")) {
      if (!lp->is_boolean()) throw ApiError(400, "'logprobs' must be a boolean", "logprobs");
      if (lp->get<bool>()) r.options.logprobs = static_cast<int>(integer(body, "top_logprobs", 0, 0, 20));
    }
    if (field(body, "top_logprobs") && r.options.logprobs < 0)
      throw ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs");
  } else {  // logprobs: 0..5 alternatives
    r.options.logprobs = static_cast<int>(integer(body, "logprobs", -1, 0, 5));
  }
  response_format(body, r.options);
  // vLLM's extension, for benchmarks that need a fixed number of tokens.
  bool ignore_eos = false;
  if (const json* ie = field(body, "ignore_eos")) {
    if (!ie->is_boolean()) throw ApiError(400, "'ignore_eos' must be a boolean", "ignore_eos");
    ignore_eos = ie->get<bool>();
  }
  if (!ignore_eos) r.options.stop_tokens = default_stop_tokens(*m.tokenizer);
  return r;
}

}  // namespace umi
