#!/usr/bin/env bash
# Runs on the device machine (the H100): the CUDA backend end to end, from
# binaries built on the development machine with CUDA (the device image has
# none of our Debian libraries, so they travel in build/devlibs).
#
# On the development machine:
#   cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build build/release
#   bash tools/device_backend_check.sh --prepare    # copies the .so files and the Llama-3 tokenizer into build/
#   (here only: on the device it would replace build/devlibs with the device's own libraries)
# Then through the device tool, carrying build/release/src/umi, build/release/tests/umi_tests,
# build/release/bench/umi_make_random_model, build/release/bench/umi_cuda_matvec (kernels),
# build/release/bench/umi_cuda_attention (attention), build/devlibs and build/tok-llama3:
# (over the tool's 64 MiB: `tar -cJf build/pack/bins.tar.xz` of them, carry build/pack, `tar -xJf` it first)
#   [TYPES="q8_0 q4_k"] [SMALL_TYPES="q4_0 q4_k"] [STREAMS=1,16,64] [SAMPLING=1] [TYPE_STREAMS=16,64] [CONTEXT="8192 32768"] [BF16=1] [LONG=131000] bash tools/device_backend_check.sh [tests|kernels|attention|small|serve|8b ...]
# and, after 8b, [TRACE_MODELS="q4_0 bf16"] [TRACE_CONTEXT="16 32768"] ... trace (every kernel's GPU time per
# decode step, tools/kernel_trace) or [NCU_KERNEL=regex NCU_SKIP=n NCU_COUNT=n NCU_PROMPT=tokens] ... ncu8b (Nsight Compute).
set -uo pipefail
cd "$(dirname "$0")/.."
B=build/release
if [[ ${1:-} == --prepare ]]; then
  rm -rf build/devlibs build/tok-llama3 && mkdir -p build/devlibs build/tok-llama3
  for b in $B/src/umi $B/tests/umi_tests $B/bench/umi_make_random_model; do ldd "$b"; done | awk '/=>/ {print $3}' |
    sort -u | grep -v -E "libc\.so|libm\.so|libstdc\+\+|libgcc_s|ld-linux|libdl\.so|libpthread|librt\.so|/usr/local/cuda" | xargs -I{} cp -L {} build/devlibs/
  cp ../shared/data/tokenizers/llama3/* build/tok-llama3/
  # The kernel tracer (the `trace` step) and the CUPTI it links.
  g++ -O2 -shared -fPIC -I/usr/local/cuda/include tools/kernel_trace/kernel_trace.cpp -L/usr/local/cuda/lib -lcupti \
    -o build/devlibs/libkernel_trace.so && cp -L /usr/local/cuda/lib/libcupti.so.13 build/devlibs/
  exit 0
fi
export LD_LIBRARY_PATH=$PWD/build/devlibs:/usr/local/cuda/lib64:/usr/local/cuda/lib
OUT=${OUT:-build/device-out}
mkdir -p "$OUT"
steps=("$@")
((${#steps[@]})) || steps=(tests kernels small 8b)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
umi=$B/src/umi

for step in "${steps[@]}"; do
  case $step in
  tests)
    echo "== CUDA tests (fixture parity with transformers on the GPU, f16 KV, pool)"
    timeout 300 $B/tests/umi_tests --gtest_filter='*cuda*:*Cuda*:Pool.*' 2>&1 | tee "$OUT/tests.txt" | grep -E "^\[ *(OK|FAILED|PASSED|SKIPPED) |Failure|error|Expected|Which is|actual" | tail -40
    ;;
  small)
    echo "== bundled model: greedy tokens on the GPU against the CPU"
    $umi run -n 64 --temp 0 --device cpu "ROMEO:" > "$OUT/bundled-cpu.txt" 2> "$OUT/bundled-cpu.err"
    $umi run -n 64 --temp 0 --device cuda "ROMEO:" > "$OUT/bundled-cuda.txt" 2> "$OUT/bundled-cuda.err"
    tail -1 "$OUT/bundled-cuda.err"
    cmp "$OUT/bundled-cpu.txt" "$OUT/bundled-cuda.txt" && echo "bundled: same 64 greedy tokens on cpu and cuda"
    echo "== quantized GGUFs of the bundled model: the matvec kernels"
    for t in ${SMALL_TYPES:-q8_0 q4_0 q4_k q5_k q6_k}; do
      $umi convert models/tiny-shakespeare "/tmp/tiny-$t.gguf" --type $t > /dev/null 2>&1
      $umi run -m "/tmp/tiny-$t.gguf" -n 64 --temp 0 --device cpu "ROMEO:" > "$OUT/tiny-$t-cpu.txt" 2>/dev/null
      $umi run -m "/tmp/tiny-$t.gguf" -n 64 --temp 0 --device cuda "ROMEO:" > "$OUT/tiny-$t-cuda.txt" 2>/dev/null
      if cmp -s "$OUT/tiny-$t-cpu.txt" "$OUT/tiny-$t-cuda.txt"; then echo "tiny $t: same greedy text"; else
        echo "tiny $t: greedy text differs (cpu, then cuda):"; head -c 300 "$OUT/tiny-$t-cpu.txt"; echo; head -c 300 "$OUT/tiny-$t-cuda.txt"; echo
        python3 tools/greedy_divergence.py $umi "/tmp/tiny-$t.gguf" "$OUT/tiny-$t-cpu.txt" "$OUT/tiny-$t-cuda.txt"; fi
      # Both devices multiply the same q8 activations: logits differ by summation order only.
      ids=$($umi tokenize -m "/tmp/tiny-$t.gguf" --json --text "ROMEO: I am a man, and I will be so" 2>/dev/null | tr -d "[] ")
      for d in cpu cuda; do $umi logits -m "/tmp/tiny-$t.gguf" --device $d --ids "$ids" > "/tmp/tiny-$t-logits-$d.json" 2>/dev/null; done
      python3 -c "
import json,math,sys
a=json.load(open('/tmp/tiny-$t-logits-cpu.json')); b=json.load(open('/tmp/tiny-$t-logits-cuda.json'))
num=math.sqrt(sum((x-y)**2 for x,y in zip(a,b))); den=math.sqrt(sum(x*x for x in a))
top=lambda v: sorted(range(len(v)), key=lambda i:-v[i])[:2]
print('tiny $t logits cpu vs cuda: rel err %.2e, top2 cpu %s cuda %s' % (num/den, top(a), top(b)))"
    done
    ;;
  kernels)
    echo "== matvec kernels against the CPU dequantizer (Q8_0, Q4_0, BF16, F16)"
    $B/bench/umi_cuda_matvec 50 | tee "$OUT/cuda_matvec.jsonl"
    ;;
  attention)
    echo "== attention: prefill chunks, and decode against the context by split size (8B head shape, f16 KV, graph replays)"
    $B/bench/umi_cuda_attention 20 | tee "$OUT/cuda_attention.jsonl" | python3 -c "
import json,sys
lines=[json.loads(l) for l in sys.stdin]
rows=[r for r in lines if r['bench']=='cuda_attention']
for r in lines:
    if r['bench']=='cuda_attention_prefill': print('prefill of %d tokens from %6d: %8.2f us a layer, %5.1f TFLOP/s' % (r['tokens'], r['start'], r['us'], r['tflops']))
splits=sorted({r['split_keys'] for r in rows})
print('context  ' + '  '.join('%9s' % ('split %d' % s if s else 'default') for s in splits) + '   (us a layer; worst rel_diff %.1e)' % max(r['rel_diff'] for r in rows))
for c in sorted({r['context'] for r in rows}):
    by={r['split_keys']: r['us'] for r in rows if r['context']==c}
    print('%7d  ' % c + '  '.join('%9.2f' % by[s] for s in splits))"
    ;;
  8b)
    echo "== Llama-3-8B shape, random weights: decode and prefill on the GPU"
    dir=/tmp/llama8b
    if [[ ! -d $dir ]]; then
      rm -rf $dir.part
      /usr/bin/time -f "made in %e s" $B/bench/umi_make_random_model $dir.part --preset llama-3-8b --tokenizer build/tok-llama3 &&
        mv $dir.part $dir
    fi
    convert() {  # TYPE: the 8B GGUF of that type, made once per machine
      [[ -f /tmp/llama8b-$1.gguf ]] && return
      /usr/bin/time -f "converted in %e s" $umi convert $dir /tmp/llama8b-$1.gguf.part --type $1 2>&1 | tail -2 &&
        mv /tmp/llama8b-$1.gguf.part /tmp/llama8b-$1.gguf
    }
    bench() {  # MODEL PROMPT GEN [STREAMS]
      local log=/tmp/bench.log
      timeout ${BENCH_TIMEOUT:-300} $umi bench -m "$1" --device cuda --scenario decode --streams "${4:-1}" --prompt-tokens "$2" \
        --gen-tokens "$3" --sampling "${BENCH_SAMPLING:-greedy}" ${NO_WARMUP:+--no-warmup} > $log 2>&1
      if grep -q '"scenario"' $log; then
        grep '"scenario"' $log | sed "s|^{|{\"model\":\"$(basename "$1")\",|" | tee -a "$OUT/bench-8b.jsonl"
      else
        echo "bench $* failed:"; tail -5 $log
      fi
    }
    convert q4_0
    bench /tmp/llama8b-q4_0.gguf 16 128   # decode at the start of the context
    bench /tmp/llama8b-q4_0.gguf 512 1    # prefill: time to first token of a 512-token prompt
    [[ -n ${STREAMS:-} ]] && bench /tmp/llama8b-q4_0.gguf 256 128 "$STREAMS"  # aggregate decode, llama-batched-bench's shape
    for c in ${CONTEXT:-}; do NO_WARMUP=1 bench /tmp/llama8b-q4_0.gguf "$c" 32; done  # decode after a long prompt
    # Top-k sampling: the candidates selected on the device, against the whole row brought back.
    if [[ -n ${SAMPLING:-} ]]; then
      for s in top-k row; do
        BENCH_SAMPLING=$s bench /tmp/llama8b-q4_0.gguf 16 128
        BENCH_SAMPLING=$s bench /tmp/llama8b-q4_0.gguf 256 128 64
      done
    fi
    for t in ${TYPES:-}; do
      convert $t
      bench /tmp/llama8b-$t.gguf 16 128
      bench /tmp/llama8b-$t.gguf 512 1
      [[ -n ${TYPE_STREAMS:-} ]] && bench /tmp/llama8b-$t.gguf 256 128 "$TYPE_STREAMS"
    done
    [[ -n ${BF16:-} ]] && { bench $dir 16 64; bench $dir 512 1; }  # bf16 safetensors
    # A long prompt in chunks: time to first token, the pool's peak and its largest single buffer.
    [[ -n ${LONG:-} ]] && NO_WARMUP=1 BENCH_TIMEOUT=${LONG_TIMEOUT:-480} bench /tmp/llama8b-q4_0.gguf "$LONG" 1
    ;;
  trace)
    echo "== where decode time goes: every kernel of the decode steps, timed on the GPU (CUPTI; needs the 8b step's files)"
    for m in ${TRACE_MODELS:-q4_0}; do
      f=/tmp/llama8b-$m.gguf; [[ $m == bf16 ]] && f=/tmp/llama8b
      [[ -e $f ]] || { echo "no $f: run the 8b step first"; continue; }
      for c in ${TRACE_CONTEXT:-16}; do
        CUDA_INJECTION64_PATH=$PWD/build/devlibs/libkernel_trace.so KERNEL_TRACE_FILE=/tmp/trace.csv \
          timeout 300 $umi bench -m $f --device cuda --scenario decode --streams 1 --prompt-tokens $c --gen-tokens 32 \
          --no-warmup > /tmp/trace-bench.log 2>&1 || { echo "traced bench failed:"; tail -3 /tmp/trace-bench.log; }
        grep '"scenario"' /tmp/trace-bench.log | cut -c1-200
        python3 tools/kernel_trace/summarize.py /tmp/trace.csv | tee "$OUT/trace-$m-$c.txt"
        gzip -c /tmp/trace.csv > "$OUT/trace-$m-$c.csv.gz"
      done
    done
    ;;
  ncu8b)
    echo "== Nsight Compute on kernels of the Q4_0 decode step (needs the 8b step's file)"
    ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
    [[ -n $ncu && -f /tmp/llama8b-q4_0.gguf ]] || { echo "no ncu or no 8B file"; continue; }
    timeout 400 $ncu --clock-control none -k regex:"${NCU_KERNEL:-attention_kernel|rms_norm_vec|matvec_q8_kernel}" \
      --launch-skip ${NCU_SKIP:-400} --launch-count ${NCU_COUNT:-8} --section SpeedOfLight --section LaunchStats \
      --section Occupancy --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
      --section SourceCounters $umi bench -m /tmp/llama8b-q4_0.gguf --device cuda --scenario decode --streams 1 \
      --prompt-tokens ${NCU_PROMPT:-16} --gen-tokens 8 > "$OUT/ncu8b.txt" 2>&1
    grep -E "^  [a-z_]+.*\(|Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Warp Cycles Per Issued|Stall [A-Z]|Issued Warp|No Eligible" "$OUT/ncu8b.txt" | head -80
    ;;
  serve)
    echo "== umi serve --models-dir on the GPU: two models in one device pool, unloaded on request"
    d=$(mktemp -d) && ln -s "$PWD/models/tiny-shakespeare" "$d/m0" && ln -s "$PWD/models/tiny-shakespeare" "$d/m1"
    $umi serve --models-dir "$d" --device cuda --port 18181 > "$OUT/serve.out" 2> "$OUT/serve.err" &
    pid=$!
    python3 - <<'PY'
import json, time, urllib.request
base = "http://127.0.0.1:18181"
def call(path, body=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=60) as r: return r.read().decode()
for _ in range(200):
    try: call("/health"); break
    except Exception: time.sleep(0.1)
def device_pool():
    return {l.split()[0]: float(l.split()[1]) for l in call("/metrics").splitlines() if l.startswith("umi_device_pool_bytes{")}
texts = []
for m in ("m0", "m1"):
    r = json.loads(call("/v1/completions", {"model": m, "prompt": "ROMEO:", "max_tokens": 16, "temperature": 0}))
    texts.append(r["choices"][0]["text"]); print(m, repr(texts[-1]), device_pool())
print("same text from both:", texts[0] == texts[1])
for m in ("m0", "m1"): call("/v1/models/%s/unload" % m, {})
print("after unloading both:", device_pool())
PY
    kill $pid; wait $pid; grep -E "loaded|unloaded" "$OUT/serve.err"
    ;;
  esac
done
