#include "server/openai_response.h"

namespace umi {

namespace {
// The token's text (a lone byte of a multi-byte character stays that byte;
// dump() shows it as U+FFFD, "bytes" keeps it exact). Ids past the tokenizer's
// vocabulary (padding rows of the output matrix) have no text.
std::string token_string(const Tokenizer& tok, int32_t id) {
  if (id < 0 || id >= tok.vocab_size()) return {};
  const int32_t one[1] = {id};
  return tok.decode(one);
}

ojson bytes_of(const std::string& s) {
  ojson b = ojson::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}
}  // namespace

ojson logprobs_json(bool chat, const Tokenizer& tok, std::span<const TokenLogprobs> tokens, int64_t& text_offset) {
  if (chat) {
    ojson content = ojson::array();
    for (const TokenLogprobs& t : tokens) {
      const std::string s = token_string(tok, t.token);
      ojson top = ojson::array();
      for (const auto& [id, lp] : t.top) {
        const std::string ts = token_string(tok, id);
        top.push_back({{"token", ts}, {"logprob", lp}, {"bytes", bytes_of(ts)}});
      }
      content.push_back({{"token", s}, {"logprob", t.logprob}, {"bytes", bytes_of(s)}, {"top_logprobs", std::move(top)}});
    }
    return {{"content", std::move(content)}};
  }
  ojson toks = ojson::array(), lps = ojson::array(), tops = ojson::array(), offsets = ojson::array();
  for (const TokenLogprobs& t : tokens) {
    const std::string s = token_string(tok, t.token);
    toks.push_back(s);
    lps.push_back(t.logprob);
    ojson top = ojson::object();
    for (const auto& [id, lp] : t.top) top[token_string(tok, id)] = lp;
    tops.push_back(std::move(top));
    offsets.push_back(text_offset);
    text_offset += static_cast<int64_t>(s.size());
  }
  return {{"tokens", std::move(toks)}, {"token_logprobs", std::move(lps)}, {"top_logprobs", std::move(tops)}, {"text_offset", std::move(offsets)}};
}

ojson choice_json(const ResponseHead& h, int index, const std::string& text, ojson logprobs, ojson finish_reason, bool stream,
                  bool first_delta) {
  ojson c = {{"index", index}};
  if (!h.chat) {
    c["text"] = text;
  } else if (!stream) {
    c["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    ojson delta = ojson::object();
    if (first_delta) delta["role"] = "assistant";
    if (first_delta || !text.empty()) delta["content"] = text;
    c["delta"] = std::move(delta);
  }
  c["logprobs"] = std::move(logprobs);
  c["finish_reason"] = std::move(finish_reason);
  return c;
}

ojson usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens}, {"total_tokens", prompt_tokens + completion_tokens}};
}

ojson response_json(const ResponseHead& h, ojson choices, ojson usage) {
  return {{"id", h.id}, {"object", h.chat ? "chat.completion" : "text_completion"}, {"created", h.created},
          {"model", h.model}, {"choices", std::move(choices)}, {"usage", std::move(usage)}};
}

std::string sse_chunk(const ResponseHead& h, ojson choices, ojson usage) {
  ojson c = {{"id", h.id}, {"object", h.chat ? "chat.completion.chunk" : "text_completion"}, {"created", h.created},
             {"model", h.model}, {"choices", std::move(choices)}};
  if (!usage.is_null()) c["usage"] = std::move(usage);
  return "data: " + dump(c) + "\n\n";
}

std::string error_json(const std::string& message, const std::string& type, const std::string& param, const std::string& code) {
  auto or_null = [](const std::string& s) { return s.empty() ? ojson(nullptr) : ojson(s); };
  return dump({{"error", {{"message", message}, {"type", type}, {"param", or_null(param)}, {"code", or_null(code)}}}});
}

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

}  // namespace umi
