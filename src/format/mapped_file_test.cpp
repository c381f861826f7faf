#include "format/mapped_file.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/error.h"
#include "support/file_builders.h"
#include "support/temp_dir.h"

namespace umi {
namespace {

TEST(MappedFile, MapsTheBytesOfAFile) {
  test::TempDir dir;
  test::Bytes content = test::pattern_bytes(10000, 9);
  test::write_file(dir.file("f"), content);
  MappedFile f = MappedFile::open(dir.file("f"));
  ASSERT_EQ(f.size(), content.size());
  EXPECT_EQ(std::memcmp(f.bytes().data(), content.data(), content.size()), 0);
  EXPECT_EQ(f.path(), dir.file("f"));
  // Hints are best effort and must accept any range, even past the end.
  f.advise(Advice::willneed);
  f.advise(Advice::sequential, 100, 5000);
  f.advise(Advice::random, 9999, 1ull << 40);
  f.advise(Advice::normal, 1ull << 40);
  std::string why = f.lock();
  EXPECT_TRUE(why.empty() ? f.locked() : !f.locked()) << why;

  MappedFile moved = std::move(f);
  EXPECT_EQ(moved.size(), content.size());
  EXPECT_EQ(f.size(), 0u);
  EXPECT_TRUE(f.bytes().empty());
}

// Files of 2 MiB and more map at a 2 MiB boundary (one page-table entry per
// 2 MiB where the page cache has large folios), with every byte in place;
// the reservation's slack is given back, and several such maps coexist.
TEST(MappedFile, LargeFilesMapAtTwoMebibyteBoundaries) {
  test::TempDir dir;
  test::Bytes content = test::pattern_bytes((3u << 20) + 123, 7);
  test::write_file(dir.file("big"), content);
  std::vector<MappedFile> maps;
  for (int i = 0; i < 3; ++i) {
    maps.push_back(MappedFile::open(dir.file("big")));
    const MappedFile& f = maps.back();
    ASSERT_EQ(f.size(), content.size());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f.bytes().data()) % (2u << 20), 0u);
    EXPECT_EQ(std::memcmp(f.bytes().data(), content.data(), content.size()), 0);
  }
}

TEST(MappedFile, EmptyFilesMapToAnEmptySpan) {
  test::TempDir dir;
  test::write_file(dir.file("empty"), {});
  MappedFile f = MappedFile::open(dir.file("empty"));
  EXPECT_EQ(f.size(), 0u);
  EXPECT_TRUE(f.bytes().empty());
}

TEST(MappedFile, RefusesMissingFilesAndFolders) {
  test::TempDir dir;
  try {
    MappedFile::open(dir.file("missing"));
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }
  try {
    MappedFile::open(dir.path().string());
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace umi
