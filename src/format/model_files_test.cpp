#include "format/model_files.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "memory/pool.h"
#include "memory/system_memory.h"
#include "support/file_builders.h"
#include "support/temp_dir.h"

namespace umi {
namespace {

using test::Bytes;
using test::TempDir;

const char* kLlamaConfig = R"({"architectures":["LlamaForCausalLM"],"vocab_size":256,"hidden_size":64,
  "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
  "max_position_embeddings":512,"rms_norm_eps":1e-5,"tie_word_embeddings":true,"torch_dtype":"float32"})";

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(ModelFiles, OpensAGgufByItsMagicWhateverItsName) {
  TempDir dir;
  test::write_file(dir.file("model.bin"), test::tiny_llama_gguf());
  ModelFiles m = ModelFiles::open(dir.file("model.bin"));
  EXPECT_EQ(m.format(), ModelFormat::gguf);
  ASSERT_NE(m.gguf(), nullptr);
  EXPECT_NE(m.find("blk.1.ffn_down.weight"), nullptr);
  EXPECT_TRUE(m.extras().has_tokenizer);
  EXPECT_EQ(m.extras().tokenizer_entries, 256u);
  EXPECT_TRUE(m.extras().has_chat_template);
}

TEST(ModelFiles, OpensAFolderWithOneSafetensorsFile) {
  TempDir dir;
  write_text(dir.file("config.json"), kLlamaConfig);
  test::write_file(dir.file("model.safetensors"), test::build_safetensors({{"a", "F32", {4}}, {"b", "F16", {8}}}));
  write_text(dir.file("tokenizer.json"), "{}");
  write_text(dir.file("tokenizer_config.json"), R"({"chat_template":"{{ x }}"})");
  ModelFiles m = ModelFiles::open(dir.path().string());
  EXPECT_EQ(m.format(), ModelFormat::safetensors);
  EXPECT_EQ(m.tensors().size(), 2u);
  EXPECT_EQ(m.tensor_bytes(), 32u);
  EXPECT_TRUE(m.extras().has_tokenizer);
  EXPECT_EQ(m.extras().chat_template_source, "tokenizer_config.json");
  EXPECT_FALSE(m.config_json().empty());
}

TEST(ModelFiles, OpensShardedFolders) {
  TempDir dir;
  write_text(dir.file("config.json"), kLlamaConfig);
  test::write_file(dir.file("m-1.safetensors"), test::build_safetensors({{"a", "F32", {4}}}));
  test::write_file(dir.file("m-2.safetensors"), test::build_safetensors({{"b", "F32", {2}}, {"extra", "F32", {1}}}));
  write_text(dir.file("model.safetensors.index.json"),
             R"({"weight_map":{"a":"m-1.safetensors","b":"m-2.safetensors"}})");
  ModelFiles m = ModelFiles::open(dir.path().string());
  EXPECT_EQ(m.files().size(), 2u);
  ASSERT_NE(m.find("b"), nullptr);
  EXPECT_EQ(m.find("b")->file_index, 1u);
  ASSERT_EQ(m.warnings().size(), 1u);  // "extra" is not in the index
  EXPECT_NE(m.warnings()[0].find("extra"), std::string::npos);
}

TEST(ModelFiles, RefusesBrokenShardedFolders) {
  TempDir dir;
  write_text(dir.file("config.json"), kLlamaConfig);
  test::write_file(dir.file("m-1.safetensors"), test::build_safetensors({{"a", "F32", {4}}}));
  test::write_file(dir.file("m-2.safetensors"), test::build_safetensors({{"a", "F32", {4}}}));
  write_text(dir.file("model.safetensors.index.json"), R"({"weight_map":{"a":"m-1.safetensors","z":"m-2.safetensors"}})");
  try {
    ModelFiles::open(dir.path().string());
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("more than one file"), std::string::npos) << e.what();
  }
  write_text(dir.file("model.safetensors.index.json"), R"({"weight_map":{"a":"m-3.safetensors"}})");
  EXPECT_THROW(ModelFiles::open(dir.path().string()), FormatError);  // missing shard
}

TEST(ModelFiles, MissingThingsAreClearErrors) {
  TempDir dir;
  EXPECT_THROW(ModelFiles::open(dir.file("nope.gguf")), FormatError);
  try {
    ModelFiles::open(dir.path().string());
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos);
  }
  write_text(dir.file("config.json"), kLlamaConfig);
  EXPECT_THROW(ModelFiles::open(dir.path().string()), FormatError);  // no weights
}

// Opening a 1 GiB model must not read or allocate it: resident memory stays
// flat until a tensor is touched, and then grows only by what was touched.
void expect_zero_copy(const std::string& path, const TensorView& (*pick)(const ModelFiles&)) {
  constexpr uint64_t MiB = 1 << 20;
  Pool pool({.limit = 64 * MiB});
  PoolStats before_pool = pool.stats();
  uint64_t rss0 = resident_set_bytes();
  ModelFiles m = ModelFiles::open(path);
  uint64_t rss1 = resident_set_bytes();
  EXPECT_GE(m.tensor_bytes(), 1024 * MiB);
  EXPECT_LT(rss1 - std::min(rss1, rss0), 8 * MiB) << "opening mapped, not read";
  EXPECT_EQ(pool.stats().active, before_pool.active);
  EXPECT_EQ(pool.stats().peak, before_pool.peak);

  const TensorView& t = pick(m);
  volatile uint8_t sink = 0;
  const uint64_t touched = 32 * MiB;
  for (uint64_t off = 0; off < touched; off += page_size()) sink = sink + static_cast<uint8_t>(t.data[off]);
  uint64_t rss2 = resident_set_bytes();
  EXPECT_GE(rss2, rss1 + touched / 2) << "touched pages become resident";
  EXPECT_LT(rss2, rss1 + touched + 16 * MiB) << "and only those";
}

TEST(ModelFiles, OneGigabyteSafetensorsIsMappedNotRead) {
  TempDir dir;
  const uint64_t n = 256ull << 20;  // f32 elements: 1 GiB
  std::string header = R"({"big":{"dtype":"F32","shape":[)" + std::to_string(n) + R"(],"data_offsets":[0,)" +
                       std::to_string(n * 4) + "]}}";
  while ((8 + header.size()) % 8) header += ' ';
  test::write_file(dir.file("model.safetensors"), test::build_safetensors_raw(header, {}));
  ASSERT_EQ(truncate(dir.file("model.safetensors").c_str(), static_cast<off_t>(8 + header.size() + n * 4)), 0);
  write_text(dir.file("config.json"), kLlamaConfig);
  expect_zero_copy(dir.path().string(), [](const ModelFiles& m) -> const TensorView& { return *m.find("big"); });
}

TEST(ModelFiles, OneGigabyteGgufIsMappedNotRead) {
  TempDir dir;
  test::GgufBuilder g;
  g.kv_string("general.architecture", "llama").tensor("big", {1ull << 28}, 0, 0, 0);
  Bytes b = g.build();
  test::write_file(dir.file("big.gguf"), b);
  ASSERT_EQ(truncate(dir.file("big.gguf").c_str(), static_cast<off_t>(b.size() + (1ull << 30))), 0);
  expect_zero_copy(dir.file("big.gguf"), [](const ModelFiles& m) -> const TensorView& { return *m.find("big"); });
}

}  // namespace
}  // namespace umi
