#!/usr/bin/env bash
# Runs every fixture generator on the device machine and packs the results into $OUT/fixtures.tgz.
# Needs ../shared/data copied to .devdata/ (the device gets only the repository):
#   mkdir -p .devdata && cp -r ../shared/data/tokenizers ../shared/data/corpus .devdata/
set -euo pipefail
export PYTHONUNBUFFERED=1
work=/tmp/fixtures && rm -rf "$work" && mkdir -p "$work"
python3 -c 'import torch, transformers, tokenizers; print("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__, "cuda", torch.cuda.is_available())'
python3 tools/make_tokenizer_fixtures.py --tokenizers .devdata/tokenizers --corpus .devdata/corpus/tinyshakespeare.txt \
  --templates tools/templates --out "$work/tokenizer"
python3 tools/make_model_fixtures.py --out "$work/models"
python3 tools/train_tiny.py --corpus .devdata/corpus/tinyshakespeare.txt --out "$work/tiny-shakespeare" --seconds "${1:-170}"
tar czf "$OUT/fixtures.tgz" -C "$work" .
ls -la "$OUT"
