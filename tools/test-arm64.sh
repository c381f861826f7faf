#!/usr/bin/env bash
# The CPU kernels built for arm64 (g++-aarch64-linux-gnu) and tested under
# qemu-user, twice: on an emulated CPU with the dot-product instructions (the
# NEON set runs, beside the portable one) and on a Cortex-A72, which has none
# (the portable set alone; a NEON instruction there would stop the run).
# Correctness only: emulation says nothing about speed.
#   tools/test-arm64.sh [BUILD_DIR]   (default build/arm64; tools/test.sh runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build/arm64}
jobs=$(nproc)
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DUMI_KERNELS_ONLY=ON -DUMI_GTEST_SOURCE=/usr/src/googletest
cmake --build "$dir" -j "$jobs"
for cpu in max cortex-a72; do
  echo "-- arm64 kernels on qemu's $cpu"
  QEMU_CPU=$cpu ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 300
done
