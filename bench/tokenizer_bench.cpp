// Tokenizer encode speed on one core, and linearity on one huge word.
//   umi_bench_tokenizer CORPUS TOKENIZER_DIR...
// Prints one JSON line per measurement.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "tokenizer/tokenizer.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Median of `runs` timings of encode(text).
double time_encode(const umi::Tokenizer& tok, const std::string& text, int runs, size_t* n_tokens) {
  std::vector<double> t;
  for (int r = 0; r < runs; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    auto ids = tok.encode(text, false);
    t.push_back(seconds_since(t0));
    *n_tokens = ids.size();
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: umi_bench_tokenizer CORPUS TOKENIZER_DIR...\n");
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string corpus = ss.str();
  for (int a = 2; a < argc; ++a) {
    umi::Tokenizer tok = umi::load_tokenizer(argv[a]);
    size_t n = 0;
    tok.encode(corpus, false);  // warm the word cache as a long-running server would be
    double s = time_encode(tok, corpus, 5, &n);
    std::printf("{\"bench\":\"encode\",\"tokenizer\":\"%s\",\"bytes\":%zu,\"tokens\":%zu,\"seconds\":%.4f,\"mb_per_s\":%.2f}\n",
                argv[a], corpus.size(), n, s, corpus.size() / s / 1e6);
    umi::Tokenizer cold = umi::load_tokenizer(argv[a]);
    auto t0 = std::chrono::steady_clock::now();
    cold.encode(corpus, false);
    double c = seconds_since(t0);
    std::printf("{\"bench\":\"encode_cold_cache\",\"tokenizer\":\"%s\",\"bytes\":%zu,\"seconds\":%.4f,\"mb_per_s\":%.2f}\n",
                argv[a], corpus.size(), c, corpus.size() / c / 1e6);
    for (size_t size : {size_t{1} << 17, size_t{1} << 18, size_t{1} << 19, size_t{1} << 20}) {
      std::string word(size, 'a');
      double w = time_encode(tok, word, 3, &n);
      std::printf("{\"bench\":\"single_word\",\"tokenizer\":\"%s\",\"bytes\":%zu,\"tokens\":%zu,\"seconds\":%.4f,\"ns_per_byte\":%.1f}\n",
                  argv[a], size, n, w, w * 1e9 / static_cast<double>(size));
    }
  }
  return 0;
}
