#!/usr/bin/env bash
# Installs what umi builds and tests with, from Debian 12 packages. Run as
# root. Installs only what is missing, so a second run costs a second.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config
  clang libclang-rt-14-dev          # libFuzzer + sanitizer runtimes for the fuzz run
  nlohmann-json3-dev                # JSON: model headers, configs, tokenizers, the HTTP API
  libcli11-dev                      # the command line
  libpcre2-dev                      # Unicode-class regexes for tokenizer pre-splitting
  libutf8proc-dev                   # NFC/NFKC normalization for tokenizers
  libedit-dev                       # line editing in `umi chat` (BSD licensed, readline API)
  libcpp-httplib-dev                # the OpenAI-compatible HTTP server
  libgtest-dev libgmock-dev         # unit tests
  libbenchmark-dev                  # micro-benchmarks
  g++-aarch64-linux-gnu qemu-user   # the arm64 (NEON) kernels, cross-built and tested under emulation
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The openai npm client tests need Node.js and npm; a Node.js from elsewhere
# (e.g. NodeSource, which bundles npm) is used as it is.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
