#!/usr/bin/env bash
# Greedy tokens of the bundled model: transformers (reference.json), umi, and
# llama.cpp (node-llama-cpp's prebuilt CPU build) on the GGUF umi writes.
#   tools/check_llamacpp_parity.sh [NODE_PREFIX]   (default /tmp/nlc; installs node-llama-cpp there)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/tmp/nlc}
[[ -d $prefix/node_modules/node-llama-cpp ]] || npm install --prefix "$prefix" node-llama-cpp --no-audit --no-fund >/dev/null
umi=build/release/src/umi
gguf=$(mktemp --suffix=.gguf)
trap 'rm -f "$gguf"' EXIT
$umi convert models/tiny-shakespeare "$gguf" --type f32 2>/dev/null
status=0
for i in 0 1; do
  ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('models/tiny-shakespeare/reference.json'))['prompts'][$i]['ids'])))")
  want=$(python3 -c "import json;print(json.load(open('models/tiny-shakespeare/reference.json'))['prompts'][$i]['greedy'])")
  got=$(node bench/llamacpp_compare.mjs "$prefix" "$gguf" greedy "$ids" 32 | python3 -c "import json,sys;print(json.load(sys.stdin)['tokens'])")
  if [[ "$got" == "$want" ]]; then echo "prompt $i: llama.cpp greedy == transformers greedy (32 tokens)"; else echo "prompt $i: DIFFERENT"; echo " want $want"; echo " got  $got"; status=1; fi
done
exit $status
