// Views of a model's tensors where a backend reads them: the mapped file for
// the CPU, the backend's own copy for a device. Views never own memory.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/dtype.h"

namespace umi {

// A [rows, cols] matrix, row-major, rows packed, in its file dtype.
struct MatrixView {
  DType dtype = DType::F32;
  const std::byte* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_bytes() const;
  size_t bytes() const { return row_bytes() * static_cast<size_t>(rows); }
};

// A vector (norm weight, bias) in its file dtype (f32, f16 or bf16).
struct VectorView {
  DType dtype = DType::F32;
  const std::byte* data = nullptr;
  int64_t size = 0;
  // Element i as a float: host memory only.
  float at(int64_t i) const;
  size_t bytes() const;
  explicit operator bool() const { return data != nullptr; }
};

// One of several products of the same input (Backend::matmuls, the CPU's
// matmuls): y = w x.
struct MatrixProduct {
  const MatrixView& w;
  float* y;
};

}  // namespace umi
