// Any bytes as a JSON schema (from a request) and an output read against it:
// "schema\0output". Compiling may refuse with InputError; reading and the
// mask (over a small vocabulary, every few bytes) must never crash or hang.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "engine/json_mask.h"
#include "engine/json_schema.h"
#include "format/json_strict.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const umi::JsonVocabulary vocabulary = [] {
    std::vector<std::string> tokens;
    for (int b = 1; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
    for (const char* t : {"{\"", "\":", "\": ", "\",", "true", "false", "null", "12", "-0.5", "e+1", "\\u00", "\n  ", "}]", ""})
      tokens.emplace_back(t);
    return umi::JsonVocabulary(std::move(tokens));
  }();
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t split = in.find('\0');
  const std::string_view schema_text = in.substr(0, split), output = split == in.npos ? "" : in.substr(split + 1);
  std::shared_ptr<const umi::JsonSchema> schema;
  try {
    schema = umi::compile_json_schema(umi::parse_ordered_json_strict(schema_text, "fuzz", "schema"));
  } catch (const umi::InputError&) {
    return 0;
  }
  umi::SchemaRecognizer r(*schema);
  std::vector<float> logits(vocabulary.bytes.size() + 3);
  for (size_t i = 0; i <= output.size(); ++i) {
    if (i % 8 == 0) (void)umi::mask_to_json(r, vocabulary, logits);
    if (i == output.size() || !r.feed(output[i])) break;
  }
  return 0;
}
