#include "format/model_files.h"

#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "format/json_strict.h"
#include "format/safetensors.h"

namespace umi {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxConfigBytes = 16ull << 20;

bool starts_with_gguf_magic(const MappedFile& f) {
  return f.size() >= 4 && std::memcmp(f.bytes().data(), "GGUF", 4) == 0;
}

// safetensors has no magic; its JSON header starts at byte 8 with '{'.
bool looks_like_safetensors(const MappedFile& f) {
  auto b = f.bytes();
  for (size_t i = 8; i < b.size() && i < 64; ++i) {
    char c = static_cast<char>(b[i]);
    if (c == '{') return true;
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return false;
  }
  return false;
}

}  // namespace

std::string_view to_string(ModelFormat f) { return f == ModelFormat::gguf ? "gguf" : "safetensors"; }

ModelFiles ModelFiles::open(const std::string& path) {
  ModelFiles m;
  m.path_ = path;
  std::error_code ec;
  auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw FormatError(path, "open", "no such file or folder");
  if (fs::is_directory(status)) {
    m.open_folder(path);
  } else {
    MappedFile f = MappedFile::open(path);
    if (starts_with_gguf_magic(f)) {
      m.open_gguf(std::move(f));
    } else {
      // A lone safetensors file (tensors only, no config), or neither format.
      m.format_ = ModelFormat::safetensors;
      bool json_header = looks_like_safetensors(f);
      f = MappedFile();
      try {
        m.add_safetensors(path);
      } catch (const FormatError& e) {
        if (json_header) throw;
        std::string why = e.what();
        if (why.rfind(path + ": ", 0) == 0) why.erase(0, path.size() + 2);
        throw FormatError(path, "format", "not a GGUF file (no \"GGUF\" magic) nor a safetensors file (" + why + ")");
      }
      m.warnings_.push_back("no config.json: a lone safetensors file has tensors but no hyper-parameters");
    }
  }
  if (m.index_.empty()) m.index_tensors();
  return m;
}

void ModelFiles::open_gguf(MappedFile file) {
  format_ = ModelFormat::gguf;
  files_.push_back(std::make_unique<MappedFile>(std::move(file)));
  gguf_ = std::make_unique<GgufFile>(parse_gguf(files_.back()->bytes(), path_));
  tensors_ = gguf_->tensors;
  if (const GgufValue* tokens = gguf_->find("tokenizer.ggml.tokens"); tokens && tokens->type == GgufType::array) {
    extras_.has_tokenizer = true;
    extras_.tokenizer_entries = tokens->count;
    extras_.tokenizer_kind = "gguf:" + std::string(gguf_->get_string("tokenizer.ggml.model").value_or("?"));
  }
  if (gguf_->get_string("tokenizer.chat_template")) {
    extras_.has_chat_template = true;
    extras_.chat_template_source = "gguf";
  }
}

void ModelFiles::add_safetensors(const std::string& file) {
  files_.push_back(std::make_unique<MappedFile>(MappedFile::open(file)));
  SafetensorsFile st =
      parse_safetensors(files_.back()->bytes(), file, static_cast<uint32_t>(files_.size() - 1));
  for (std::string& w : st.warnings) warnings_.push_back(file + ": " + w);
  for (TensorView& tv : st.tensors) tensors_.push_back(std::move(tv));
}

void ModelFiles::open_folder(const std::string& dir) {
  format_ = ModelFormat::safetensors;
  fs::path root(dir);
  config_path_ = (root / "config.json").string();
  if (!fs::exists(config_path_)) throw FormatError(dir, "config.json", "missing: not a Hugging Face model folder");
  config_json_ = read_small_file(config_path_, kMaxConfigBytes);

  fs::path index = root / "model.safetensors.index.json";
  fs::path single = root / "model.safetensors";
  if (fs::exists(index)) {
    std::string index_path = index.string();
    SafetensorsIndex idx = parse_safetensors_index(read_small_file(index_path, 64ull << 20), index_path);
    for (const std::string& shard : idx.shards) add_safetensors((root / shard).string());
    index_tensors();
    for (const auto& [name, shard] : idx.weight_map) {
      const TensorView* tv = find(name);
      if (!tv || files_[tv->file_index]->path() != (root / shard).string())
        throw FormatError(index_path, "weight_map." + name, "tensor is not in shard " + shard);
    }
    for (const TensorView& tv : tensors_)
      if (!idx.weight_map.count(tv.name))
        warnings_.push_back("tensor '" + tv.name + "' is in a shard but not in the index");
  } else if (fs::exists(single)) {
    add_safetensors(single.string());
  } else {
    throw FormatError(dir, "weights", "neither model.safetensors nor model.safetensors.index.json is present");
  }

  if (fs::exists(root / "tokenizer.json")) {
    extras_.has_tokenizer = true;
    extras_.tokenizer_kind = "tokenizer.json";
  }
  if (fs::exists(root / "chat_template.jinja")) {
    extras_.has_chat_template = true;
    extras_.chat_template_source = "chat_template.jinja";
  } else if (fs::exists(root / "tokenizer_config.json")) {
    std::string p = (root / "tokenizer_config.json").string();
    nlohmann::json tc = parse_json_strict(read_small_file(p, 64ull << 20), p, "json");
    if (tc.is_object() && tc.contains("chat_template")) {
      extras_.has_chat_template = true;
      extras_.chat_template_source = "tokenizer_config.json";
    }
  }
}

void ModelFiles::index_tensors() {
  for (size_t i = 0; i < tensors_.size(); ++i)
    if (!index_.emplace(tensors_[i].name, i).second)
      throw FormatError(files_[tensors_[i].file_index]->path(), "tensor '" + tensors_[i].name + "'",
                        "appears in more than one file");
}

const TensorView* ModelFiles::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

uint64_t ModelFiles::tensor_bytes() const {
  uint64_t n = 0;
  for (const TensorView& tv : tensors_) n += tv.nbytes;
  return n;
}

void ModelFiles::advise(Advice advice) const {
  for (const auto& f : files_) f->advise(advice);
}

}  // namespace umi
