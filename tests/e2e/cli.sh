#!/usr/bin/env bash
# End to end through the programs users run: train a tiny STF model on Fashion-MNIST, sample from its
# snapshot to PNGs, a grid and .npy, and check the errors users meet; toy_stf, train_classifier and
# stf_compare for a few steps on tiny data. Usage: cli.sh BUILD_DIR
bin="$1"
source "$(dirname "$0")/lib.sh"
data=/usr/share/datasets/fashion-mnist
[ -d "$data" ] || { echo "skipped: Debian's dataset-fashion-mnist is not installed"; exit 77; }
tiny=(--data "$data" --max-images 256 --cbase 8 --cres 1,2 --blocks 1 --attn 16 --batch 16 --batch-gpu 8
      --lr-rampup 0 --ema 0.0005 --tick 0.16 --device cpu --no-progress)

# 1. train 20 steps with STF
if "$bin/train_cifar" "${tiny[@]}" --stf --rbatch 64 --duration 0.00032 --outdir "$tmp/run" >"$tmp/train.log" 2>&1; then
    pass "train_cifar --stf"
else
    fail "train_cifar --stf: $(tail -5 "$tmp/train.log")"
fi
grep -q "ess\[s<0.2\]" "$tmp/train.log" && pass "progress line reports the STF effective sample size" || fail "no ESS in progress"
snap=$(ls "$tmp"/run/network-snapshot-*.safetensors 2>/dev/null | tail -1)
state=$(ls "$tmp"/run/training-state-*.safetensors 2>/dev/null | tail -1)
[ -n "$snap" ] && [ -n "$state" ] && pass "snapshot and training state written" || fail "checkpoints missing"
[ "$(wc -l <"$tmp/run/stats.jsonl")" -eq 2 ] && pass "stats.jsonl has one line per tick" || fail "stats.jsonl lines"

# 2. sample: PNG per seed, grid, npy; the same seed gives the same image at any batch size
"$bin/sample" --net "$snap" --seeds 0-5 --batch 4 --heun 3 --device cpu --outdir "$tmp/img" --grid "$tmp/grid.png" \
    --out-npy "$tmp/a.npy" >"$tmp/sample.log" 2>&1 && pass "sample" || fail "sample: $(cat "$tmp/sample.log")"
grep -q "5 network evaluations" "$tmp/sample.log" && pass "Heun 3 steps: 5 evaluations" || fail "NFE line: $(cat "$tmp/sample.log")"
[ "$(ls "$tmp"/img/000000/*.png 2>/dev/null | wc -l)" -eq 6 ] && pass "one PNG per seed in EDM's layout" || fail "PNGs"
[ -s "$tmp/grid.png" ] && pass "grid written" || fail "grid missing"
"$bin/sample" --net "$snap" --seeds 0-5 --batch 6 --heun 3 --device cpu --out-npy "$tmp/b.npy" >/dev/null 2>&1
cmp -s "$tmp/a.npy" "$tmp/b.npy" && pass "batch size does not change a seed's image" || fail "batch changed the images"
"$bin/sample" --net "$snap" --latents "$tmp/a.npy" --euler 2 --device cpu --out-npy "$tmp/c.npy" >/dev/null 2>&1 \
    && [ -s "$tmp/c.npy" ] && pass "sample --latents --euler" || fail "sample --latents"
# bf16 sampling (emulated on the CPU): says so, and its images differ from fp32's only by bf16 rounding
if "$bin/sample" --net "$snap" --seeds 0-5 --batch 6 --heun 3 --device cpu --precision bf16 --out-npy "$tmp/bf16.npy" \
    >"$tmp/sample_bf16.log" 2>&1; then pass "sample --precision bf16"; else fail "sample bf16: $(cat "$tmp/sample_bf16.log")"; fi
grep -q "arithmetic: bf16 mixed precision" "$tmp/sample_bf16.log" && pass "sample logs its arithmetic" \
    || fail "sample arithmetic line: $(cat "$tmp/sample_bf16.log")"
cmp -s "$tmp/b.npy" "$tmp/bf16.npy" && fail "bf16 samples are bit-identical to fp32's" || pass "bf16 changes the arithmetic"
expect_error "sample with an unknown precision" "--precision 'fp16' (expected fp32, tf32 or bf16)" "$bin/sample" --net "$snap" \
    --device cpu --precision fp16 --grid "$tmp/x.png"

# 3. errors: clear message, non-zero exit, nothing overwritten
expect_error "missing dataset" "nowhere" "$bin/train_cifar" --data "$tmp/nowhere" --device cpu --outdir "$tmp/x"
expect_error "unknown flag" "unknown flag --bogus" "$bin/train_cifar" --bogus 1
expect_error "rbatch < batch" "--rbatch 4 is smaller" "$bin/train_cifar" "${tiny[@]}" --stf --rbatch 4 --duration 0.00032 --outdir "$tmp/x"
expect_error "unknown precision" "--precision must be fp32, tf32 or bf16" "$bin/train_cifar" "${tiny[@]}" --precision fp16 \
    --duration 0.00032 --outdir "$tmp/x"
expect_error "tf32 on the CPU" "--precision tf32 needs --device cuda" "$bin/train_cifar" "${tiny[@]}" --precision tf32 \
    --duration 0.00032 --outdir "$tmp/x"

# bf16 mixed precision (emulated on the CPU): trains, logs its arithmetic, records it for --resume
if "$bin/train_cifar" "${tiny[@]}" --stf --rbatch 64 --duration 0.00016 --precision bf16 --outdir "$tmp/bf16" \
    >"$tmp/bf16.log" 2>&1; then pass "train_cifar --precision bf16"
else fail "train_cifar bf16: $(tail -5 "$tmp/bf16.log")"; fi
grep -q "Arithmetic: bf16 mixed precision" "$tmp/bf16.log" && grep -q '"precision": "bf16"' "$tmp/bf16/training_options.json" \
    && pass "bf16 logged and stored in training_options.json" || fail "bf16 not recorded: $(head -3 "$tmp/bf16.log")"
expect_error "training state given as a network" "do not match this network" "$bin/sample" --net "$state" \
    --device cpu --grid "$tmp/grid.png"
head -c 1000 "$snap" >"$tmp/cut.safetensors"
before=$(md5sum <"$tmp/grid.png")
expect_error "corrupt checkpoint" "cut.safetensors" "$bin/sample" --net "$tmp/cut.safetensors" --device cpu \
    --grid "$tmp/grid.png"
[ "$(md5sum <"$tmp/grid.png")" = "$before" ] && pass "a failed run leaves the old grid alone" || fail "grid overwritten"
expect_error "sample without output" "nothing to write" "$bin/sample" --net "$snap" --device cpu

# 4. toy_stf: a few steps on a tiny mixture, CSV rows and plots, a bad flag
if "$bin/toy_stf" --dim 2 --modes 3 --steps 20 --batch 16 --rbatch 16,32 --seeds 2 --samples 64 --minibatches 2 \
    --draws 4 --outdir "$tmp/toy" >"$tmp/toy.log" 2>&1; then pass "toy_stf"; else fail "toy_stf: $(tail -5 "$tmp/toy.log")"; fi
[ "$(wc -l <"$tmp/toy/toy.csv" 2>/dev/null)" -eq 13 ] && pass "toy.csv: 3 methods x 4 bands" || fail "toy.csv rows"
[ -s "$tmp/toy/toy.png" ] && [ -s "$tmp/toy/toy_gradvar.png" ] && [ -s "$tmp/toy/toy_target.png" ] \
    && pass "toy plots written" || fail "toy plots missing"
expect_error "toy_stf --dim 1" "--dim must be in 2..64" "$bin/toy_stf" --dim 1 --outdir "$tmp/toy2"

# 5. train_classifier and stf_compare: a few steps on a slice of Fashion-MNIST
if "$bin/train_classifier" --max-images 256 --max-test-images 128 --channels 8,8,16,16 --convs 1 --steps 10 --batch 32 \
    --log-every 5 --out "$tmp/clf/c.safetensors" >"$tmp/clf.log" 2>&1; then pass "train_classifier"
else fail "train_classifier: $(tail -5 "$tmp/clf.log")"; fi
grep -q "test accuracy .* on 128 images" "$tmp/clf.log" && [ -s "$tmp/clf/c.safetensors" ] \
    && pass "classifier accuracy printed, checkpoint written" || fail "classifier output: $(cat "$tmp/clf.log")"
[ "$(grep -c '^step' "$tmp/clf.log")" -eq 2 ] && pass "classifier progress lines" || fail "classifier progress lines"
cmp_tiny=(--preset cpu --max-images 256 --max-test-images 128 --kimg 0.064 --batch 16 --rbatch 32 --tick 0.032 --cbase 8
          --cres 1,2 --blocks 1 --samples 8 --heun 2 --sample-batch 4 --bootstrap 5)
if "$bin/stf_compare" "${cmp_tiny[@]}" --classifier-steps 3 --outdir "$tmp/cmp" >"$tmp/cmp.log" 2>&1; then
    pass "stf_compare"
else
    fail "stf_compare: $(tail -5 "$tmp/cmp.log")"
fi
[ "$(cut -d, -f1 "$tmp/cmp/results.csv" 2>/dev/null | tr '\n' ' ')" = "method dsm stf data " ] \
    && pass "results.csv: dsm, stf and the data floor" || fail "results.csv: $(cat "$tmp/cmp/results.csv" 2>&1)"
[ "$(wc -l <"$tmp/cmp/loss_bands.csv" 2>/dev/null)" -eq 9 ] && pass "loss_bands.csv: 2 methods x 4 bands" \
    || fail "loss_bands.csv rows"
for f in loss.png loss_bands_var.png samples_dsm.png samples_stf.png classifier.safetensors dsm/stats.jsonl stf/stats.jsonl; do
    [ -s "$tmp/cmp/$f" ] || fail "stf_compare did not write $f"
done
cmp -s "$tmp/cmp/samples_dsm.npy" "$tmp/cmp/samples_stf.npy" && fail "DSM and STF samples are identical" \
    || pass "DSM and STF models differ"
fd_of() { cut -d, -f5 "$1" | tr '\n' ' '; }
before_fd=$(fd_of "$tmp/cmp/results.csv")
"$bin/stf_compare" "${cmp_tiny[@]}" --classifier "$tmp/cmp/classifier.safetensors" --rescore --outdir "$tmp/cmp" \
    >"$tmp/rescore.log" 2>&1 && [ "$(fd_of "$tmp/cmp/results.csv")" = "$before_fd" ] \
    && pass "stf_compare --rescore with the same classifier reproduces the FDs" || fail "rescore: $(tail -3 "$tmp/rescore.log")"
expect_error "stf_compare with a network as classifier" "is not an stf classifier" "$bin/stf_compare" "${cmp_tiny[@]}" \
    --classifier "$snap" --outdir "$tmp/cmp2"
expect_error "stf_compare without a preset" "give --preset cpu" "$bin/stf_compare" --outdir "$tmp/cmp3"
expect_error "train_classifier on unlabelled data" "no test split beside" "$bin/train_classifier" --data "$tmp/img" \
    --out "$tmp/clf/x.safetensors"

finish e2e
