#include "format/gguf.h"

#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "support/bad_files.h"
#include "support/expect_refused.h"

namespace umi {
namespace {

using test::Bytes;
using test::GgufBuilder;

GgufFile parse(const Bytes& b) { return parse_gguf(b, "m.gguf"); }

TEST(Gguf, ReadsMetadataOfEveryType) {
  Bytes b = GgufBuilder()
                .kv_u32("a.u32", 7)
                .kv_u64("a.u64", 1ull << 40)
                .kv_f32("a.f32", 0.5f)
                .kv_bool("a.bool", 1)
                .kv_string("a.str", "héllo")
                .kv_string_array("a.strs", {"x", "", "yz"})
                .kv_f32_array("a.floats", {1.5f, -2.0f})
                .kv_raw("a.i8", 1, Bytes{std::byte{0xff}})
                .kv_raw("a.f64", 12, [] {
                  Bytes v(8);
                  double d = 3.25;
                  std::memcpy(v.data(), &d, 8);
                  return v;
                }())
                .build();
  GgufFile g = parse(b);
  EXPECT_EQ(g.version, 3u);
  EXPECT_EQ(g.get_uint("a.u32"), 7u);
  EXPECT_EQ(g.get_uint("a.u64"), 1ull << 40);
  EXPECT_FLOAT_EQ(*g.get_float("a.f32"), 0.5f);
  EXPECT_EQ(g.get_bool("a.bool"), true);
  EXPECT_EQ(g.get_string("a.str"), "héllo");
  const GgufValue* strs = g.find("a.strs");
  ASSERT_NE(strs, nullptr);
  ASSERT_EQ(strs->strings.size(), 3u);
  EXPECT_EQ(strs->strings[2], "yz");
  const GgufValue* floats = g.find("a.floats");
  ASSERT_EQ(floats->count, 2u);
  EXPECT_EQ(floats->number_at(1), -2.0);
  EXPECT_EQ(g.find("a.i8")->i, -1);
  EXPECT_EQ(g.get_uint("a.i8"), std::nullopt);  // negative: not a uint
  EXPECT_EQ(*g.get_float("a.f64"), 3.25);
  EXPECT_EQ(g.find("missing"), nullptr);
  EXPECT_EQ(g.get_string("a.u32"), std::nullopt);  // wrong type
}

TEST(Gguf, TensorsAreViewsWithShapesOutermostFirst) {
  GgufBuilder gb;
  gb.kv_string("general.architecture", "llama").tensor("w", {64, 3}, 8).tensor("n", {64}, 0);
  Bytes b = gb.build();
  GgufFile g = parse(b);
  ASSERT_EQ(g.tensors.size(), 2u);
  const TensorView* w = g.find_tensor("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::Q8_0);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{3, 64}));
  EXPECT_EQ(w->nbytes, 3u * 2 * 34);
  EXPECT_EQ(w->data, b.data() + w->file_offset);  // in place, no copy
  EXPECT_EQ(w->file_offset % 32, 0u);
  EXPECT_EQ(g.data_offset % 32, 0u);
  EXPECT_EQ(g.find_tensor("n")->nbytes, 256u);
}

TEST(Gguf, HonoursDeclaredAlignment) {
  GgufBuilder gb;
  gb.alignment = 64;
  gb.kv_u32("general.alignment", 64).tensor("a", {8}, 0).tensor("b", {8}, 0);
  GgufFile g = parse(gb.build());
  EXPECT_EQ(g.alignment, 64u);
  EXPECT_EQ(g.find_tensor("b")->file_offset % 64, 0u);
}

TEST(Gguf, Version2IsRead) {
  GgufBuilder gb;
  gb.version = 2;
  gb.kv_u32("x", 1);
  EXPECT_EQ(parse(gb.build()).version, 2u);
}

TEST(Gguf, EveryCorpusFileIsRefusedWithAOneLineReason) {
  test::expect_all_refused(test::bad_gguf_files(), [](const test::Bytes& b, const std::string& n) { parse_gguf(b, n); });
}

TEST(Gguf, EveryPrefixOfAValidFileIsRefusedCleanly) {
  Bytes valid = test::tiny_llama_gguf();
  GgufFile whole = parse(valid);
  ASSERT_GT(whole.tensors.size(), 10u);
  // Any truncation must be an error, never a read past the end (ASan checks).
  for (size_t n = 0; n < valid.size(); n += (n < 4096 ? 1 : 997)) {
    Bytes cut(valid.begin(), valid.begin() + static_cast<long>(n));
    EXPECT_THROW(parse_gguf(cut, "cut.gguf"), FormatError) << n;
  }
}

}  // namespace
}  // namespace umi
