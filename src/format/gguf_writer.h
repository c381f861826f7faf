// Writes a GGUF v3 file: metadata, tensor infos, aligned tensor data. Tensor
// data is produced row-range by row-range by a callback and streamed to the
// file, so converting a model never holds a whole tensor in memory.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "format/dtype.h"
#include "format/gguf.h"

namespace umi {

class GgufWriter {
 public:
  void add_u32(const std::string& key, uint32_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_strings(const std::string& key, const std::vector<std::string>& v);
  void add_f32s(const std::string& key, const std::vector<float>& v);
  void add_i32s(const std::string& key, const std::vector<int32_t>& v);
  // Any value read from another GGUF file, as it was (requantizing copies metadata).
  void add_value(const std::string& key, const GgufValue& v);

  // Fills rows [begin, end) of the tensor, already encoded in `dtype`, into `out`.
  using RowWriter = std::function<void(int64_t begin, int64_t end, std::byte* out)>;
  // shape: outermost first ({rows, cols} for a matrix).
  void add_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, RowWriter rows);

  // progress(bytes_written, bytes_total) is called as data is written.
  void write(const std::string& path, const std::function<void(uint64_t, uint64_t)>& progress = {}) const;

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    RowWriter rows;
    uint64_t bytes, offset;
  };
  std::vector<std::vector<std::byte>> kvs_;
  std::vector<Tensor> tensors_;
  uint64_t data_bytes_ = 0;
};

}  // namespace umi
