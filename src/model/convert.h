// `umi convert`: a Hugging Face folder or a GGUF file to a GGUF file of a
// chosen weight type, as llama.cpp's converter lays it out (tensor names,
// metadata, q/k rows permuted for interleaved RoPE in Llama-family models,
// Llama 3 RoPE scaling as a rope_freqs tensor), so llama.cpp reads it too.
#pragma once

#include <functional>
#include <string>

#include "format/dtype.h"

namespace umi {

struct ConvertOptions {
  DType type = DType::F16;  // f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs
  int threads = 0;          // threads that quantize a chunk's rows (<= 0: all cores); the file is the same for any count
  std::function<void(uint64_t done, uint64_t total)> progress;
};

void convert_model(const std::string& src, const std::string& dst, const ConvertOptions& options);

}  // namespace umi
