#include "cli/model_options.h"

#include <cstdio>

#include "core/error.h"
#include "core/units.h"
#include "memory/system_memory.h"

namespace umi::cli {

void ModelArgs::add_to(CLI::App& cmd) {
  cmd.add_option("-m,--model", model, "a .gguf file or Hugging Face folder (default: the bundled tiny-shakespeare)");
  cmd.add_option("--kv-dtype", kv_dtype, "KV cache element type")->check(CLI::IsMember({"f16", "f32", "q8_0"}));
  cmd.add_option("--prefill-chunk", prefill_chunk, "most prompt tokens per forward pass");
  cmd.add_option("-t,--threads", threads, "worker threads (default: all cores)");
  cmd.add_option("--device", device, "where the model runs: auto (a GPU when this build and machine have one), cpu, cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd.add_option("--device-memory-limit", device_memory_limit,
                 "on a GPU: the device memory umi may use, for every model together (default: what is free less 512 MiB)");
  cmd.add_flag("--verbose", verbose, "print the memory pool's counters");
}

std::string ModelArgs::path() const { return model.empty() ? std::string(UMI_DEFAULT_MODEL) : model; }

ModelOptions ModelArgs::options() const {
  ModelOptions o;
  o.kv_dtype = *dtype_from_name(kv_dtype);
  o.prefill_chunk = prefill_chunk;
  o.threads = threads;
  o.device = parse_device(device);
  o.device_memory_limit = device_limit();
  return o;
}

uint64_t ModelArgs::device_limit() const {
  if (device_memory_limit.empty()) return 0;
  auto v = parse_bytes(device_memory_limit);
  if (!v || *v == 0) throw InputError("--device-memory-limit: \"" + device_memory_limit + "\" is not a size such as 20GiB");
  return *v;
}

PoolOptions ModelArgs::pool_options(const GlobalOptions& global) const {
  PoolOptions p;
  p.limit = global.resolved_limit();
  return p;
}

void print_memory(const Pool& pool, const char* when) {
  PoolStats s = pool.stats();
  auto use = [&](MemoryUse u) { return format_bytes(s.active_by_use[static_cast<size_t>(u)]); };
  std::fprintf(stderr,
               "[memory %s] active %s (weights %s, kv %s, activations %s, scratch %s, other %s), peak %s, cached %s, "
               "limit %s, allocations %llu (cache hits %llu), resident %s\n",
               when, format_bytes(s.active).c_str(), use(MemoryUse::weights).c_str(), use(MemoryUse::kv_cache).c_str(),
               use(MemoryUse::activations).c_str(), use(MemoryUse::scratch).c_str(), use(MemoryUse::other).c_str(), format_bytes(s.peak).c_str(),
               format_bytes(s.cached).c_str(), format_bytes(s.limit).c_str(), static_cast<unsigned long long>(s.allocations),
               static_cast<unsigned long long>(s.cache_hits), format_bytes(resident_set_bytes()).c_str());
}

}  // namespace umi::cli
