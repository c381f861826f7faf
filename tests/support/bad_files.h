// The corpus of malformed model files: each broken in one way, with a
// substring its error message must contain.
#pragma once

#include <string>
#include <vector>

#include "support/file_builders.h"

namespace umi::test {

struct BadFile {
  std::string name;    // file name in the corpus, also the test's label
  Bytes bytes;
  std::string expect;  // must appear in the one-line error
};

std::vector<BadFile> bad_gguf_files();
std::vector<BadFile> bad_safetensors_files();

}  // namespace umi::test
