// Any bytes as a chat template: parse, then render with a small conversation.
// Errors must be TemplateError; nothing may crash, hang or grow unbounded.
#include <cstddef>
#include <cstdint>
#include <string>

#include "template/chat_template.h"
#include "template/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const umi::ChatRequest request = [] {
    umi::ChatRequest r;
    r.messages = nlohmann::ordered_json::parse(
        R"([{"role":"system","content":"s"},{"role":"user","content":"hi ✨"},{"role":"assistant","content":"yo","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]}])");
    r.tools = nlohmann::ordered_json::parse(R"([{"type":"function","function":{"name":"f"}}])");
    return r;
  }();
  umi::tmpl::Limits limits;
  limits.max_steps = 20000;  // keep each input fast for the fuzzer
  limits.max_output = 1 << 20;
  limits.max_range = 10000;
  try {
    umi::ChatTemplate t(std::string(reinterpret_cast<const char*>(data), size), "<s>", "</s>", limits);
    (void)t.render(request);
  } catch (const umi::InputError&) {
  }
  return 0;
}
