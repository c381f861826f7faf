#include "format/dtype.h"

#include <array>
#include <cctype>
#include <string>

#include "core/checked.h"

namespace umi {

namespace {

struct Row {
  DType type;
  DTypeInfo info;
  int ggml_id;               // -1: none
  std::string_view st_name;  // safetensors name, empty: none
};

// Block layouts from ggml-common.h: e.g. block_q4_K is 2 f16 scales, 12 bytes of
// packed 6-bit sub-block scales and 128 bytes of nibbles for 256 values.
constexpr std::array kRows = {
    Row{DType::F32, {"f32", 1, 4, false}, 0, "F32"},
    Row{DType::F16, {"f16", 1, 2, false}, 1, "F16"},
    Row{DType::BF16, {"bf16", 1, 2, false}, 30, "BF16"},
    Row{DType::F64, {"f64", 1, 8, false}, 28, "F64"},
    Row{DType::I8, {"i8", 1, 1, false}, 24, "I8"},
    Row{DType::I16, {"i16", 1, 2, false}, 25, "I16"},
    Row{DType::I32, {"i32", 1, 4, false}, 26, "I32"},
    Row{DType::I64, {"i64", 1, 8, false}, 27, "I64"},
    Row{DType::U8, {"u8", 1, 1, false}, -1, "U8"},
    Row{DType::BOOL, {"bool", 1, 1, false}, -1, "BOOL"},
    Row{DType::Q4_0, {"q4_0", 32, 18, true}, 2, ""},
    Row{DType::Q4_1, {"q4_1", 32, 20, true}, 3, ""},
    Row{DType::Q5_0, {"q5_0", 32, 22, true}, 6, ""},
    Row{DType::Q5_1, {"q5_1", 32, 24, true}, 7, ""},
    Row{DType::Q8_0, {"q8_0", 32, 34, true}, 8, ""},
    Row{DType::Q8_1, {"q8_1", 32, 36, true}, 9, ""},
    Row{DType::Q2_K, {"q2_k", 256, 84, true}, 10, ""},
    Row{DType::Q3_K, {"q3_k", 256, 110, true}, 11, ""},
    Row{DType::Q4_K, {"q4_k", 256, 144, true}, 12, ""},
    Row{DType::Q5_K, {"q5_k", 256, 176, true}, 13, ""},
    Row{DType::Q6_K, {"q6_k", 256, 210, true}, 14, ""},
    Row{DType::Q8_K, {"q8_k", 256, 292, true}, 15, ""},
    Row{DType::IQ4_NL, {"iq4_nl", 32, 18, true}, 20, ""},
    Row{DType::IQ4_XS, {"iq4_xs", 256, 136, true}, 23, ""},
};

const Row& row(DType t) {
  for (const Row& r : kRows)
    if (r.type == t) return r;
  return kRows[0];  // unreachable: every enumerator has a row
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

const DTypeInfo& dtype_info(DType t) { return row(t).info; }

std::optional<uint64_t> dtype_bytes(DType t, uint64_t n_elements) {
  const DTypeInfo& info = dtype_info(t);
  if (n_elements % info.block_elems != 0) return std::nullopt;
  return checked_mul(n_elements / info.block_elems, info.block_bytes);
}

std::optional<DType> dtype_from_name(std::string_view name) {
  std::string l = lower(name);
  for (const Row& r : kRows)
    if (r.info.name == l) return r.type;
  return std::nullopt;
}

std::optional<DType> dtype_from_ggml(uint32_t id) {
  for (const Row& r : kRows)
    if (r.ggml_id >= 0 && static_cast<uint32_t>(r.ggml_id) == id) return r.type;
  return std::nullopt;
}

uint32_t ggml_type_id(DType t) { return static_cast<uint32_t>(row(t).ggml_id); }

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  for (const Row& r : kRows)
    if (!r.st_name.empty() && r.st_name == name) return r.type;
  return std::nullopt;
}

}  // namespace umi
