// Writes the bad-file corpus and the tiny valid model to a folder:
//   umi_write_corpus DIR
// Used as fuzzing seeds and to try `umi inspect` on each by hand.
#include <cstdio>
#include <filesystem>

#include "support/bad_files.h"

int main(int argc, char** argv) {
  using namespace umi::test;
  if (argc != 2) {
    std::fprintf(stderr, "usage: umi_write_corpus DIR\n");
    return 2;
  }
  std::filesystem::path dir(argv[1]);
  std::filesystem::create_directories(dir / "gguf");
  std::filesystem::create_directories(dir / "safetensors");
  for (const BadFile& f : bad_gguf_files()) write_file((dir / "gguf" / f.name).string(), f.bytes);
  for (const BadFile& f : bad_safetensors_files()) write_file((dir / "safetensors" / f.name).string(), f.bytes);
  write_file((dir / "gguf" / "tiny-llama.gguf").string(), tiny_llama_gguf());
  write_file((dir / "safetensors" / "valid.safetensors").string(),
             build_safetensors({{"w", "F32", {4, 4}}, {"b", "BF16", {3}}}, R"({"format":"pt"})"));
  return 0;
}
