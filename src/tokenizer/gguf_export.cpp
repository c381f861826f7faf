#include "tokenizer/gguf_export.h"

#include <filesystem>

#include "core/error.h"
#include "format/gguf_writer.h"
#include "format/json_strict.h"
#include "format/mapped_file.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace umi {

namespace {
using nlohmann::json;

// tokenizer.ggml.pre names llama.cpp knows, by the split regex they stand for.
std::string pre_type(const json& pre, const std::string& source) {
  const std::string llama3 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  const std::string qwen2 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  if (pre.value("type", "") == "ByteLevel" && pre.value("use_regex", true)) return "gpt-2";
  if (pre.value("type", "") == "Sequence")
    for (const json& p : pre.value("pretokenizers", json::array()))
      if (p.value("type", "") == "Split" && p.contains("pattern") && p["pattern"].contains("Regex")) {
        std::string r = p["pattern"]["Regex"].get<std::string>();
        if (r == llama3) return "llama-bpe";
        if (r == qwen2) return "qwen2";
      }
  throw InputError(source + ": this pre-tokenizer has no llama.cpp name (llama-bpe, qwen2, gpt-2); it cannot go into GGUF");
}
}  // namespace

void write_tokenizer_metadata(GgufWriter& w, const std::string& folder) {
  namespace fs = std::filesystem;
  std::string path = (fs::path(folder) / "tokenizer.json").string();
  json j = parse_json_strict(read_small_file(path), path, "tokenizer.json");
  const json& model = j["model"];
  if (model.value("type", "") != "BPE" || model.value("byte_fallback", false))
    throw InputError(path + ": only byte-level BPE tokenizers can be exported to GGUF so far");
  size_t n = 0;
  for (auto& [tok, id] : model["vocab"].items()) n = std::max(n, id.get<size_t>() + 1);
  for (auto& a : j.value("added_tokens", json::array())) n = std::max(n, a["id"].get<size_t>() + 1);
  std::vector<std::string> tokens(n);
  std::vector<int32_t> types(n, 1);
  for (auto& [tok, id] : model["vocab"].items()) tokens[id.get<size_t>()] = tok;
  for (auto& a : j.value("added_tokens", json::array())) {
    tokens[a["id"].get<size_t>()] = a["content"].get<std::string>();
    types[a["id"].get<size_t>()] = a.value("special", false) ? 3 : 4;
  }
  for (size_t i = 0; i < n; ++i)
    if (tokens[i].empty()) {  // GGUF needs every id: name the holes as llama.cpp does
      tokens[i] = "[PAD" + std::to_string(i) + "]";
      types[i] = 5;
    }
  std::vector<std::string> merges;
  for (const json& m : model.value("merges", json::array()))
    merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", pre_type(j.value("pre_tokenizer", json()), path));
  w.add_strings("tokenizer.ggml.tokens", tokens);
  w.add_i32s("tokenizer.ggml.token_type", types);
  w.add_strings("tokenizer.ggml.merges", merges);
  Tokenizer tok = Tokenizer::from_folder(folder);
  if (tok.bos_id()) w.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(*tok.bos_id()));
  if (tok.eos_id()) w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(*tok.eos_id()));
  // The BOS the Hugging Face post-processor adds, GGUF says with a flag.
  std::vector<int32_t> probe = tok.encode("a", true), bare = tok.encode("a", false);
  w.add_bool("tokenizer.ggml.add_bos_token", probe.size() > bare.size() && tok.bos_id() && probe[0] == *tok.bos_id());
  if (auto t = find_chat_template(folder)) w.add_string("tokenizer.chat_template", *t);
}

}  // namespace umi
