// Any bytes: parse_safetensors must return or throw FormatError, never crash.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "core/error.h"
#include "format/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    umi::SafetensorsFile f = umi::parse_safetensors(bytes, "fuzz.safetensors");
    volatile uint64_t sink = 0;
    for (const auto& t : f.tensors)
      if (t.nbytes) sink = sink + static_cast<uint8_t>(t.data[0]) + static_cast<uint8_t>(t.data[t.nbytes - 1]);
  } catch (const umi::InputError&) {
  }
  try {
    (void)umi::parse_safetensors_index({reinterpret_cast<const char*>(data), size}, "fuzz.index.json");
  } catch (const umi::InputError&) {
  }
  return 0;
}
