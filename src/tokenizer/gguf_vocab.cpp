// Tokenizer::from_gguf: the vocabularies llama.cpp writes into GGUF files.
//   tokenizer.ggml.model = "gpt2":  byte-level BPE with merges; the split
//     regex comes from tokenizer.ggml.pre (llama-bpe, qwen2, gpt-2/default).
//   tokenizer.ggml.model = "llama": SentencePiece BPE, merging by token score,
//     with <0xXX> byte fallback and a "▁" word-boundary marker.
// Control (type 3) and user-defined (type 4) tokens are matched as added
// tokens; add_bos_token / add_eos_token become the post-processor.
#include <cstdio>

#include "core/error.h"
#include "format/gguf.h"
#include "tokenizer/pattern.h"
#include "tokenizer/tokenizer.h"

namespace umi {

namespace {

constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

const GgufValue& need_array(const GgufFile& g, const char* key, GgufType elem) {
  const GgufValue* v = g.find(key);
  if (!v || v->type != GgufType::array || v->elem_type != elem)
    throw FormatError(g.path, key, "missing or not an array of " + std::string(to_string(elem)));
  return *v;
}

}  // namespace

Tokenizer Tokenizer::from_gguf(const GgufFile& g) {
  auto model = g.get_string("tokenizer.ggml.model");
  if (!model) throw FormatError(g.path, "tokenizer.ggml.model", "missing: the file has no tokenizer");
  const GgufValue& tokens_v = need_array(g, "tokenizer.ggml.tokens", GgufType::string);
  if (tokens_v.count == 0 || tokens_v.count > (1u << 24)) throw FormatError(g.path, "tokenizer.ggml.tokens", "bad size");
  std::vector<std::string> tokens(tokens_v.strings.begin(), tokens_v.strings.end());
  std::vector<int32_t> types(tokens.size(), kNormal);
  if (const GgufValue* tt = g.find("tokenizer.ggml.token_type")) {
    if (tt->type != GgufType::array || tt->count != tokens.size() || !tt->raw.size())
      throw FormatError(g.path, "tokenizer.ggml.token_type", "must be an integer array as long as the token list");
    for (size_t i = 0; i < tokens.size(); ++i) types[i] = static_cast<int32_t>(tt->int_at(i));
  }

  Tokenizer t;
  BpeOptions opt;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (types[i] == kUnknown) opt.unk_id = static_cast<int32_t>(i);
  if (auto u = g.get_uint("tokenizer.ggml.unknown_token_id"); u && *u < tokens.size()) opt.unk_id = static_cast<int32_t>(*u);

  // Control and user-defined tokens are found in the text before splitting.
  for (size_t i = 0; i < tokens.size(); ++i)
    if (types[i] == kControl || types[i] == kUserDefined) {
      AddedToken a;
      a.content = tokens[i];
      a.id = static_cast<int32_t>(i);
      a.special = types[i] == kControl;
      t.added_.add(std::move(a));
    }

  if (*model == "gpt2") {
    std::string pre(g.get_string("tokenizer.ggml.pre").value_or("default"));
    std::string regex;
    if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3") {
      regex = kLlama3Regex;
      opt.ignore_merges = true;
    } else if (pre == "qwen2") {
      regex = kQwen2Regex;
    } else if (pre == "gpt-2" || pre == "default") {
      regex = "";  // GPT-2's own
    } else {
      throw InputError(g.path + ": tokenizer.ggml.pre \"" + pre + "\" is not supported (llama-bpe, qwen2, gpt-2, default)");
    }
    const GgufValue& merges_v = need_array(g, "tokenizer.ggml.merges", GgufType::string);
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(merges_v.count);
    for (std::string_view m : merges_v.strings) {
      size_t sp = m.find(' ', 1);
      if (sp == std::string_view::npos) throw FormatError(g.path, "tokenizer.ggml.merges", "a merge has no space");
      merges.emplace_back(std::string(m.substr(0, sp)), std::string(m.substr(sp + 1)));
    }
    t.model_ = std::make_unique<BpeModel>(tokens, opt);
    t.model_->set_merges(merges, g.path);
    t.pre_tokenizer_ = byte_level_pre_tokenizer(regex);
    t.decoder_ = byte_level_decoder();
    t.byte_level_ = true;
  } else if (*model == "llama") {
    const GgufValue& scores_v = need_array(g, "tokenizer.ggml.scores", GgufType::f32);
    if (scores_v.count != tokens.size()) throw FormatError(g.path, "tokenizer.ggml.scores", "must be as long as the token list");
    std::vector<float> scores(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) scores[i] = static_cast<float>(scores_v.number_at(i));
    opt.byte_fallback = true;
    // Unused and control tokens never come out of merging.
    for (size_t i = 0; i < tokens.size(); ++i)
      if (types[i] == kUnused || types[i] == kControl) tokens[i].clear();
    t.model_ = std::make_unique<BpeModel>(tokens, opt);
    t.model_->set_scores(std::move(scores));
    bool prefix = g.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    nlohmann::json norm = {{"type", "Sequence"}, {"normalizers", nlohmann::json::array()}};
    if (prefix) norm["normalizers"].push_back({{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}});
    norm["normalizers"].push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}});
    t.normalizer_ = normalizer_from_json(norm, g.path);
    t.decoder_ = sentencepiece_decoder();
  } else {
    throw InputError(g.path + ": tokenizer.ggml.model \"" + std::string(*model) + "\" is not supported (gpt2, llama)");
  }
  t.vocab_size_ = static_cast<int32_t>(tokens.size());
  auto id_key = [&](const char* key) -> std::optional<int32_t> {
    auto v = g.get_uint(key);
    if (!v || *v >= tokens.size()) return std::nullopt;
    return static_cast<int32_t>(*v);
  };
  t.bos_ = id_key("tokenizer.ggml.bos_token_id");
  t.eos_ = id_key("tokenizer.ggml.eos_token_id");
  bool add_bos = g.get_bool("tokenizer.ggml.add_bos_token").value_or(*model == "llama");
  bool add_eos = g.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  if (add_bos && t.bos_) t.prefix_ids_.push_back(*t.bos_);
  if (add_eos && t.eos_) t.suffix_ids_.push_back(*t.eos_);
  return t;
}

}  // namespace umi
