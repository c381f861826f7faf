// What JSON mode or a JSON schema asks of a request's output, as the engine
// applies it: a mask before each draw, the drawn token's bytes after it, and
// whether the value is complete (the request then ends with "stop").
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/json_mask.h"
#include "engine/json_schema.h"

namespace umi {

class JsonConstraint {
 public:
  JsonConstraint() = default;  // none: every token may come
  // A schema, when given, is what the output must be; else json_object asks for any one object.
  JsonConstraint(bool json_object, std::shared_ptr<const JsonSchema> schema);

  bool active() const { return !std::holds_alternative<std::monostate>(state_); }
  // mask_to_json for the output so far; how many tokens are left.
  int64_t mask(const JsonVocabulary& vocabulary, std::span<float> logits) const;
  // allowed_json_tokens for the output so far: the same tokens as a bitset of n bits.
  int64_t allowed(const JsonVocabulary& vocabulary, size_t n, std::vector<uint32_t>& bits) const;
  // A drawn token's bytes (the mask let only such tokens through).
  void feed(std::string_view bytes);
  bool done() const;

 private:
  std::shared_ptr<const JsonSchema> schema_;  // what a SchemaRecognizer points to
  std::variant<std::monostate, JsonRecognizer, SchemaRecognizer> state_;
};

}  // namespace umi
