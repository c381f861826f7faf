#include "server/metrics.h"

#include <algorithm>
#include <cstdio>

#include "memory/system_memory.h"
#include "server/model_registry.h"

namespace umi {

namespace {
std::string num(double v) {
  char buf[64];
  const bool whole = v == static_cast<double>(static_cast<int64_t>(v)) && v < 1e15 && v > -1e15;
  std::snprintf(buf, sizeof buf, whole ? "%.0f" : "%.9g", v);
  return buf;
}

void line(std::string& out, const std::string& name, const std::string& labels, double value) {
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += " " + num(value) + "\n";
}

void head(std::string& out, const char* name, const char* type, const char* help) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

// PREFIX_bytes{kind}: active, peak, cached and limit; PREFIX_active_bytes{use}.
void pool_gauges(std::string& out, const std::string& prefix, const std::string& what, const PoolStats& pool) {
  const std::string bytes = prefix + "_bytes", by_use = prefix + "_active_bytes";
  head(out, bytes.c_str(), "gauge", (what + ": active, peak, cached (freed, kept for reuse) and limit.").c_str());
  line(out, bytes, "kind=\"active\"", static_cast<double>(pool.active));
  line(out, bytes, "kind=\"peak\"", static_cast<double>(pool.peak));
  line(out, bytes, "kind=\"cached\"", static_cast<double>(pool.cached));
  line(out, bytes, "kind=\"limit\"", static_cast<double>(pool.limit));
  head(out, by_use.c_str(), "gauge", (what + ": active bytes by use.").c_str());
  for (size_t u = 0; u < kMemoryUseCount; ++u)
    line(out, by_use, std::string("use=\"") + to_string(static_cast<MemoryUse>(u)) + "\"", static_cast<double>(pool.active_by_use[u]));
}
}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds) : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1) {
  std::sort(bounds_.begin(), bounds_.end());
}

void Histogram::observe(double value) {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  const std::string sep = labels.empty() ? "" : labels + ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    line(out, name + "_bucket", sep + "le=\"" + num(bounds_[i]) + "\"", static_cast<double>(cumulative));
  }
  line(out, name + "_bucket", sep + "le=\"+Inf\"", static_cast<double>(count_));
  line(out, name + "_sum", labels, sum_);
  line(out, name + "_count", labels, static_cast<double>(count_));
}

std::string prometheus_label(const std::string& value) {
  std::string out = "\"";
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out + "\"";
}

void ServerMetrics::request_finished(const std::string& model, const RequestOutput& out) {
  std::lock_guard lock(mu_);
  PerModel& m = models_[model];
  ++m.requests[out.finish_reason];
  m.prompt_tokens += static_cast<uint64_t>(out.prompt_tokens);
  m.cached_tokens += static_cast<uint64_t>(out.cached_tokens);
  m.generated_tokens += static_cast<uint64_t>(out.completion_tokens);
  m.preemptions += static_cast<uint64_t>(out.preemptions);
  if (out.completion_tokens > 0) m.ttft.observe(out.first_token_seconds);
  if (out.completion_tokens > 1)
    m.per_token.observe((out.total_seconds - out.first_token_seconds) / static_cast<double>(out.completion_tokens - 1));
  m.e2e.observe(out.total_seconds);
}

void ServerMetrics::http_error(int status) {
  std::lock_guard lock(mu_);
  ++http_errors_[status];
}

std::string ServerMetrics::render(ModelRegistry& registry) const {
  std::string out;
  {
    std::lock_guard lock(mu_);
    auto each = [&](const char* name, const char* type, const char* help, auto&& fn) {
      head(out, name, type, help);
      for (const auto& [id, m] : models_) fn(name, "model=" + prometheus_label(id), m);
    };
    each("umi_requests_total", "counter", "Requests finished, by finish reason.", [&](const char* n, const std::string& l, const PerModel& m) {
      for (const auto& [reason, count] : m.requests) line(out, n, l + ",finish_reason=" + prometheus_label(reason), static_cast<double>(count));
    });
    each("umi_prompt_tokens_total", "counter", "Prompt tokens of finished requests.",
         [&](const char* n, const std::string& l, const PerModel& m) { line(out, n, l, static_cast<double>(m.prompt_tokens)); });
    each("umi_cached_prompt_tokens_total", "counter", "Prompt tokens whose KV came from the prefix cache.",
         [&](const char* n, const std::string& l, const PerModel& m) { line(out, n, l, static_cast<double>(m.cached_tokens)); });
    each("umi_generation_tokens_total", "counter", "Tokens generated.",
         [&](const char* n, const std::string& l, const PerModel& m) { line(out, n, l, static_cast<double>(m.generated_tokens)); });
    each("umi_preemptions_total", "counter", "Times a request was preempted for memory and recomputed.",
         [&](const char* n, const std::string& l, const PerModel& m) { line(out, n, l, static_cast<double>(m.preemptions)); });
    each("umi_time_to_first_token_seconds", "histogram", "From request arrival to its first token.",
         [&](const char* n, const std::string& l, const PerModel& m) { m.ttft.render(out, n, l); });
    each("umi_time_per_output_token_seconds", "histogram", "Mean time between a request's tokens after the first.",
         [&](const char* n, const std::string& l, const PerModel& m) { m.per_token.render(out, n, l); });
    each("umi_e2e_request_latency_seconds", "histogram", "From request arrival to its end.",
         [&](const char* n, const std::string& l, const PerModel& m) { m.e2e.render(out, n, l); });
    head(out, "umi_http_errors_total", "counter", "HTTP answers with an error status.");
    for (const auto& [status, count] : http_errors_) line(out, "umi_http_errors_total", "status=\"" + std::to_string(status) + "\"", static_cast<double>(count));
  }

  head(out, "umi_model_loaded", "gauge", "1 for a model in memory, 0.5 while it loads, 0 otherwise.");
  for (const ModelStatus& s : registry.status())
    line(out, "umi_model_loaded", "model=" + prometheus_label(s.id),
         s.state == ModelState::loaded ? 1.0 : s.state == ModelState::loading ? 0.5 : 0.0);
  struct Loaded {
    std::string id;
    EngineStats engine;
    KvBlockStats kv;
    uint64_t block_bytes;
    PoolStats kv_memory;  // the pool its KV blocks come from (the device's on a GPU)
  };
  std::vector<Loaded> loaded;
  registry.for_each_loaded([&](const std::string& id, LoadedModel& m) {
    loaded.push_back({id, m.engine.stats(), m.model.kv_pool().stats(), m.model.kv_pool().block_bytes(), m.model.kv_pool().memory().stats()});
  });
  head(out, "umi_requests_waiting", "gauge", "Requests queued, per loaded model.");
  for (const Loaded& l : loaded) line(out, "umi_requests_waiting", "model=" + prometheus_label(l.id), static_cast<double>(l.engine.waiting));
  head(out, "umi_requests_running", "gauge", "Requests being computed, per loaded model.");
  for (const Loaded& l : loaded) line(out, "umi_requests_running", "model=" + prometheus_label(l.id), static_cast<double>(l.engine.running));
  head(out, "umi_kv_blocks", "gauge", "KV blocks: used (held by requests), cached (prefixes kept for reuse), free (more the limit allows).");
  for (const Loaded& l : loaded) {
    const std::string m = "model=" + prometheus_label(l.id);
    const uint64_t room = l.kv_memory.limit > l.kv_memory.active ? l.kv_memory.limit - l.kv_memory.active : 0;
    line(out, "umi_kv_blocks", m + ",state=\"used\"", static_cast<double>(l.kv.in_use));
    line(out, "umi_kv_blocks", m + ",state=\"cached\"", static_cast<double>(l.kv.cached));
    line(out, "umi_kv_blocks", m + ",state=\"free\"", static_cast<double>(l.block_bytes ? room / l.block_bytes : 0));
  }
  pool_gauges(out, "umi_pool", "The accounted memory pool", registry.pool().stats());
  if (Pool* device = registry.device_memory()) pool_gauges(out, "umi_device_pool", "The GPU's pool that every model on it shares", device->stats());
  head(out, "umi_resident_memory_bytes", "gauge", "Resident set of the process.");
  line(out, "umi_resident_memory_bytes", "", static_cast<double>(resident_set_bytes()));
  return out;
}

}  // namespace umi
