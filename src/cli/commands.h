// The `umi` subcommands. Each registers its options on the app and runs when
// chosen; main() only dispatches and maps errors to exit codes.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace umi::cli {

// Options every subcommand shares.
struct GlobalOptions {
  std::string memory_limit;  // "12GiB"; empty: the pool's default share of RAM
  std::string max_alloc;     // largest single allocation; empty: pool default
  uint64_t resolved_limit() const;  // throws InputError on a malformed size
};

// Registers a subcommand; the returned action runs when it was chosen.
using Action = std::function<void()>;
Action add_inspect(CLI::App& app, const GlobalOptions& global);
Action add_fit(CLI::App& app, const GlobalOptions& global);
Action add_tokenize(CLI::App& app, const GlobalOptions& global);
Action add_chat_template(CLI::App& app, const GlobalOptions& global);
Action add_run(CLI::App& app, const GlobalOptions& global);
Action add_logits(CLI::App& app, const GlobalOptions& global);
Action add_convert(CLI::App& app, const GlobalOptions& global);
Action add_chat(CLI::App& app, const GlobalOptions& global);
Action add_bench(CLI::App& app, const GlobalOptions& global);
Action add_serve(CLI::App& app, const GlobalOptions& global);

}  // namespace umi::cli
