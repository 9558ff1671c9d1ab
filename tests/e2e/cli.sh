#!/usr/bin/env bash
# End to end through the programs users run: train a tiny STF model on Fashion-MNIST, sample from its
# snapshot to PNGs, a grid and .npy, and check the errors users meet; toy_stf, train_classifier and
# stf_compare for a few steps on tiny data; an EDM-format ZIP through class-conditional training (run
# directories, --resume auto) to sampling per class. Usage: cli.sh BUILD_DIR
bin="$1"
source "$(dirname "$0")/lib.sh"
data=/usr/share/datasets/fashion-mnist
[ -d "$data" ] || { echo "skipped: Debian's dataset-fashion-mnist is not installed"; exit 77; }
tiny=(--data "$data" --max-images 256 --cbase 8 --cres 1,2 --blocks 1 --attn 16 --batch 16 --batch-gpu 8
      --lr-rampup 0 --ema 0.0005 --tick 0.16 --device cpu --no-progress --nosubdir)

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

# Ticks under 1 kimg: every snapshot keeps its own name (rounded to whole kimg they overwrote each other).
[ "$(ls "$tmp"/run/network-snapshot-*.safetensors | wc -l)" -eq 2 ] && pass "two ticks of 0.16 kimg: two snapshots" \
    || fail "snapshots: $(ls "$tmp"/run)"
# Resuming from the tick-0 state continues stats.jsonl without repeating tick 1, and removes the
# temporary file a killed writer left (pid 999999 is not running).
first_state=$(ls "$tmp"/run/training-state-*.safetensors | head -1)
touch "$tmp/run/training-state-000000.320.safetensors.tmp.999999"
if "$bin/train_cifar" --resume "$first_state" --no-progress >"$tmp/resume.log" 2>&1; then
    ticks=$(sed 's/.*"tick":\([0-9]*\).*/\1/' "$tmp/run/stats.jsonl" | tr '\n' ' ')
    [ "$ticks" = "0 1 " ] && pass "stats.jsonl continues after a resume without repeated ticks" || fail "ticks after resume: $ticks"
    [ ! -e "$tmp/run/training-state-000000.320.safetensors.tmp.999999" ] && grep -q "Removed the stale temporary" "$tmp/resume.log" \
        && pass "stale temporary removed" || fail "stale temporary kept: $(ls "$tmp/run")"
else
    fail "resume from the tick-0 state: $(tail -3 "$tmp/resume.log")"
fi
# --resume refuses flags that would change the run instead of ignoring them.
expect_error "--resume with another --lr" "lr was given as 0.5" "$bin/train_cifar" --resume "$first_state" --lr 0.5
expect_error "--resume with another --data" "data was given as" "$bin/train_cifar" --resume "$first_state" --data /nonexistent
expect_error "--resume with another --outdir" "outdir was given as" "$bin/train_cifar" --resume "$first_state" \
    --outdir "$tmp/new"

# A SIGTERM during training: the step finishes, a training state is written, the exit is non-zero and
# names the state to resume from; resuming from it finishes the run.
"$bin/train_cifar" "${tiny[@]}" --duration 1 --outdir "$tmp/term" >"$tmp/term.log" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q "^tick 0" "$tmp/term.log" && break; sleep 0.1; done
kill -TERM "$pid"
wait "$pid"
rc=$?
term_state=$(sed -n 's/.*Continue with: train_cifar --resume //p' "$tmp/term.log")
if [ "$rc" -ne 0 ] && [ -s "$term_state" ] && grep -q "Stopped by SIGTERM after step" "$tmp/term.log"; then
    pass "SIGTERM: training state written, non-zero exit, resume command printed"
else
    fail "SIGTERM: rc $rc, state '$term_state': $(tail -3 "$tmp/term.log")"
fi
"$bin/train_cifar" --resume "$term_state" --duration 0.0008 --no-progress >"$tmp/term2.log" 2>&1 \
    && grep -q "^Done" "$tmp/term2.log" && pass "the state a SIGTERM left resumes" || fail "resume after SIGTERM: $(tail -3 "$tmp/term2.log")"
# A diverging run writes no non-finite checkpoint.
expect_error "--lr 1e300 diverges" "training diverged" "$bin/train_cifar" "${tiny[@]}" --lr 1e300 --duration 0.00032 \
    --outdir "$tmp/div"
ls "$tmp"/div/training-state-* "$tmp"/div/network-snapshot-* >/dev/null 2>&1 && fail "a diverged run wrote a checkpoint" \
    || pass "a diverged run writes no checkpoint"

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
expect_error "unknown --cuda-graph" "--cuda-graph must be on or off, got 'yes'" "$bin/train_cifar" "${tiny[@]}" \
    --cuda-graph yes --duration 0.00032 --outdir "$tmp/x"
expect_error "empty --batch" "--batch was given an empty value" "$bin/train_cifar" --data "$data" --device cpu --batch= --outdir "$tmp/x"
expect_error "--max-images -5" "--max-images must be >= 0" "$bin/train_cifar" --data "$data" --device cpu --max-images -5 --outdir "$tmp/x"
expect_error "--ema -1" "--ema (half-life in Mimg) must be positive" "$bin/train_cifar" --data "$data" --device cpu --ema -1 --outdir "$tmp/x"
expect_error "--ema nan" "--ema expects a number, got 'nan'" "$bin/train_cifar" --data "$data" --device cpu --ema nan --outdir "$tmp/x"
expect_error "--lr inf" "--lr must be positive and finite" "$bin/train_cifar" --data "$data" --device cpu --lr inf --outdir "$tmp/x"
expect_error "--attn 999" "attention resolutions (--attn) [999]" "$bin/train_cifar" --data "$data" --device cpu --max-images 64 \
    --attn 999 --outdir "$tmp/x"
expect_error "--cres 0" "--cres: each multiplier must be in 1..64, got 0" "$bin/train_cifar" --data "$data" --device cpu --cres 0 --outdir "$tmp/x"
expect_error "--res 1024" "--res must be in 0..512" "$bin/train_cifar" --data "$data" --device cpu --res 1024 --outdir "$tmp/x"
# A 16-byte IDX header of 256 images of 2^28 x 2^28 and no data segfaulted the reader.
printf '\x00\x00\x08\x03\x00\x00\x01\x00\x10\x00\x00\x00\x10\x00\x00\x00' >"$tmp/wrap-images-idx3-ubyte"
expect_error "IDX header whose sizes wrap" "is malformed" "$bin/train_cifar" --data "$tmp/wrap-images-idx3-ubyte" --res 0 \
    --device cpu --outdir "$tmp/x"
expect_error "tf32 on the CPU" "--precision tf32 needs --device cuda" "$bin/train_cifar" "${tiny[@]}" --precision tf32 \
    --duration 0.00032 --outdir "$tmp/x"

# the other targets: kNN over the whole (256-image) set, STF over all of it; --stf is --target stf
if "$bin/train_cifar" "${tiny[@]}" --target knn --k 32 --rbatch 16 --duration 0.00016 --outdir "$tmp/knn" \
    >"$tmp/knn.log" 2>&1; then pass "train_cifar --target knn"
else fail "train_cifar --target knn: $(tail -5 "$tmp/knn.log")"; fi
grep -q "kNN target, k 32, 16 draws per sample over the whole dataset (256 images)" "$tmp/knn.log" \
    && grep -q '"target": "knn"' "$tmp/knn/training_options.json" && pass "kNN logged and stored in training_options.json" \
    || fail "kNN not recorded: $(head -3 "$tmp/knn.log")"
if "$bin/train_cifar" "${tiny[@]}" --target stf --rbatch all --duration 0.00016 --outdir "$tmp/all" >"$tmp/all.log" 2>&1 \
    && grep -q "STF target, the whole dataset as reference (256 images)" "$tmp/all.log"; then pass "train_cifar --rbatch all"
else fail "train_cifar --rbatch all: $(tail -5 "$tmp/all.log")"; fi
expect_error "--stf beside another target" "--stf is --target stf; it contradicts --target knn" "$bin/train_cifar" "${tiny[@]}" \
    --stf --target knn --outdir "$tmp/x"
expect_error "unknown target" "--target must be dsm, stf or knn, got 'ddim'" "$bin/train_cifar" "${tiny[@]}" --target ddim \
    --outdir "$tmp/x"
expect_error "kNN with --rbatch all" "the kNN target always uses the whole dataset" "$bin/train_cifar" "${tiny[@]}" \
    --target knn --rbatch all --outdir "$tmp/x"
expect_error "k above the dataset" "--k 300 is larger than the dataset (256 images)" "$bin/train_cifar" "${tiny[@]}" \
    --target knn --k 300 --duration 0.00016 --outdir "$tmp/x"
expect_error "--cond with kNN" "--cond with the kNN k=2048 n=1024 target is not supported" "$bin/train_cifar" "${tiny[@]}" \
    --cond --target knn --outdir "$tmp/x"
expect_error "--cond with --rbatch all" "--cond with the STF all target is not supported" "$bin/train_cifar" "${tiny[@]}" \
    --cond --stf --rbatch all --outdir "$tmp/x"

# bf16 mixed precision (emulated on the CPU): trains, logs its arithmetic, records it for --resume
if "$bin/train_cifar" "${tiny[@]}" --stf --rbatch 64 --duration 0.00016 --precision bf16 --outdir "$tmp/bf16" \
    >"$tmp/bf16.log" 2>&1; then pass "train_cifar --precision bf16"
else fail "train_cifar bf16: $(tail -5 "$tmp/bf16.log")"; fi
grep -q "Arithmetic: bf16 mixed precision" "$tmp/bf16.log" && grep -q '"precision": "bf16"' "$tmp/bf16/training_options.json" \
    && pass "bf16 logged and stored in training_options.json" || fail "bf16 not recorded: $(head -3 "$tmp/bf16.log")"
expect_error "training state given as a network" "is a training state" "$bin/sample" --net "$state" \
    --device cpu --grid "$tmp/grid.png"
head -c 1000 "$snap" >"$tmp/cut.safetensors"
before=$(md5sum <"$tmp/grid.png")
expect_error "corrupt checkpoint" "cut.safetensors" "$bin/sample" --net "$tmp/cut.safetensors" --device cpu \
    --grid "$tmp/grid.png"
[ "$(md5sum <"$tmp/grid.png")" = "$before" ] && pass "a failed run leaves the old grid alone" || fail "grid overwritten"
expect_error "sample without output" "nothing to write" "$bin/sample" --net "$snap" --device cpu
expect_error "sample --cuda-graph yes" "--cuda-graph must be on or off, got 'yes'" "$bin/sample" --net "$snap" \
    --device cpu --cuda-graph yes --out-npy "$tmp/x.npy"
# Outputs are checked before sampling: a folder that does not exist fails at once, not after the images.
start=$SECONDS
expect_error "sample into a missing folder" "does not exist" "$bin/sample" --net "$snap" --device cpu --seeds 0-999 \
    --heun 18 --grid "$tmp/nowhere/g.png"
[ $((SECONDS - start)) -le 5 ] && pass "the output path is checked before sampling" || fail "output checked late"
expect_error "sample --seeds with junk" "cannot read '0-3x'" "$bin/sample" --net "$snap" --device cpu --seeds 0-3x \
    --grid "$tmp/g3.png"
expect_error "sample --seeds near INT64_MAX" "cannot read" "$bin/sample" --net "$snap" --device cpu \
    --seeds 9223372036854775806-9223372036854775807 --grid "$tmp/g3.png"
# Write as it goes: the PNGs of an interrupted run stay; NaN latents are refused before sampling.
nan_npy() {  # a 1 x 1 x 32 x 32 float32 .npy of NaNs
    printf '\x93NUMPY\x01\x00\x76\x00'; printf "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 32, 32), }"
    printf '%*s\n' 50 ''; for _ in $(seq 1024); do printf '\x00\x00\xc0\x7f'; done
}
nan_npy >"$tmp/nan.npy"
expect_error "sample with NaN latents" "NaN or infinite" "$bin/sample" --net "$snap" --device cpu --latents "$tmp/nan.npy" \
    --grid "$tmp/g4.png"

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
cmp_tiny=(--preset cpu --max-images 256 --max-test-images 128 --kimg 0.064 --batch 16 --rbatch 32 --k 16 --tick 0.032
          --cbase 8 --cres 1,2 --blocks 1 --samples 8 --heun 2 --sample-batch 4 --bootstrap 5)
if "$bin/stf_compare" "${cmp_tiny[@]}" --classifier-steps 3 --outdir "$tmp/cmp" >"$tmp/cmp.log" 2>&1; then
    pass "stf_compare"
else
    fail "stf_compare: $(tail -5 "$tmp/cmp.log")"
fi
[ "$(cut -d, -f1 "$tmp/cmp/results.csv" 2>/dev/null | tr '\n' ' ')" = "method dsm stf stf-all knn data " ] \
    && pass "results.csv: the four targets and the data floor" || fail "results.csv: $(cat "$tmp/cmp/results.csv" 2>&1)"
[ "$(wc -l <"$tmp/cmp/loss_bands.csv" 2>/dev/null)" -eq 17 ] && pass "loss_bands.csv: 4 methods x 4 bands" \
    || fail "loss_bands.csv rows"
# The columns hold what they name: each trained target a positive FD and img/s; DSM no ESS, the others ESS >= 1
# in every band that saw images (an ESS below 1 cannot happen, one above the reference count neither).
[ "$(head -1 "$tmp/cmp/results.csv")" = "method,kimg,steps,final_loss,fd,fd_std,samples,train_seconds,sample_seconds,img_per_sec" ] \
    && awk -F, 'NR > 1 && $1 != "data" { if (!($5 > 0 && $6 >= 0 && $10 > 0 && $7 == 8)) bad = 1; n++ }
               END { exit bad || n != 4 }' "$tmp/cmp/results.csv" \
    && pass "results.csv: FD, spread and img/s per target" || fail "results.csv values: $(cat "$tmp/cmp/results.csv")"
[ "$(head -1 "$tmp/cmp/loss_bands.csv")" = "method,band,count,loss_mean,loss_var,ess" ] \
    && awk -F, 'NR > 1 && $1 == "dsm" && $6 != "" { bad = 1 }
               NR > 1 && $1 != "dsm" && $3 > 0 && !($6 >= 1 && $6 <= 256) { bad = 1 }
               NR > 1 && $3 > 1 && !($5 >= 0) { bad = 1 }
               END { exit bad }' "$tmp/cmp/loss_bands.csv" \
    && pass "loss_bands.csv: variance per band, ESS only for the reference targets" \
    || fail "loss_bands.csv values: $(cat "$tmp/cmp/loss_bands.csv")"
for m in dsm stf stf-all knn; do
    for f in samples_$m.png samples_$m.npy $m/stats.jsonl; do [ -s "$tmp/cmp/$f" ] || fail "stf_compare did not write $f"; done
done
for f in loss.png loss_bands_var.png classifier.safetensors; do [ -s "$tmp/cmp/$f" ] || fail "stf_compare did not write $f"; done
cmp -s "$tmp/cmp/samples_dsm.npy" "$tmp/cmp/samples_stf.npy" && fail "DSM and STF samples are identical" \
    || pass "DSM and STF models differ"
cmp -s "$tmp/cmp/samples_stf-all.npy" "$tmp/cmp/samples_knn.npy" && fail "STF-all and kNN samples are identical" \
    || pass "STF-all and kNN models differ"
expect_error "stf_compare with an unknown target" "unknown target 'ddim' in --targets" "$bin/stf_compare" "${cmp_tiny[@]}" \
    --targets dsm,ddim --outdir "$tmp/cmp4"
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

# 6. EDM's dataset format and class-conditional models: dataset_tool writes a ZIP with labels, train_cifar
#    --cond runs in OUTDIR/NNNNN-<description> and --resume auto continues it, sample --class per class.
if "$bin/dataset_tool" --source "$data" --max-images 256 --res 32 --dest "$tmp/fm-32x32.zip" >"$tmp/zip.log" 2>&1 \
    && grep -q "256 images 1x32x32, labels 0..9" "$tmp/zip.log"; then pass "dataset_tool: Fashion-MNIST to EDM's ZIP"
else fail "dataset_tool: $(cat "$tmp/zip.log")"; fi
cond=(--data "$tmp/fm-32x32.zip" --cbase 8 --cres 1,2 --blocks 1 --attn 16 --batch 16 --batch-gpu 8 --lr-rampup 0
      --ema 0.0005 --tick 0.16 --device cpu --no-progress --cond --label-dropout 0.2 --stf --rbatch 32 --xflip
      --outdir "$tmp/runs" --resume auto)
run="$tmp/runs/00000-fm-32x32-cond-ddpmpp-edm-gpus1-batch16-fp32"
if "$bin/train_cifar" "${cond[@]}" --duration 0.00008 >"$tmp/cond.log" 2>&1 && [ -f "$run/training-state-000000.080.safetensors" ]
then pass "train_cifar --cond --stf on the ZIP, in EDM's run directory"
else fail "train_cifar --cond: $(tail -5 "$tmp/cond.log"; ls "$tmp/runs")"; fi
grep -q "class-conditional, 10 classes (label dropout 0.200), each image's references of its own class; x-flips (512" \
    "$tmp/cond.log" && pass "the run says it is conditional, with x-flips" || fail "no conditional line: $(head -3 "$tmp/cond.log")"
grep -q '"label_dim": 10' "$run/training_options.json" && pass "label_dim 10 recorded" \
    || fail "label_dim not in training_options.json"
# Preempted: the same command line resumes that run (a longer --duration here), no new run directory.
if "$bin/train_cifar" "${cond[@]}" --duration 0.00016 >"$tmp/cond2.log" 2>&1 && grep -q "Resumed from $run/training-state" \
    "$tmp/cond2.log" && [ "$(ls "$tmp/runs")" = "$(basename "$run")" ]; then pass "--resume auto continues the run"
else fail "--resume auto: $(tail -3 "$tmp/cond2.log"; ls "$tmp/runs")"; fi
# A flag that would change the resumed run is refused by name, as with --resume FILE; two at once are both named.
expect_error "--resume auto with another --lr and --dropout" "lr was given as 0.5 and the state has 0.001, " \
    "$bin/train_cifar" "${cond[@]}" --duration 0.00016 --lr 0.5 --dropout 0.2
expect_error "--resume DIR with another --outdir" "outdir was given as" "$bin/train_cifar" --resume "$run" --outdir "$tmp/elsewhere"
for c in 3 7; do
    "$bin/sample" --net "$tmp/runs" --seeds 0-3 --heun 3 --device cpu --class $c --out-npy "$tmp/class$c.npy" \
        >"$tmp/class$c.log" 2>&1 || fail "sample --class $c: $(cat "$tmp/class$c.log")"
done
grep -q "network: $run/network-snapshot" "$tmp/class3.log" && grep -q "class 3 for every image" "$tmp/class3.log" \
    && pass "sample --net OUTDIR --class 3 takes the newest run" || fail "sample --class: $(cat "$tmp/class3.log")"
[ -s "$tmp/class3.npy" ] && ! cmp -s "$tmp/class3.npy" "$tmp/class7.npy" && pass "the class changes the images" \
    || fail "classes 3 and 7 gave the same images"
"$bin/sample" --net "$run" --seeds 0-3 --heun 3 --device cpu --guidance 2 --out-npy "$tmp/guided.npy" >"$tmp/guided.log" 2>&1 \
    && grep -q "classes 0 .. 9 drawn per seed, guidance 2" "$tmp/guided.log" && pass "sample --guidance with random classes" \
    || fail "sample --guidance: $(cat "$tmp/guided.log")"
expect_error "sample --class out of range" "--class 10 is out of range: the network has classes 0 .. 9" "$bin/sample" \
    --net "$run" --class 10 --device cpu --grid "$tmp/x.png"
expect_error "sample --class on an unconditional network" "is an unconditional network" "$bin/sample" --net "$snap" \
    --class 1 --device cpu --grid "$tmp/x.png"
small=(--max-images 256 --cres 1,2 --blocks 1 --attn 16 --batch 16 --device cpu --no-progress --duration 0.00016)
expect_error "--transfer of another architecture" "model_channels: snapshot 8, this run 16 (--cbase)" "$bin/train_cifar" \
    "${small[@]}" --data "$data" --cbase 16 --transfer "$snap" --outdir "$tmp/x"
expect_error "--cond on unlabelled data" "--cond needs class labels" "$bin/train_cifar" "${small[@]}" --data "$tmp/img" \
    --cond --outdir "$tmp/x"

finish e2e
