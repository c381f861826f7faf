// `umi fit MODEL --ctx N ...`: the memory plan before anything is loaded.
// MODEL may be a GGUF file, a Hugging Face folder, or a folder or file holding
// only config.json (then weight bytes are estimated from --weight-dtype).
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.h"
#include "core/error.h"
#include "core/units.h"
#include "format/mapped_file.h"
#include "format/model_files.h"
#include "memory/system_memory.h"
#include "model/memory_plan.h"

namespace umi::cli {

namespace {

struct FitArgs {
  std::string model;
  int64_t ctx = 0;
  int64_t batch = 1;
  std::string kv_dtype = "f16";
  std::string memory;
  std::string weight_dtype;
  int64_t prefill_chunk = 512;
  bool json = false;
};

// A model's config and weight bytes: measured from its files when present,
// else estimated from config.json alone.
std::pair<ModelConfig, uint64_t> model_shape(const FitArgs& a, std::string* weights_source) {
  namespace fs = std::filesystem;
  fs::path p(a.model);
  fs::path config_only;
  if (fs::is_directory(p) && fs::exists(p / "config.json") && !fs::exists(p / "model.safetensors") &&
      !fs::exists(p / "model.safetensors.index.json"))
    config_only = p / "config.json";
  else if (fs::is_regular_file(p) && p.filename() == "config.json")
    config_only = p;
  if (!config_only.empty()) {
    MappedFile f = MappedFile::open(config_only.string());
    ModelConfig c = config_from_hf_json({reinterpret_cast<const char*>(f.bytes().data()), f.size()},
                                        config_only.string());
    DType dt = c.weight_dtype.value_or(DType::BF16);
    if (!a.weight_dtype.empty()) {
      auto parsed = dtype_from_name(a.weight_dtype);
      if (!parsed) throw InputError("--weight-dtype: unknown dtype \"" + a.weight_dtype + "\"");
      dt = *parsed;
    }
    *weights_source = "estimated for " + std::string(to_string(dt));
    return {c, estimate_weight_bytes(c, dt)};
  }
  ModelFiles m = ModelFiles::open(a.model);
  *weights_source = "measured from the files";
  return {config_from_files(m), m.tensor_bytes()};
}

void print(const MemoryPlan& p, const FitArgs& a, const std::string& weights_source) {
  if (a.json) {
    nlohmann::json j = {{"weights_bytes", p.weights},
                        {"weights_source", weights_source},
                        {"kv_bytes_per_token", p.kv_per_token},
                        {"kv_block_bytes", p.kv_block},
                        {"kv_bytes", p.kv_total},
                        {"activation_bytes", p.activations},
                        {"total_bytes", p.total},
                        {"limit_bytes", p.limit},
                        {"fits", p.fits},
                        {"context", a.ctx},
                        {"batch", a.batch},
                        {"kv_dtype", a.kv_dtype},
                        {"max_context", p.max_context},
                        {"model_context", p.model_context}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("weights          %14s  (%s)\n", format_bytes(p.weights).c_str(), weights_source.c_str());
  std::printf("kv per token     %14s  (%s)\n", format_bytes(p.kv_per_token).c_str(), a.kv_dtype.c_str());
  std::printf("kv cache         %14s  (%lld x %lld tokens)\n", format_bytes(p.kv_total).c_str(),
              static_cast<long long>(a.batch), static_cast<long long>(a.ctx));
  std::printf("activations      %14s  (one %lld-token prefill chunk)\n", format_bytes(p.activations).c_str(),
              static_cast<long long>(std::min(a.prefill_chunk, a.ctx)));
  std::printf("total            %14s\n", format_bytes(p.total).c_str());
  std::printf("limit            %14s  -> %s\n", format_bytes(p.limit).c_str(), p.fits ? "fits" : "does NOT fit");
  std::printf("largest context  %14lld  tokens per sequence at batch %lld (model trained for %lld)\n",
              static_cast<long long>(p.max_context), static_cast<long long>(a.batch),
              static_cast<long long>(p.model_context));
}

}  // namespace

Action add_fit(CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand("fit", "plan the memory a model and context need, before loading anything");
  auto a = std::make_shared<FitArgs>();
  cmd->add_option("MODEL", a->model, "a .gguf file, a Hugging Face folder, or a config.json")->required();
  cmd->add_option("--ctx", a->ctx, "tokens per sequence")->required();
  cmd->add_option("--batch", a->batch, "concurrent sequences");
  cmd->add_option("--kv-dtype", a->kv_dtype, "f16 or q8_0")->check(CLI::IsMember({"f16", "q8_0"}));
  cmd->add_option("--memory", a->memory, "budget to test against (default: --memory-limit)");
  cmd->add_option("--weight-dtype", a->weight_dtype, "for config-only models: dtype of the weights");
  cmd->add_option("--prefill-chunk", a->prefill_chunk, "tokens per prefill chunk");
  cmd->add_flag("--json", a->json, "print one JSON object");
  return [a, &global] {
    FitRequest r;
    r.context = a->ctx;
    r.batch = a->batch;
    r.kv_dtype = *dtype_from_name(a->kv_dtype);
    r.prefill_chunk = a->prefill_chunk;
    r.threads = std::max(1u, std::thread::hardware_concurrency());
    r.page = page_size();
    if (!a->memory.empty()) {
      auto v = parse_bytes(a->memory);
      if (!v || *v == 0) throw InputError("--memory: \"" + a->memory + "\" is not a size such as 192GB");
      r.limit = *v;
    } else {
      r.limit = global.resolved_limit();
    }
    std::string source;
    auto [config, weights] = model_shape(*a, &source);
    print(plan_memory(config, weights, r), *a, source);
  };
}

}  // namespace umi::cli
