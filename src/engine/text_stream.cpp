#include "engine/text_stream.h"

#include <algorithm>
#include <span>

#include "core/error.h"

namespace umi {

namespace {
// Bytes at the end of `s` that may be the start of a stop string.
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

bool ends_incomplete(const std::string& s) { return s.size() >= 3 && s.compare(s.size() - 3, 3, "\xEF\xBF\xBD") == 0; }
}  // namespace

TextStream::TextStream(const Tokenizer& tok, std::vector<std::string> stop_strings) : tok_(tok), stops_(std::move(stop_strings)) {
  for (const std::string& s : stops_)
    if (s.empty()) throw InputError("stop strings must not be empty");
}

std::string TextStream::push(int32_t token) {
  if (stopped_) return {};
  tokens_.push_back(token);
  // Decode a short window that starts a little before the new tokens, so that
  // tokenizers whose pieces depend on what precedes them (a leading space)
  // decode as they would in the whole text; the new text is what the window
  // adds over its already-read part (the vLLM / TGI scheme).
  std::span<const int32_t> all(tokens_);
  const std::string before = tok_.decode(all.subspan(prefix_, read_ - prefix_), /*skip_special_tokens=*/true);
  const std::string now = tok_.decode(all.subspan(prefix_), /*skip_special_tokens=*/true);
  if (now.size() <= before.size() || ends_incomplete(now)) return {};  // wait for the rest of a character
  const size_t searched_from = text_.size();
  text_ += now.substr(before.size());
  prefix_ = read_;
  read_ = tokens_.size();
  for (const std::string& s : stops_) {
    size_t at = text_.find(s, searched_from > s.size() ? searched_from - s.size() : 0);
    if (at != std::string::npos) {
      text_.resize(at);
      stopped_ = true;
    }
  }
  const size_t ready = stopped_ ? text_.size() : text_.size() - stop_prefix_length(text_, stops_);
  if (ready <= emitted_) return {};
  std::string out = text_.substr(emitted_, ready - emitted_);
  emitted_ = ready;
  return out;
}

std::string TextStream::finish() {
  if (stopped_ || emitted_ >= text_.size()) return {};
  std::string out = text_.substr(emitted_);
  emitted_ = text_.size();
  return out;
}

}  // namespace umi
