#!/usr/bin/env bash
# Builds the speed benchmarks of an earlier revision (default: ab761ea, version 4 in docs/perf-history.md)
# with CUDA into build-baseline, so that pack_devrun.sh can carry them beside the current ones and
# run_on_device.sh can time both in the same call on the same card: the only fair before/after.
#
#   bash tests/gpu/build_baseline.sh [REV]    # then bash tests/gpu/pack_devrun.sh build
set -euo pipefail
rev="${1:-ab761ea}"
src=build-baseline-src
git rev-parse --verify --quiet "$rev^{commit}" >/dev/null || { echo "build_baseline: no revision $rev" >&2; exit 1; }
rm -rf "$src"
git worktree prune
git worktree add --detach "$src" "$rev" >/dev/null
cmake -S "$src" -B build-baseline -DCMAKE_BUILD_TYPE=Release -DSTF_CUDA=ON >/dev/null
cmake --build build-baseline -j2 --target bench_train bench_sample bench_stf_target bench_kernels
git -C "$src" rev-parse --short HEAD > build-baseline/REVISION
echo "build-baseline: benchmarks of $(cat build-baseline/REVISION)"
