#!/usr/bin/env python3
"""Where two greedy continuations of one prompt part, and how close the call was.

    python3 tools/greedy_divergence.py UMI MODEL CPU_TEXT_FILE CUDA_TEXT_FILE

Tokenizes both texts (prompt included, as `umi run` prints them), finds the
first token where they differ, and prints the CPU's two best logits for the
common prefix: a gap of a few 1e-3 is a near tie that any rounding change may
flip; an O(1) gap is a wrong kernel.
"""
import json
import subprocess
import sys


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def main():
    umi, model, cpu_file, cuda_file = sys.argv[1:5]
    ids = [json.loads(run(umi, "tokenize", "-m", model, "--json", "--file", f)) for f in (cpu_file, cuda_file)]
    n = 0
    while n < min(map(len, ids)) and ids[0][n] == ids[1][n]:
        n += 1
    if n == len(ids[0]) == len(ids[1]):
        print("same tokens")
        return
    logits = json.loads(run(umi, "logits", "-m", model, "--device", "cpu", "--ids", ",".join(map(str, ids[0][:n]))))
    best = sorted(range(len(logits)), key=lambda i: -logits[i])[:2]
    print("first different token at %d of %d: cpu %s, cuda %s; the cpu's top 2 there %s, %.3e apart"
          % (n, len(ids[0]), ids[0][n:n + 1], ids[1][n:n + 1], best, logits[best[0]] - logits[best[1]]))


if __name__ == "__main__":
    main()
