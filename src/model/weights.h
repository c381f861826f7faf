// A model's weights bound to tensors in its mapped files: views, never copies.
// Binding checks every tensor the architecture needs: present, of a dtype
// the kernels read, and of the shape the config implies.
#pragma once

#include <string>
#include <vector>

#include "backend/weight_view.h"
#include "format/model_files.h"
#include "model/config.h"

namespace umi {

struct LayerWeights {
  VectorView attn_norm, ffn_norm;
  VectorView q_norm, k_norm;          // Qwen3: [head_dim]
  VectorView q_bias, k_bias, v_bias;  // Qwen2
  MatrixView wq, wk, wv, wo;          // [q_dim, d], [kv_dim, d], [kv_dim, d], [d, q_dim]
  MatrixView gate, up, down;          // [ff, d], [ff, d], [d, ff]
};

struct ModelWeights {
  MatrixView embed;   // [vocab, d]
  MatrixView output;  // [vocab, d]: the embedding when tied
  VectorView final_norm;
  VectorView rope_freqs;  // GGUF: per-frequency divisors (Llama 3 scaling), optional
  std::vector<LayerWeights> layers;
  // GGUF llama-family files store q/k rows permuted for interleaved RoPE.
  bool rope_interleaved = false;
};

// Throws FormatError naming the tensor and what is wrong with it.
ModelWeights bind_weights(const ModelFiles& files, const ModelConfig& config);

}  // namespace umi
