// umi: the command-line entry point. Dispatches to a subcommand and turns
// errors into exit codes: 2 for bad input (files, requests, arguments),
// 3 for memory the budget cannot hold, 1 for anything else.
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  using namespace umi;
  CLI::App app{"umi: unified-memory LLM inference"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand: `umi fit M --memory-limit 8GiB`
  app.set_version_flag("--version", "umi 0.1.0");
  cli::GlobalOptions global;
  app.add_option("--memory-limit", global.memory_limit, "memory budget, e.g. 12GiB (default: 3/4 of RAM)");

  std::vector<std::pair<CLI::App*, cli::Action>> commands;
  auto add = [&](cli::Action (*reg)(CLI::App&, const cli::GlobalOptions&)) {
    size_t before = app.get_subcommands({}).size();
    cli::Action action = reg(app, global);
    commands.emplace_back(app.get_subcommands({})[before], std::move(action));
  };
  add(cli::add_inspect);
  add(cli::add_fit);
  add(cli::add_tokenize);
  add(cli::add_chat_template);
  add(cli::add_run);
  add(cli::add_chat);
  add(cli::add_logits);
  add(cli::add_convert);
  add(cli::add_bench);
  add(cli::add_serve);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  try {
    for (auto& [sub, action] : commands)
      if (sub->parsed()) action();
  } catch (const InputError& e) {
    std::fprintf(stderr, "umi: error: %s\n", e.what());
    return 2;
  } catch (const OutOfMemory& e) {
    std::fprintf(stderr, "umi: error: %s\n", e.what());
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "umi: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
