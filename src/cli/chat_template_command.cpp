// `umi chat-template -m MODEL --messages FILE.json [--no-generation-prompt]`
// FILE holds a JSON array of messages, or {"messages": [...], "tools": [...],
// ...more template variables}.
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "format/json_strict.h"
#include "format/mapped_file.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace umi::cli {

namespace {
struct ChatTemplateArgs {
  std::string model, messages;
  bool no_generation_prompt = false;
};
}  // namespace

Action add_chat_template(CLI::App& app, const GlobalOptions&) {
  auto* cmd = app.add_subcommand("chat-template", "render a conversation through the model's chat template");
  auto a = std::make_shared<ChatTemplateArgs>();
  cmd->add_option("-m,--model", a->model, "a .gguf file, or a folder with tokenizer files")->required();
  cmd->add_option("--messages", a->messages, "JSON file: [messages...] or {\"messages\": [...], \"tools\": [...]}")->required();
  cmd->add_flag("--no-generation-prompt", a->no_generation_prompt, "do not open an assistant turn at the end");
  return [a] {
    auto source = find_chat_template(a->model);
    if (!source) throw InputError(a->model + ": the model has no chat template");
    Tokenizer tok = load_tokenizer(a->model);
    auto name = [&](std::optional<int32_t> id) { return id ? tok.token_text(*id) : std::string(); };
    ChatTemplate tpl(*source, name(tok.bos_id()), name(tok.eos_id()));

    MappedFile f = MappedFile::open(a->messages);
    nlohmann::ordered_json in = parse_ordered_json_strict(
        {reinterpret_cast<const char*>(f.bytes().data()), f.size()}, a->messages, "json");
    ChatRequest r;
    r.add_generation_prompt = !a->no_generation_prompt;
    if (in.is_array()) {
      r.messages = in;
    } else if (in.is_object() && in.contains("messages") && in["messages"].is_array()) {
      for (auto it = in.begin(); it != in.end(); ++it) {
        if (it.key() == "messages") r.messages = it.value();
        else if (it.key() == "tools") r.tools = it.value();
        else r.extra[it.key()] = it.value();
      }
    } else {
      throw InputError(a->messages + ": expected a JSON array of messages or an object with \"messages\"");
    }
    std::fputs(tpl.render(r).c_str(), stdout);
  };
}

}  // namespace umi::cli
