// Times the host's whole-row draw (backend/token_draw.h: the CPU backend's
// draw, and the host path of a request with logprobs) over a Llama-3-sized
// row of logits drawn from N(0, s): s 0.1 is flat (a random-weight model),
// 6 is peaked (a trained model's). One JSON line per case, best of 30.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "backend/token_draw.h"

int main() {
  const int64_t n = 128256;
  std::mt19937 rng(1);
  std::mt19937_64 keys(2);
  struct Setting {
    const char* name;
    umi::TokenDraw d;
  };
  const Setting settings[] = {{"top_p 1", {.temperature = 1.0f}},
                              {"top_p 0.95", {.temperature = 1.0f, .top_p = 0.95f}},
                              {"min_p 0.05", {.temperature = 1.0f, .min_p = 0.05f}},
                              {"top_p 0.95 min_p 0.05", {.temperature = 1.0f, .top_p = 0.95f, .min_p = 0.05f}}};
  umi::DrawScratch scratch;  // kept between draws, as the engine keeps it
  for (float s : {0.1f, 1.0f, 3.0f, 6.0f}) {
    std::vector<float> row(static_cast<size_t>(n));
    std::normal_distribution<float> nd(0.0f, s);
    for (float& v : row) v = nd(rng);
    for (const Setting& setting : settings) {
      double best = 1e30;
      int64_t sum = 0;
      for (int i = 0; i < 30; ++i) {
        umi::TokenDraw d = setting.d;
        d.key = keys();
        const auto t0 = std::chrono::steady_clock::now();
        sum += umi::draw_token(row.data(), n, d, scratch);
        best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      std::printf("{\"bench\": \"draw\", \"n\": %lld, \"sigma\": %.1f, \"setting\": \"%s\", \"ms\": %.3f, \"checksum\": %lld}\n",
                  static_cast<long long>(n), static_cast<double>(s), setting.name, best, static_cast<long long>(sum));
    }
  }
}
