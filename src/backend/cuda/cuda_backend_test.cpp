// The CUDA backend's resource tests: run on the GPU machine
// (tools/device_backend_check.sh), skipped where no GPU is visible. Parity
// with transformers on every fixture is in model/model_test.cpp.
#include "backend/cuda/cuda_backend.h"

#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/schema_recognizer.h"
#include "model/convert.h"
#include "support/temp_dir.h"
#include "engine/sequence.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace umi {
namespace {

size_t device_free_bytes() {
  size_t free_bytes = 0, total = 0;
  EXPECT_EQ(cudaMemGetInfo(&free_bytes, &total), cudaSuccess);
  return free_bytes;
}

const std::string kBundled = std::string(UMI_SOURCE_DIR) + "/models/tiny-shakespeare";

// The seed projects' machines needed reboots after leaks: every load must
// give back all it took.
TEST(CudaBackend, LoadingAndUnloadingAHundredTimesReturnsDeviceAndPinnedMemory) {
  if (!device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device here";
  Pool pool({.limit = 1ull << 30});
  // The CUDA context's and the driver's graph memory grow on first use:
  // one full load and pass before counting.
  {
    Model warm(kBundled, pool, {.kv_dtype = DType::F16, .prefill_chunk = 64, .device = Device::cuda});
    Sequence seq(warm);
    seq.feed(std::vector<int32_t>{1, 2, 3, 4, 5});
    seq.feed(std::vector<int32_t>{6});
  }
  const size_t before = device_free_bytes();
  const uint64_t host_before = pool.stats().active;
  for (int i = 0; i < 100; ++i) {
    Model m(kBundled, pool, {.kv_dtype = DType::F16, .prefill_chunk = 64, .device = Device::cuda});
    // The upload ring's 96 MiB of pinned buffers went back once the weights were up.
    if (i == 0) EXPECT_LT(pool.stats().active - host_before, 8u << 20);
    Sequence seq(m);
    seq.feed(std::vector<int32_t>{1, 2, 3, 4, 5});
    seq.feed(std::vector<int32_t>{6});
  }
  EXPECT_EQ(device_free_bytes(), before);
  EXPECT_EQ(pool.stats().active, host_before);
}

TEST(CudaBackend, AThousandCancelledRequestsLeaveNoBlocksOrDeviceMemory) {
  if (!device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device here";
  Pool pool({.limit = 1ull << 30});
  Model m(kBundled, pool, {.kv_dtype = DType::F16, .prefill_chunk = 64, .max_batch = 16, .device = Device::cuda});
  Tokenizer tok = load_tokenizer(kBundled);
  Engine e(m, tok);
  Pool& device = m.kv_pool().memory();
  std::map<uint64_t, std::string> finish;
  RequestCallbacks cb{[](uint64_t, int32_t, std::string_view) {}, [&](const RequestOutput& o) { finish[o.id] = o.finish_reason; }};
  RequestOptions o;
  o.max_tokens = 200;
  o.sampling.temperature = 0;
  // The pass tables' buffer grows to the largest pass and is kept: warm up
  // with as many requests as the cancelled ones will run at once.
  RequestOptions short_run = o;
  short_run.max_tokens = 3;
  for (int i = 0; i < 16; ++i) e.submit(tok.encode("warm-up " + std::to_string(i), true), short_run, cb);
  e.run_until_idle();
  finish.clear();
  e.release_cached();
  device.release_cache();
  const uint64_t device_idle = device.stats().active;
  std::vector<uint64_t> ids;
  for (int i = 0; i < 1000; ++i) {
    ids.push_back(e.submit(tok.encode("ROMEO " + std::to_string(i), true), o, cb));
    if (i % 16 == 15) {
      e.step();
      e.step();
      for (uint64_t id : ids) e.cancel(id);
      ids.clear();
      e.step();
    }
  }
  for (uint64_t id : ids) e.cancel(id);
  e.run_until_idle();
  ASSERT_EQ(finish.size(), 1000u);
  for (const auto& [id, why] : finish) EXPECT_EQ(why, "cancelled") << id;
  EXPECT_EQ(m.kv_pool().in_use(), 0);
  e.release_cached();
  device.release_cache();
  EXPECT_EQ(device.stats().active_by_use[static_cast<size_t>(MemoryUse::kv_cache)], 0u);
  EXPECT_EQ(device.stats().active, device_idle);
}

double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) num += (a[i] - b[i]) * double(a[i] - b[i]), den += double(b[i]) * b[i];
  return std::sqrt(num / den);
}

// Chunks of 32 tokens or more go through cuBLAS on f16 copies of the
// weights (bf16 and float weights from 9 tokens, the last chunk of 22
// too); they must agree with the CPU's f32 products to the rounding of the
// activations to bf16 (8-bit mantissas: 5.8e-3 measured for qwen3-bf16
// with all three chunks there, session 24), not the O(1) a wrong product
// gives.
TEST(CudaBackend, PrefillOnTensorCoresMatchesTheCpu) {
  if (!device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device here";
  for (const char* name : {"qwen3-qknorm-bf16", "llama-gqa-untied-llama3rope-f32"}) {
    const std::string dir = std::string(UMI_SOURCE_DIR) + "/tests/fixtures/models/" + name;
    Pool pool({.limit = 1ull << 30});
    std::vector<int32_t> prompt;
    for (int i = 0; i < 150; ++i) prompt.push_back((i * 37 + 11) % 200);
    std::vector<std::vector<float>> logits;
    for (Device d : {Device::cpu, Device::cuda}) {
      Model m(dir, pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .threads = 2, .device = d});
      Sequence seq(m);
      logits.push_back(seq.feed(prompt));  // chunks of 64, 64 and 22 tokens
    }
    EXPECT_LT(rel_error(logits[1], logits[0]), 1e-2) << name;
  }
}

// Past 256 positions attention splits the keys across blocks and merges the
// partial softmax states (flash-decoding): prefill chunks and decode tokens
// at 700+ positions must match the CPU's single pass.
TEST(CudaBackend, SplitAttentionAtLongContextMatchesTheCpu) {
  if (!device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device here";
  const std::string dir = kBundled;  // 1,024 positions (the fixtures have 256)
  Pool pool({.limit = 1ull << 30});
  std::vector<int32_t> prompt;
  for (int i = 0; i < 700; ++i) prompt.push_back((i * 53 + 7) % 2000);
  std::vector<std::vector<float>> logits;
  for (Device d : {Device::cpu, Device::cuda}) {
    Model m(dir, pool, {.kv_dtype = DType::F32, .prefill_chunk = 64, .threads = 2, .device = d});
    Sequence seq(m);
    logits.push_back(seq.feed(prompt));
    for (int i = 0; i < 3; ++i) logits.push_back(seq.feed(std::vector<int32_t>{static_cast<int32_t>(17 + i)}));
  }
  // bf16 weights; prefill chunks run on f16 tensor cores: f16 rounding, not
  // the O(1) error a wrong merge of splits gives.
  for (size_t i = 0; i < 4; ++i) EXPECT_LT(rel_error(logits[4 + i], logits[i]), 5e-3) << "pass " << i;
}

// Quantized decode runs fused integer products (q, k, v in one launch; wo
// and down adding into the residual; gate, up and SwiGLU in one) and, from
// the second step of a shape on, replays the recorded CUDA graph. Both
// devices multiply the same q8 activations: the logits agree to what a
// flipped rounding in the activations' quantization moves, at every step
// (measured up to 2.2e-2 for Q5_K with the prompt on the tensor cores; a
// wrong product moves them by O(1)).
TEST(CudaBackend, QuantizedDecodeStepsMatchTheCpu) {
  if (!device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device here";
  test::TempDir tmp;
  // q4_k and q5_k files keep the (tied) output matrix at Q6_K, as
  // llama.cpp's do: those runs mix two K-quant types.
  // Q5_0, IQ4_NL and IQ4_XS run as Q8_0 on the device, Q3_K as Q6_K, Q4_1,
  // Q5_1 and Q2_K as f16 through the float products (f32 activations against
  // the CPU's q8 ones: the same bound).
  for (DType type : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q5_0, DType::Q4_1, DType::Q5_1, DType::IQ4_NL,
                     DType::IQ4_XS, DType::Q3_K, DType::Q2_K}) {
    const std::string gguf = tmp.file(std::string(to_string(type)) + ".gguf");
    convert_model(kBundled, gguf, {.type = type});
    Pool pool({.limit = 1ull << 30});
    std::vector<int32_t> prompt;
    for (int i = 0; i < 20; ++i) prompt.push_back((i * 53 + 7) % 2000);
    Model cpu(gguf, pool, {.kv_dtype = DType::F16, .prefill_chunk = 64, .threads = 2, .device = Device::cpu});
    Model gpu(gguf, pool, {.kv_dtype = DType::F16, .prefill_chunk = 64, .device = Device::cuda});
    Sequence a(cpu), b(gpu);
    std::vector<float> la = a.feed(prompt), lb = b.feed(prompt);
    int same_top = 0;
    const int steps = 40;
    for (int i = 0; i < steps; ++i) {
      EXPECT_LT(rel_error(lb, la), 3e-2) << to_string(type) << " step " << i;
      const auto top = [](const std::vector<float>& v) { return std::max_element(v.begin(), v.end()) - v.begin(); };
      same_top += top(la) == top(lb);
      const int32_t next = static_cast<int32_t>(top(la));
      la = a.feed(std::vector<int32_t>{next});
      lb = b.feed(std::vector<int32_t>{next});
    }
    EXPECT_GE(same_top, steps - 2) << to_string(type);
  }
}

// Top-k sampling on the device: the candidates come back instead of the
// row; with top-k off the token is drawn there (asking for logprobs brings
// the row). Same seeds, same batch shapes:
// the same tokens either way, and the pool back to its idle figure.
TEST(CudaBackend, SamplingFromDeviceCandidatesDrawsWhatTheRowDraws) {
  if (!device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device here";
  Pool pool({.limit = 1ull << 30});
  Model m(kBundled, pool, {.kv_dtype = DType::F16, .prefill_chunk = 64, .max_batch = 6, .device = Device::cuda});
  Tokenizer tok = load_tokenizer(kBundled);
  std::vector<std::vector<int32_t>> runs;
  for (int logprobs : {-1, 0}) {
    Engine e(m, tok);
    std::map<uint64_t, std::vector<int32_t>> tokens;
    RequestCallbacks cb{[&](uint64_t id, int32_t t, std::string_view) { tokens[id].push_back(t); }, {}};
    std::vector<uint64_t> ids;
    for (uint64_t seed : {1, 2, 3, 4, 5, 6}) {
      RequestOptions o;
      o.max_tokens = 40;
      o.sampling = {.temperature = 0.9f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .seed = seed};
      if (seed == 4) o.sampling = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = seed};  // drawn on the device
      if (seed == 5) o.sampling = {.temperature = 0.8f, .top_k = 0, .top_p = 0.9f, .min_p = 0.0f, .seed = seed};
      if (seed == 6) o.sampling = {.temperature = 1.1f, .top_k = 0, .top_p = 0.95f, .min_p = 0.05f, .seed = seed};
      o.logprobs = logprobs;
      ids.push_back(e.submit(tok.encode(seed % 3 == 1 ? "ROMEO:" : seed % 3 == 2 ? "JULIET:" : "KING HENRY:", true), o, cb));
    }
    e.run_until_idle();
    for (uint64_t id : ids) runs.push_back(tokens[id]);
  }
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(runs[i].size(), 40u);
    EXPECT_EQ(runs[i], runs[i + 6]) << "seed " << i + 1;
  }
}

// JSON outputs on the GPU: greedy and top-k rows are masked where they are
// (Backend::mask_logits) and only the token or the candidates come back;
// with logprobs the row comes to the host and is masked there. The same
// tokens both ways, and every output a prefix of a value of its schema.
TEST(CudaBackend, JsonMaskedOnTheDeviceDrawsWhatTheHostMaskDraws) {
  if (!device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device here";
  Pool pool({.limit = 1ull << 30});
  Model m(kBundled, pool, {.kv_dtype = DType::F16, .prefill_chunk = 64, .max_batch = 8, .device = Device::cuda});
  Tokenizer tok = load_tokenizer(kBundled);
  const auto schema = compile_json_schema(nlohmann::ordered_json::parse(
      R"({"type": "object", "properties": {"who": {"enum": ["ROMEO", "JULIET"]}, "n": {"type": "integer", "maximum": 99}}})"));
  Engine e(m, tok);
  std::map<uint64_t, std::vector<int32_t>> tokens;
  std::map<uint64_t, std::string> text;
  RequestCallbacks cb{[&](uint64_t id, int32_t t, std::string_view s) { tokens[id].push_back(t), text[id] += s; }, {}};
  std::vector<std::pair<uint64_t, uint64_t>> pairs;
  for (int i = 0; i < 6; ++i) {
    RequestOptions o;
    o.max_tokens = 60;
    o.sampling.temperature = 0;
    if (i % 2) o.json_schema = schema;
    else o.json_object = true;
    if (i >= 2) o.sampling = {.temperature = 0.8f, .top_k = 20, .top_p = 1.0f, .min_p = 0.0f, .seed = static_cast<uint64_t>(i)};
    const uint64_t device = e.submit(tok.encode(i % 3 ? "ROMEO:" : "JULIET:", true), o, cb);
    o.logprobs = 0;
    o.cache_salt = 1;
    pairs.emplace_back(device, e.submit(tok.encode(i % 3 ? "ROMEO:" : "JULIET:", true), o, cb));
  }
  e.run_until_idle();
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto [device, host] = pairs[i];
    EXPECT_EQ(tokens[device], tokens[host]) << i << ": " << text[device] << " | " << text[host];
    EXPECT_GT(tokens[device].size(), 3u);
    if (i % 2) {
      SchemaRecognizer r(*schema);
      EXPECT_TRUE(r.feed(text[device])) << text[device];
    } else {
      JsonRecognizer r;
      EXPECT_TRUE(r.feed(text[device])) << text[device];
    }
  }
}

// A 128-token chunk of a K-quant file goes through cuBLAS on f16 copies of
// the weights (dequantized a slice at a time), the 22 after it through the
// integer products: the last logits agree with the CPU's (which multiplies
// q8 activations throughout) to what the activations' rounding moves.
TEST(CudaBackend, KQuantPrefillMatchesTheCpu) {
  if (!device_available(Device::cuda)) GTEST_SKIP() << "no CUDA device here";
  test::TempDir tmp;
  for (DType type : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const std::string gguf = tmp.file(std::string(to_string(type)) + ".gguf");
    convert_model(kBundled, gguf, {.type = type});
    Pool pool({.limit = 1ull << 30});
    std::vector<int32_t> prompt;
    for (int i = 0; i < 150; ++i) prompt.push_back((i * 41 + 3) % 2000);
    std::vector<std::vector<float>> logits;
    for (Device d : {Device::cpu, Device::cuda}) {
      Model m(gguf, pool, {.kv_dtype = DType::F16, .prefill_chunk = 128, .threads = 2, .device = d});
      Sequence seq(m);
      logits.push_back(seq.feed(prompt));
    }
    EXPECT_LT(rel_error(logits[1], logits[0]), 3e-2) << to_string(type);
    const auto top = [](const std::vector<float>& v) { return std::max_element(v.begin(), v.end()) - v.begin(); };
    EXPECT_EQ(top(logits[1]), top(logits[0])) << to_string(type);
  }
}

}  // namespace
}  // namespace umi
