// Asserts that a reader refuses every file of a bad-file corpus with a
// one-line FormatError that starts with the file's name and gives the reason.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "support/bad_files.h"

namespace umi::test {

template <class Parse>
void expect_all_refused(const std::vector<BadFile>& corpus, Parse parse) {
  for (const BadFile& f : corpus) {
    SCOPED_TRACE(f.name);
    try {
      parse(f.bytes, f.name);
      ADD_FAILURE() << f.name << " was accepted";
    } catch (const FormatError& e) {
      std::string msg = e.what();
      EXPECT_EQ(msg.rfind(f.name + ": ", 0), 0u) << msg;
      EXPECT_NE(msg.find(f.expect), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos);
    }
  }
}

}  // namespace umi::test
