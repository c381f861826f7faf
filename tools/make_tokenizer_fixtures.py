#!/usr/bin/env python3
"""Reference fixtures for umi's tokenizers and chat templates, made with Hugging Face `tokenizers` and
`transformers` (run on the device machine, which has both):

  python3 tools/make_tokenizer_fixtures.py --tokenizers DIR --corpus tinyshakespeare.txt \
      --templates tools/templates --out OUT

Writes OUT/<name>/tokenizer.json (for the SentencePiece-style tokenizers trained here), OUT/<name>.ids.json
with the ids of >= 300 strings for each tokenizer, and OUT/chat_templates.json with rendered prompts.
"""
import argparse, json, os, random, sys

from tokenizers import Tokenizer, AddedToken, models, trainers, normalizers, pre_tokenizers, decoders, processors


def test_strings(corpus_lines, rng):
    s = []
    # English from the corpus: single lines, and runs of lines with their newlines.
    for _ in range(110):
        i = rng.randrange(len(corpus_lines) - 5)
        s.append(corpus_lines[i] if rng.random() < 0.6 else "\n".join(corpus_lines[i:i + rng.randint(2, 5)]))
    s += [
        # multilingual
        "Hello, world!", "Bonjour à tous, ça va ?", "Grüße aus Köln — Straße", "¿Dónde está la biblioteca?",
        "Привет, как дела?", "Γειά σου Κόσμε", "你好，世界！今天天气很好。", "日本語のテキストです。カタカナとひらがな。",
        "안녕하세요 세계", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "Xin chào thế giới",
        "İstanbul ıİ iI", "Ærøskøbing Åland", "Þetta er íslenska", "ქართული ენა", "Հայերեն", "ᏣᎳᎩ",
        "mixed 中文 and English 混合", "数字123和English", "😀 smile", "I ♥ NY",
        # emoji, ZWJ sequences, flags, keycaps, skin tones
        "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "👍🏽👍🏿", "🇯🇵🇺🇸🇩🇪", "1️⃣2️⃣#️⃣", "🧑‍💻 at work", "❤️‍🔥", "🫠🫡🥹",
        # combining marks and normalization forms
        "e\u0301 vs \u00e9", "a\u0308o\u0308u\u0308", "Z̴̧̛̙̗a̷̢̛͉l̸̨̜g̵̛̺o̶̧͚", "\u1100\u1161\u11a8 decomposed hangul",
        "\u212b angstrom sign", "\ufb01 ligature fi", "x\u0327\u0301", "\u0041\u030a\u0301",
        # whitespace
        "a  b", "   ", "\t\t", "a\n\n\nb", " \n ", "trailing   ", "   leading", "\u00a0nbsp\u00a0", "\u3000ideographic",
        "thin\u2009space", "tab\there", "\n", " ", "", "multiple\n\n\n\n\nnewlines", "  \t \n \r\n  ",
        # CRLF
        "line1\r\nline2\r\n", "\r\n\r\n", "a\rb", "end\r",
        # numbers
        "1234567890", "3.14159265", "1,000,000.00", "٣٤٥ Arabic-Indic", "१२३ Devanagari", "１２３ full width",
        "12 345 678", "-42 +7 1e10 0x1F", "2024-07-26T12:34:56Z", "v1.2.3-rc.4",
        # code
        "def f(x):\n    return x * 2\n", "int main() { return 0; }", '{"key": [1, 2, 3], "nested": {"a": null}}',
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}", "SELECT * FROM t WHERE id = 'x';",
        "<div class=\"a\">&amp;</div>", "x = y if z else w  # comment", "    indented\n        more\n",
        "#include <vector>\nstd::vector<int> v{1,2,3};",
        # contractions (the split regex is case-insensitive for these)
        "I'm you're we've they'll she'd it's", "DON'T WON'T I'M", "We'Ll tHeY'Re", "rock 'n' roll", "'''",
        # special-token look-alikes and real ones
        "<|begin_of_text|>hello", "<|im_start|>user\nhi<|im_end|>", "<s>", "</s>", "<unk>", "<|eot_id|>",
        "text<|endoftext|>more", "<|im_sta", "<<|im_end|>>", "<|start_header_id|>system<|end_header_id|>",
        "<think>\nreasoning\n</think>", "< |im_start| >",
        # odd code points
        "\x00\x01\x7f ctrl", "zero\u200bwidth", "\ufeffBOM", "\ue000 private", "\uffff nonchar", "\U0010ffff max",
        "\ufffd replacement", "\u2028 line sep", "\u0085 nel", "\U0001d49c math script",
    ]
    # long lines (10 KB)
    words = " ".join(corpus_lines[:3000]).split()
    s.append(" ".join(rng.choice(words) for _ in range(1800))[:10240])
    s += ["a" * 10000, "7" * 10000, " " * 10000, "😀" * 2500, "ab " * 3400, "\n" * 5000, "é" * 5000]
    # random code points from many blocks
    blocks = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff), (0x900, 0x97f),
              (0x3040, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0x1f300, 0x1faff), (0x300, 0x36f)]
    for _ in range(80):
        n = rng.randint(1, 40)
        out = []
        for _ in range(n):
            lo, hi = rng.choice(blocks)
            out.append(chr(rng.randint(lo, hi)))
            if rng.random() < 0.15:
                out.append(rng.choice([" ", "  ", "\n", "\t", "'s", "123"]))
        s.append("".join(out))
    return s


def train_sentencepiece_style(lines, kind, vocab_size=800):
    """A small Llama-2/Mistral-style BPE with byte fallback, trained on the corpus."""
    base = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if kind == "spm-legacy":  # Llama-2 / Mistral v0.1 tokenizer.json layout
        norm = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        pre = None
        dec = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                 decoders.Strip(" ", 1, 0)])
    else:  # newer conversions: Metaspace pre-tokenizer, here with NFKC
        norm = normalizers.NFKC()
        pre = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
        dec = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse(),
                                 decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)])
    base.normalizer = norm
    if pre is not None:
        base.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    base.train_from_iterator(lines, trainer)
    trained = json.loads(base.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for tok, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if tok not in vocab:
            vocab[tok] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = norm
    if pre is not None:
        tok.pre_tokenizer = pre
    tok.decoder = dec
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>"]])
    return tok


def encode_all(tok, strings):
    cases = []
    for s in strings:
        plain = tok.encode(s, add_special_tokens=False).ids
        special = tok.encode(s, add_special_tokens=True).ids
        case = {"text": s, "ids": plain, "decoded": tok.decode(plain, skip_special_tokens=False)}
        if special != plain:
            case["ids_with_special"] = special
        cases.append(case)
    # split_special_tokens: special-token text encoded as ordinary text
    tok.encode_special_tokens = True
    for c in cases:
        if "<" in c["text"] and "|" in c["text"] or c["text"] in ("<s>", "</s>", "<unk>"):
            split = tok.encode(c["text"], add_special_tokens=False).ids
            if split != c["ids"]:
                c["ids_split_special"] = split
    tok.encode_special_tokens = False
    return cases


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                         "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
         {"type": "function", "function": {"name": "add", "description": "Add two integers",
          "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                         "required": ["a", "b"]}}}]

CONVERSATIONS = {
    "user": [{"role": "user", "content": "Hello! How are you?"}],
    "system_user": [{"role": "system", "content": "You are a terse assistant."},
                    {"role": "user", "content": "  What is 2+2?  "}],
    "multi_turn": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                   {"role": "user", "content": "Tell me a joke.\nMake it short."}],
    "system_multi": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
                     {"role": "assistant", "content": " Hello there. "}, {"role": "user", "content": "Bye ✨"}],
    "unicode": [{"role": "user", "content": "日本語で答えて 🙂 — «ok»"}],
    "tool_call": [{"role": "user", "content": "What's the weather in Paris?"},
                  {"role": "assistant", "content": "", "tool_calls": [{"id": "call12345", "type": "function",
                   "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
                  {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "22 degrees, sunny"},
                  {"role": "user", "content": "Thanks"}],
    "bad_alternation": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    "thinking": [{"role": "user", "content": "Solve x+1=2"},
                 {"role": "assistant", "content": "<think>\nx = 1\n</think>\n\nx is 1."},
                 {"role": "user", "content": "And x+2=4?"}],
}


def render_templates(shared_dir, templates_dir):
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(shared_dir, "llama3", "tokenizer.json"))
    templates = {}
    for fam in ("llama3", "qwen3"):
        cfg = json.load(open(os.path.join(shared_dir, fam, "tokenizer_config.json")))
        templates[fam] = cfg["chat_template"]
    for name in sorted(os.listdir(templates_dir)):
        if name.endswith(".jinja"):
            templates[name[:-6]] = open(os.path.join(templates_dir, name)).read()
    specials = {"llama3": ("<|begin_of_text|>", "<|eot_id|>"), "llama3.1": ("<|begin_of_text|>", "<|eot_id|>"),
                "qwen3": ("", "<|im_end|>"), "qwen2.5": ("", "<|im_end|>"), "mistral-v0.2": ("<s>", "</s>"),
                "mistral-v0.3": ("<s>", "</s>"), "gemma2": ("<bos>", "<eos>")}
    out = []
    for tname, text in templates.items():
        bos, eos = specials[tname]
        for cname, msgs in CONVERSATIONS.items():
            for gen in (True, False):
                for tools in (None, TOOLS):
                    if tools is not None and cname not in ("user", "system_user", "tool_call"):
                        continue
                    kwargs = {"bos_token": bos, "eos_token": eos}
                    case = {"template": tname, "conversation": cname, "messages": msgs, "tools": tools,
                            "add_generation_prompt": gen, "context": kwargs}
                    try:
                        case["rendered"] = render_one(tok, text, msgs, tools, gen, kwargs)
                    except Exception as e:  # a template's raise_exception, or an error in the template
                        case["error"] = type(e).__name__ + ": " + str(e)
                    out.append(case)
    return templates, out


def render_one(tok, template, msgs, tools, gen, kwargs):
    # transformers' public renderer on the given template text. The tokenizer object has no special
    # tokens of its own, so bos_token/eos_token reach the template only as these kwargs.
    return tok.apply_chat_template(msgs, tools=tools, chat_template=template, add_generation_prompt=gen,
                                   tokenize=False, **kwargs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizers", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--templates", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(1234)
    lines = [l for l in open(a.corpus, encoding="utf-8").read().split("\n") if l.strip()]
    strings = test_strings(lines, rng)
    print("strings:", len(strings))
    toks = {fam: Tokenizer.from_file(os.path.join(a.tokenizers, fam, "tokenizer.json")) for fam in ("llama3", "qwen3")}
    for kind in ("spm-legacy", "spm-metaspace"):
        t = train_sentencepiece_style(lines, kind)
        os.makedirs(os.path.join(a.out, kind), exist_ok=True)
        t.save(os.path.join(a.out, kind, "tokenizer.json"))
        toks[kind] = Tokenizer.from_file(os.path.join(a.out, kind, "tokenizer.json"))
    import tokenizers
    for name, t in toks.items():
        cases = encode_all(t, strings)
        json.dump({"tokenizer": name, "made_with": "tokenizers " + tokenizers.__version__, "cases": cases},
                  open(os.path.join(a.out, name + ".ids.json"), "w"), ensure_ascii=False)
        print(name, "cases", len(cases), "ids", sum(len(c["ids"]) for c in cases))
    import transformers
    templates, rendered = render_templates(a.tokenizers, a.templates)
    json.dump({"made_with": "transformers " + transformers.__version__, "templates": templates, "cases": rendered},
              open(os.path.join(a.out, "chat_templates.json"), "w"), ensure_ascii=False, indent=1)
    print("template cases", len(rendered), "errors", sum(1 for c in rendered if "error" in c))


if __name__ == "__main__":
    main()
