// Options shared by the commands that load a model (run, chat, logits).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "memory/pool.h"
#include "model/model.h"

namespace umi::cli {

struct ModelArgs {
  std::string model;  // empty: the bundled default model
  std::string kv_dtype = "f16";
  int64_t prefill_chunk = 512;
  int threads = 0;
  std::string device = "auto";
  std::string device_memory_limit;  // empty: what the GPU has free less a margin
  bool verbose = false;

  void add_to(CLI::App& cmd);
  std::string path() const;
  ModelOptions options() const;
  uint64_t device_limit() const;  // --device-memory-limit in bytes (0: the default)
  PoolOptions pool_options(const GlobalOptions& global) const;
};

// Pool counters and resident memory, for --verbose.
void print_memory(const Pool& pool, const char* when);

}  // namespace umi::cli
