// What the server has done and holds, as Prometheus text (GET /metrics):
// request, token and HTTP-error counters and latency histograms kept here
// (they outlive a model's unload), plus gauges read at scrape time from the
// registry (queue, KV blocks per loaded model) and the pool (bytes).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace umi {

class ModelRegistry;

// Cumulative buckets, Prometheus style.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);
  // `name`_bucket{labels,le=...}, `name`_sum, `name`_count lines.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last: +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// `value` as a Prometheus label value: quoted, with \, " and newlines escaped.
std::string prometheus_label(const std::string& value);

class ServerMetrics {
 public:
  // One finished request of `model` (whatever its finish reason).
  void request_finished(const std::string& model, const RequestOutput& out);
  // An HTTP answer with an error status (4xx/5xx), by status.
  void http_error(int status);
  // The whole exposition: these counters, then the registry's and pool's gauges.
  std::string render(ModelRegistry& registry) const;

 private:
  struct PerModel {
    std::map<std::string, uint64_t> requests;  // by finish reason
    uint64_t prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0, preemptions = 0;
    Histogram ttft{{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
    Histogram per_token{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}};
    Histogram e2e{{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}};
  };
  mutable std::mutex mu_;
  std::map<std::string, PerModel> models_;
  std::map<int, uint64_t> http_errors_;
};

}  // namespace umi
