#!/usr/bin/env bash
# Everything stf checks and measures on a GPU, in one call on a GPU machine, from binaries built
# elsewhere (see "Preparing it" below). Sections run in order of importance, each under its own
# time limit, and the whole script stops starting sections when BUDGET seconds (default 540) are used
# (ONLY=REGEX runs just the sections whose names match):
#   1. the GPU suites (test_kernels' GPU part: every hand-written CUDA kernel, cuBLAS and cuDNN against
#      its CPU twin; test_gpu: every op and the networks), the CUDA demo, the STF target bench, FID's
#      Inception-v3 throughput (bench_fid)
#   2. bench_train (DDPM++ batch 64: fp32 STF 1024, TF32 STF, bf16 STF, fp32 DSM; NCSN++ fp32 STF),
#      bench_sample (Heun 18, batch 256, fp32 and bf16), then the PyTorch reference on the same work
#      (tools/torch_reference_bench.py, when REF_SRC names the reference code; see below)
#   3. Nsight Compute per-kernel times of one fp32, one TF32 and one bf16 STF training step and one sampling
#      evaluation
#      (summarise them here with tools/ncu_summary.py)
#   4. data-parallel training through NCCL under mpirun, compared with a single-process run
#   5. train_cifar STF and DSM runs plus sampling (the apps on CUDA), class-conditional STF and guided
#      sampling, loading a 50,000-image EDM ZIP (bench_dataset), bench_kernels (then --version 1), and
#      last the PyTorch reference's torch.compile rows (they spend minutes compiling)
#   6. the training targets compared at GPU scale: stf_compare --preset gpu (DSM, STF n 1024, STF over the
#      whole dataset, kNN; 1000 kimg each on Fashion-MNIST), about 8 minutes on an H200, and a second seed
#      (run before the torch.compile rows)
# What comes back in $OUT: device.log (every section's full output), ncu-step.csv, ncu-step-tf32.csv,
# ncu-step-bf16.csv, ncu-sample.csv, ncu-stf.csv, grid.png, grid-class3.png, torch_reference.json,
# torch_reference_compile.json and compare-gpu*/. CIFAR-10 cannot be downloaded there, so the training runs use random images
# in CIFAR-10's binary format: they measure speed, not quality. Its last output lines are a summary, one
# line per section with its exit status and seconds.
#
# A short call that checks the GPU suites and the headline speeds, against a packed baseline's fp32 step:
#   BUDGET=560 ONLY='^(test_kernels|test_gpu|baseline-fp32-stf-1|current-fp32-stf-1|baseline-tf32-stf|train-tf32-stf|train-bf16-stf|sample-heun18|sample-heun18-bf16)$' \
#       bash tests/gpu/run_on_device.sh
# The same speeds side by side with PyTorch (the reference code carried in ref-src/):
#   REF_SRC=ref-src ONLY='^(train-fp32-stf|train-tf32-stf|train-bf16-stf|sample-heun18|torch-reference)$' \
#       bash tests/gpu/run_on_device.sh
#
# The GPU-scale comparison of the training targets (docs/experiments.md) in one call of its own, from a
# `pack_devrun.sh build compare` pack (it carries Fashion-MNIST and the feature classifier):
#   BUDGET=560 ONLY='^stf_compare-gpu$' bash tests/gpu/run_on_device.sh
# It writes compare-gpu/ (results.csv, loss_bands.csv, the plots and grids, each run's stats.jsonl and log)
# under $OUT; results.csv is rewritten after each target, so a time limit keeps the targets that finished.
# ONLY='^(kernels_gpu|train-fp32-knn|train-fp32-stf-all|stf_compare-gpu)$' adds the top-k kernel's GPU
# cases and the whole-dataset targets' step times first (about a minute more).
#
# The side-by-side call (docs/perf.md, "One device call beside PyTorch's best"): the GPU suites, stf's
# fp32/TF32/bf16 STF steps and Heun-18 fp32/bf16, then the PyTorch configurations a user would run today
# (torch_best.py, kept outside the repository: TORCH_BEST names it, REF_SRC the reference code it imports),
# its torch.compile rows last, within 9 minutes (BUDGET 540),
# every figure in $OUT/figures.json:
#   PLAN=anchor TORCH_BEST=path/to/torch_best.py REF_SRC=ref-src bash tests/gpu/run_on_device.sh
# DRY_RUN=1 prints what each selected section would run and writes figures.json from that, without
# running anything (no GPU needed): `DRY_RUN=1 PLAN=anchor TORCH_BEST=x REF_SRC=ref-src OUT=/tmp/d bash ...`.
#
# Preparing it, on the build machine: `bash tests/gpu/pack_devrun.sh` after a CUDA build packs the
# programs, the non-CUDA libraries they load and (optionally) Debian's OpenMPI runtime into
# devrun.tar.gz; carry that file, and this script unpacks it. The OpenMPI tar is unpacked only where the
# machine has no mpirun, and never over existing files. For the PyTorch reference, put its training/,
# torch_utils/ and dnnlib/ (github.com/Newbeeer/stf) in a git-ignored folder, carry it, and set REF_SRC to
# it (default: ref-src when that folder exists); the machine's python3 needs PyTorch.
set -uo pipefail
out="${OUT:-/tmp/stf-device}"
mkdir -p "$out"
log="$out/device.log"
dry="${DRY_RUN:-0}"
case "${PLAN:-}" in
    anchor) : "${ONLY:=^(test_kernels|test_gpu|train-(fp32|tf32|bf16)-stf(-graph)?|train-fp32-stf-all|sample-heun18(-bf16)?(-graph)?|torch-best(-compile)?)$}"
            budget="${BUDGET:-540}" ;;
    "") budget="${BUDGET:-540}" ;;
    *) echo "run_on_device: PLAN is anchor or unset, got '$PLAN'" >&2; exit 2 ;;
esac
summary=()

# section NAME LIMIT_S TAIL_LINES COMMAND...: runs COMMAND under a time limit, appends its output to
# device.log and prints its last lines and its status.
section() {
    local name=$1 limit=$2 lines=$3
    shift 3
    if [ -n "${ONLY:-}" ] && ! [[ $name =~ $ONLY ]]; then
        summary+=("$name: not selected")
        return 1
    fi
    local left=$((budget - SECONDS))
    if ((left < 20)); then
        summary+=("$name: skipped (budget spent)")
        return 1
    fi
    ((limit > left - 5)) && limit=$((left - 5))
    echo "== $name"
    echo "== $name: $*" >>"$log"
    if [ "$dry" = 1 ]; then
        echo "   (dry run, limit ${limit} s) $*"
        summary+=("$name: dry run")
        return 0
    fi
    local t0=$SECONDS part
    part=$(mktemp)
    timeout -k 5 "$limit" "$@" >"$part" 2>&1
    local rc=$?
    cat "$part" >>"$log"
    tail -n "$lines" "$part"
    rm -f "$part"
    summary+=("$name: rc $rc, $((SECONDS - t0)) s")
    return "$rc"
}

if [ "$dry" = 1 ]; then
    echo "dry run: nothing is unpacked or run" | tee "$log"
else
    [ -f devrun.tar.gz ] && tar -xzf devrun.tar.gz
    cudnn=$(find /usr/local/cuda* /opt /usr/lib -name 'libcudnn.so.9' 2>/dev/null | head -1)
    nccl=$(find /usr/local/cuda* /usr/lib /opt -name 'libnccl.so.2' 2>/dev/null | head -1)
    export LD_LIBRARY_PATH="$PWD/devrun:${cudnn:+$(dirname "$cudnn"):}${nccl:+$(dirname "$nccl"):}/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
    echo "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader)" |
        tee -a "$log"
    probe=devrun/test_gpu
    [ -x "$probe" ] || probe=devrun/stf_compare  # a `compare` pack
    missing=$(ldd "$probe" | grep "not found")
    [ -n "$missing" ] && { echo "missing libraries: $missing"; exit 1; }
fi

# 1. Correctness.
section test_kernels 100 12 ./devrun/test_kernels --test-suite=gpu --requires=gpu
kernel_suite=$?
section test_gpu 100 12 ./devrun/test_gpu
gpu_suite=$?
((gpu_suite == 0)) && gpu_suite=$kernel_suite
section stf_demo 40 2 ./devrun/stf_demo --device cuda --steps 100
section bench_stf_target 60 8 ./devrun/bench_stf_target --device cuda
# FID's feature network (Inception-v3 at 299x299 from 32x32 images); its kernels (pooling, resize) are in
# test_kernels above.
section bench_fid 120 6 ./devrun/bench_fid --device cuda --images 10000 --batch 250
section bench_fid-tf32 90 6 ./devrun/bench_fid --device cuda --images 10000 --batch 250 --mode tf32

# 2. Speed (docs/perf.md). With an earlier revision's benchmarks packed (devrun/baseline, from
# tests/gpu/build_baseline.sh), the two fp32 and TF32 STF steps alternate with it: before/after on one card.
if [ -x devrun/baseline/bench_train ]; then
    summary+=("baseline: $(cat devrun/baseline/REVISION)")
    for round in 1 2; do
        section "baseline-fp32-stf-$round" 70 4 ./devrun/baseline/bench_train --device cuda --batch 64 --steps 20 \
            --mode fp32 --rbatch 1024
        section "current-fp32-stf-$round" 70 4 ./devrun/bench_train --device cuda --batch 64 --steps 20 --mode fp32 \
            --rbatch 1024
    done
    section baseline-tf32-stf 70 3 ./devrun/baseline/bench_train --device cuda --batch 64 --steps 20 --mode tf32 \
        --rbatch 1024
    section baseline-stf-target 60 6 ./devrun/baseline/bench_stf_target --device cuda
fi
section train-fp32-stf 70 8 ./devrun/bench_train --device cuda --batch 64 --steps 30 --mode fp32 --rbatch 1024
section train-tf32-stf 70 5 ./devrun/bench_train --device cuda --batch 64 --steps 30 --mode tf32 --rbatch 1024
section train-bf16-stf 70 5 ./devrun/bench_train --device cuda --batch 64 --steps 30 --mode bf16 --rbatch 1024
# The same steps as CUDA graphs (train_cifar --cuda-graph on): captured in the second warm-up step.
section train-fp32-stf-graph 70 5 ./devrun/bench_train --device cuda --batch 64 --steps 30 --mode fp32 --rbatch 1024 \
    --cuda-graph on
section train-tf32-stf-graph 70 5 ./devrun/bench_train --device cuda --batch 64 --steps 30 --mode tf32 --rbatch 1024 \
    --cuda-graph on
section train-bf16-stf-graph 70 5 ./devrun/bench_train --device cuda --batch 64 --steps 30 --mode bf16 --rbatch 1024 \
    --cuda-graph on
section train-fp32-dsm 70 5 ./devrun/bench_train --device cuda --batch 64 --steps 30 --mode fp32
# The whole-dataset targets on CIFAR-10's 50,000 (random images): STF over all of them, kNN (k 2048, 1024 draws).
section train-fp32-stf-all 90 6 ./devrun/bench_train --device cuda --batch 64 --steps 20 --mode fp32 --target stf \
    --rbatch all --dataset-size 50000
section train-fp32-knn 90 6 ./devrun/bench_train --device cuda --batch 64 --steps 20 --mode fp32 --target knn \
    --rbatch 1024 --k 2048 --dataset-size 50000
section sample-heun18 90 6 ./devrun/bench_sample --device cuda --batch 256 --steps 18
section sample-heun18-bf16 60 6 ./devrun/bench_sample --device cuda --batch 256 --steps 18 --mode bf16
section sample-heun18-graph 90 6 ./devrun/bench_sample --device cuda --batch 256 --steps 18 --cuda-graph on
section sample-heun18-bf16-graph 60 6 ./devrun/bench_sample --device cuda --batch 256 --steps 18 --mode bf16 \
    --cuda-graph on
section train-ncsnpp-stf 70 4 ./devrun/bench_train --device cuda --arch ncsnpp --batch 64 --steps 20 --mode fp32 --rbatch 1024

# The PyTorch reference on the same work, in the same call (docs/perf.md, "The PyTorch reference").
ref_src="${REF_SRC:-}"
[ -z "$ref_src" ] && [ -d ref-src ] && ref_src=ref-src
torch_reference=()
if [ -z "$ref_src" ]; then
    summary+=("torch-reference: REF_SRC not set")
elif ! python3 -c 'import torch' 2>/dev/null; then
    summary+=("torch-reference: python3 has no PyTorch")
else
    torch_reference=(python3 tools/torch_reference_bench.py --ref-src "$ref_src" --device cuda)
    # Every row but batch 512 (60 GiB, slow), the CPU row and the compile rows (at the end).
    rows='flops_ddpmpp,train_ddpmpp_fp32_dsm,train_ddpmpp_fp32_stf,train_ddpmpp_tf32_*,train_ncsnpp_*,stf_target_*'
    rows+=',heun18_*,train_ddpmpp_fp16edm_*,train_bf16_stf,train_cl_bf16_stf'
    section torch-reference 240 26 "${torch_reference[@]}" --budget 200 --out "$out/torch_reference.json" \
        --rows "$rows"
fi

# PyTorch's best on the same step and sampler (torch_best.py, outside the repository): eager fp32, TF32,
# bf16 autocast and channels_last here; its torch.compile rows run last. Each part writes its own
# torch_best.json (the script writes it once, at its end, so a part cut by its limit loses only itself).
torch_best="${TORCH_BEST:-}"
torch_best_cmd=()
if [ -z "$torch_best" ]; then
    summary+=("torch-best: TORCH_BEST not set (the path of torch_best.py)")
elif [ -z "$ref_src" ]; then
    summary+=("torch-best: REF_SRC not set (the reference code torch_best.py imports)")
elif [ "$dry" != 1 ] && [ ! -f "$torch_best" ]; then
    summary+=("torch-best: $torch_best not found")
elif [ "$dry" != 1 ] && ! python3 -c 'import torch' 2>/dev/null; then
    summary+=("torch-best: python3 has no PyTorch")
else
    torch_best_cmd=("EDM_SRC=$(cd "$ref_src" 2>/dev/null && pwd || echo "$ref_src")" python3 "$torch_best")
    mkdir -p "$out/torch-best" "$out/torch-best-compile"
    section torch-best 180 12 env "OUT=$out/torch-best" "${torch_best_cmd[@]}" --budget 150 \
        --only train_eager_fp32,train_eager_tf32,train_eager_bf16,train_cl_bf16,heun_eager_fp32,heun_eager_bf16
fi

# 3. Where the time goes.
ncu=$(command -v ncu || find /opt/nvidia /usr/local/cuda* -name ncu -type f 2>/dev/null | head -1)
if [ -n "$ncu" ]; then
    profile=("$ncu" --profile-from-start off --clock-control none --cache-control none
             --metrics gpu__time_duration.sum --csv)
    section ncu-step 150 2 "${profile[@]}" --log-file "$out/ncu-step.csv" ./devrun/bench_train --device cuda \
        --batch 64 --rbatch 1024 --steps 1 --warmup 2 --profile
    section ncu-step-tf32 150 2 "${profile[@]}" --log-file "$out/ncu-step-tf32.csv" ./devrun/bench_train --device cuda \
        --mode tf32 --batch 64 --rbatch 1024 --steps 1 --warmup 2 --profile
    section ncu-step-bf16 150 2 "${profile[@]}" --log-file "$out/ncu-step-bf16.csv" ./devrun/bench_train --device cuda \
        --mode bf16 --batch 64 --rbatch 1024 --steps 1 --warmup 2 --profile
    section ncu-sample 90 2 "${profile[@]}" --log-file "$out/ncu-sample.csv" ./devrun/bench_sample --device cuda \
        --batch 256 --steps 1 --euler --profile
    # One STF target call at n = 50,000 per chunk size (8192, 16384, 65536), in that order.
    section ncu-stf 90 2 "${profile[@]}" --log-file "$out/ncu-stf.csv" ./devrun/bench_stf_target --device cuda \
        --profile
else
    summary+=("ncu: not found")
fi

# Random images in CIFAR-10's binary format, for the runs below.
data=/tmp/synthetic-cifar/cifar-10-batches-bin
mkdir -p "$data"
[ "$dry" = 1 ] || python3 -c "
import numpy as np
rng = np.random.default_rng(0)
for i in range(1, 6):
    rec = np.zeros((1000, 3073), np.uint8)
    rec[:, 0] = rng.integers(0, 10, 1000)
    rec[:, 1:] = rng.integers(0, 256, (1000, 3072))
    rec.tofile('$data/data_batch_%d.bin' % i)
"
common=(--data "$data" --arch ddpmpp --augment 0.12 --dropout 0.13 --tick 1.28 --snap 0 --dump 0
        --device cuda --no-progress --nosubdir)

# 4. Data-parallel training through NCCL: one rank per GPU, the global STF reference batch.
if [ -f devrun/libstf_dist.so ]; then
    if [ "$dry" != 1 ] && ! command -v mpirun >/dev/null && [ -f devrun/ompi.tar.gz ]; then
        tar --skip-old-files -xzf devrun/ompi.tar.gz -C / && ldconfig
    fi
    mpirun=$(command -v mpirun || command -v mpirun.openmpi || command -v orterun)
    if [ -n "$mpirun" ]; then
        gpus=1
        [ "$dry" = 1 ] || gpus=$(nvidia-smi -L | wc -l)
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader \
               OMPI_MCA_mca_base_component_show_load_errors=0 OMPI_MCA_plm_rsh_agent=false
        section nccl-np$gpus 150 6 "$mpirun" --oversubscribe -np "$gpus" ./devrun/train_cifar "${common[@]}" --stf \
            --rbatch 1024 --rbatch-scope global --batch $((64 * gpus)) --duration 0.00384 --dist-timeout 60 \
            --outdir "$out/run-nccl"
        section single-for-nccl 90 3 ./devrun/train_cifar "${common[@]}" --stf --rbatch 1024 --batch $((64 * gpus)) \
            --duration 0.00384 --outdir "$out/run-single"
        nccl_snap=$(ls "$out"/run-nccl/network-snapshot-*.safetensors 2>/dev/null | tail -1)
        single_snap=$(ls "$out"/run-single/network-snapshot-*.safetensors 2>/dev/null | tail -1)
        if [ -n "$nccl_snap" ] && [ -n "$single_snap" ] && [ -x devrun/stf_info ]; then
            section nccl-vs-single 30 4 ./devrun/stf_info --compare "$nccl_snap" --to "$single_snap" --tolerance 1e-4
        fi
    else
        summary+=("nccl: no mpirun (carry devrun/ompi.tar.gz)")
    fi
fi

# 5. The apps on CUDA, then every kernel against the measured ceilings.
section train_cifar-stf 90 4 ./devrun/train_cifar "${common[@]}" --batch 64 --stf --rbatch 1024 --duration 0.00384 \
    --outdir "$out/run-stf"
section train_cifar-dsm 90 3 ./devrun/train_cifar "${common[@]}" --batch 64 --duration 0.00384 --outdir "$out/run-dsm"
section train_cifar-bf16 90 3 ./devrun/train_cifar "${common[@]}" --batch 64 --stf --rbatch 1024 --precision bf16 \
    --duration 0.00384 --outdir "$out/run-bf16"
snap=$(ls "$out"/run-stf/network-snapshot-*.safetensors 2>/dev/null | tail -1)
[ -n "$snap" ] && section sample-grid 60 3 ./devrun/sample --net "$snap" --seeds 0-255 --batch 256 --heun 18 \
    --device cuda --grid "$out/grid.png"
# Class-conditional STF (docs/design.md): per-class reference blocks of 256, x 10 classes per round.
section train_cifar-cond-stf 90 4 ./devrun/train_cifar "${common[@]}" --batch 64 --stf --rbatch 256 --cond \
    --label-dropout 0.1 --duration 0.00384 --outdir "$out/run-cond"
[ -d "$out/run-cond" ] && section sample-class-guided 60 3 ./devrun/sample --net "$out/run-cond" --seeds 0-255 \
    --batch 256 --heun 18 --class 3 --guidance 2 --device cuda --grid "$out/grid-class3.png"
section bench_dataset 90 6 ./devrun/bench_dataset --zip /tmp/stf-bench-50k.zip
rm -rf "$out"/run-*
section bench_kernels 180 112 ./devrun/bench_kernels
# The first versions of the tuned kernels (docs/kernels.md), to set beside the rows above.
section bench_kernels-v1 60 20 ./devrun/bench_kernels --version 1
# 6. The training targets at GPU scale (docs/experiments.md; a `compare` pack). The first seed fits about
# 8 minutes; the second runs only in what the budget leaves. Samples (.npy, 40 MB each) and snapshots stay behind.
fmnist=devrun/fashion-mnist
if [ -f "$fmnist/train-images-idx3-ubyte.gz" ]; then
    clf=()
    [ -f devrun/classifier.safetensors ] && clf=(--classifier devrun/classifier.safetensors)
    section stf_compare-gpu 510 45 ./devrun/stf_compare --preset gpu --data "$fmnist" "${clf[@]}" \
        --outdir "$out/compare-gpu"
    [ ${#clf[@]} -eq 0 ] && [ -f "$out/compare-gpu/classifier.safetensors" ] &&
        clf=(--classifier "$out/compare-gpu/classifier.safetensors")
    section stf_compare-gpu-seed1 510 45 ./devrun/stf_compare --preset gpu --data "$fmnist" --seed 1 "${clf[@]}" \
        --outdir "$out/compare-gpu-seed1"
    rm -f "$out"/compare-gpu*/samples_*.npy "$out"/compare-gpu*/*/network-snapshot-* \
        "$out"/compare-gpu*/*/training-state-*
else
    summary+=("stf_compare-gpu: no devrun/fashion-mnist (pack with: pack_devrun.sh build compare)")
fi
# torch.compile spends minutes compiling before it times anything: last.
((${#torch_reference[@]})) && section torch-reference-compile 300 6 "${torch_reference[@]}" \
    --out "$out/torch_reference_compile.json" --rows 'train_compile_*'

# torch_best's compile rows need a minute or two each to compile: each starts only with 150 s left.
if ((${#torch_best_cmd[@]})); then
    left=$((budget - SECONDS - 10))
    if ((left >= 200)) || [ "$dry" = 1 ]; then
        section torch-best-compile 420 8 env "OUT=$out/torch-best-compile" "${torch_best_cmd[@]}" \
            --budget $((left > 150 ? left - 150 : 0)) --only train_compile_cl_bf16,train_compile_cl_bf16_graphs
    elif [ -z "${ONLY:-}" ] || [[ torch-best-compile =~ $ONLY ]]; then
        summary+=("torch-best-compile: skipped ($left s left, a compile row needs about 150)")
    fi
fi

echo "== summary (${SECONDS} s)" | tee -a "$log"
printf '%s\n' "${summary[@]}" | tee -a "$log"
# Every figure of this call in one file: each section's status, stf's benchmark lines, the test suites'
# counts, PyTorch's rows and the issue's targets with their ratios.
if command -v python3 >/dev/null; then
    python3 tools/device_figures.py "$out" && echo "figures: $out/figures.json"
else
    echo "figures: no python3, so no figures.json (device.log has every line)"
fi
exit "$gpu_suite"
