// A tensor inside a mapped model file: metadata plus a pointer into the
// mapping. Views never own or copy data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "format/dtype.h"

namespace umi {

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  // Outermost dimension first, as in PyTorch: a linear layer's weight is
  // {out_features, in_features} whichever file it came from (GGUF lists its
  // dimensions innermost first; the reader reverses them).
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  uint64_t nbytes = 0;
  uint64_t file_offset = 0;  // absolute byte offset in its file
  uint32_t file_index = 0;   // which of the model's files holds it

  uint64_t n_elements() const;
  std::string shape_string() const;  // "[4096, 128256]"
};

// Checks that no two tensors of one file share a byte; sorts `tensors` by
// offset as a side effect. Throws FormatError naming both tensors.
void check_no_overlap(std::vector<const TensorView*>& tensors, std::string_view file);

}  // namespace umi
