// Any bytes as text to encode with a byte-level (Qwen3-style: NFC + split
// regex) and a SentencePiece-style tokenizer; decoding the result must work
// too. The tokenizers are built once from small inline tokenizer.json files.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace {
const char* kByteLevel = R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"Ġ":3,"Ġa":4,"<|x|>":5},
 "merges":["a b","Ġ a"]},"normalizer":{"type":"NFC"},
 "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"(?i:'s|'t)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}]},
 "decoder":{"type":"ByteLevel"},"added_tokens":[{"id":5,"content":"<|x|>","special":true}]})";
const char* kSentencePiece = R"({"model":{"type":"BPE","vocab":{"<unk>":0,"<0x41>":1,"<0xC3>":2,"▁":3,"a":4,"▁a":5},
 "merges":["▁ a"],"byte_fallback":true,"unk_token":"<unk>","fuse_unk":true},
 "normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
 "decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},
 "post_processor":null,"added_tokens":[]})";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto byte_level = std::make_unique<umi::Tokenizer>(umi::Tokenizer::from_json(kByteLevel, "", "bl"));
  static const auto spm = std::make_unique<umi::Tokenizer>(umi::Tokenizer::from_json(kSentencePiece, "", "spm"));
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const umi::Tokenizer* t : {byte_level.get(), spm.get()}) {
    auto ids = t->encode(text, true);
    (void)t->decode(ids);
  }
  return 0;
}
