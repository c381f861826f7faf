#!/usr/bin/env python3
"""Reference fixtures for umi's forward pass: small random models of each supported architecture and dtype,
saved as Hugging Face folders (config.json + model.safetensors) with transformers' last-position logits and 16
greedy tokens for a few prompts (run on the device machine):

  python3 tools/make_model_fixtures.py --out OUT

Each OUT/<name>/reference.json holds {prompts: [{ids, logits, logits_f32_compute, greedy}]}: `logits` from
the model in its own dtype, `logits_f32_compute` from the same (rounded) weights upcast to float32 (what a
float32 engine computes), `greedy` 16 tokens by greedy decoding in the model's dtype.
"""
import argparse, json, os

import torch
import transformers
from transformers import LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config, AutoModelForCausalLM

BASE = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, initializer_range=0.08,
            bos_token_id=1, eos_token_id=2)

VARIANTS = [
    ("llama-gqa-untied-llama3rope", LlamaConfig, dict(tie_word_embeddings=False, rope_theta=10000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64})),
    ("llama-mha-tied-linearrope", LlamaConfig, dict(num_key_value_heads=4, tie_word_embeddings=True,
        rope_scaling={"rope_type": "linear", "factor": 2.0})),
    ("mistral-gqa", MistralConfig, dict(tie_word_embeddings=False, sliding_window=None, rope_theta=1000000.0)),
    ("qwen2-bias", Qwen2Config, dict(tie_word_embeddings=True, rope_theta=1000000.0, use_sliding_window=False)),
    ("qwen3-qknorm", Qwen3Config, dict(head_dim=32, tie_word_embeddings=False, rope_theta=1000000.0,
        use_sliding_window=False)),
]
PROMPTS = [[1], [1, 17, 33, 250, 4, 99, 128], [1] + [(i * 37 + 11) % 256 for i in range(22)]]


def randomize_norms(model, gen):
    # Norm weights of ones would hide a missing multiply; biases of zeros a missing add.
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            with torch.no_grad():
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
        elif name.endswith(".bias"):
            with torch.no_grad():
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


@torch.no_grad()
def reference(model, ids):
    x = torch.tensor([ids])
    logits = model(x).logits[0, -1].float().tolist()
    out = model.generate(x, max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0,
                         min_new_tokens=16)
    return logits, out[0, len(ids):].tolist()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    for name, cls, extra in VARIANTS:
        for dtype_name, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
            torch.manual_seed(0)
            gen = torch.Generator().manual_seed(0)
            cfg = cls(**{**BASE, **extra})
            model = AutoModelForCausalLM.from_config(cfg).eval()
            randomize_norms(model, gen)
            model = model.to(dtype)
            folder = os.path.join(a.out, name + "-" + dtype_name)
            model.save_pretrained(folder, safe_serialization=True)
            f32 = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
            prompts = []
            for ids in PROMPTS:
                logits, greedy = reference(model, ids)
                logits32, greedy32 = reference(f32, ids)
                prompts.append({"ids": ids, "logits": logits, "greedy": greedy, "logits_f32_compute": logits32,
                                "greedy_f32_compute": greedy32})
            json.dump({"model": name, "dtype": dtype_name, "made_with": "transformers " + transformers.__version__,
                       "prompts": prompts}, open(os.path.join(folder, "reference.json"), "w"))
            print(folder, [p["greedy"][:4] for p in prompts])


if __name__ == "__main__":
    main()
