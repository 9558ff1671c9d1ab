#!/usr/bin/env bash
# Runs the GPU suite, the CUDA demo, a short paper-config training run plus sampling and the benchmarks
# on a GPU machine, from binaries built elsewhere: copy build/{test_gpu,stf_demo,train_cifar,sample,
# bench_stf_target,bench_kernels,bench_train,bench_sample} and the
# non-CUDA shared libraries they need (OpenBLAS, gfortran, quadmath, gomp) into devrun/, carry devrun/
# there and run this script from the repository root. CIFAR-10 cannot be downloaded there, so the
# training run uses random images in CIFAR-10's binary format: it measures speed, not quality.
set -uo pipefail
out="${OUT:-/tmp}"
cudnn=$(find /usr/local/cuda* /opt /usr/lib -name 'libcudnn.so.9' 2>/dev/null | head -1)
export LD_LIBRARY_PATH="$PWD/devrun:${cudnn:+$(dirname "$cudnn"):}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
missing=$(ldd devrun/test_gpu | grep "not found")
[ -n "$missing" ] && { echo "missing libraries: $missing"; exit 1; }
./devrun/test_gpu 2>&1 | tee "$out/test_gpu.log" | tail -12
status=${PIPESTATUS[0]}
./devrun/stf_demo --device cuda --steps 100 2>&1 | tail -2
[ -x devrun/bench_stf_target ] && ./devrun/bench_stf_target --device cuda

if [ -x devrun/train_cifar ]; then
    data=/tmp/synthetic-cifar/cifar-10-batches-bin
    mkdir -p "$data"
    python3 -c "
import numpy as np
rng = np.random.default_rng(0)
for i in range(1, 6):
    rec = np.zeros((1000, 3073), np.uint8)
    rec[:, 0] = rng.integers(0, 10, 1000)
    rec[:, 1:] = rng.integers(0, 256, (1000, 3072))
    rec.tofile('$data/data_batch_%d.bin' % i)
"
    common=(--data "$data" --arch ddpmpp --batch 64 --augment 0.12 --dropout 0.13 --tick 1.28 --snap 0 --dump 0
            --device cuda --no-progress)
    ./devrun/train_cifar "${common[@]}" --stf --rbatch 1024 --duration 0.00384 --outdir "$out/run-stf" 2>&1 | tail -4
    ./devrun/train_cifar "${common[@]}" --duration 0.00384 --outdir "$out/run-dsm" 2>&1 | tail -3
    snap=$(ls "$out"/run-stf/network-snapshot-*.safetensors | tail -1)
    ./devrun/sample --net "$snap" --seeds 0-255 --batch 256 --heun 18 --device cuda --grid "$out/grid.png" 2>&1 | tail -3
    rm -f "$out"/run-*/training-state-*.safetensors "$out"/run-*/network-snapshot-*.safetensors
fi
# Benchmarks (docs/perf.md): every kernel against the measured ceilings, then DDPM++ training steps at
# batch 64 (fp32 STF 1024 and DSM, TF32 STF, NCSN++ fp32 STF) and Heun-18 sampling at batch 256.
# About 3 minutes on an H100; full outputs in $OUT/bench-*.log.
if [ -x devrun/bench_kernels ]; then
    ./devrun/bench_kernels 2>&1 | tee "$out/bench-kernels.log" | tail -32
fi
if [ -x devrun/bench_train ]; then
    for run in "fp32-stf --mode fp32 --rbatch 1024" "fp32-dsm --mode fp32" "tf32-stf --mode tf32 --rbatch 1024" \
               "ncsnpp-stf --arch ncsnpp --mode fp32 --rbatch 1024"; do
        set -- $run
        name=$1
        shift
        echo "== bench_train $*"
        ./devrun/bench_train --device cuda --batch 64 --steps 30 "$@" 2>&1 | tee "$out/bench-train-$name.log" | tail -7
    done
fi
if [ -x devrun/bench_sample ]; then
    echo "== bench_sample Heun 18, batch 256"
    ./devrun/bench_sample --device cuda --batch 256 --steps 18 2>&1 | tee "$out/bench-sample.log" | tail -6
fi
# Data-parallel training through NCCL (issue 7): needs mpirun on the device machine and libstf_dist.so
# in devrun/. One rank exercises the NCCL all-reduce and all-gather; several when there are GPUs.
if [ -f devrun/libstf_dist.so ] && command -v mpirun >/dev/null && [ -n "${data:-}" ]; then
    gpus=$(nvidia-smi -L | wc -l)
    echo "== mpirun -np $gpus train_cifar (NCCL)"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 mpirun -np "$gpus" ./devrun/train_cifar \
        "${common[@]}" --stf --rbatch 1024 --rbatch-scope global --batch $((64 * gpus)) --duration 0.00384 \
        --dist-timeout 60 --outdir "$out/run-nccl" 2>&1 | tail -4
else
    echo "NCCL path not run: needs mpirun and devrun/libstf_dist.so"
fi
exit "$status"
