// Opens what a user means by MODEL: a GGUF file, or a Hugging Face folder
// (config.json + model.safetensors or a sharded model.safetensors.index.json,
// tokenizer files beside them). The format is told by the file's content (the
// GGUF magic) or by being a folder, never by a file name's extension.
//
// Every file is mapped, not read: opening a model allocates nothing in
// proportion to its size, and tensors are views into the mappings.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "format/gguf.h"
#include "format/mapped_file.h"
#include "format/tensor_view.h"

namespace umi {

enum class ModelFormat { gguf, safetensors };
std::string_view to_string(ModelFormat f);

// What a model ships beside its weights, for `inspect` and the loaders.
struct ModelExtras {
  bool has_tokenizer = false;
  std::string tokenizer_kind;  // "tokenizer.json", "gguf:gpt2", "gguf:llama", ...
  uint64_t tokenizer_entries = 0;  // GGUF vocabulary entries
  bool has_chat_template = false;
  std::string chat_template_source;  // "tokenizer_config.json", "chat_template.jinja", "gguf"
};

class ModelFiles {
 public:
  // Throws FormatError for anything malformed or missing.
  static ModelFiles open(const std::string& path);

  ModelFormat format() const { return format_; }
  const std::string& path() const { return path_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(std::string_view name) const;
  const GgufFile* gguf() const { return gguf_.get(); }
  // The folder's config.json text (empty for GGUF) and its path.
  const std::string& config_json() const { return config_json_; }
  const std::string& config_path() const { return config_path_; }
  const ModelExtras& extras() const { return extras_; }
  // Layout problems that do not stop loading (holes, misalignment, tensors a
  // shard index does not list).
  const std::vector<std::string>& warnings() const { return warnings_; }
  const std::vector<std::unique_ptr<MappedFile>>& files() const { return files_; }
  uint64_t tensor_bytes() const;

  void advise(Advice advice) const;

 private:
  void open_gguf(MappedFile file);
  void open_folder(const std::string& dir);
  void add_safetensors(const std::string& path);
  void index_tensors();

  ModelFormat format_ = ModelFormat::gguf;
  std::string path_;
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::unique_ptr<GgufFile> gguf_;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::string config_json_;
  std::string config_path_;
  ModelExtras extras_;
  std::vector<std::string> warnings_;
};

}  // namespace umi
