#!/usr/bin/env bash
# ./fid end to end on seeded random Inception weights (the published ones cannot be fetched in tests):
# reference statistics of a tiny CIFAR-10 batch file, FID of a tiny model's samples from a PNG folder and
# from a .npy (the same pixels, so the same FID), and the errors users meet. Usage: fid.sh BUILD_DIR
bin="$1"
source "$(dirname "$0")/lib.sh"
data=/usr/share/datasets/fashion-mnist
[ -d "$data" ] || { echo "skipped: Debian's dataset-fashion-mnist is not installed"; exit 77; }

"$bin/bench_fid" --device cpu --images 1 --batch 1 --write-net "$tmp/net.safetensors" >"$tmp/bench.log" 2>&1 \
    && grep -q "img/s:" "$tmp/bench.log" && pass "bench_fid (and random weights written)" || fail "bench_fid: $(cat "$tmp/bench.log")"
# Two CIFAR-10 records: a label byte and 3072 pixel bytes each.
for i in 0 1; do printf '\x03'; head -c 3072 /dev/urandom; done >"$tmp/tiny.bin"
"$bin/fid" ref --data "$tmp/tiny.bin" --dest "$tmp/ref.npz" --net "$tmp/net.safetensors" --device cpu --batch 2 \
    >"$tmp/ref.log" 2>&1 && [ -s "$tmp/ref.npz" ] && pass "fid ref" || fail "fid ref: $(tail -5 "$tmp/ref.log")"

# Every format train_cifar's --data reads gives the same statistics for the same pixels: the batch file
# above as EDM's ZIP and as a folder (./dataset_tool), and a 2-image IDX file against its ZIP padded to
# 32x32 as the IDX is.
ref=("$bin/fid" ref --net "$tmp/net.safetensors" --device cpu --batch 2)
"$bin/dataset_tool" --source "$tmp/tiny.bin" --dest "$tmp/tiny.zip" >/dev/null 2>&1 \
    && "$bin/dataset_tool" --source "$tmp/tiny.bin" --dest "$tmp/tiny-folder" >/dev/null 2>&1 || fail "dataset_tool"
"${ref[@]}" --data "$tmp/tiny.zip" --dest "$tmp/ref-zip.npz" >"$tmp/ref-zip.log" 2>&1 || fail "fid ref ZIP: $(tail -3 "$tmp/ref-zip.log")"
"${ref[@]}" --data "$tmp/tiny-folder" --dest "$tmp/ref-folder.npz" >"$tmp/ref-folder.log" 2>&1 \
    || fail "fid ref folder: $(tail -3 "$tmp/ref-folder.log")"
cmp -s "$tmp/ref.npz" "$tmp/ref-zip.npz" && cmp -s "$tmp/ref.npz" "$tmp/ref-folder.npz" \
    && pass "fid ref: CIFAR-10 batch, its ZIP and its folder give the same statistics" || fail "fid ref statistics differ by format"
mkdir -p "$tmp/idx"
{ printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1c'; head -c 1568 /dev/urandom; } \
    >"$tmp/idx/train-images-idx3-ubyte"
"$bin/dataset_tool" --source "$tmp/idx/train-images-idx3-ubyte" --res 32 --dest "$tmp/idx.zip" >/dev/null 2>&1 || fail "dataset_tool IDX"
"${ref[@]}" --data "$tmp/idx/train-images-idx3-ubyte" --dest "$tmp/ref-idx.npz" >"$tmp/ref-idx.log" 2>&1 \
    || fail "fid ref IDX: $(tail -3 "$tmp/ref-idx.log")"
"${ref[@]}" --data "$tmp/idx.zip" --dest "$tmp/ref-idx-zip.npz" >"$tmp/ref-idx-zip.log" 2>&1 \
    || fail "fid ref IDX ZIP: $(tail -3 "$tmp/ref-idx-zip.log")"
[ -s "$tmp/ref-idx.npz" ] && cmp -s "$tmp/ref-idx.npz" "$tmp/ref-idx-zip.npz" \
    && pass "fid ref: an IDX file and its ZIP give the same statistics" || fail "fid ref IDX and ZIP statistics differ"
cmp -s "$tmp/ref.npz" "$tmp/ref-idx.npz" && fail "different images gave the same statistics"
cp "$tmp/net.safetensors" "$tmp/not-a.zip"
expect_error "fid ref on a ZIP that is not one" "not a ZIP archive" "${ref[@]}" --data "$tmp/not-a.zip" \
    --dest "$tmp/x.npz"

# Training with FID at its snapshot (2 images: only the plumbing is checked).
"$bin/train_cifar" --data "$data" --max-images 64 --cbase 8 --cres 1 --blocks 1 --attn 0 --batch 16 --lr-rampup 0 \
    --duration 0.00016 --tick 0.16 --device cpu --no-progress --outdir "$tmp/run" --nosubdir --metrics fid2 --fid-ref "$tmp/ref.npz" \
    --fid-net "$tmp/net.safetensors" --fid-batch 2 >"$tmp/train.log" 2>&1 || fail "train_cifar: $(tail -3 "$tmp/train.log")"
grep -q '"fid2":[0-9]' "$tmp/run/stats.jsonl" && [ -s "$tmp/run/fid.png" ] \
    && pass "train_cifar --metrics fid2: FID in stats.jsonl and fid.png" || fail "no FID in stats.jsonl: $(cat "$tmp/run/stats.jsonl")"
expect_error "--metrics without --fid-ref" "needs --fid-ref" "$bin/train_cifar" --data "$data" --device cpu --metrics fid50k \
    --outdir "$tmp/x"
expect_error "--metrics that is not FID" "is not a FID metric" "$bin/train_cifar" --data "$data" --device cpu \
    --metrics kid50k --fid-ref "$tmp/ref.npz" --fid-net "$tmp/net.safetensors" --outdir "$tmp/x"
snap=$(ls "$tmp"/run/network-snapshot-*.safetensors 2>/dev/null | tail -1)
"$bin/sample" --net "$snap" --seeds 0-1 --heun 2 --device cpu --outdir "$tmp/img" --out-npy "$tmp/img.npy" \
    >"$tmp/sample.log" 2>&1 || fail "sample: $(tail -3 "$tmp/sample.log")"
calc=("$bin/fid" calc --ref "$tmp/ref.npz" --net "$tmp/net.safetensors" --device cpu --num 2 --batch 3)
"${calc[@]}" --images "$tmp/img" >"$tmp/calc_png.log" 2>&1 && grep -q "^FID: [0-9]" "$tmp/calc_png.log" \
    && pass "fid calc on a PNG folder prints an FID" || fail "fid calc (PNG): $(tail -5 "$tmp/calc_png.log")"
"${calc[@]}" --images "$tmp/img.npy" >"$tmp/calc_npy.log" 2>&1 || fail "fid calc (npy): $(tail -5 "$tmp/calc_npy.log")"
[ "$(grep '^FID' "$tmp/calc_png.log")" = "$(grep '^FID' "$tmp/calc_npy.log")" ] \
    && pass "the .npy and its PNGs give the same FID" || fail "npy and PNG FIDs differ: $(grep -h '^FID' "$tmp"/calc_*.log)"

expect_error "fewer images than --num" "found 2 images" "$bin/fid" calc --ref "$tmp/ref.npz" --net "$tmp/net.safetensors" \
    --device cpu --images "$tmp/img" --num 3
expect_error "weights not converted" "expected 'stf-inception'" "$bin/fid" calc --images "$tmp/img" --ref "$tmp/ref.npz" \
    --net "$snap" --device cpu --num 2
expect_error "missing weights" "not found" "$bin/fid" calc --images "$tmp/img" --ref "$tmp/ref.npz" --net "$tmp/nowhere" --num 2
expect_error "reference that is not an npz" "not a ZIP/.npz file" "$bin/fid" calc --images "$tmp/img" \
    --ref "$tmp/net.safetensors" --net "$tmp/net.safetensors" --device cpu --num 2
expect_error "no command" "expected a command" "$bin/fid" --images "$tmp/img"
finish e2e_fid
