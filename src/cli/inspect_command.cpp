// `umi inspect MODEL [--json]`: what a model file or folder holds, and what is
// wrong with its layout, without touching the weights.
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/units.h"
#include "format/model_files.h"
#include "model/config.h"

namespace umi::cli {

namespace {

using nlohmann::json;

json config_json(const ModelConfig& c) {
  json j = {{"architecture", c.arch_name},
            {"family", std::string(to_string(c.arch))},
            {"supported", c.supported()},
            {"vocab_size", c.vocab_size},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"layers", c.n_layers},
            {"heads", c.n_heads},
            {"kv_heads", c.n_kv_heads},
            {"head_dim", c.head_dim},
            {"context_length", c.max_context},
            {"rope_theta", c.rope_theta},
            {"rms_eps", c.rms_eps},
            {"tied_embeddings", c.tie_embeddings},
            {"attention_bias", c.attention_bias},
            {"qk_norm", c.qk_norm}};
  const char* rope = c.rope_scaling.type == RopeScaling::Type::llama3   ? "llama3"
                     : c.rope_scaling.type == RopeScaling::Type::linear ? "linear"
                                                                         : "none";
  j["rope_scaling"] = {{"type", rope}, {"factor", c.rope_scaling.factor}};
  return j;
}

json build_report(const ModelFiles& m) {
  json r;
  r["path"] = m.path();
  r["format"] = std::string(to_string(m.format()));
  if (m.gguf()) r["gguf_version"] = m.gguf()->version;
  json files = json::array();
  uint64_t mapped = 0;
  for (const auto& f : m.files()) {
    files.push_back({{"path", f->path()}, {"bytes", f->size()}});
    mapped += f->size();
  }
  r["files"] = files;
  r["mapped_bytes"] = mapped;
  if (m.gguf() || !m.config_json().empty()) r["config"] = config_json(config_from_files(m));

  std::map<std::string, std::pair<uint64_t, uint64_t>> by_dtype;  // count, bytes
  for (const TensorView& tv : m.tensors()) {
    auto& [count, bytes] = by_dtype[std::string(to_string(tv.dtype))];
    ++count;
    bytes += tv.nbytes;
  }
  json dtypes = json::object();
  for (const auto& [name, cb] : by_dtype) dtypes[name] = {{"tensors", cb.first}, {"bytes", cb.second}};
  r["tensors"] = {{"count", m.tensors().size()}, {"bytes", m.tensor_bytes()}, {"by_dtype", dtypes}};
  const ModelExtras& x = m.extras();
  r["tokenizer"] = x.has_tokenizer ? json{{"kind", x.tokenizer_kind}, {"entries", x.tokenizer_entries}} : json(nullptr);
  r["chat_template"] = x.has_chat_template ? json(x.chat_template_source) : json(nullptr);
  r["layout_problems"] = m.warnings();
  return r;
}

void print_human(const json& r) {
  std::printf("model        %s\n", r["path"].get<std::string>().c_str());
  std::string fmt = r["format"].get<std::string>();
  if (r.contains("gguf_version")) fmt += " v" + std::to_string(r["gguf_version"].get<int>());
  std::printf("format       %s, %zu file(s), %s mapped\n", fmt.c_str(), r["files"].size(),
              format_bytes(r["mapped_bytes"].get<uint64_t>()).c_str());
  if (r.contains("config")) {
    const json& c = r["config"];
    std::printf("architecture %s (%s)\n", c["architecture"].get<std::string>().c_str(),
                c["supported"].get<bool>() ? ("supported as " + c["family"].get<std::string>()).c_str()
                                           : "not supported");
    std::printf("shape        vocab %lld, hidden %lld, ffn %lld, layers %lld, heads %lld/%lld kv, head_dim %lld\n",
                c["vocab_size"].get<long long>(), c["hidden_size"].get<long long>(),
                c["intermediate_size"].get<long long>(), c["layers"].get<long long>(), c["heads"].get<long long>(),
                c["kv_heads"].get<long long>(), c["head_dim"].get<long long>());
    std::printf("context      %lld tokens, rope theta %g (scaling %s x%g), rms eps %g\n",
                c["context_length"].get<long long>(), c["rope_theta"].get<double>(),
                c["rope_scaling"]["type"].get<std::string>().c_str(), c["rope_scaling"]["factor"].get<double>(),
                c["rms_eps"].get<double>());
    std::printf("options      %s embeddings%s%s\n", c["tied_embeddings"].get<bool>() ? "tied" : "untied",
                c["attention_bias"].get<bool>() ? ", qkv bias" : "", c["qk_norm"].get<bool>() ? ", q/k norm" : "");
  }
  const json& t = r["tensors"];
  std::printf("tensors      %zu, %s\n", t["count"].get<size_t>(), format_bytes(t["bytes"].get<uint64_t>()).c_str());
  for (const auto& [name, v] : t["by_dtype"].items())
    std::printf("  %-10s %6zu tensors %12s\n", name.c_str(), v["tensors"].get<size_t>(),
                format_bytes(v["bytes"].get<uint64_t>()).c_str());
  if (r["tokenizer"].is_null()) std::printf("tokenizer    none\n");
  else
    std::printf("tokenizer    %s%s\n", r["tokenizer"]["kind"].get<std::string>().c_str(),
                r["tokenizer"]["entries"].get<uint64_t>()
                    ? (" (" + std::to_string(r["tokenizer"]["entries"].get<uint64_t>()) + " entries)").c_str()
                    : "");
  std::printf("chat template %s\n", r["chat_template"].is_null() ? "none" : ("yes, from " + r["chat_template"].get<std::string>()).c_str());
  if (r["layout_problems"].empty()) std::printf("layout       no problems\n");
  for (const auto& w : r["layout_problems"]) std::printf("layout       problem: %s\n", w.get<std::string>().c_str());
}

}  // namespace

Action add_inspect(CLI::App& app, const GlobalOptions&) {
  auto* cmd = app.add_subcommand("inspect", "show what a GGUF file or Hugging Face folder holds");
  auto model = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  cmd->add_option("MODEL", *model, "a .gguf file or a Hugging Face model folder")->required();
  cmd->add_flag("--json", *as_json, "print one JSON object");
  return [model, as_json] {
    ModelFiles m = ModelFiles::open(*model);
    json report = build_report(m);
    if (*as_json) std::printf("%s\n", report.dump(2).c_str());
    else print_human(report);
  };
}

}  // namespace umi::cli
