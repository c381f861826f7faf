#include "format/safetensors.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "support/bad_files.h"
#include "support/expect_refused.h"

namespace umi {
namespace {

using test::Bytes;

TEST(Safetensors, ReadsTensorsAndMetadataInPlace) {
  Bytes b = test::build_safetensors({{"a", "F32", {2, 4}}, {"c", "I64", {1}}, {"b", "BF16", {5}}},
                                    R"({"format":"pt"})");
  SafetensorsFile f = parse_safetensors(b, "m.safetensors");
  ASSERT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  // nlohmann::json keeps object keys sorted: tensors come in name order.
  const TensorView& a = f.tensors[0];
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(a.nbytes, 32u);
  EXPECT_EQ(a.file_offset, f.data_offset);
  EXPECT_EQ(a.data, b.data() + f.data_offset);
  EXPECT_EQ(f.tensors[1].name, "b");
  EXPECT_EQ(f.tensors[1].dtype, DType::BF16);
  EXPECT_EQ(f.tensors[1].file_offset, f.data_offset + 40);
  EXPECT_TRUE(f.warnings.empty()) << (f.warnings.empty() ? "" : f.warnings[0]);
}

TEST(Safetensors, ZeroSizedTensorsAreFine) {
  Bytes b = test::build_safetensors({{"empty", "F32", {0, 4}}, {"x", "F32", {1}}});
  SafetensorsFile f = parse_safetensors(b, "m.safetensors");
  EXPECT_EQ(f.tensors[0].nbytes, 0u);
}

TEST(Safetensors, HolesAndMisalignmentAreLayoutWarnings) {
  std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})";
  while ((8 + header.size()) % 8) header += ' ';
  test::Bytes b = test::build_safetensors_raw(header, test::pattern_bytes(10));
  SafetensorsFile f = parse_safetensors(b, "h.safetensors");
  ASSERT_EQ(f.tensors.size(), 1u);
  std::string all;
  for (auto& w : f.warnings) all += w + "\n";
  EXPECT_NE(all.find("belong to no tensor"), std::string::npos) << all;
  EXPECT_NE(all.find("not aligned"), std::string::npos) << all;
  EXPECT_NE(all.find("trailing"), std::string::npos) << all;
}

TEST(Safetensors, EveryCorpusFileIsRefusedWithAOneLineReason) {
  test::expect_all_refused(test::bad_safetensors_files(), [](const test::Bytes& b, const std::string& n) { parse_safetensors(b, n); });
}

TEST(SafetensorsIndex, RefusesShardNamesOutsideTheFolder) {
  for (const char* shard : {"../evil.safetensors", "/etc/passwd", "a/b.safetensors", "", ".."}) {
    std::string json = std::string(R"({"weight_map":{"w":")") + shard + "\"}}";
    EXPECT_THROW(parse_safetensors_index(json, "index.json"), FormatError) << shard;
  }
  SafetensorsIndex idx = parse_safetensors_index(
      R"({"metadata":{},"weight_map":{"a":"m-1.safetensors","b":"m-2.safetensors","c":"m-1.safetensors"}})", "i.json");
  EXPECT_EQ(idx.shards, (std::vector<std::string>{"m-1.safetensors", "m-2.safetensors"}));
  EXPECT_EQ(idx.weight_map.at("c"), "m-1.safetensors");
}

}  // namespace
}  // namespace umi
