#include "format/tensor_view.h"

#include <algorithm>

#include "core/error.h"

namespace umi {

uint64_t TensorView::n_elements() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);  // readers reject overflow
  return n;
}

std::string TensorView::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

void check_no_overlap(std::vector<const TensorView*>& tensors, std::string_view file) {
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorView* a, const TensorView* b) { return a->file_offset < b->file_offset; });
  for (size_t i = 1; i < tensors.size(); ++i) {
    const TensorView* prev = tensors[i - 1];
    const TensorView* cur = tensors[i];
    if (prev->nbytes && cur->nbytes && cur->file_offset < prev->file_offset + prev->nbytes)
      throw FormatError(file, "tensor '" + cur->name + "'",
                        "overlaps tensor '" + prev->name + "' (bytes " + std::to_string(cur->file_offset) +
                            " < " + std::to_string(prev->file_offset + prev->nbytes) + ")");
  }
}

}  // namespace umi
