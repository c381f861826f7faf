// How far each weight type moves a model's next-token distributions: the
// model (a Hugging Face folder) converted to f32 and to each type named,
// every position of three 1,000-token windows of a text fed one token at a
// time, and per type the mean KL divergence from the f32 model's
// distribution and the perplexity of the text. One JSON line per type.
//
//   umi_bench_quant_quality MODEL_DIR TEXT_FILE OUT_DIR TYPE...
//   umi_bench_quant_quality models/tiny-shakespeare ../shared/data/corpus/tinyshakespeare.txt /tmp q4_k q2_k
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "engine/sequence.h"
#include "memory/pool.h"
#include "model/convert.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace {

using namespace umi;

// Log-probabilities of the next token after each position of `ids`.
std::vector<std::vector<float>> log_probs(const std::string& file, const std::vector<int32_t>& ids) {
  Pool pool({.limit = 4ull << 30});
  Model m(file, pool, {.kv_dtype = DType::F32});
  Sequence seq(m);
  std::vector<std::vector<float>> out;
  for (int32_t id : ids) {
    const std::vector<float> l = seq.feed(std::span<const int32_t>(&id, 1));
    const double top = *std::max_element(l.begin(), l.end());
    double sum = 0;
    for (float v : l) sum += std::exp(v - top);
    const double log_z = top + std::log(sum);
    std::vector<float> lp(l.size());
    for (size_t i = 0; i < l.size(); ++i) lp[i] = static_cast<float>(l[i] - log_z);
    out.push_back(std::move(lp));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s MODEL_DIR TEXT_FILE OUT_DIR TYPE...\n", argv[0]);
    return 2;
  }
  const std::string src = argv[1], out_dir = argv[3];
  std::ifstream in(argv[2]);
  std::stringstream text;
  text << in.rdbuf();
  const std::string all = text.str();
  const Tokenizer tok = load_tokenizer(src);
  std::vector<std::vector<int32_t>> windows;
  for (size_t at : {all.size() / 10, all.size() * 4 / 10, all.size() * 8 / 10}) {
    std::vector<int32_t> ids = tok.encode(all.substr(at, 8000), true);
    ids.resize(std::min<size_t>(ids.size(), 1000));
    windows.push_back(std::move(ids));
  }
  const std::string reference = out_dir + "/quant_quality_f32.gguf", quantized = out_dir + "/quant_quality.gguf";
  convert_model(src, reference, {.type = DType::F32});
  std::vector<std::vector<std::vector<float>>> ref;
  for (const auto& w : windows) ref.push_back(log_probs(reference, w));
  for (int a = 4; a < argc; ++a) {
    const auto t = dtype_from_name(argv[a]);
    if (!t) throw InputError(std::string("unknown type ") + argv[a]);
    convert_model(src, quantized, {.type = *t});
    double kl = 0, nll = 0, nll_ref = 0;
    size_t n = 0;
    for (size_t w = 0; w < windows.size(); ++w) {
      const auto q = log_probs(quantized, windows[w]);
      for (size_t p = 0; p + 1 < windows[w].size(); ++p, ++n) {
        for (size_t i = 0; i < q[p].size(); ++i) kl += std::exp(static_cast<double>(ref[w][p][i])) * (ref[w][p][i] - q[p][i]);
        nll -= q[p][static_cast<size_t>(windows[w][p + 1])], nll_ref -= ref[w][p][static_cast<size_t>(windows[w][p + 1])];
      }
    }
    std::printf("{\"bench\":\"quant_quality\",\"type\":\"%s\",\"positions\":%zu,\"mean_kl\":%.6f,\"ppl\":%.4f,\"ppl_f32\":%.4f}\n", argv[a], n,
                kl / static_cast<double>(n), std::exp(nll / static_cast<double>(n)), std::exp(nll_ref / static_cast<double>(n)));
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
