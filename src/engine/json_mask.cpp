#include "engine/json_mask.h"

#include <algorithm>
#include <bit>
#include <limits>
#include <string_view>

namespace umi {

JsonVocabulary::JsonVocabulary(std::vector<std::string> token_bytes) : bytes(std::move(token_bytes)), plain(bytes.size()) {
  for (size_t id = 0; id < bytes.size(); ++id) {
    bool p = !bytes[id].empty();
    for (char c : bytes[id]) p &= c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20;
    plain[id] = p;
    if (p) plain_bits.resize(id / 32 + 1), plain_bits[id / 32] |= uint32_t{1} << (id % 32);
    else if (!bytes[id].empty()) not_plain.push_back(static_cast<int32_t>(id));
    if (!bytes[id].empty()) order.push_back(static_cast<int32_t>(id));
    longest = std::max(longest, bytes[id].size());
  }
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return bytes[static_cast<size_t>(a)] < bytes[static_cast<size_t>(b)]; });
  shared.resize(order.size());
  for (size_t i = 1; i < order.size(); ++i) {
    const std::string &a = bytes[static_cast<size_t>(order[i - 1])], &b = bytes[static_cast<size_t>(order[i])];
    shared[i] = static_cast<uint32_t>(std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first - a.begin());
  }
}

namespace {
void allow(std::span<uint32_t> bits, size_t id) { bits[id >> 5] |= uint32_t{1} << (id & 31); }

// Lets through the tokens the walk in byte order accepts (JsonVocabulary):
// at[d] is the state after the first d bytes of the current token; `valid`
// how many of those states belong to it.
template <class Recognizer>
int64_t allow_outside_strings(const Recognizer& json, const JsonVocabulary& v, size_t n, std::span<uint32_t> bits) {
  std::vector<Recognizer> at(v.longest + 1, json);
  int64_t left = 0;
  size_t valid = 0;
  for (size_t i = 0; i < v.order.size();) {
    const std::string& b = v.bytes[static_cast<size_t>(v.order[i])];
    size_t d = std::min<size_t>(i == 0 ? 0 : v.shared[i], valid);
    for (; d < b.size(); ++d) {
      at[d + 1] = at[d];
      if (!at[d + 1].feed(b[d])) break;
    }
    if (d == b.size()) {  // all of it
      const auto id = static_cast<size_t>(v.order[i]);
      if (id < n) allow(bits, id), ++left;
      valid = d;
      ++i;
      continue;
    }
    // b[0..d] is refused: so is every token that starts with it, the run from i on.
    const std::string_view prefix(b.data(), d + 1);
    const auto next = std::partition_point(v.order.begin() + static_cast<std::ptrdiff_t>(i), v.order.end(), [&](int32_t id) {
      return std::string_view(v.bytes[static_cast<size_t>(id)]).starts_with(prefix);
    });
    i = static_cast<size_t>(next - v.order.begin());
    valid = d;
  }
  return left;
}

template <class Recognizer>
int64_t allowed(const Recognizer& json, const JsonVocabulary& vocabulary, size_t n, std::vector<uint32_t>& bits) {
  bits.assign((n + 31) / 32, 0);
  if (!json.in_string()) return allow_outside_strings(json, vocabulary, n, bits);
  // In a string: every plain token (a copy of their bits), and those of the rest it takes.
  std::copy_n(vocabulary.plain_bits.begin(), std::min(bits.size(), vocabulary.plain_bits.size()), bits.begin());
  if (n % 32 != 0 && bits.size() <= vocabulary.plain_bits.size()) bits.back() &= (uint32_t{1} << (n % 32)) - 1;
  for (int32_t id : vocabulary.not_plain)
    if (static_cast<size_t>(id) < n && json.accepts(vocabulary.bytes[static_cast<size_t>(id)])) allow(bits, static_cast<size_t>(id));
  int64_t left = 0;
  for (uint32_t w : bits) left += std::popcount(w);
  return left;
}

template <class Recognizer>
int64_t mask(const Recognizer& json, const JsonVocabulary& vocabulary, std::span<float> logits) {
  std::vector<uint32_t> bits;
  const int64_t left = allowed(json, vocabulary, logits.size(), bits);
  for (size_t w = 0; w < bits.size(); ++w) {
    if (bits[w] == ~uint32_t{0}) continue;
    for (size_t id = w * 32; id < std::min(logits.size(), w * 32 + 32); ++id)
      if (!(bits[w] >> (id & 31) & 1)) logits[id] = -std::numeric_limits<float>::infinity();
  }
  return left;
}
}  // namespace

int64_t mask_to_json(const JsonRecognizer& json, const JsonVocabulary& vocabulary, std::span<float> logits) {
  return mask(json, vocabulary, logits);
}

int64_t mask_to_json(const SchemaRecognizer& json, const JsonVocabulary& vocabulary, std::span<float> logits) {
  return mask(json, vocabulary, logits);
}

int64_t allowed_json_tokens(const JsonRecognizer& json, const JsonVocabulary& vocabulary, size_t n, std::vector<uint32_t>& bits) {
  return allowed(json, vocabulary, n, bits);
}

int64_t allowed_json_tokens(const SchemaRecognizer& json, const JsonVocabulary& vocabulary, size_t n, std::vector<uint32_t>& bits) {
  return allowed(json, vocabulary, n, bits);
}

}  // namespace umi
