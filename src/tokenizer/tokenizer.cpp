#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <functional>

#include "core/error.h"
#include "format/json_strict.h"
#include "format/mapped_file.h"
#include "tokenizer/unicode.h"

namespace umi {

using nlohmann::json;

namespace {

constexpr uint64_t kMaxTokenizerJson = 256ull << 20;
constexpr int64_t kMaxVocab = 1 << 24;

std::vector<std::pair<std::string, std::string>> read_merges(const json& merges, std::string_view source) {
  std::vector<std::pair<std::string, std::string>> out;
  if (merges.is_null()) return out;
  if (!merges.is_array()) throw InputError(std::string(source) + ": model.merges is not an array");
  out.reserve(merges.size());
  for (const json& m : merges) {
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) throw InputError(std::string(source) + ": merge \"" + s.substr(0, 50) + "\" has no space");
      out.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      throw InputError(std::string(source) + ": a merge is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
  return out;
}

// The single-sequence template of a post-processor: ids before and after.
void read_post_processor(const json& j, const json& specials_source, std::vector<int32_t>& prefix,
                         std::vector<int32_t>& suffix, std::string_view source,
                         const std::function<int32_t(const std::string&)>& id_of) {
  if (j.is_null()) return;
  std::string type = j.value("type", std::string());
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    for (const json& p : j.value("processors", json::array())) read_post_processor(p, specials_source, prefix, suffix, source, id_of);
    return;
  }
  if (type == "TemplateProcessing") {
    const json& single = j.value("single", json::array());
    const json& specials = j.value("special_tokens", json::object());
    bool seen_sequence = false;
    for (const json& item : single) {
      if (item.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      if (!item.contains("SpecialToken")) throw InputError(std::string(source) + ": post_processor: unknown template item");
      std::string name = item["SpecialToken"].value("id", std::string());
      std::vector<int32_t> ids;
      if (auto s = specials.find(name); s != specials.end() && s->contains("ids"))
        for (const json& id : (*s)["ids"]) ids.push_back(id.get<int32_t>());
      else
        ids.push_back(id_of(name));
      (seen_sequence ? suffix : prefix).insert((seen_sequence ? suffix : prefix).end(), ids.begin(), ids.end());
    }
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    auto token = [&](const char* key) {
      const json& v = j.value(key, json::array());
      if (!v.is_array() || v.size() != 2 || !v[1].is_number_integer())
        throw InputError(std::string(source) + ": post_processor." + key + " must be [token, id]");
      return v[1].get<int32_t>();
    };
    prefix.push_back(token("cls"));
    suffix.push_back(token("sep"));
    return;
  }
  throw InputError(std::string(source) + ": post_processor type \"" + type +
                   "\" is not supported (TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)");
}

std::optional<std::string> token_name(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, std::string_view config_json, std::string_view source) {
  json j = parse_json_strict(tokenizer_json, source, "tokenizer.json");
  if (!j.is_object()) throw FormatError(source, "tokenizer.json", "is not a JSON object");
  const json& model = j.value("model", json());
  if (!model.is_object()) throw FormatError(source, "model", "missing");
  std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE")
    throw InputError(std::string(source) + ": model type \"" + type + "\" is not supported (only BPE)");
  const json& vocab = model.value("vocab", json());
  if (!vocab.is_object()) throw FormatError(source, "model.vocab", "is not an object");

  Tokenizer t;
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() >= kMaxVocab)
      throw FormatError(source, "model.vocab", "id of \"" + it.key().substr(0, 50) + "\" is not in 0.." + std::to_string(kMaxVocab - 1));
    max_id = std::max(max_id, it->get<int64_t>());
  }
  const json& added = j.value("added_tokens", json::array());
  for (const json& a : added) {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") || !a["content"].is_string())
      throw FormatError(source, "added_tokens", "each entry needs an integer id and a string content");
    int64_t id = a["id"].get<int64_t>();
    if (id < 0 || id >= kMaxVocab) throw FormatError(source, "added_tokens", "id " + std::to_string(id) + " out of range");
    max_id = std::max(max_id, id);
  }
  std::vector<std::string> tokens(static_cast<size_t>(max_id + 1));
  for (auto it = vocab.begin(); it != vocab.end(); ++it) tokens[it->get<size_t>()] = it.key();

  BpeOptions opt;
  opt.fuse_unk = model.value("fuse_unk", false);
  opt.byte_fallback = model.value("byte_fallback", false);
  opt.ignore_merges = model.value("ignore_merges", false);
  if (model.contains("continuing_subword_prefix") && model["continuing_subword_prefix"].is_string())
    opt.continuing_subword_prefix = model["continuing_subword_prefix"].get<std::string>();
  if (model.contains("end_of_word_suffix") && model["end_of_word_suffix"].is_string())
    opt.end_of_word_suffix = model["end_of_word_suffix"].get<std::string>();
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = vocab.find(model["unk_token"].get<std::string>());
    if (it != vocab.end()) opt.unk_id = it->get<int32_t>();
  }
  if (model.contains("dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0)
    throw InputError(std::string(source) + ": BPE dropout is not supported (it makes encoding random)");
  t.model_ = std::make_unique<BpeModel>(tokens, opt);
  t.model_->set_merges(read_merges(model.value("merges", json()), source), source);

  for (const json& a : added) {
    AddedToken at;
    at.content = a["content"].get<std::string>();
    at.id = a["id"].get<int32_t>();
    at.special = a.value("special", false);
    at.lstrip = a.value("lstrip", false);
    at.rstrip = a.value("rstrip", false);
    at.single_word = a.value("single_word", false);
    at.normalized = a.value("normalized", !at.special);
    t.added_.add(std::move(at));
  }
  t.normalizer_ = normalizer_from_json(j.value("normalizer", json()), source);
  t.pre_tokenizer_ = pre_tokenizer_from_json(j.value("pre_tokenizer", json()), source);
  t.decoder_ = decoder_from_json(j.value("decoder", json()), source);
  t.byte_level_ = t.pre_tokenizer_ && t.pre_tokenizer_->byte_level();
  auto id_of = [&t, source](const std::string& name) {
    auto id = t.token_id(name);
    if (!id) throw InputError(std::string(source) + ": post_processor names unknown token \"" + name + "\"");
    return *id;
  };
  read_post_processor(j.value("post_processor", json()), json(), t.prefix_ids_, t.suffix_ids_, source, id_of);
  t.vocab_size_ = static_cast<int32_t>(max_id + 1);

  if (!config_json.empty()) {
    json c = parse_json_strict(config_json, source, "tokenizer_config.json");
    if (c.is_object()) {
      if (auto b = token_name(c, "bos_token")) t.bos_ = t.token_id(*b);
      if (auto e = token_name(c, "eos_token")) t.eos_ = t.token_id(*e);
      if (auto s = c.find("split_special_tokens"); s != c.end() && s->is_boolean()) t.split_special_ = s->get<bool>();
    }
  }
  return t;
}

Tokenizer Tokenizer::from_folder(const std::string& dir) {
  namespace fs = std::filesystem;
  fs::path root(dir);
  std::string tj = (root / "tokenizer.json").string();
  if (!fs::exists(tj)) throw FormatError(dir, "tokenizer.json", "missing");
  std::string config;
  if (fs::exists(root / "tokenizer_config.json")) config = read_small_file((root / "tokenizer_config.json").string(), 64ull << 20);
  return from_json(read_small_file(tj, kMaxTokenizerJson), config, tj);
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  if (const AddedToken* a = added_.find(token)) return a->id;
  return model_->id(token);
}

std::string Tokenizer::token_text(int32_t id) const {
  if (const AddedToken* a = added_.find(id)) return a->content;
  if (id >= 0 && static_cast<size_t>(id) < model_->size()) return model_->token(id);
  return {};
}

bool Tokenizer::is_special(int32_t id) const {
  const AddedToken* a = added_.find(id);
  return a && a->special;
}

void Tokenizer::encode_text(std::string_view piece, bool at_start, std::vector<int32_t>& out) const {
  std::string text(piece);
  if (normalizer_) normalizer_->apply(text);
  for (const TextPiece& sub : added_.split(text, /*normalized=*/true, split_special_)) {
    if (sub.token >= 0) {
      out.push_back(sub.token);
      continue;
    }
    std::vector<PreToken> words{{std::string(sub.text), at_start && sub.offset == 0}};
    if (pre_tokenizer_) pre_tokenizer_->apply(words);
    for (const PreToken& w : words) model_->encode_word(w.text, out);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view input, bool add_special_tokens) const {
  // Without a byte-level stage there is no way to carry a stray byte: such
  // input is read as Python does with errors="replace".
  std::string cleaned;
  std::string_view text = input;
  if (!byte_level_ && !unicode::is_valid_utf8(input)) {
    cleaned = unicode::to_valid_utf8(input);
    text = cleaned;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special_tokens) out.insert(out.end(), prefix_ids_.begin(), prefix_ids_.end());
  for (const TextPiece& p : added_.split(text, /*normalized=*/false, split_special_)) {
    if (p.token >= 0) out.push_back(p.token);
    else encode_text(p.text, p.offset == 0, out);
  }
  if (add_special_tokens) out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_)
      throw InputError("token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(vocab_size_ - 1) + ")");
    if (const AddedToken* a = added_.find(id)) {
      if (!(skip_special_tokens && a->special)) tokens.push_back(a->content);
      continue;
    }
    tokens.push_back(static_cast<size_t>(id) < model_->size() ? model_->token(id) : std::string());
  }
  if (!decoder_) {
    std::string joined;
    for (size_t i = 0; i < tokens.size(); ++i) joined += (i ? " " : "") + tokens[i];
    return joined;
  }
  decoder_->apply(tokens);
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

}  // namespace umi

#include "format/gguf.h"

namespace umi {
Tokenizer load_tokenizer(const std::string& model_path) {
  if (std::filesystem::is_directory(model_path)) return Tokenizer::from_folder(model_path);
  MappedFile f = MappedFile::open(model_path);
  return Tokenizer::from_gguf(parse_gguf(f.bytes(), model_path));
}
}  // namespace umi
