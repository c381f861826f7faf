// `umi run [-m MODEL] [PROMPT] [-n N] [--temp T] [--seed S] ...`: streams the
// continuation of a prompt and ends with a timing line.
#include <cstdio>

#include "cli/model_options.h"
#include "core/error.h"
#include "core/units.h"
#include "engine/engine.h"
#include "engine/generate.h"
#include "engine/json_schema.h"
#include "format/json_strict.h"
#include "format/mapped_file.h"

namespace umi::cli {

namespace {
struct RunArgs {
  ModelArgs model;
  std::string prompt;
  std::string prompt_file;
  int n = 128;
  SamplingParams sampling;
  bool greedy = false;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  bool json = false;
  std::string json_schema;  // a file
};
}  // namespace

void add_sampling_options(CLI::App& cmd, SamplingParams& s) {
  cmd.add_option("--temp", s.temperature, "temperature (0: greedy)");
  cmd.add_option("--top-k", s.top_k, "keep the k most likely tokens (0: off)");
  cmd.add_option("--top-p", s.top_p, "keep the smallest set with this much probability");
  cmd.add_option("--min-p", s.min_p, "drop tokens less likely than this times the best");
  cmd.add_option("--repeat-penalty", s.repetition_penalty, "penalty for repeated tokens (1: off)");
  cmd.add_option("--presence-penalty", s.presence_penalty, "subtracted from tokens already present");
  cmd.add_option("--frequency-penalty", s.frequency_penalty, "subtracted per occurrence");
  cmd.add_option("--seed", s.seed, "random seed (same seed, same output)");
}

Action add_run(CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand("run", "generate text from a prompt, streaming it");
  auto a = std::make_shared<RunArgs>();
  a->model.add_to(*cmd);
  auto* text = cmd->add_option("PROMPT", a->prompt, "the prompt (default: the model's BOS token alone)");
  cmd->add_option("-f,--file", a->prompt_file, "read the prompt from a file")->excludes(text);
  cmd->add_option("-n,--max-tokens", a->n, "tokens to generate")->check(CLI::Range(0, 1 << 20));
  add_sampling_options(*cmd, a->sampling);
  cmd->add_flag("--greedy", a->greedy, "always take the most likely token (same as --temp 0)");
  cmd->add_option("--stop", a->stop, "stop at this string (repeatable)");
  cmd->add_flag("--ignore-eos", a->ignore_eos, "keep going past end-of-sequence tokens");
  cmd->add_flag("--json", a->json, "JSON mode: generate one JSON object and stop when it closes");
  cmd->add_option("--json-schema", a->json_schema, "generate one value of the JSON schema in this file (see README)")->excludes("--json");
  return [a, &global] {
    Pool pool(a->model.pool_options(global));
    if (a->model.verbose) print_memory(pool, "start");
    Model model(a->model.path(), pool, a->model.options());
    Tokenizer tok = load_tokenizer(a->model.path());
    const Pool& device = model.kv_pool().memory();  // the host pool on the CPU
    if (a->model.verbose) {
      print_memory(pool, "loaded");
      if (&device != &pool) print_memory(device, "loaded, GPU");
    }
    if (!a->prompt_file.empty()) {
      MappedFile f = MappedFile::open(a->prompt_file);
      a->prompt.assign(reinterpret_cast<const char*>(f.bytes().data()), f.size());
    }
    std::vector<int32_t> prompt = tok.encode(a->prompt, true);
    if (prompt.empty() && tok.bos_id()) prompt.push_back(*tok.bos_id());
    if (prompt.empty()) throw InputError("the prompt is empty and the model has no BOS token to start from");
    // The same engine the server and `umi bench` use, with one request.
    RequestOptions o;
    o.max_tokens = a->n;
    o.sampling = a->sampling;
    if (a->greedy) o.sampling.temperature = 0;
    o.stop_strings = a->stop;
    o.json_object = a->json;
    if (!a->json_schema.empty())
      o.json_schema = compile_json_schema(read_ordered_json_file(a->json_schema));
    if (!a->ignore_eos) o.stop_tokens = default_stop_tokens(tok);
    if (a->prompt_file.empty()) std::fputs(a->prompt.c_str(), stdout);
    std::fflush(stdout);
    Engine engine(model, tok);
    RequestOutput r;
    engine.submit(prompt, o,
                  {[](uint64_t, int32_t, std::string_view piece) {
                     std::fwrite(piece.data(), 1, piece.size(), stdout);
                     std::fflush(stdout);
                   },
                   [&r](const RequestOutput& out) { r = out; }});
    engine.run_until_idle();
    if (r.finish_reason == "error") throw OutOfMemory(r.error);
    std::printf("%s\n", r.tail.c_str());
    std::fflush(stdout);  // the text, then the timing line, also when both go through one pipe
    const double prefill = r.first_token_seconds > 0 ? r.first_token_seconds : r.total_seconds;
    const double decode_s = r.total_seconds - prefill;
    const double decode_tps = r.completion_tokens > 1 && decode_s > 0 ? static_cast<double>(r.completion_tokens - 1) / decode_s : 0;
    // On a GPU the weights, KV and activations are in the device's pool: its peak too.
    const std::string peak =
        format_bytes(pool.stats().peak) + (&device != &pool ? ", GPU " + format_bytes(device.stats().peak) : std::string());
    std::fprintf(stderr,
                 "[prompt %lld tokens, %.1f tok/s | decode %lld tokens, %.1f tok/s | first token %.1f ms | peak memory %s | %s]\n",
                 static_cast<long long>(r.prompt_tokens), static_cast<double>(r.prompt_tokens) / prefill,
                 static_cast<long long>(r.completion_tokens), decode_tps, prefill * 1e3, peak.c_str(), r.finish_reason.c_str());
    if (a->model.verbose) {
      print_memory(pool, "end");
      if (&device != &pool) print_memory(device, "end, GPU");
    }
  };
}

}  // namespace umi::cli
