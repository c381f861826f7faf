// `umi tokenize -m MODEL (--text STR | --file F) [--json] [--no-special]`
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "format/mapped_file.h"
#include "tokenizer/tokenizer.h"

namespace umi::cli {

namespace {
struct TokenizeArgs {
  std::string model, text, file;
  bool json = false, no_special = false, split_special = false;
};
}  // namespace

Action add_tokenize(CLI::App& app, const GlobalOptions&) {
  auto* cmd = app.add_subcommand("tokenize", "print the token ids of a text");
  auto a = std::make_shared<TokenizeArgs>();
  cmd->add_option("-m,--model", a->model, "a .gguf file, or a folder with tokenizer.json")->required();
  auto* text = cmd->add_option("--text", a->text, "the text");
  auto* file = cmd->add_option("--file", a->file, "read the text from a file");
  text->excludes(file);
  cmd->add_flag("--json", a->json, "print the ids as one JSON array");
  cmd->add_flag("--no-special", a->no_special, "do not add BOS/EOS from the post-processor");
  cmd->add_flag("--split-special", a->split_special, "treat special-token text as ordinary text");
  return [a, text, file] {
    if (!*text && !*file) throw InputError("tokenize: give --text or --file");
    std::string input = a->text;
    if (*file) {
      MappedFile f = MappedFile::open(a->file);
      input.assign(reinterpret_cast<const char*>(f.bytes().data()), f.size());
    }
    Tokenizer tok = load_tokenizer(a->model);
    if (a->split_special) tok.set_split_special_tokens(true);
    std::vector<int32_t> ids = tok.encode(input, !a->no_special);
    if (a->json) {
      std::printf("%s\n", nlohmann::json(ids).dump().c_str());
      return;
    }
    for (int32_t id : ids) {
      std::string piece = tok.decode(std::vector<int32_t>{id});
      std::printf("%7d  %s\n", id, nlohmann::json(piece).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    }
    std::printf("%zu tokens\n", ids.size());
  };
}

}  // namespace umi::cli
