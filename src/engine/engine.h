// The engine: many requests on one model, continuously batched. It is what
// the CLI's bench and the server use.
//
// Each step() reads as schedule -> run -> postprocess:
//   schedule    decode tokens of running requests first (oldest first), then
//               prefill chunks, then new requests admitted while the step's
//               token budget (the model's prefill chunk) and batch slots last
//               and their prompt's KV (after prefix-cache hits) fits;
//   run         one forward pass over all of it (each weight read once);
//   postprocess sample, stream text, publish full KV blocks to the prefix
//               cache, finish requests and give their blocks back.
// When a running request needs a KV block the budget cannot give (and the
// owner's free_memory hook frees nothing), the youngest running request is
// preempted: its blocks are released and it is recomputed later from its
// prompt and the tokens already streamed (the prefix cache usually still
// holds them). Nothing exceeds the memory limit.
//
// Thread-safety: submit(), cancel() and stats() may be called from any
// thread; step() from one thread at a time. Callbacks run inside step().
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/error.h"
#include "engine/json_mask.h"
#include "engine/json_schema.h"
#include "engine/logprobs.h"
#include "engine/sampler.h"
#include "memory/system_memory.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace umi {

struct RequestOptions {
  int max_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_tokens;  // EOS and end-of-turn tokens
  uint64_t cache_salt = 0;           // requests with different salts share no cached KV
  // -1: none; k >= 0: each generated token's log-probability and the k most
  // likely alternatives, of the model's raw distribution (see logprobs.h).
  int logprobs = -1;
  // The output is one JSON object (OpenAI's response_format json_object):
  // tokens that cannot continue it are never drawn, and the request ends
  // ("stop") when the object closes (json_recognizer.h).
  bool json_object = false;
  // The output is one value of this schema (response_format json_schema;
  // json_schema.h), in the same way. Takes precedence over json_object.
  std::shared_ptr<const JsonSchema> json_schema;
};

struct RequestOutput {
  uint64_t id = 0;
  std::string finish_reason;  // "stop", "length", "cancelled", "error"
  std::string error;          // for "error": why (e.g. the prompt cannot fit the memory limit)
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens whose KV came from the prefix cache
  int64_t completion_tokens = 0;
  int preemptions = 0;
  std::string tail;  // text held back at the end (the start of a stop string that never completed)
  double first_token_seconds = 0;  // from submit
  double total_seconds = 0;
};

struct RequestCallbacks {
  // Every generated token, with the text it makes ready (may be empty while
  // a UTF-8 character or a possible stop string is incomplete).
  std::function<void(uint64_t id, int32_t token, std::string_view text)> on_token;
  // Exactly once per accepted request.
  std::function<void(const RequestOutput&)> on_done;
  // With RequestOptions::logprobs >= 0: every generated token's
  // log-probabilities, just before its on_token.
  std::function<void(uint64_t id, const TokenLogprobs&)> on_logprobs = nullptr;
};

struct EngineOptions {
  int64_t max_waiting = 256;  // requests queued beyond this are refused (EngineBusy)
  // Below this much available system memory (Linux MemAvailable), cached KV
  // blocks and pool buffers are given back and admission pauses. 0: off.
  uint64_t low_memory_bytes = 0;
  // How available memory is measured (tests substitute their own).
  std::function<std::optional<uint64_t>()> available_memory = available_memory_bytes;
  // Asked on the step thread when the KV cache cannot grow (a request would
  // wait, be refused, or preempt another): free memory held outside this
  // engine (the server unloads an idle model) and say whether any went, so
  // that the engine tries again first. Must not wait on this engine. Null:
  // nothing outside to free.
  std::function<bool()> free_memory = nullptr;
};

struct EngineStats {
  int64_t waiting = 0, running = 0;
  int64_t kv_blocks_in_use = 0, kv_blocks_cached = 0;
  int64_t prefix_hits = 0;  // blocks found in the prefix cache
  int64_t finished = 0, preemptions = 0, steps = 0;
  int64_t prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0;
  bool memory_pressure = false;
};

// The queue is full: try later (the server answers 503 with Retry-After).
struct EngineBusy : Error {
  using Error::Error;
};

class Engine {
 public:
  Engine(Model& model, const Tokenizer& tok, EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Throws InputError for one that can never run (empty,
  // longer than the context, bad sampling parameters), EngineBusy when the
  // queue is full.
  uint64_t submit(std::vector<int32_t> prompt, RequestOptions options, RequestCallbacks callbacks);
  // Takes effect at the next step: the request's blocks are freed and its
  // on_done says "cancelled". Unknown or finished ids are ignored.
  void cancel(uint64_t id);
  // Cancels every request queued or running (a server's shutdown deadline).
  void cancel_all();
  // Gives back, at the next step, what is held only for reuse: cached
  // prefix-KV blocks and the pool's freed buffers (another model needs room).
  void release_cached();

  // One step; returns false when there was nothing it could do (idle, or
  // requests waiting while memory pressure pauses admission).
  bool step();
  void run_until_idle();

  EngineStats stats() const;
  Model& model() { return model_; }

 private:
  struct Request;
  void take_incoming();
  void schedule(std::vector<Request*>& batch, std::vector<int64_t>& counts);
  bool admit(Request& r, int64_t budget);
  bool grow(Request& r, int64_t tokens);
  void preempt(Request& r);
  void postprocess(const std::vector<Request*>& batch, const std::vector<int64_t>& counts);
  void publish_full_blocks(Request& r);
  void finish(Request& r, std::string reason, std::string error = {});
  const JsonVocabulary& json_vocabulary();  // made at the first JSON request (step thread)
  const uint32_t* allowed_tokens(Request& r);
  void check_memory_pressure();

  Model& model_;
  const Tokenizer& tok_;
  EngineOptions options_;
  Buffer logits_;  // [max_batch, vocab], from the pool
  Buffer raw_row_;  // [vocab]: one row before sampling changes it, for logprobs
  // [max_batch]: the tokens the backend picked for greedy requests, the
  // candidates it selected for top-k sampled ones (1 KB a row: bookkeeping,
  // like the requests' token lists, not in the pool) and the draws it made
  // for those sampled from the whole row.
  std::vector<int32_t> greedy_;
  std::vector<TopK> top_k_;
  std::vector<TokenDraw> draws_;
  std::unique_ptr<JsonVocabulary> json_vocabulary_;  // for JSON outputs, made at the first such request (step thread)

  mutable std::mutex mu_;  // guards incoming_, cancelled_, stats_, next_id_
  std::vector<std::unique_ptr<Request>> incoming_;
  std::unordered_set<uint64_t> cancelled_;
  bool cancel_all_ = false, release_cached_ = false;
  EngineStats stats_;
  uint64_t next_id_ = 1;

  // Step thread only.
  std::deque<std::unique_ptr<Request>> waiting_;
  std::vector<std::unique_ptr<Request>> running_;  // oldest admission first
  bool pressure_ = false;
};

}  // namespace umi
