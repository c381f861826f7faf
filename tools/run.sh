#!/usr/bin/env bash
# The main job: set-up, release build, then umi on the bundled demo model.
# The job: generate Shakespeare-like text with the bundled model
# (models/tiny-shakespeare, trained by tools/train_tiny.py), after inspecting
# it and planning its memory.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup-debian.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j "$(nproc)"
build/release/src/umi inspect models/tiny-shakespeare
echo
build/release/src/umi fit models/tiny-shakespeare --ctx 1024 --batch 4
echo
build/release/src/umi run "ROMEO:" -n 200 --seed 1 --verbose
