#include "model/memory_plan.h"

#include <gtest/gtest.h>

#include "model/config.h"

namespace umi {
namespace {

ModelConfig llama3_8b() {
  ModelConfig c;
  c.arch = Arch::llama;
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.n_layers = 32;
  c.n_heads = 32;
  c.n_kv_heads = 8;
  c.head_dim = 128;
  c.max_context = 8192;
  return c;
}

ModelConfig qwen3_32b() {
  ModelConfig c;
  c.arch = Arch::qwen3;
  c.vocab_size = 151936;
  c.hidden_size = 5120;
  c.intermediate_size = 25600;
  c.n_layers = 64;
  c.n_heads = 64;
  c.n_kv_heads = 8;
  c.head_dim = 128;
  c.max_context = 40960;
  c.qk_norm = true;
  return c;
}

constexpr uint64_t GiB = 1ull << 30;

TEST(MemoryPlan, Llama3_8BWeightsByHand) {
  // embed + lm_head: 2 x 128256 x 4096 = 1,050,673,152
  // per layer: q,o 2 x 4096^2 + k,v 2 x 4096 x 1024 + mlp 3 x 4096 x 14336 + 2 norms x 4096
  //          = 33,554,432 + 8,388,608 + 176,160,768 + 8,192 = 218,112,000; x 32 = 6,979,584,000
  // final norm 4,096. Parameters: 8,030,261,248 -> 16,060,522,496 bytes in bf16.
  EXPECT_EQ(estimate_weight_bytes(llama3_8b(), DType::BF16), 16'060'522'496ull);
  // Q8_0: matrices at 34/32 bytes, norms (32 x 2 x 4096 + 4096 = 266,240) in f32.
  // matrices: 8,029,995,008 x 34/32 = 8,531,869,696; norms 1,064,960.
  EXPECT_EQ(estimate_weight_bytes(llama3_8b(), DType::Q8_0), 8'531'869'696ull + 1'064'960ull);
}

TEST(MemoryPlan, Qwen3_32BWeightsByHand) {
  // embed + lm_head: 2 x 151936 x 5120 = 1,555,824,640
  // per layer: q 5120x8192 + o 8192x5120 = 83,886,080; k,v 2 x 5120 x 1024 = 10,485,760;
  //   mlp 3 x 5120 x 25600 = 393,216,000; norms 2 x 5120 + q/k norm 2 x 128 = 10,496
  //   = 487,598,336; x 64 = 31,206,293,504. Final norm 5,120.
  // Parameters 32,762,123,264 -> bf16 65,524,246,528 bytes.
  EXPECT_EQ(estimate_weight_bytes(qwen3_32b(), DType::BF16), 65'524'246'528ull);
}

TEST(MemoryPlan, KvBytesPerTokenByHand) {
  // 2 (K and V) x 32 layers x 8 heads x 128 dims x 2 bytes = 131,072.
  EXPECT_EQ(kv_bytes_per_token(llama3_8b(), DType::F16), 131072u);
  // q8_0: 1024 values = 32 blocks of 34 bytes = 1,088 per layer per K or V.
  EXPECT_EQ(kv_bytes_per_token(llama3_8b(), DType::Q8_0), 2u * 32 * 1088);
  // Qwen3-32B: 2 x 64 x 8 x 128 x 2 = 262,144.
  EXPECT_EQ(kv_bytes_per_token(qwen3_32b(), DType::F16), 262144u);
}

TEST(MemoryPlan, Llama3_8BAt8KContextIn24GiB) {
  FitRequest r{.context = 8192, .batch = 1, .kv_dtype = DType::F16, .prefill_chunk = 512,
               .kv_block_tokens = 16, .threads = 2, .limit = 24 * GiB, .page = 4096};
  MemoryPlan p = plan_memory(llama3_8b(), 16'060'522'496ull, r);
  EXPECT_EQ(p.kv_block, 16u * 131072);  // 2 MiB: whole pages, a size class exactly
  EXPECT_EQ(p.kv_total, 1 * GiB);       // 512 blocks x 2 MiB
  // Activations for 512 tokens: x, xn 8 MiB each; q, attn 8 MiB each; k, v 2 MiB each;
  // gate, up 28 MiB each; q8 of the widest row (14336: 448 blocks x 40 = 17,920 B) x 512
  // = 9,175,040 -> size class 9 MiB (steps of 1 MiB above 8 MiB); logits 513,024 -> 126 pages = 516,096;
  // attention scratch: per thread the larger of by heads (2 x 16 x 128 + 4 x 16 + 2 x 4 x 512 = 8,256) and by
  // positions (2 x 32 = 64), then partials 2 x 2 threads x 32 x 130 = 16,640:
  // (2 x 8,256 + 16,640) x 4 = 132,608 -> 33 pages = 135,168; GEMM tiles 2 threads x 448 x 768
  // + 64 = 688,192 -> 169 pages = 692,224.
  uint64_t expected_act = 4 * 8 * (1ull << 20) + 2 * 2 * (1ull << 20) + 2 * 28 * (1ull << 20) + 9 * (1ull << 20) + 516'096 + 135'168 + 692'224;
  EXPECT_EQ(p.activations, expected_act);
  EXPECT_EQ(p.total, 16'060'522'496ull + GiB + expected_act);
  EXPECT_TRUE(p.fits);
  // Largest context: (24 GiB - weights - activations) / 2 MiB per 16 tokens.
  uint64_t free_bytes = 24 * GiB - 16'060'522'496ull - expected_act;
  EXPECT_EQ(p.max_context, static_cast<int64_t>(free_bytes / (2ull << 20) * 16));
}

TEST(MemoryPlan, Qwen3_32BAt32KContextDoesNotFitIn64GB) {
  FitRequest r{.context = 32768, .batch = 1, .kv_dtype = DType::F16, .prefill_chunk = 512,
               .kv_block_tokens = 16, .threads = 2, .limit = 64'000'000'000ull, .page = 4096};
  MemoryPlan p = plan_memory(qwen3_32b(), 65'524'246'528ull, r);
  EXPECT_EQ(p.kv_total, 8 * GiB);  // 32768 x 256 KiB
  EXPECT_FALSE(p.fits);            // the weights alone are larger than the budget
  EXPECT_EQ(p.max_context, 0);
  r.limit = 192'000'000'000ull;
  r.batch = 4;
  p = plan_memory(qwen3_32b(), 65'524'246'528ull, r);
  EXPECT_EQ(p.kv_total, 32 * GiB);
  EXPECT_TRUE(p.fits);
  EXPECT_GT(p.max_context, 32768);
}

TEST(MemoryPlan, PartialBlocksCountWhole) {
  FitRequest r{.context = 17, .batch = 3, .kv_dtype = DType::F16, .prefill_chunk = 512,
               .kv_block_tokens = 16, .threads = 1, .limit = 64 * GiB, .page = 4096};
  MemoryPlan p = plan_memory(llama3_8b(), 0, r);
  EXPECT_EQ(p.kv_total, 3u * 2 * (2ull << 20));  // 2 blocks per sequence
}

}  // namespace
}  // namespace umi
