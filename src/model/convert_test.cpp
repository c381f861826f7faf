// umi convert: Hugging Face folders to GGUF, read back by umi's GGUF path.
#include "model/convert.h"

#include <gtest/gtest.h>

#include "support/fixtures.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "engine/generate.h"
#include "engine/sequence.h"
#include "model/model.h"
#include "support/temp_dir.h"

namespace umi {
namespace {

nlohmann::json reference(const std::string& dir) {
  std::ifstream in(dir + "/reference.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

using test::rel_error;

// Bounds from the quantization noise of random Gaussian weights: q8_0 steps
// are ~2% of a block's range (about 0.6% noise per weight), q4_0 steps ~13%
// (about 10%). Measured on these models: q8_0 1.4-2.9%, q4_0 16-35%, q4_1 19-33%,
// q5_1 8-19%, q5_0 (q4_k's fallback) 9-22%. A wrong
// layout (say, q/k rows not permuted for the GGUF RoPE) lands near 140%.
struct Bound {
  DType type;
  double max_error;
};

class ConvertedFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(ConvertedFixture, LogitsStayWithinQuantizationNoise) {
  const std::string dir = std::string(UMI_SOURCE_DIR) + "/tests/fixtures/models/" + GetParam();
  test::TempDir tmp;
  // These models are 64 wide: q4_k falls back to q5_0 (and q6_k to q8_0) as in llama.cpp.
  for (Bound b : {Bound{DType::F32, 1e-5}, Bound{DType::Q8_0, 4e-2}, Bound{DType::Q4_0, 0.5}, Bound{DType::Q4_1, 0.5},
                  Bound{DType::Q5_1, 0.3}, Bound{DType::Q4_K, 0.3}}) {
    std::string out = tmp.file(std::string(to_string(b.type)) + ".gguf");
    convert_model(dir, out, {.type = b.type});
    Pool pool({.limit = 1ull << 30});
    Model m(out, pool, {.kv_dtype = DType::F32});
    EXPECT_EQ(m.files().format(), ModelFormat::gguf);
    const nlohmann::json ref = reference(dir);
    for (const auto& p : ref["prompts"]) {
      Sequence seq(m);
      double err = rel_error(seq.feed(p["ids"].get<std::vector<int32_t>>()), p["logits"].get<std::vector<float>>());
      EXPECT_LT(err, b.max_error) << to_string(b.type);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ConvertedFixture,
                         ::testing::Values("llama-gqa-untied-llama3rope-f32", "llama-mha-tied-linearrope-f32", "mistral-gqa-f32",
                                           "qwen2-bias-f32", "qwen3-qknorm-f32"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

TEST(Convert, BundledModelKeepsItsTokenizerAndGreedyText) {
  const std::string src = std::string(UMI_SOURCE_DIR) + "/models/tiny-shakespeare";
  test::TempDir tmp;
  convert_model(src, tmp.file("q8.gguf"), {.type = DType::Q8_0});
  Pool pool({.limit = 1ull << 30});
  Model m(tmp.file("q8.gguf"), pool);
  Tokenizer tok = load_tokenizer(tmp.file("q8.gguf"));
  Tokenizer hf = load_tokenizer(src);
  EXPECT_EQ(tok.encode("ROMEO: O, she doth teach the torches!", true), hf.encode("ROMEO: O, she doth teach the torches!", true));
  GenerateOptions o;
  o.max_tokens = 20;
  o.sampling.temperature = 0;
  auto ids = tok.encode("First Citizen:\nBefore we proceed any further, hear me speak.", true);
  GenerateResult r = generate(m, tok, ids, o, [](std::string_view) { return true; });
  EXPECT_EQ(r.text.substr(0, 35), "\n\nSecond Citizen:\nI am a man, I am ");
}

// The bundled model is 256 wide, so every matrix really is K-quantized (or IQ4_XS); its
// reference logits (transformers, f32 compute of the bf16 weights) are the yardstick.
TEST(Convert, KQuantsAndRequantizingKeepTheBundledModelsLogits) {
  const std::string src = std::string(UMI_SOURCE_DIR) + "/models/tiny-shakespeare";
  const nlohmann::json ref = reference(src);
  test::TempDir tmp;
  auto max_error = [&](const std::string& file, std::map<std::string, DType>* types = nullptr) {
    Pool pool({.limit = 1ull << 30});
    Model m(file, pool, {.kv_dtype = DType::F32});
    if (types)
      for (const TensorView& t : m.files().gguf()->tensors) (*types)[t.name] = t.dtype;
    double worst = 0;
    for (const auto& p : ref["prompts"]) {
      Sequence seq(m);
      worst = std::max(worst, rel_error(seq.feed(p["ids"].get<std::vector<int32_t>>()),
                                        p["logits_f32_compute"].get<std::vector<float>>()));
    }
    return worst;
  };
  for (Bound b : {Bound{DType::Q6_K, 0.03}, Bound{DType::Q5_K, 0.03}, Bound{DType::Q4_K, 0.05}, Bound{DType::IQ4_XS, 0.04},
                  Bound{DType::Q3_K, 0.07}, Bound{DType::Q2_K, 0.2}}) {
    const std::string out = tmp.file(std::string(to_string(b.type)) + ".gguf");
    convert_model(src, out, {.type = b.type});
    std::map<std::string, DType> types;
    const double err = max_error(out, &types);
    EXPECT_LT(err, b.max_error) << to_string(b.type);
    EXPECT_EQ(types["blk.0.ffn_down.weight"], b.type);
    EXPECT_EQ(types["token_embd.weight"], DType::Q6_K);  // tied: the output projection, 6-bit as in llama.cpp
    EXPECT_EQ(types["blk.0.attn_norm.weight"], DType::F32);
  }
  // Requantizing a GGUF: q8_0 -> q4_k stays as close as converting straight from the folder.
  convert_model(src, tmp.file("q8.gguf"), {.type = DType::Q8_0});
  convert_model(tmp.file("q8.gguf"), tmp.file("q8-q4k.gguf"), {.type = DType::Q4_K});
  std::map<std::string, DType> types;
  const double direct = max_error(tmp.file("q4_k.gguf")), requantized = max_error(tmp.file("q8-q4k.gguf"), &types);
  EXPECT_LT(requantized, direct * 1.5);
  EXPECT_EQ(types["blk.1.attn_q.weight"], DType::Q4_K);
  // Metadata (tokenizer included) carried over: the same text encodes the same.
  EXPECT_EQ(load_tokenizer(tmp.file("q8-q4k.gguf")).encode("ROMEO: thou", true), load_tokenizer(src).encode("ROMEO: thou", true));
}

TEST(Convert, RefusesUnsupportedTargetTypes) {
  const std::string src = std::string(UMI_SOURCE_DIR) + "/models/tiny-shakespeare";
  test::TempDir tmp;
  EXPECT_THROW(convert_model(src, tmp.file("x.gguf"), {.type = DType::Q8_K}), InputError);
}

}  // namespace
}  // namespace umi
