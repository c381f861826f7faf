#include "template/chat_template.h"

#include <filesystem>

#include "core/error.h"

#include "format/gguf.h"
#include "format/json_strict.h"
#include "format/mapped_file.h"
#include "template/parser.h"

namespace umi {

ChatTemplate::ChatTemplate(std::string source, std::string bos_token, std::string eos_token, tmpl::Limits limits)
    : source_(std::move(source)),
      bos_(std::move(bos_token)),
      eos_(std::move(eos_token)),
      limits_(limits),
      parsed_(std::make_shared<const tmpl::Template>(tmpl::parse(source_))) {}

std::string ChatTemplate::render(const ChatRequest& r) const {
  std::vector<std::pair<std::string, tmpl::Value>> context;
  context.emplace_back("messages", tmpl::Value::from_json(r.messages));
  context.emplace_back("tools", tmpl::Value::from_json(r.tools));  // None when absent, as transformers passes it
  context.emplace_back("documents", tmpl::Value::none());
  context.emplace_back("add_generation_prompt", tmpl::Value(r.add_generation_prompt));
  context.emplace_back("bos_token", tmpl::Value(bos_));
  context.emplace_back("eos_token", tmpl::Value(eos_));
  if (r.extra.is_object())
    for (auto it = r.extra.begin(); it != r.extra.end(); ++it) context.emplace_back(it.key(), tmpl::Value::from_json(it.value()));
  tmpl::Interpreter interpreter(limits_);
  return interpreter.render(*parsed_, context);
}

std::optional<std::string> find_chat_template(const std::string& model_path) {
  namespace fs = std::filesystem;
  fs::path p(model_path);
  if (fs::is_directory(p)) {
    if (fs::exists(p / "chat_template.jinja")) return read_small_file((p / "chat_template.jinja").string());
    if (!fs::exists(p / "tokenizer_config.json")) return std::nullopt;
    std::string path = (p / "tokenizer_config.json").string();
    nlohmann::json c = parse_json_strict(read_small_file(path), path, "json");
    auto t = c.find("chat_template");
    if (t == c.end() || t->is_null()) return std::nullopt;
    if (t->is_string()) return t->get<std::string>();
    if (t->is_array()) {
      std::optional<std::string> first;
      for (const auto& named : *t) {
        if (!named.is_object() || !named.contains("template") || !named["template"].is_string()) continue;
        if (named.value("name", std::string()) == "default") return named["template"].get<std::string>();
        if (!first) first = named["template"].get<std::string>();
      }
      return first;
    }
    throw FormatError(path, "chat_template", "is neither a string nor a list of named templates");
  }
  MappedFile f = MappedFile::open(model_path);
  GgufFile g = parse_gguf(f.bytes(), model_path);
  if (auto t = g.get_string("tokenizer.chat_template")) return std::string(*t);
  return std::nullopt;
}

}  // namespace umi
