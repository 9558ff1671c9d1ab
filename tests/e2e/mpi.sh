#!/usr/bin/env bash
# Data-parallel training on the CPU with `mpirun -np 2` (issue 7): two ranks end a few steps with the
# weights of one process, whether the batch is split over ranks or into --batch-gpu rounds; STF's
# global reference scope equals one process with the gathered reference batch; mismatched flags and a
# stopped rank end the job with a message instead of a hang. Usage: mpi.sh BUILD_DIR
bin="$1"
source "$(dirname "$0")/lib.sh"
data=/usr/share/datasets/fashion-mnist
[ -d "$data" ] || { echo "skipped: Debian's dataset-fashion-mnist is not installed"; exit 77; }
[ -f "$bin/libstf_dist.so" ] || { echo "skipped: no libstf_dist.so in $bin (MPI not found at build time)"; exit 77; }

# CI runs as root in a container with fewer cores than ranks may want.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# One machine only: OpenMPI refuses to start without an ssh/rsh client even when it will not use it.
command -v ssh >/dev/null || command -v rsh >/dev/null || export OMPI_MCA_plm_rsh_agent=false
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
# Under AddressSanitizer (CI's sanitizer build) OpenMPI's own allocations, some in plugins it unloads,
# show up as leaks at exit: keep ASan's other checks, not leak detection.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
mpi2=(timeout 300 mpirun -np 2)

# Three steps with dropout and augmentation on: 48 images at batch 16.
tiny=(--data "$data" --max-images 512 --cbase 8 --cres 1,2 --blocks 1 --dropout 0.1 --augment 0.12 --lr 2e-3
      --lr-rampup 0 --ema 0.0005 --tick 1 --device cpu --no-progress --seed 3 --batch 16 --nosubdir)

train() {  # name, launcher..., -- flags...
    local name="$1"
    shift
    local launcher=()
    while [ "$1" != "--" ]; do launcher+=("$1"); shift; done
    shift
    if "${launcher[@]}" "$bin/train_cifar" "${tiny[@]}" --duration 0.000048 --outdir "$tmp/$name" "$@" \
           >"$tmp/$name.log" 2>&1; then
        pass "train $name"
    else
        fail "train $name: $(tail -5 "$tmp/$name.log")"
    fi
}
same() {  # what, run a, run b: final training states (weights, EMA, Adam) within 1e-6
    local out
    if out=$("$bin/stf_info" --compare "$tmp/$2/training-state-000000.safetensors" \
             --to "$tmp/$3/training-state-000000.safetensors" --tolerance 1e-6 2>&1); then
        pass "$1 ($(grep whole-file <<<"$out"))"
    else
        fail "$1: $out"
    fi
}

# DSM: 2 ranks x 8 = 1 process x 16 = 1 process x 2 rounds of 8.
train dsm-2ranks "${mpi2[@]}" --
train dsm-1proc --
train dsm-rounds -- --batch-gpu 8
same "DSM: two ranks end with the weights of one process at batch 16" dsm-1proc dsm-2ranks
same "DSM: and of one process with --batch-gpu 8" dsm-1proc dsm-rounds
# One rank through MPI: every collective runs (on one rank) and changes nothing.
train dsm-1rank timeout 300 mpirun -np 1 --
if "$bin/stf_info" --compare "$tmp/dsm-1proc/training-state-000000.safetensors" \
       --to "$tmp/dsm-1rank/training-state-000000.safetensors" --tolerance 0 >/dev/null 2>&1; then
    pass "mpirun -np 1 ends bit-identical to one process"
else
    fail "mpirun -np 1 differs from one process"
fi
grep -q "MPI, rank 0 of 2" "$tmp/dsm-2ranks.log" && pass "rank 0 reports the job" || fail "no rank line"
[ "$(grep -c "^Starting training" "$tmp/dsm-2ranks.log")" = 1 ] && pass "only rank 0 prints" || fail "several ranks printed"

# STF, local scope: each round's own reference batch, as one process with rounds of 8.
train stf-local-2ranks "${mpi2[@]}" -- --stf --rbatch 32
train stf-local-rounds -- --stf --rbatch 32 --batch-gpu 8
same "STF local scope: two ranks equal one process with --batch-gpu 8" stf-local-rounds stf-local-2ranks
# STF, global scope: both ranks' 32-image reference batches gathered = one process with rbatch 64.
train stf-global-2ranks "${mpi2[@]}" -- --stf --rbatch 32 --rbatch-scope global
train stf-global-1proc -- --stf --rbatch 64
same "STF global scope: two ranks with rbatch 32 equal one process with rbatch 64" stf-global-1proc stf-global-2ranks

# Resume a two-rank state in one process and continue: it must run (any number of ranks).
if "$bin/train_cifar" --resume "$tmp/dsm-2ranks/training-state-000000.safetensors" --duration 0.00008 \
       --no-progress >"$tmp/resume.log" 2>&1; then
    pass "a two-rank training state resumes in one process"
else
    fail "resume: $(tail -3 "$tmp/resume.log")"
fi

# Mismatched flags: a clear error, quickly.
out=$(timeout 120 mpirun -np 1 "$bin/train_cifar" "${tiny[@]}" --duration 0.000048 --outdir "$tmp/mm" \
      : -np 1 "$bin/train_cifar" "${tiny[@]}" --duration 0.000048 --outdir "$tmp/mm" --rbatch 32 2>&1)
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "started with different options than rank 0 (first difference: 'rbatch')" <<<"$out"; then
    pass "mismatched flags across ranks are named"
else
    fail "mismatched flags (rc $rc): $out"
fi

# A rank that stops answering: the other fails after --dist-timeout instead of waiting for ever.
start=$(date +%s)
out=$(timeout 120 mpirun -np 2 sh -c \
      'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then (sleep 3; kill -STOP $$) & fi; exec "$0" "$@"' \
      "$bin/train_cifar" "${tiny[@]}" --duration 0.01 --dist-timeout 5 --outdir "$tmp/hang" 2>&1)
rc=$?
took=$(( $(date +%s) - start ))
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "no answer from every rank after 5 s" <<<"$out"; then
    pass "a stopped rank ends the job with a timeout message (${took}s)"
else
    fail "stopped rank (rc $rc, ${took}s): $(tail -5 <<<"$out")"
fi

finish mpi
