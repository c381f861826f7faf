#!/usr/bin/env bash
# One run of the CPU comparison in docs/PERFORMANCE.md: the machine's read
# bandwidth, then for each GGUF file umi's decode and 509-token prefill and
# llama.cpp's (node-llama-cpp's prebuilt CPU build) on the same file and
# threads, back to back, REPEAT times; then per file umi's decode against the
# roofline (`umi bench --scenario roofline`: each step beside one read of its
# bytes). Numbers from one run only compare with each other: the VM's
# bandwidth moves between runs.
#   npm install --prefix /tmp/nlc node-llama-cpp
#   [UMI=build/release/src/umi] [REPEAT=2] bash tools/cpu_compare.sh /tmp/llama1b-q4_0.gguf /tmp/llama1b-q8_0.gguf
set -euo pipefail
cd "$(dirname "$0")/.."
UMI=${UMI:-build/release/src/umi}
head -c 2050 ../shared/data/corpus/tinyshakespeare.txt > /tmp/p512.txt  # 509 tokens with the Llama-3 tokenizer
build/release/bench/umi_bench_bandwidth 1024 2
for r in $(seq "${REPEAT:-2}"); do
  for f in "$@"; do
    d=$($UMI run -m "$f" "The" -n 64 --greedy -t 2 --ignore-eos --device cpu 2>&1 >/dev/null | tail -1)
    p=$($UMI run -m "$f" -f /tmp/p512.txt -n 1 -t 2 --ignore-eos --device cpu 2>&1 >/dev/null | tail -1)
    echo "{\"engine\":\"umi\",\"model\":\"$f\",\"decode\":\"${d//\"/}\",\"prefill\":\"${p//\"/}\"}"
    timeout 300 node bench/llamacpp_compare.mjs /tmp/nlc "$f" speed 509 64 2
  done
done
build/release/bench/umi_bench_bandwidth 1024 2
for f in "$@"; do
  $UMI bench -m "$f" --device cpu -t 2 --scenario roofline --rounds 3 --prompt-tokens 16 --gen-tokens 48 | grep roofline
done
