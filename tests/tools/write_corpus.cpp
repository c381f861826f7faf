// Writes the bad-file corpus and the tiny valid model to a folder:
//   umi_write_corpus DIR
// Used as fuzzing seeds and to try `umi inspect` on each by hand.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "support/bad_files.h"

static const char kLlamaConfig[] = R"({"architectures":["LlamaForCausalLM"],"vocab_size":128256,
 "hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,
 "num_key_value_heads":8,"max_position_embeddings":131072,"rms_norm_eps":1e-05,"rope_theta":500000.0,
 "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
 "original_max_position_embeddings":8192,"rope_type":"llama3"},"tie_word_embeddings":false,
 "torch_dtype":"bfloat16","eos_token_id":[128001,128009]})";

int main(int argc, char** argv) {
  using namespace umi::test;
  if (argc != 2) {
    std::fprintf(stderr, "usage: umi_write_corpus DIR\n");
    return 2;
  }
  std::filesystem::path dir(argv[1]);
  std::filesystem::create_directories(dir / "gguf");
  std::filesystem::create_directories(dir / "safetensors");
  std::filesystem::create_directories(dir / "json");
  for (const BadFile& f : bad_gguf_files()) write_file((dir / "gguf" / f.name).string(), f.bytes);
  for (const BadFile& f : bad_safetensors_files()) write_file((dir / "safetensors" / f.name).string(), f.bytes);
  write_file((dir / "gguf" / "tiny-llama.gguf").string(), tiny_llama_gguf());
  write_file((dir / "safetensors" / "valid.safetensors").string(),
             build_safetensors({{"w", "F32", {4, 4}}, {"b", "BF16", {3}}}, R"({"format":"pt"})"));
  std::filesystem::create_directories(dir / "tokenizer");
  std::filesystem::create_directories(dir / "template");
  const char* texts[] = {"Hello, world! I'm here.", "<|im_start|>user\n\xe4\xbd\xa0\xe5\xa5\xbd<|im_end|>", "  \t\r\n 1234567 ",
                         "\xff\xfe invalid \xc3", "e\xcc\x81 \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9"};
  int k = 0;
  for (const char* t : texts)
    write_file((dir / "tokenizer" / ("t" + std::to_string(k++))).string(), Bytes(reinterpret_cast<const std::byte*>(t), reinterpret_cast<const std::byte*>(t) + std::strlen(t)));
  const char* templates[] = {
      "{%- for m in messages %}{{ m.role + ': ' + m.content | trim }}{% if not loop.last %}\n{% endif %}{%- endfor %}",
      "{% set ns = namespace(x=0) %}{% for m in messages[::-1] if m.role == 'user' %}{% set ns.x = ns.x + 1 %}{% endfor %}{{ ns.x }}",
      "{% macro f(a, b='x') %}{{ a ~ b }}{% endmacro %}{{ f(1) }}{{ tools | tojson(indent=2) }}{{ 'a.b'.split('.')[-1] }}",
      "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no') }}{% elif x is defined %}{{ x }}{% else %}{{ 7 // 2 }}{% endif %}"};
  k = 0;
  for (const char* t : templates)
    write_file((dir / "template" / ("t" + std::to_string(k++))).string(), Bytes(reinterpret_cast<const std::byte*>(t), reinterpret_cast<const std::byte*>(t) + std::strlen(t)));
  std::filesystem::create_directories(dir / "schema");  // "schema\0output"
  const std::string schemas[] = {
      std::string(R"({"type":"object","properties":{"a":{"type":"integer","minimum":0,"maximum":9},"b":{"enum":["x",1,null]},)"
                  R"("c":{"type":"array","items":{"type":"string","maxLength":3},"maxItems":2}},"required":["a"]})") +
          '\0' + R"({"a": 5, "b": "x", "c": ["ab"]})",
      std::string(R"({"$ref":"#/$defs/n","$defs":{"n":{"type":"object","properties":{"v":{},"next":{"anyOf":[{"$ref":"#/$defs/n"},)"
                  R"({"type":"null"}]}}}}})") +
          '\0' + R"({"v": [1, {"k": "s"}], "next": {"next": null}})",
      std::string(R"({"type":"object","additionalProperties":{"type":["number","boolean"],"exclusiveMaximum":2.5}})") + '\0' +
          R"({"k": 2.4, "t": true})"};
  k = 0;
  for (const std::string& t : schemas)
    write_file((dir / "schema" / ("s" + std::to_string(k++))).string(),
               Bytes(reinterpret_cast<const std::byte*>(t.data()), reinterpret_cast<const std::byte*>(t.data()) + t.size()));
  write_file((dir / "json" / "llama.json").string(),
             Bytes(reinterpret_cast<const std::byte*>(kLlamaConfig), reinterpret_cast<const std::byte*>(kLlamaConfig) + sizeof kLlamaConfig - 1));
  return 0;
}
