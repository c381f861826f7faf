// The tokenizer of a Hugging Face folder as GGUF metadata (tokenizer.ggml.*),
// the way llama.cpp's converter writes it, for `umi convert`.
#pragma once

#include <string>

namespace umi {

class GgufWriter;

// Byte-level BPE tokenizers only (Llama-3, Qwen, GPT-2 style); throws
// InputError naming what cannot be exported.
void write_tokenizer_metadata(GgufWriter& w, const std::string& folder);

}  // namespace umi
