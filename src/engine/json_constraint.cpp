#include "engine/json_constraint.h"

namespace umi {

JsonConstraint::JsonConstraint(bool json_object, std::shared_ptr<const JsonSchema> schema) : schema_(std::move(schema)) {
  if (schema_) state_.emplace<SchemaRecognizer>(*schema_);
  else if (json_object) state_.emplace<JsonRecognizer>();
}

int64_t JsonConstraint::mask(const JsonVocabulary& vocabulary, std::span<float> logits) const {
  return std::visit(
      [&](const auto& r) -> int64_t {
        if constexpr (std::is_same_v<std::decay_t<decltype(r)>, std::monostate>) return static_cast<int64_t>(logits.size());
        else return mask_to_json(r, vocabulary, logits);
      },
      state_);
}

int64_t JsonConstraint::allowed(const JsonVocabulary& vocabulary, size_t n, std::vector<uint32_t>& bits) const {
  if (const auto* j = std::get_if<JsonRecognizer>(&state_)) return allowed_json_tokens(*j, vocabulary, n, bits);
  if (const auto* s = std::get_if<SchemaRecognizer>(&state_)) return allowed_json_tokens(*s, vocabulary, n, bits);
  bits.assign((n + 31) / 32, ~uint32_t{0});
  return static_cast<int64_t>(n);
}

void JsonConstraint::feed(std::string_view bytes) {
  if (auto* j = std::get_if<JsonRecognizer>(&state_)) j->feed(bytes);
  else if (auto* s = std::get_if<SchemaRecognizer>(&state_)) s->feed(bytes);
}

bool JsonConstraint::done() const {
  if (const auto* j = std::get_if<JsonRecognizer>(&state_)) return j->done();
  if (const auto* s = std::get_if<SchemaRecognizer>(&state_)) return s->done();
  return false;
}

}  // namespace umi
