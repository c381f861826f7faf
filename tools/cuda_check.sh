#!/usr/bin/env bash
# Builds and runs the CUDA kernel checks on the device machine (the H100),
# with nvcc alone: the device has none of the Debian libraries the full build
# needs, and these checks need only the kernels and the CPU quantizer.
#   tools/cuda_check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/cuda-check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
nvcc --version | tail -1
nvcc -std=c++20 -O3 -arch=sm_90 -Isrc -Xptxas -v \
  src/backend/cuda/quant_matvec.cu bench/cuda_matvec.cu \
  src/backend/cpu/quantize.cpp src/backend/cpu/dequantize.cpp src/format/dtype.cpp src/core/error.cpp \
  -o "$out/umi_cuda_matvec" 2> "$out/ptxas.txt"
grep -E "registers|spill" "$out/ptxas.txt" | sort -u | head -8
"$out/umi_cuda_matvec" 50 | tee "$out/cuda_matvec.jsonl"
