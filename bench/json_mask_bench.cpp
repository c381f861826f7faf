// What the JSON output mask costs a step: JSON mode and a JSON schema, at
// every position of a document, over a real vocabulary.
//   umi_bench_json_mask TOKENIZER_DIR
// Prints one JSON line per (mode, kind of position): the median and the
// slowest mask over the positions of that kind, and the vocabulary table's
// one-time cost.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/json_mask.h"
#include "tokenizer/token_bytes.h"

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Times the mask before each byte of `doc`, split by whether the recognizer
// is inside a free string (plain tokens pass unwalked) or not.
template <class Recognizer>
void run(const char* mode, Recognizer r, const std::string& doc, const umi::JsonVocabulary& v, size_t vocab) {
  std::vector<double> structural, strings;
  std::vector<float> logits(vocab);
  int64_t left_min = INT64_MAX, left_max = 0;
  for (size_t i = 0; i < doc.size(); ++i) {
    std::fill(logits.begin(), logits.end(), 1.0f);
    const auto t0 = Clock::now();
    const int64_t left = umi::mask_to_json(r, v, logits);
    (r.in_string() ? strings : structural).push_back(ms_since(t0));
    left_min = std::min(left_min, left), left_max = std::max(left_max, left);
    if (!r.feed(doc[i])) {
      std::fprintf(stderr, "the document is refused at byte %zu\n", i);
      std::exit(1);
    }
  }
  for (auto* t : {&structural, &strings}) {
    if (t->empty()) continue;
    std::sort(t->begin(), t->end());
    std::printf("{\"bench\":\"json_mask\",\"mode\":\"%s\",\"positions\":\"%s\",\"count\":%zu,\"median_ms\":%.3f,\"max_ms\":%.3f,"
                "\"tokens_left_min\":%lld,\"tokens_left_max\":%lld}\n",
                mode, t == &structural ? "structural" : "in_string", t->size(), (*t)[t->size() / 2], t->back(),
                static_cast<long long>(left_min), static_cast<long long>(left_max));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: umi_bench_json_mask TOKENIZER_DIR\n");
    return 2;
  }
  const umi::Tokenizer tok = umi::Tokenizer::from_folder(argv[1]);
  auto t0 = Clock::now();
  const umi::JsonVocabulary v(umi::token_bytes(tok));
  std::printf("{\"bench\":\"json_mask\",\"vocabulary\":%zu,\"table_ms\":%.1f}\n", v.bytes.size(), ms_since(t0));
  const std::string doc =
      "{\n  \"name\": \"Ada Lovelace, \\\"the Enchantress of Numbers\\\"\",\n  \"kind\": \"mathematician\",\n"
      "  \"born\": 1815,\n  \"notes\": [\"Bernoulli numbers\", \"the Analytical Engine\"],\n  \"score\": -12.5e-1,\n"
      "  \"alive\": false,\n  \"extra\": {\"k\": [1, 2, {\"deep\": null}]}\n}";
  run("object", umi::JsonRecognizer(), doc, v, tok.vocab_size());
  const auto schema = umi::compile_json_schema(nlohmann::ordered_json::parse(R"({"type": "object", "properties": {
      "name": {"type": "string"}, "kind": {"enum": ["mathematician", "engineer", "poet"]}, "born": {"type": "integer"},
      "notes": {"type": "array", "items": {"type": "string"}}, "score": {"type": "number"}, "alive": {"type": "boolean"},
      "extra": {}}, "required": ["name", "kind", "born", "notes", "score", "alive", "extra"]})"));
  run("schema", umi::SchemaRecognizer(*schema), doc, v, tok.vocab_size());
  return 0;
}
