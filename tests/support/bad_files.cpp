#include "support/bad_files.h"

#include <cstring>

namespace umi::test {

namespace {

constexpr uint32_t F32 = 0, Q4_0 = 2;

GgufBuilder base() {
  GgufBuilder g;
  g.kv_string("general.architecture", "llama");
  return g;
}

Bytes u64_bytes(uint64_t v) {
  Bytes b(8);
  std::memcpy(b.data(), &v, 8);
  return b;
}

}  // namespace

std::vector<BadFile> bad_gguf_files() {
  std::vector<BadFile> out;
  auto add = [&](std::string name, Bytes b, std::string expect) {
    out.push_back({std::move(name), std::move(b), std::move(expect)});
  };
  Bytes valid = base().tensor("a", {32, 2}, F32).build();

  add("empty.gguf", {}, "truncated");
  add("three-bytes.gguf", Bytes(valid.begin(), valid.begin() + 3), "truncated");
  {
    GgufBuilder g = base();
    g.magic = 0x58554747;  // "GGUX"
    add("bad-magic.gguf", g.build(), "not a GGUF file");
  }
  {
    GgufBuilder g = base();
    g.version = 1;
    add("version-1.gguf", g.build(), "version 1 is not supported");
  }
  {
    GgufBuilder g = base();
    g.version = 4;
    add("version-4.gguf", g.build(), "unsupported GGUF version 4");
  }
  {
    GgufBuilder g = base();
    g.version = 0x03000000;
    add("big-endian.gguf", g.build(), "big-endian");
  }
  {
    GgufBuilder g = base();
    g.n_kv_override = 1ull << 60;
    add("n-kv-absurd.gguf", g.build(), "n_kv");
  }
  {
    GgufBuilder g = base();
    g.n_tensors_override = 1ull << 62;
    add("n-tensors-absurd.gguf", g.build(), "n_tensors");
  }
  add("header-only-truncated.gguf", Bytes(valid.begin(), valid.begin() + 30), "truncated");
  {
    // A key whose length runs past the end of the file.
    Bytes b = base().build();
    Bytes tail = u64_bytes(1ull << 40);
    b.resize(24);  // header only, then a bogus key length
    b.insert(b.end(), tail.begin(), tail.end());
    b.resize(b.size() + 16);  // enough bytes that one entry could fit
    std::memcpy(b.data() + 16, "\x01\0\0\0\0\0\0\0", 8);  // n_kv = 1
    add("key-length-past-end.gguf", b, "string length");
  }
  add("empty-key.gguf", GgufBuilder().kv_u32("", 1).build(), "empty key");
  add("unknown-value-type.gguf", GgufBuilder().kv_raw("x", 99, Bytes(8)).build(), "unknown value type 99");
  add("duplicate-key.gguf", base().kv_u32("x", 1).kv_u32("x", 2).build(), "duplicate key");
  {
    Bytes v = u64_bytes(6);  // element type f32 (first 4 bytes)...
    v.resize(4);
    Bytes count = u64_bytes(1ull << 58);  // ...and far more elements than bytes
    v.insert(v.end(), count.begin(), count.end());
    add("array-count-absurd.gguf", GgufBuilder().kv_raw("arr", 9, v).build(), "cannot fit");
  }
  {
    // Arrays nested five deep.
    Bytes v;
    for (int i = 0; i < 5; ++i) {
      Bytes t(4);
      uint32_t arr = 9;
      std::memcpy(t.data(), &arr, 4);
      Bytes n = u64_bytes(1);
      v.insert(v.end(), t.begin(), t.end());
      v.insert(v.end(), n.begin(), n.end());
    }
    add("arrays-too-deep.gguf", GgufBuilder().kv_raw("deep", 9, v).build(), "nested deeper");
  }
  add("bool-is-2.gguf", GgufBuilder().kv_bool("b", 2).build(), "neither 0 nor 1");
  add("alignment-not-power-of-two.gguf", base().kv_u32("general.alignment", 48).build(), "not a power of two");
  add("alignment-zero.gguf", base().kv_u32("general.alignment", 0).build(), "not a power of two");
  add("alignment-wrong-type.gguf", base().kv_u64("general.alignment", 32).build(), "must be a u32");
  add("duplicate-tensor.gguf", base().tensor("w", {32}, F32).tensor("w", {32}, F32).build(), "duplicate tensor name");
  add("n-dims-5.gguf", base().tensor("w", {1, 1, 1, 1, 32}, F32).build(), "n_dims 5");
  add("dim-zero.gguf", base().tensor("w", {32, 0}, F32).build(), "dimension 1 is 0");
  add("elements-overflow.gguf", base().tensor("w", {1ull << 32, 1ull << 32}, F32, 0, 64).build(), "overflows");
  add("unknown-ggml-type.gguf", base().tensor("w", {32}, 99, 0, 64).build(), "unsupported ggml type 99");
  add("q4-row-not-block.gguf", base().tensor("w", {48, 2}, Q4_0, 0, 64).build(), "block size 32");
  add("tensor-past-end.gguf", base().tensor("w", {32}, F32, 1ull << 30, 128).build(), "outside the file");
  add("tensor-overlap.gguf", base().tensor("a", {64}, F32, 0).tensor("b", {64}, F32, 128).build(), "overlaps");
  add("tensor-misaligned.gguf", base().tensor("a", {32}, F32, 8).build(), "not a multiple of the alignment");
  {
    Bytes b = base().tensor("a", {1024}, F32).build();
    b.resize(b.size() - 100);
    add("data-truncated.gguf", b, "outside the file");
  }
  {
    Bytes b = base().tensor("a", {1024}, F32).tensor("bb", {1024}, F32).build();
    b.resize(90);  // inside the tensor infos
    add("infos-truncated.gguf", b, "truncated");
  }
  return out;
}

std::vector<BadFile> bad_safetensors_files() {
  std::vector<BadFile> out;
  auto add = [&](std::string name, Bytes b, std::string expect) {
    out.push_back({std::move(name), std::move(b), std::move(expect)});
  };
  auto raw = [](const std::string& header, uint64_t data = 64) { return build_safetensors_raw(header, pattern_bytes(data)); };
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]})";

  add("empty.safetensors", {}, "truncated");
  {
    Bytes b = u64_bytes(1000);
    b.push_back(std::byte{'{'});
    add("header-past-end.safetensors", b, "larger than the file");
  }
  add("header-over-100mb.safetensors", u64_bytes(100'000'001), "100 MB");
  add("invalid-json.safetensors", raw("{\"w\":"), "invalid JSON");
  add("non-utf8.safetensors", raw("{\"w\xff\xfe\":{}}"), "UTF-8");
  add("number-overflow.safetensors", raw(R"({"w":3E3333333166666666})"), "number overflow");
  add("not-object.safetensors", raw("[1,2,3]"), "not a JSON object");
  add("duplicate-name.safetensors", raw("{" + ok_entry + "," + ok_entry + "}"), "duplicate key");
  add("unknown-dtype.safetensors", raw(R"({"w":{"dtype":"F7","shape":[4],"data_offsets":[0,4]}})"), "unsupported dtype");
  add("negative-shape.safetensors", raw(R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})"), "non-negative");
  add("offsets-reversed.safetensors", raw(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}})"), "begin 16 > end 0");
  add("offsets-past-end.safetensors", raw(R"({"w":{"dtype":"F32","shape":[64],"data_offsets":[0,256]}})"), "outside");
  add("shape-size-mismatch.safetensors", raw(R"({"w":{"dtype":"F32","shape":[4,5],"data_offsets":[0,64]}})"), "needs 80 bytes");
  add("elements-overflow.safetensors",
      raw(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,64]}})"), "overflows");
  add("overlap.safetensors",
      raw(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},"b":{"dtype":"F32","shape":[8],"data_offsets":[16,48]}})"),
      "overlaps");
  add("missing-offsets.safetensors", raw(R"({"w":{"dtype":"F32","shape":[4]}})"), "data_offsets");
  add("too-deep.safetensors", raw(std::string(100, '[') + std::string(100, ']')), "nested deeper");
  add("metadata-not-string.safetensors", raw(R"({"__metadata__":{"format":1}})"), "not a string");
  add("entry-not-object.safetensors", raw(R"({"w":5})"), "not an object");
  return out;
}

}  // namespace umi::test
