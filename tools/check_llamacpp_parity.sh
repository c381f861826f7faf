#!/usr/bin/env bash
# Greedy tokens of the bundled model: transformers (reference.json), umi, and
# llama.cpp (node-llama-cpp's prebuilt CPU build) on the GGUF umi writes:
# f32 against transformers' tokens, then each quantized type umi writes,
# where umi and llama.cpp read the same file and should generate the same
# text (both quantize activations to 8 bits, differently rounded, so a near
# tie between two tokens may still go different ways: the output says where).
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
for type in q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k q3_k q2_k iq4_nl iq4_xs; do
  $umi convert models/tiny-shakespeare "$gguf" --type $type 2>/dev/null
  python3 - "$umi" "$gguf" "$prefix" "$type" <<'PY' || status=1
import json, subprocess, sys
umi, gguf, prefix, kind = sys.argv[1:]
ok = True
for i, p in enumerate(json.load(open("models/tiny-shakespeare/reference.json"))["prompts"][:2]):
    ids = ",".join(map(str, p["ids"]))
    theirs = json.loads(subprocess.run(["node", "bench/llamacpp_compare.mjs", prefix, gguf, "greedy", ids, "32"],
                                       capture_output=True, text=True, check=True).stdout)["text"]
    ours = subprocess.run([umi, "run", "-m", gguf, p["prompt"], "-n", "32", "--greedy", "--ignore-eos"],
                          capture_output=True, text=True, check=True).stdout.removesuffix("\n")  # umi ends the stream with a newline
    same = ours == p["prompt"] + theirs
    ok &= same
    print(f"{kind} prompt {i}: " + ("umi text == llama.cpp text (32 tokens)" if same else
          f"DIFFERENT after {next((k for k, (a, b) in enumerate(zip(theirs, ours[len(p['prompt']):])) if a != b), 0)} characters\n llama.cpp: {theirs!r}\n umi:       {ours[len(p['prompt']):]!r}"))
sys.exit(0 if ok else 1)
PY
done
exit $status
