#include "engine/engine.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/units.h"
#include "engine/json_constraint.h"
#include "engine/text_stream.h"
#include "memory/system_memory.h"
#include "tokenizer/token_bytes.h"

namespace umi {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
// A JSON output's mask, on the backend or on the host, left no token.
constexpr const char* kNoJsonToken = "no token of the vocabulary can continue the JSON output";
}  // namespace

struct Engine::Request {
  Request(uint64_t id_, std::vector<int32_t> prompt, RequestOptions o_, RequestCallbacks cb_, KvBlockPool& pool,
          const Tokenizer& tok)
      : id(id_),
        o(std::move(o_)),
        cb(std::move(cb_)),
        tokens(std::move(prompt)),
        prompt_len(static_cast<int64_t>(tokens.size())),
        kv(pool),
        sampler(o.sampling),
        stream(tok, o.stop_strings),
        json(o.json_object, o.json_schema),
        chain(o.cache_salt) {}

  int64_t pending() const { return static_cast<int64_t>(tokens.size()) - computed; }

  uint64_t id;
  RequestOptions o;
  RequestCallbacks cb;
  std::vector<int32_t> tokens;  // the prompt, then every generated token
  int64_t prompt_len;
  int64_t computed = 0;         // tokens whose K and V are in `kv`
  int64_t generated = 0;
  SequenceKv kv;
  Sampler sampler;
  TextStream stream;
  JsonConstraint json;  // with o.json_object or o.json_schema: the output so far
  std::vector<uint32_t> allowed;  // this step's tokens that may come (a bit each), when the backend masks
  int64_t allowed_count = 0;      // how many
  int64_t published = 0;  // leading full blocks published to the prefix cache
  uint64_t chain;         // hash of the last published block (first parent: the salt)
  Clock::time_point submitted = Clock::now();
  double first_token = 0;
  int64_t cached_tokens = 0;
  int preemptions = 0;
  bool done = false;
  float* logits = nullptr;    // this step's row, when it samples from logits
  int32_t* greedy = nullptr;  // or its token, when the backend picked it (greedy)
  TopK* top = nullptr;        // or its best candidates, when the backend selected them (top-k)
  TokenDraw* draw = nullptr;  // or its token, when the backend drew it from the whole row (top-k off)
};

Engine::Engine(Model& model, const Tokenizer& tok, EngineOptions options)
    : model_(model),
      tok_(tok),
      options_(options),
      logits_(model.pool().allocate(static_cast<size_t>(model.options().max_batch * model.config().vocab_size) * sizeof(float),
                                    MemoryUse::activations, "engine logits")),
      raw_row_(model.pool().allocate(static_cast<size_t>(model.config().vocab_size) * sizeof(float), MemoryUse::activations,
                                     "logprobs row")),
      greedy_(static_cast<size_t>(model.options().max_batch)),
      top_k_(static_cast<size_t>(model.options().max_batch)),
      draws_(static_cast<size_t>(model.options().max_batch)) {
  if (options_.max_waiting < 0) throw InputError("max waiting must be >= 0");
}

Engine::~Engine() {
  // Whatever is still queued or running ends here, blocks returned.
  take_incoming();
  while (!running_.empty()) finish(*running_.back(), "cancelled");
  while (!waiting_.empty()) finish(*waiting_.back(), "cancelled");
}

uint64_t Engine::submit(std::vector<int32_t> prompt, RequestOptions o, RequestCallbacks cb) {
  const ModelConfig& c = model_.config();
  if (prompt.empty()) throw InputError("the prompt is empty");
  for (int32_t id : prompt)
    if (id < 0 || id >= c.vocab_size)
      throw InputError("token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(c.vocab_size - 1) + ")");
  if (static_cast<int64_t>(prompt.size()) >= c.max_context)
    throw InputError("the prompt has " + std::to_string(prompt.size()) + " tokens; the model's context is " + std::to_string(c.max_context));
  if (o.max_tokens < 0) throw InputError("max tokens must be >= 0");
  if (o.logprobs < -1 || o.logprobs > 20) throw InputError("logprobs must be between 0 and 20");
  std::lock_guard lock(mu_);
  if (static_cast<int64_t>(incoming_.size()) + stats_.waiting >= options_.max_waiting)
    throw EngineBusy("the request queue is full (" + std::to_string(options_.max_waiting) + " waiting)");
  const uint64_t id = next_id_++;
  // Constructing checks the sampling parameters and stop strings.
  incoming_.push_back(std::make_unique<Request>(id, std::move(prompt), std::move(o), std::move(cb), model_.kv_pool(), tok_));
  return id;
}

void Engine::cancel(uint64_t id) {
  std::lock_guard lock(mu_);
  cancelled_.insert(id);
}

void Engine::cancel_all() {
  std::lock_guard lock(mu_);
  cancel_all_ = true;
}

void Engine::release_cached() {
  std::lock_guard lock(mu_);
  release_cached_ = true;
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mu_);
  EngineStats s = stats_;
  s.waiting += static_cast<int64_t>(incoming_.size());
  return s;
}

void Engine::take_incoming() {
  std::vector<std::unique_ptr<Request>> incoming;
  std::unordered_set<uint64_t> cancelled;
  bool all = false, release = false;
  {
    std::lock_guard lock(mu_);
    incoming.swap(incoming_);
    // Counted as waiting from here on: stats_ is recomputed only at the end of
    // the step, and until then the queue bound (submit) and stats() must still
    // see these requests, or a second one slips into a full queue.
    stats_.waiting += static_cast<int64_t>(incoming.size());
    cancelled.swap(cancelled_);
    std::swap(all, cancel_all_);
    std::swap(release, release_cached_);
  }
  for (auto& r : incoming) waiting_.push_back(std::move(r));
  if (all || !cancelled.empty()) {
    for (auto& r : running_)
      if (all || cancelled.count(r->id)) finish(*r, "cancelled");
    for (auto& r : waiting_)
      if (all || cancelled.count(r->id)) finish(*r, "cancelled");
  }
  if (release) {
    model_.kv_pool().evict(model_.kv_pool().stats().cached);
    model_.pool().release_cache();
    model_.kv_pool().memory().release_cache();
  }
}

void Engine::check_memory_pressure() {
  if (options_.low_memory_bytes == 0) return;
  const auto available = options_.available_memory ? options_.available_memory() : std::nullopt;
  pressure_ = available && *available < options_.low_memory_bytes;
  if (pressure_) {
    // Give back what costs nothing to give: cached prefixes, then freed buffers.
    model_.kv_pool().evict(model_.kv_pool().stats().cached);
    model_.pool().release_cache();
    model_.kv_pool().memory().release_cache();
  }
}

bool Engine::grow(Request& r, int64_t tokens) {
  while (!r.kv.reserve(tokens))
    if (!options_.free_memory || !options_.free_memory()) return false;
  return true;
}

void Engine::preempt(Request& r) {
  r.kv.clear();  // its published blocks stay cached, so recomputing is often cheap
  r.computed = 0;
  r.published = 0;
  r.chain = r.o.cache_salt;
  ++r.preemptions;
  {
    std::lock_guard lock(mu_);
    ++stats_.preemptions;
  }
  auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& p) { return p.get() == &r; });
  waiting_.push_front(std::move(*it));  // first in line to come back
  running_.erase(it);
}

// Looks up the longest cached prefix (never the last token: its logits are
// needed), then reserves KV for the rest. False when it must wait.
bool Engine::admit(Request& r, int64_t budget) {
  KvBlockPool& pool = model_.kv_pool();
  const int64_t B = pool.layout().block_tokens, n = static_cast<int64_t>(r.tokens.size());
  std::span<const int32_t> all(r.tokens);
  uint64_t parent = r.o.cache_salt;
  int64_t hits = 0;
  for (int64_t b = 0; (b + 1) * B <= n - 1; ++b) {
    auto id = pool.find(parent, all.subspan(static_cast<size_t>(b * B), static_cast<size_t>(B)));
    if (!id) break;
    r.kv.append_shared(*id);
    parent = kv_block_hash(parent, all.subspan(static_cast<size_t>(b * B), static_cast<size_t>(B)));
    ++hits;
  }
  if (!grow(r, n)) {
    r.kv.clear();
    if (running_.empty()) {  // nothing will ever free memory for it
      const uint64_t block = pool.block_bytes();
      const PoolStats s = pool.memory().stats();
      const uint64_t free_bytes = s.limit > s.active ? s.limit - s.active : 0;
      finish(r, "error",
             std::to_string(n) + " tokens need " + format_bytes(static_cast<uint64_t>((n + B - 1) / B) * block) +
                 " of KV cache; the memory limit leaves room for " + std::to_string(free_bytes / block * static_cast<uint64_t>(B)) +
                 " tokens");
    }
    return false;
  }
  (void)budget;
  r.computed = hits * B;
  r.published = hits;
  r.chain = parent;
  r.cached_tokens = r.preemptions == 0 ? r.computed : r.cached_tokens;
  std::lock_guard lock(mu_);
  stats_.prefix_hits += hits;
  if (r.preemptions == 0) stats_.prompt_tokens += r.prompt_len, stats_.cached_tokens += r.computed;
  return true;
}

void Engine::schedule(std::vector<Request*>& batch, std::vector<int64_t>& counts) {
  int64_t budget = model_.options().prefill_chunk, slots = model_.options().max_batch;
  auto add = [&](Request& r, int64_t n) {
    batch.push_back(&r);
    counts.push_back(n);
    budget -= n;
    --slots;
  };
  // Decode tokens first, oldest request first: running streams never stall.
  for (size_t i = 0; i < running_.size() && slots > 0 && budget > 0; ++i) {
    Request& r = *running_[i];
    if (r.pending() != 1) continue;
    bool preempted_self = false;
    while (!grow(r, r.computed + 1)) {
      Request& youngest = *running_.back();
      preempt(youngest);
      if (&youngest == &r) {
        preempted_self = true;
        break;
      }
    }
    if (preempted_self) break;  // everything younger went too
    add(r, 1);
  }
  // Then prompt chunks of admitted requests, then new admissions.
  for (auto& rp : running_) {
    if (slots <= 0 || budget <= 0) break;
    if (rp->pending() > 1 && std::find(batch.begin(), batch.end(), rp.get()) == batch.end())
      add(*rp, std::min(rp->pending(), budget));
  }
  while (!waiting_.empty() && slots > 0 && budget > 0 && !pressure_) {
    Request& r = *waiting_.front();
    if (!admit(r, budget)) {
      if (r.done) {  // refused for good
        waiting_.pop_front();
        continue;
      }
      break;  // first come, first served: the rest wait too
    }
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    add(r, std::min(r.pending(), budget));
  }
}

bool Engine::step() {
  take_incoming();
  check_memory_pressure();
  std::erase_if(running_, [](const auto& r) { return r->done; });
  std::erase_if(waiting_, [](const auto& r) { return r->done; });

  // schedule
  std::vector<Request*> batch;
  std::vector<int64_t> counts;
  schedule(batch, counts);
  if (batch.empty()) {
    std::lock_guard lock(mu_);
    stats_.waiting = static_cast<int64_t>(waiting_.size());
    stats_.running = static_cast<int64_t>(running_.size());
    stats_.memory_pressure = pressure_;
    stats_.kv_blocks_cached = model_.kv_pool().stats().cached;
    return !running_.empty();
  }

  // run
  std::vector<ForwardItem> items;
  int64_t rows = 0;
  const int64_t V = model_.config().vocab_size;
  for (size_t i = 0; i < batch.size(); ++i) {
    Request& r = *batch[i];
    const bool samples = r.computed + counts[i] == static_cast<int64_t>(r.tokens.size());
    // Without logprobs, greedy needs only the argmax, top-k sampling only
    // the k best and sampling from the whole row only the drawn token: the
    // logits stay where they are. JSON outputs are masked there first
    // (Backend::mask_logits), or on the host with the row.
    const bool on_backend = samples && r.o.logprobs < 0;
    const bool greedy = on_backend && r.sampler.greedy();
    const int k = on_backend && !greedy ? r.sampler.candidates_needed() : 0;
    const bool whole_row = on_backend && !greedy && k == 0 && r.sampler.draws_whole_row();
    r.logits = samples && !greedy && k == 0 && !whole_row ? logits_.as<float>() + rows * V : nullptr;
    r.greedy = greedy ? greedy_.data() + rows : nullptr;
    r.top = k > 0 ? top_k_.data() + rows : nullptr;
    r.draw = whole_row ? draws_.data() + rows : nullptr;
    if (r.top) r.top->k = k, r.top->temperature = r.sampler.temperature();
    if (r.draw) *r.draw = r.sampler.next_draw();
    rows += samples ? 1 : 0;
    items.push_back({&r.kv, r.computed,
                     std::span<const int32_t>(r.tokens).subspan(static_cast<size_t>(r.computed), static_cast<size_t>(counts[i])),
                     r.logits, r.greedy, r.top, r.draw});
    if (r.json.active() && items.back().selects()) items.back().allowed = [this, &r] { return allowed_tokens(r); };
  }
  model_.forward(items);

  // postprocess
  postprocess(batch, counts);
  std::erase_if(running_, [](const auto& r) { return r->done; });
  KvBlockStats kv = model_.kv_pool().stats();
  std::lock_guard lock(mu_);
  ++stats_.steps;
  stats_.waiting = static_cast<int64_t>(waiting_.size());
  stats_.running = static_cast<int64_t>(running_.size());
  stats_.kv_blocks_in_use = kv.in_use;
  stats_.kv_blocks_cached = kv.cached;
  stats_.memory_pressure = pressure_;
  return true;
}

void Engine::run_until_idle() {
  while (step()) {
  }
}

void Engine::publish_full_blocks(Request& r) {
  KvBlockPool& pool = model_.kv_pool();
  const int64_t B = pool.layout().block_tokens;
  std::span<const int32_t> all(r.tokens);
  while ((r.published + 1) * B <= r.computed) {
    const int32_t id = r.kv.block_table()[static_cast<size_t>(r.published)];
    r.chain = pool.publish(id, r.chain, all.subspan(static_cast<size_t>(r.published * B), static_cast<size_t>(B)));
    ++r.published;
  }
}

void Engine::postprocess(const std::vector<Request*>& batch, const std::vector<int64_t>& counts) {
  const int64_t V = model_.config().vocab_size, context = model_.config().max_context;
  for (size_t i = 0; i < batch.size(); ++i) {
    Request& r = *batch[i];
    r.computed += counts[i];
    publish_full_blocks(r);
    if ((!r.logits && !r.greedy && !r.top && !r.draw) || r.done) continue;
    if (r.generated >= r.o.max_tokens) {  // max_tokens 0: a prefill only
      finish(r, "length");
      continue;
    }
    if ((r.greedy || r.top || r.draw) && r.json.active() && r.allowed_count == 0) {
      finish(r, "error", kNoJsonToken);
      continue;
    }
    int32_t next = 0;
    if (r.greedy) {
      next = *r.greedy;
    } else if (r.top) {
      next = r.sampler.sample(*r.top);
    } else if (r.draw) {
      next = r.sampler.sample(*r.draw);
    } else {
      std::span<float> row(r.logits, static_cast<size_t>(V));
      if (r.o.logprobs >= 0) std::copy(row.begin(), row.end(), raw_row_.as<float>());  // sampling changes `row`
      if (r.json.active()) {
        if (r.json.mask(json_vocabulary(), row) == 0) {
          finish(r, "error", kNoJsonToken);
          continue;
        }
      }
      next = r.sampler.sample(row, r.tokens);
    }
    if (r.generated == 0 && r.first_token == 0) r.first_token = seconds_since(r.submitted);
    if (std::find(r.o.stop_tokens.begin(), r.o.stop_tokens.end(), next) != r.o.stop_tokens.end()) {
      finish(r, "stop");
      continue;
    }
    r.tokens.push_back(next);
    ++r.generated;
    {
      std::lock_guard lock(mu_);
      ++stats_.generated_tokens;
    }
    if (r.o.logprobs >= 0 && r.cb.on_logprobs)
      r.cb.on_logprobs(r.id, token_logprobs(std::span<const float>(raw_row_.as<float>(), static_cast<size_t>(V)), next, r.o.logprobs));
    if (r.json.active()) r.json.feed(json_vocabulary().bytes[static_cast<size_t>(next)]);  // the mask let only such tokens through
    const std::string piece = r.stream.push(next);
    if (r.cb.on_token) r.cb.on_token(r.id, next, piece);
    if (r.stream.stopped() || r.json.done()) finish(r, "stop");
    else if (r.generated >= r.o.max_tokens || static_cast<int64_t>(r.tokens.size()) >= context) finish(r, "length");
  }
}

const JsonVocabulary& Engine::json_vocabulary() {
  if (!json_vocabulary_) json_vocabulary_ = std::make_unique<JsonVocabulary>(token_bytes(tok_));
  return *json_vocabulary_;
}

// Asked by the model while the pass runs (ForwardItem::allowed).
const uint32_t* Engine::allowed_tokens(Request& r) {
  r.allowed_count = r.json.allowed(json_vocabulary(), static_cast<size_t>(model_.config().vocab_size), r.allowed);
  return r.allowed.data();
}

void Engine::finish(Request& r, std::string reason, std::string error) {
  if (r.done) return;
  r.done = true;
  r.kv.clear();
  RequestOutput out;
  out.id = r.id;
  out.finish_reason = std::move(reason);
  out.error = std::move(error);
  out.prompt_tokens = r.prompt_len;
  out.cached_tokens = r.cached_tokens;
  out.completion_tokens = r.generated;
  out.preemptions = r.preemptions;
  if (out.finish_reason != "cancelled" && out.finish_reason != "error") out.tail = r.stream.finish();
  out.first_token_seconds = r.first_token;
  out.total_seconds = seconds_since(r.submitted);
  {
    std::lock_guard lock(mu_);
    ++stats_.finished;
  }
  if (r.cb.on_done) r.cb.on_done(out);
}

}  // namespace umi
