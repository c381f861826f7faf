// Reading test fixtures and comparing numbers, shared by the tests.
#pragma once

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace umi::test {

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string source_path(const std::string& relative) { return std::string(UMI_SOURCE_DIR) + "/" + relative; }

// ||got - want|| / ||want||
inline double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += std::pow(static_cast<double>(got[i]) - want[i], 2);
    den += std::pow(static_cast<double>(want[i]), 2);
  }
  return std::sqrt(num / den);
}

}  // namespace umi::test
