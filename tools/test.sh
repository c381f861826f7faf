#!/usr/bin/env bash
# The test command: set-up, build, unit tests, the CPU kernels built for arm64
# and run under qemu, the same tests under AddressSanitizer +
# UndefinedBehaviorSanitizer, then each libFuzzer target.
#   tools/test.sh [--fuzz-seconds N] [--fuzz-seed S]   (default 60 s per target, seed 1)
# The fuzzing seed is fixed so that a run is repeatable: CI checks that known
# bugs stay fixed (fuzz/regressions/ holds every input that once failed) and
# explores the same paths each time; hunting for new bugs is a longer run with
# other seeds (README, "The two commands").
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=60
fuzz_seed=1
while (($#)); do
  case "$1" in
    --fuzz-seconds) fuzz_seconds="$2"; shift 2 ;;
    --fuzz-seed) fuzz_seed="$2"; shift 2 ;;
    *) echo "usage: tools/test.sh [--fuzz-seconds N] [--fuzz-seed S]" >&2; exit 2 ;;
  esac
done
jobs=$(nproc)

bash tools/setup-debian.sh

echo "== release build and tests"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j "$jobs"
ctest --test-dir build/release --output-on-failure -j "$jobs"

echo "== umi serve driven by the official openai npm client"
(cd tests/openai_client && npm ci --no-audit --no-fund --loglevel=error)
node tests/openai_client/client.test.mjs build/release/src/umi

echo "== soak: 2,000 requests over HTTP, 16 at a time, 10% cancelled, 1% malformed"
bash tools/soak.sh build/release

echo "== the CPU kernels cross-built for arm64 (NEON), tested under qemu"
bash tools/test-arm64.sh build/arm64

echo "== tests under ASan + UBSan"
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DUMI_SANITIZE=ON -DUMI_CUDA=OFF
cmake --build build/asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build/asan --output-on-failure -j "$jobs"

if ((fuzz_seconds > 0)); then
  echo "== fuzzing, ${fuzz_seconds}s per target"
  CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DUMI_FUZZ=ON -DUMI_TESTS=OFF -DUMI_CUDA=OFF
  cmake --build build/fuzz -j "$jobs"
  seeds=build/fuzz/seeds
  rm -rf "$seeds" && build/release/tests/umi_write_corpus "$seeds"
  for target in gguf safetensors config tokenizer template schema; do
    corpus=build/fuzz/corpus-$target
    artifacts=build/fuzz/artifacts-$target
    rm -rf "$artifacts" && mkdir -p "$corpus" "$artifacts"
    seed_dir="$seeds/$target"
    [[ $target == config ]] && seed_dir="$seeds/json"
    [[ $target == tokenizer || $target == template || $target == schema ]] && seed_dir="$seeds/$target"
    echo "-- umi_fuzz_$target"
    status=0
    regressions=fuzz/regressions/$target
    mkdir -p "$regressions"
    build/fuzz/fuzz/umi_fuzz_$target -seed="$fuzz_seed" -max_total_time="$fuzz_seconds" -max_len=65536 \
      -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 -artifact_prefix="$artifacts/" \
      "$corpus" "$seed_dir" "$regressions" \
      >"$artifacts/log" 2>&1 || status=$?
    grep -E "stat::number_of_executed_units|SUMMARY|ERROR" "$artifacts/log" || true
    if ((status != 0)); then
      echo "fuzzing umi_fuzz_$target failed (exit $status); the input is in $artifacts:"
      tail -40 "$artifacts/log"; ls "$artifacts"; exit 1
    fi
  done
fi
echo "== all tests passed"
