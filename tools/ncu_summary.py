#!/usr/bin/env python3
"""Where a recorded GPU region spends its time, from Nsight Compute's per-kernel durations.

    ncu --profile-from-start off --clock-control none --metrics gpu__time_duration.sum --csv \\
        ./bench_train --device cuda --steps 2 --warmup 2 --profile > step.csv
    python3 tools/ncu_summary.py step.csv

bench_train --profile and bench_sample --profile bracket one training step or one network evaluation
with cudaProfilerStart/Stop, so the CSV holds exactly that region's kernels. Under the profiler the
kernels run one at a time, so the sum of their durations is the GPU's busy time with no launch gaps and
no overlap: compare it with the unprofiled ms/step to see how much the gaps cost.

Prints the total, a table by category (cuDNN convolutions split into forward, data gradient and weight
gradient; cuBLAS/CUTLASS matrix products; stf's own kernels by name) and the slowest kernels.
"""
import argparse
import collections
import csv
import re
import sys


def category(name):
    n = name.lower()
    # cuDNN and cuBLAS kernel names are not a stable interface; these patterns cover the families
    # cuDNN 9 and cuBLAS 13 use on Hopper and Ampere. Anything else is reported under its own name.
    if "wgrad" in n or "bwd_filter" in n:
        return "conv weight gradient (cuDNN)"
    if "dgrad" in n or "bwd_data" in n:
        return "conv data gradient (cuDNN)"
    if any(k in n for k in ("fprop", "convolve", "winograd", "fft", "conv2d", "im2col", "flip_filter")):
        return "conv forward and transforms (cuDNN)"
    if "gemm" in n:
        # cuBLAS's matrix products, and also the batched GEMM stage of cuDNN's Winograd convolutions
        # (grid z = 36, the 6x6 transform points), which carry no convolution in their names.
        return "GEMM (cuBLAS, or cuDNN's Winograd stage)"
    return short_name(name)


def short_name(name):
    """A kernel's name without return type, namespaces and parameters, template arguments kept."""
    name = re.sub(r"^void\s+", "", name).replace("(anonymous namespace)::", "").replace("<unnamed>::", "")
    name = name.split("(")[0]
    return re.sub(r"\b\w+::", "", name).strip()


def read(path):
    """(kernel name, duration in ns) for every kernel launch in an `ncu --csv` file."""
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # drop ==PROF== and program output
    rows = []
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        unit = row.get("Metric Unit", "ns")
        scale = {"ns": 1, "nsecond": 1, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6}.get(unit, 1)
        rows.append((row["Kernel Name"], value * scale))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", help="output of ncu --csv --metrics gpu__time_duration.sum")
    parser.add_argument("--top", type=int, default=15, help="slowest kernels to list (default 15)")
    args = parser.parse_args()
    rows = read(args.csv)
    if not rows:
        sys.exit(f"{args.csv}: no gpu__time_duration.sum rows; was ncu run with --csv and that metric?")
    total = sum(ns for _, ns in rows)
    print(f"{len(rows)} kernels, {total / 1e6:.2f} ms of GPU time")
    by_cat = collections.defaultdict(lambda: [0, 0.0])
    by_name = collections.defaultdict(lambda: [0, 0.0])
    for name, ns in rows:
        for table, key in ((by_cat, category(name)), (by_name, short_name(name)[:110])):
            table[key][0] += 1
            table[key][1] += ns
    print(f"\n| category | launches | ms | share |\n|---|---|---|---|")
    for key, (count, ns) in sorted(by_cat.items(), key=lambda kv: -kv[1][1]):
        print(f"| {key} | {count} | {ns / 1e6:.2f} | {100 * ns / total:.1f}% |")
    print(f"\n| slowest kernels (by total) | launches | ms | mean us |\n|---|---|---|---|")
    for key, (count, ns) in sorted(by_name.items(), key=lambda kv: -kv[1][1])[:args.top]:
        print(f"| {key} | {count} | {ns / 1e6:.2f} | {ns / count / 1e3:.1f} |")


if __name__ == "__main__":
    main()
