// `umi chat [-m MODEL]`: an interactive multi-turn chat through the model's
// chat template. Line editing and history come from libedit; Ctrl-C stops the
// reply being written (the turn keeps what was said), Ctrl-D quits.
#include <editline/readline.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/model_options.h"
#include "core/error.h"
#include "engine/engine.h"
#include "engine/generate.h"
#include "template/chat_template.h"

namespace umi::cli {

namespace {

// A signal handler can only touch a lock-free flag: this one file-local
// atomic is that flag, set by SIGINT while a reply streams.
volatile std::sig_atomic_t g_interrupted = 0;
void on_sigint(int) { g_interrupted = 1; }

struct ChatArgs {
  ModelArgs model;
  SamplingParams sampling;
  int max_tokens = 256;
  std::string system;
  std::vector<std::string> stop;
};

}  // namespace

void add_sampling_options(CLI::App& cmd, SamplingParams& s);

Action add_chat(CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand("chat", "chat with a model, turn by turn");
  auto a = std::make_shared<ChatArgs>();
  a->model.add_to(*cmd);
  add_sampling_options(*cmd, a->sampling);
  cmd->add_option("-n,--max-tokens", a->max_tokens, "most tokens per reply")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--system", a->system, "a system message to start the conversation");
  cmd->add_option("--stop", a->stop, "end a reply at this string (repeatable)");
  return [a, &global] {
    Pool pool(a->model.pool_options(global));
    Model model(a->model.path(), pool, a->model.options());
    Tokenizer tok = load_tokenizer(a->model.path());
    auto source = find_chat_template(a->model.path());
    if (!source) throw InputError(a->model.path() + ": the model has no chat template; use `umi run`");
    auto name = [&](std::optional<int32_t> id) { return id ? tok.token_text(*id) : std::string(); };
    ChatTemplate tpl(*source, name(tok.bos_id()), name(tok.eos_id()));
    // Each turn re-sends the whole conversation to the engine; its prefix
    // cache still holds the earlier turns' KV, so only the new text is computed.
    Engine engine(model, tok);
    RequestOptions o;
    o.max_tokens = a->max_tokens;
    o.sampling = a->sampling;
    o.stop_tokens = default_stop_tokens(tok);
    o.stop_strings = a->stop;

    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!a->system.empty()) messages.push_back({{"role", "system"}, {"content", a->system}});
    const bool tty = isatty(STDIN_FILENO);
    std::signal(SIGINT, on_sigint);
    if (tty) std::fprintf(stderr, "umi chat: Ctrl-C stops a reply, Ctrl-D quits.\n");
    while (true) {
      g_interrupted = 0;
      char* line = readline(tty ? "> " : "");
      if (!line) break;  // Ctrl-D / end of input
      std::string text(line);
      std::free(line);
      if (text.empty()) continue;
      if (tty) add_history(text.c_str());
      messages.push_back({{"role", "user"}, {"content", text}});
      ChatRequest r;
      r.messages = messages;
      std::vector<int32_t> prompt = tok.encode(tpl.render(r), /*add_special_tokens=*/false);
      try {
        RequestOutput out;
        std::string reply;
        engine.submit(prompt, o,
                      {[&](uint64_t id, int32_t, std::string_view piece) {
                         std::fwrite(piece.data(), 1, piece.size(), stdout);
                         std::fflush(stdout);
                         reply += piece;
                         if (g_interrupted) engine.cancel(id);  // Ctrl-C: this reply stops, the chat goes on
                       },
                       [&](const RequestOutput& result) { out = result; }});
        engine.run_until_idle();
        if (out.finish_reason == "error") throw OutOfMemory(out.error);
        reply += out.tail;
        std::printf("%s\n", out.tail.c_str());
        messages.push_back({{"role", "assistant"}, {"content", reply}});
      } catch (const InputError& e) {  // e.g. the conversation outgrew the context: say so, keep chatting
        std::fprintf(stderr, "umi: %s\n", e.what());
        messages.erase(messages.end() - 1);
      } catch (const OutOfMemory& e) {
        std::fprintf(stderr, "umi: %s\n", e.what());
        messages.erase(messages.end() - 1);
      }
    }
    std::signal(SIGINT, SIG_DFL);
  };
}

}  // namespace umi::cli
