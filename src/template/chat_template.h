// A model's chat template: parsed once at load time (a syntax error is a
// load-time error), rendered per request the way transformers'
// apply_chat_template does (messages, tools, add_generation_prompt, the
// special-token strings, and any extra variables such as enable_thinking).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "template/interpreter.h"

namespace umi {

struct GgufFile;

struct ChatRequest {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;  // null: none
  bool add_generation_prompt = true;
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  // more template variables
};

class ChatTemplate {
 public:
  // Throws tmpl::TemplateError (an InputError) naming the line.
  ChatTemplate(std::string source, std::string bos_token, std::string eos_token, tmpl::Limits limits = {});

  // Throws tmpl::TemplateError for a template error or raise_exception().
  std::string render(const ChatRequest& request) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::string bos_, eos_;
  tmpl::Limits limits_;
  std::shared_ptr<const tmpl::Template> parsed_;
};

// The template a model ships: chat_template.jinja, else tokenizer_config.json's
// "chat_template" (a string, or a list of named templates: "default" wins), in
// a folder; or GGUF tokenizer.chat_template. nullopt when there is none.
std::optional<std::string> find_chat_template(const std::string& model_path);

}  // namespace umi
