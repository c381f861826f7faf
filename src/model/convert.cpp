#include "model/convert.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <filesystem>

#include "backend/cpu/dot.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/quantize.h"
#include "backend/cpu/thread_pool.h"
#include "core/error.h"
#include "format/gguf_writer.h"
#include "format/model_files.h"
#include "model/config.h"
#include "tokenizer/gguf_export.h"

namespace umi {

namespace {

struct Mapping {
  std::string hf, gguf;
};

// Hugging Face -> GGUF tensor names for layer i.
std::vector<Mapping> layer_names(int64_t i) {
  std::string hf = "model.layers." + std::to_string(i) + ".", g = "blk." + std::to_string(i) + ".";
  return {{hf + "input_layernorm.weight", g + "attn_norm.weight"},
          {hf + "post_attention_layernorm.weight", g + "ffn_norm.weight"},
          {hf + "self_attn.q_proj.weight", g + "attn_q.weight"},
          {hf + "self_attn.k_proj.weight", g + "attn_k.weight"},
          {hf + "self_attn.v_proj.weight", g + "attn_v.weight"},
          {hf + "self_attn.o_proj.weight", g + "attn_output.weight"},
          {hf + "self_attn.q_proj.bias", g + "attn_q.bias"},
          {hf + "self_attn.k_proj.bias", g + "attn_k.bias"},
          {hf + "self_attn.v_proj.bias", g + "attn_v.bias"},
          {hf + "self_attn.q_norm.weight", g + "attn_q_norm.weight"},
          {hf + "self_attn.k_norm.weight", g + "attn_k_norm.weight"},
          {hf + "mlp.gate_proj.weight", g + "ffn_gate.weight"},
          {hf + "mlp.up_proj.weight", g + "ffn_up.weight"},
          {hf + "mlp.down_proj.weight", g + "ffn_down.weight"}};
}

std::string gguf_arch(Arch a) {
  switch (a) {
    case Arch::llama: case Arch::mistral: return "llama";
    case Arch::qwen2: return "qwen2";
    case Arch::qwen3: return "qwen3";
    default: return "";
  }
}

void write_config(GgufWriter& w, const ModelConfig& c, const std::string& arch) {
  const std::string p = arch + ".";
  w.add_string("general.architecture", arch);
  w.add_u32(p + "context_length", static_cast<uint32_t>(c.max_context));
  w.add_u32(p + "embedding_length", static_cast<uint32_t>(c.hidden_size));
  w.add_u32(p + "feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
  w.add_u32(p + "block_count", static_cast<uint32_t>(c.n_layers));
  w.add_u32(p + "attention.head_count", static_cast<uint32_t>(c.n_heads));
  w.add_u32(p + "attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  w.add_u32(p + "attention.key_length", static_cast<uint32_t>(c.head_dim));
  w.add_u32(p + "attention.value_length", static_cast<uint32_t>(c.head_dim));
  w.add_f32(p + "attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_eps));
  w.add_f32(p + "rope.freq_base", static_cast<float>(c.rope_theta));
  w.add_u32(p + "rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  w.add_u32(p + "vocab_size", static_cast<uint32_t>(c.vocab_size));
  if (c.rope_scaling.type == RopeScaling::Type::linear) {
    w.add_string(p + "rope.scaling.type", "linear");
    w.add_f32(p + "rope.scaling.factor", static_cast<float>(c.rope_scaling.factor));
  }
}

// Llama 3's RoPE scaling, as llama.cpp stores it: one divisor per frequency.
std::vector<float> llama3_rope_factors(const ModelConfig& c) {
  std::vector<float> f;
  for (int64_t i = 0; i < c.head_dim / 2; ++i)
    f.push_back(static_cast<float>(rope_frequency(c, i, /*scaled=*/false) / rope_frequency(c, i)));
  return f;
}

DType matrix_type(DType wanted, bool output_projection, int64_t cols) {
  const bool k_quant = dtype_info(wanted).block_elems == 256;  // Q2_K..Q6_K, IQ4_XS
  // As llama.cpp: K-quant files keep the output projection at 6 bits.
  if (k_quant && output_projection) wanted = DType::Q6_K;
  if (cols % dtype_info(wanted).block_elems != 0 && k_quant)  // llama.cpp's fallbacks for odd widths
    wanted = wanted == DType::Q4_K ? DType::Q5_0 : wanted == DType::Q5_K ? DType::Q5_1 : wanted == DType::Q6_K ? DType::Q8_0 : DType::IQ4_NL;
  return cols % dtype_info(wanted).block_elems == 0 ? wanted : DType::F16;
}

// The tensors to write: (source name, GGUF name). From a GGUF file every
// tensor keeps its name; from Hugging Face the Llama-family names map over.
std::vector<Mapping> tensor_names(const ModelFiles& files, const ModelConfig& c, bool from_hf) {
  std::vector<Mapping> names;
  if (!from_hf) {
    for (const TensorView& t : files.gguf()->tensors) names.push_back({t.name, t.name});
    return names;
  }
  names = {{"model.embed_tokens.weight", "token_embd.weight"},
           {"model.norm.weight", "output_norm.weight"},
           {"lm_head.weight", "output.weight"}};
  for (int64_t i = 0; i < c.n_layers; ++i)
    for (const Mapping& m : layer_names(i)) names.push_back(m);
  return names;
}

}  // namespace

void convert_model(const std::string& src, const std::string& dst, const ConvertOptions& o) {
  if (!cpu::quantize_supports(o.type))
    throw InputError("convert: --type " + std::string(to_string(o.type)) +
                     " is not supported (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs)");
  ModelFiles files = ModelFiles::open(src);
  ModelConfig c = config_from_files(files);
  c.require_supported(src);
  const bool from_hf = files.format() == ModelFormat::safetensors;
  const std::string arch = gguf_arch(c.arch);

  GgufWriter w;
  if (from_hf) {
    write_config(w, c, arch);
    // A folder of weights alone (no tokenizer files) still converts.
    if (std::filesystem::exists(std::filesystem::path(src) / "tokenizer.json")) write_tokenizer_metadata(w, src);
  } else {  // requantize: every metadata key carries over but the file type, which would now be
            // wrong, and the alignment, which the writer sets
    for (const auto& [key, value] : files.gguf()->metadata)
      if (key != "general.file_type" && key != "general.alignment") w.add_value(std::string(key), value);
  }

  // Q/K rows of Hugging Face Llama-family weights are permuted for llama.cpp's
  // interleaved RoPE; a GGUF source already has them so.
  const bool permute = from_hf && (c.arch == Arch::llama || c.arch == Arch::mistral);
  // With tied embeddings the embedding table is the output projection too.
  const bool tied = !files.find(from_hf ? "lm_head.weight" : "output.weight");
  auto pool = std::make_shared<cpu::ThreadPool>(o.threads);
  for (const Mapping& m : tensor_names(files, c, from_hf)) {
    const TensorView* t = files.find(m.hf);
    if (!t) continue;
    if (t->shape.size() > 2) throw FormatError(src, "tensor '" + m.hf + "'", "has more than 2 dimensions");
    const int64_t cols = t->shape.back();
    if (t->shape.size() == 2 && !cpu::matmul_supports(t->dtype))
      throw FormatError(src, "tensor '" + m.hf + "'", "dtype " + std::string(to_string(t->dtype)) + " cannot be read for requantizing");
    // Vectors (norms, biases, rope factors) stay f32, as llama.cpp keeps them;
    // from a GGUF source they are copied as they are.
    DType out = t->shape.size() == 1 ? (from_hf ? DType::F32 : t->dtype) : matrix_type(o.type, m.gguf == "output.weight" || (tied && m.gguf == "token_embd.weight"), cols);
    // llama.cpp's permute(): within each head, rows (i, i + hd/2) become (2i, 2i+1).
    int64_t heads = 0;
    if (permute && m.gguf.find("attn_q.weight") != std::string::npos) heads = c.n_heads;
    if (permute && m.gguf.find("attn_k.weight") != std::string::npos) heads = c.n_kv_heads;
    const TensorView tv = *t;
    const int64_t hd = c.head_dim;
    w.add_tensor(m.gguf, out, t->shape, [tv, cols, out, heads, hd, pool](int64_t begin, int64_t end, std::byte* out_rows) {
      const size_t in_bytes = dtype_bytes(tv.dtype, static_cast<uint64_t>(cols)).value_or(0);
      const size_t out_bytes = dtype_bytes(out, static_cast<uint64_t>(cols)).value_or(0);
      if (out == tv.dtype && !heads) {  // unchanged: copy the rows as they are
        std::memcpy(out_rows, tv.data + static_cast<size_t>(begin) * in_bytes, static_cast<size_t>(end - begin) * in_bytes);
        return;
      }
      // Rows are independent: the chunk's rows in parallel (IQ4's scale search
      // and the K-quants' take ~100x a copy's time).
      pool->parallel_chunks(end - begin, 16, [&](int64_t first, int64_t last) {
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t r = begin + first; r < begin + last; ++r) {
          int64_t from = r;
          if (heads) {
            int64_t h = r / hd, within = r % hd;
            from = h * hd + (within % 2) * (hd / 2) + within / 2;
          }
          cpu::dequantize(tv.dtype, tv.data + static_cast<size_t>(from) * in_bytes, row.data(), cols);
          cpu::quantize_row(out, row.data(), cols, out_rows + static_cast<size_t>(r - begin) * out_bytes);
        }
      });
    });
  }
  if (from_hf && c.rope_scaling.type == RopeScaling::Type::llama3) {
    auto factors = std::make_shared<std::vector<float>>(llama3_rope_factors(c));
    w.add_tensor("rope_freqs.weight", DType::F32, {static_cast<int64_t>(factors->size())},
                 [factors](int64_t, int64_t, std::byte* out_rows) { std::memcpy(out_rows, factors->data(), factors->size() * 4); });
  }
  w.write(dst, o.progress);
}

}  // namespace umi
