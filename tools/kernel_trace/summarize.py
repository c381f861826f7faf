#!/usr/bin/env python3
"""Where a decode step's time goes, from kernel_trace.cpp's CSV.

A step is the run of kernels ending with the argmax (greedy decode) -- or,
with --marker REGEX, with that kernel. Only steps with the most common
kernel count are kept (decode steps; the prefill and warm-up differ). Prints
per kernel name and grid size: launches per step, mean time, share of the
step, and the mean idle gap before it (the GPU waiting for the next kernel
to start), and the time it adds to the step (its end after the end of the
kernel before: with dependent launch, kernels overlap and their own times
no longer add up to the step, but these do); and the CUDA runtime calls
between steps."""
import argparse
import collections
import csv
import gzip
import re
import statistics

ap = argparse.ArgumentParser()
ap.add_argument("csv")
ap.add_argument("--marker", default=r"argmax_pick|argmax_kernel", help="regex of the step's last kernel")
ap.add_argument("--top", type=int, default=25)
args = ap.parse_args()

rows, api = [], []
opener = gzip.open if args.csv.endswith(".gz") else open
with opener(args.csv, "rt") as f:
    for r in csv.reader(f):
        if len(r) < 6:
            continue
        name = ",".join(r[5:]).replace("namespace)::", "")  # traces of the first tracer version
        row = (int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), name)
        (api if row[3] < 0 else rows).append(row)
rows.sort()
api.sort()
steps, cur = [], []
for r in rows:
    cur.append(r)
    if re.search(args.marker, r[5]):
        steps.append(cur)
        cur = []
if not steps:
    raise SystemExit("no kernel named like %r: nothing to split into steps" % args.marker)
mode = collections.Counter(len(s) for s in steps).most_common(1)[0][0]
steps = [s for s in steps if len(s) == mode][1:]  # the first step of a run may still be warming up
if not steps:
    raise SystemExit("fewer than two steps of %d kernels" % mode)
spans = [s[-1][1] - s[0][0] for s in steps]
busy = [sum(e - b for b, e, *_ in s) for s in steps]
print("%d steps of %d kernels; step span median %.1f us (%.1f tok/s if back to back), kernel time %.1f us, idle between kernels %.1f us"
      % (len(steps), mode, statistics.median(spans) / 1e3, 1e9 / statistics.median(spans),
         statistics.median(busy) / 1e3, (statistics.median(spans) - statistics.median(busy)) / 1e3))
between = [steps[i + 1][0][0] - steps[i][-1][1] for i in range(len(steps) - 1)]
if between:
    print("gap between steps (host work: sampling, the next launch) median %.1f us" % (statistics.median(between) / 1e3))
    # The runtime calls in each gap, relative to the end of the step's last kernel.
    calls = collections.defaultdict(list)
    for i in range(len(steps) - 1):
        g0, g1 = steps[i][-1][1], steps[i + 1][0][0]
        for b, e, _, _, _, name in api:
            if b >= g0 - 200000 and b < g1:
                calls[name].append((b - g0, e - b))
    if calls:
        print("runtime calls around the gap (median start after the last kernel's end, median duration, calls per gap):")
        for name, v in sorted(calls.items(), key=lambda kv: statistics.median([x[0] for x in kv[1]])):
            print("  %-40s start %+8.1f us  takes %8.1f us  x%.1f" % (name, statistics.median([x[0] for x in v]) / 1e3,
                  statistics.median([x[1] for x in v]) / 1e3, len(v) / (len(steps) - 1)))
per = collections.defaultdict(lambda: [0, 0, 0, 0])  # launches, time, gap before, time added
for s in steps:
    prev_end = None
    for b, e, g, grid, block, name in s:
        p = per["%s [%d]" % (name, grid)]
        p[0] += 1
        p[1] += e - b
        p[2] += (b - prev_end) if prev_end is not None else 0
        p[3] += (e - prev_end) if prev_end is not None else e - b
        prev_end = e
n = len(steps)
step_us = statistics.median(spans) / 1e3
print("%-70s %6s %9s %9s %6s %9s %9s %9s" % ("kernel", "/step", "mean us", "us/step", "share", "gap us", "adds us", "adds/step"))
for name, (c, t, gap, added) in sorted(per.items(), key=lambda kv: -kv[1][3])[: args.top]:
    print("%-70s %6.0f %9.2f %9.1f %5.1f%% %9.2f %9.2f %9.1f" % (name[:70], c / n, t / c / 1e3, t / n / 1e3, 100 * t / n / 1e3 / step_us,
          gap / c / 1e3, added / c / 1e3, added / n / 1e3))
