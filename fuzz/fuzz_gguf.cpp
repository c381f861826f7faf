// Any bytes: parse_gguf must return or throw FormatError, never crash, hang
// or read out of bounds. Accepted files are walked as a loader would.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "format/gguf.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    umi::GgufFile g = umi::parse_gguf(bytes, "fuzz.gguf");
    volatile uint64_t sink = 0;
    for (const auto& t : g.tensors)
      if (t.nbytes) sink = sink + static_cast<uint8_t>(t.data[0]) + static_cast<uint8_t>(t.data[t.nbytes - 1]);
    for (const auto& [key, v] : g.metadata)
      for (uint64_t i = 0; i < v.count && i < 16 && !v.raw.empty(); ++i) sink = sink + static_cast<uint64_t>(v.int_at(i)) + (v.number_at(i) > 0);
    try {
      (void)umi::config_from_gguf(g);
    } catch (const umi::InputError&) {
    }
  } catch (const umi::InputError&) {
  }
  return 0;
}
