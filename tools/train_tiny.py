#!/usr/bin/env python3
"""Trains umi's bundled default model: a small Llama (about 3.7M parameters, GQA) with a byte-level BPE
tokenizer, both trained on tinyshakespeare, exported as a Hugging Face folder (run on the device machine):

  python3 tools/train_tiny.py --corpus tinyshakespeare.txt --out models/tiny-shakespeare --seconds 180

The folder gets config.json, model.safetensors (bf16), tokenizer.json, tokenizer_config.json (with a chat
template that casts the user as ROMEO and the model as JULIET) and reference.json: float32-compute logits and
32 greedy tokens for two prompts, the parity check for umi's CPU path on the bundled model.
"""
import argparse, json, math, os, time

import torch
from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders, processors
from transformers import LlamaConfig, LlamaForCausalLM

CHAT_TEMPLATE = (
    "{%- for m in messages %}"
    "{%- if m.role == 'user' %}{{ 'ROMEO:\\n' + m.content + '\\n\\n' }}"
    "{%- elif m.role == 'assistant' %}{{ 'JULIET:\\n' + m.content + '\\n\\n' }}"
    "{%- else %}{{ m.content + '\\n\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ 'JULIET:\\n' }}{%- endif %}")


def train_tokenizer(text, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([text[i:i + 10000] for i in range(0, len(text), 10000)], trainer)
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--vocab", type=int, default=2048)
    a = ap.parse_args()
    torch.manual_seed(0)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    text = open(a.corpus, encoding="utf-8").read()
    tok = train_tokenizer(text, a.vocab)
    ids = torch.tensor(tok.encode(text).ids, dtype=torch.long)
    n_val = len(ids) // 10
    train, val = ids[:-n_val], ids[-n_val:]
    print("tokens", len(ids), "bytes/token %.2f" % (len(text.encode()) / len(ids)))

    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024, rope_theta=10000.0,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)
    model = LlamaForCausalLM(cfg).to(dev)
    print("parameters", sum(p.numel() for p in model.parameters()))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    T, B, max_steps = 256, 64, 3000

    # transformers shifts labels inside the model: labels are the inputs themselves.
    def batch(src):
        ix = torch.randint(len(src) - T, (B,))
        return torch.stack([src[i:i + T] for i in ix]).to(dev)

    @torch.no_grad()
    def val_loss():
        model.eval()
        losses = []
        g = torch.Generator().manual_seed(1)
        for _ in range(20):
            ix = torch.randint(len(val) - T, (B,), generator=g)
            x = torch.stack([val[i:i + T] for i in ix]).to(dev)
            with torch.autocast(dev, dtype=torch.bfloat16):
                losses.append(model(x, labels=x).loss.item())
        model.train()
        return sum(losses) / len(losses)

    start, best, best_state, step = time.time(), 1e9, None, 0
    while step < max_steps and time.time() - start < a.seconds:
        lr = 1e-3 * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max_steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        x = batch(train)
        with torch.autocast(dev, dtype=torch.bfloat16):
            loss = model(x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 250 == 0:
            v = val_loss()
            print("step %d train %.3f val %.3f (%.0fs)" % (step, loss.item(), v, time.time() - start), flush=True)
            if v < best:
                best, best_state = v, {k: t.detach().clone() for k, t in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    print("best val loss %.3f after %d steps" % (best, step))

    os.makedirs(a.out, exist_ok=True)
    model.to(torch.bfloat16).cpu().save_pretrained(a.out, safe_serialization=True)
    tok.save(os.path.join(a.out, "tokenizer.json"))
    json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|endoftext|>",
               "add_bos_token": False, "model_max_length": 1024, "chat_template": CHAT_TEMPLATE},
              open(os.path.join(a.out, "tokenizer_config.json"), "w"), indent=2)

    ref_model = LlamaForCausalLM.from_pretrained(a.out, dtype=torch.float32).eval()
    refs = []
    for prompt in ["ROMEO:\n", "First Citizen:\nBefore we proceed any further, hear me speak."]:
        p = tok.encode(prompt).ids
        with torch.no_grad():
            x = torch.tensor([p])
            logits = ref_model(x).logits[0, -1].tolist()
            out = ref_model.generate(x, max_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=0,
                                     min_new_tokens=32)[0, len(p):].tolist()
        refs.append({"prompt": prompt, "ids": p, "logits_f32_compute": logits, "greedy": out,
                     "greedy_text": tok.decode(out)})
        print(repr(prompt), "->", repr(tok.decode(out)))
    json.dump({"prompts": refs, "val_loss": best, "steps": step}, open(os.path.join(a.out, "reference.json"), "w"))
    with torch.no_grad():
        torch.manual_seed(7)
        x = torch.tensor([tok.encode("JULIET:\n").ids])
        out = ref_model.generate(x, max_new_tokens=120, do_sample=True, temperature=0.8, top_k=40, pad_token_id=0)
        print("--- sample ---\n" + tok.decode(out[0].tolist()))


if __name__ == "__main__":
    main()
