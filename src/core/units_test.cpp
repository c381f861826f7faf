#include "core/units.h"

#include <gtest/gtest.h>

namespace umi {
namespace {

TEST(Units, ParsesSizes) {
  EXPECT_EQ(parse_bytes("12GiB"), 12ull << 30);
  EXPECT_EQ(parse_bytes("12G"), 12ull << 30);
  EXPECT_EQ(parse_bytes("512 mib"), 512ull << 20);
  EXPECT_EQ(parse_bytes("1.5GB"), 1'500'000'000ull);
  EXPECT_EQ(parse_bytes("4096"), 4096u);
  EXPECT_EQ(parse_bytes("192GB"), 192'000'000'000ull);
  for (const char* bad : {"", "GiB", "12XB", "-1G", "1..2G", "99999999999999999999999", "20000000000T"})
    EXPECT_EQ(parse_bytes(bad), std::nullopt) << bad;
}

TEST(Units, ParsesDurations) {
  EXPECT_EQ(parse_seconds("30s"), 30.0);
  EXPECT_EQ(parse_seconds("5m"), 300.0);
  EXPECT_EQ(parse_seconds("1h"), 3600.0);
  EXPECT_EQ(parse_seconds("250ms"), 0.25);
  EXPECT_EQ(parse_seconds("90"), 90.0);
  EXPECT_EQ(parse_seconds("0"), 0.0);
  for (const char* bad : {"", "s", "-1", "5x", "1..2s", "1e99", "99999999999h"}) EXPECT_EQ(parse_seconds(bad), std::nullopt) << bad;
}

TEST(Units, FormatsSizes) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(12ull << 30), "12.00 GiB");
}

}  // namespace
}  // namespace umi
