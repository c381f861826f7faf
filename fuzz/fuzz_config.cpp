// Any bytes as a Hugging Face config.json.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)umi::config_from_hf_json({reinterpret_cast<const char*>(data), size}, "fuzz.json");
  } catch (const umi::InputError&) {
  }
  return 0;
}
