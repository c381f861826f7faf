#!/usr/bin/env bash
# The main job: set-up, release build, then umi on the bundled demo model.
# Until the trained default model lands (CPU inference issue), the demo is
# `umi inspect` and `umi fit` on a small random-weight GGUF.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup-debian.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j "$(nproc)"
build/release/src/umi inspect tests/data/tiny-llama.gguf
echo
build/release/src/umi fit tests/data/tiny-llama.gguf --ctx 512 --batch 4
