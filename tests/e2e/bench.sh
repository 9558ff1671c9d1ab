#!/usr/bin/env bash
# Smoke test of the benchmark programs on the CPU at tiny sizes: each runs, ends with "img/s: <positive
# number>" (bench_train, bench_sample), every kernel agrees with its float64 twin (bench_kernels), and
# bad modes fail clearly. Timings are not checked. Usage: bench.sh BUILD_DIR
bin="$1"
source "$(dirname "$0")/lib.sh"
# The last line is "img/s: N" with N > 0.
last_line_rate() {  # name, output
    local last
    last=$(tail -1 <<<"$2")
    if [[ "$last" =~ ^img/s:\ ([0-9]+\.?[0-9]*)$ ]] && awk "BEGIN{exit !(${BASH_REMATCH[1]} > 0)}"; then
        pass "$1: $last"
    else
        fail "$1: last line '$last'"
    fi
}
tiny=(--device cpu --cbase 8 --cres 1,2 --blocks 1 --attn 8 --res 16 --channels 1)

out=$("$bin/bench_train" "${tiny[@]}" --batch 4 --steps 2 --warmup 1 2>&1)
last_line_rate "bench_train DSM" "$out"
grep -q "^achieved: .* of the limit" <<<"$out" && pass "bench_train reports the share of the limit" || fail "no share: $out"
out=$("$bin/bench_train" "${tiny[@]}" --batch 4 --rbatch 16 --augment 0 --steps 2 --warmup 1 2>&1)
last_line_rate "bench_train STF" "$out"
grep -q "^STF target alone: .* of the step" <<<"$out" && pass "bench_train reports the STF target's share" \
    || fail "no STF share: $out"
grep -q "^peak memory: " <<<"$out" && pass "bench_train reports peak memory" || fail "no peak memory: $out"
out=$("$bin/bench_train" "${tiny[@]}" --batch 4 --rbatch 16 --steps 2 --warmup 1 --cuda-graph on 2>&1)
last_line_rate "bench_train STF --cuda-graph on" "$out"
grep -q "the graph-ready step, run eagerly" <<<"$out" && pass "bench_train --cuda-graph on says how it ran on the CPU" \
    || fail "no graph line: $out"

out=$("$bin/bench_sample" "${tiny[@]}" --batch 2 --steps 2 2>&1)
last_line_rate "bench_sample Heun" "$out"
grep -q "3 network evaluations per batch" <<<"$out" && pass "Heun 2 steps: 3 evaluations" || fail "NFE: $out"
out=$("$bin/bench_sample" "${tiny[@]}" --batch 2 --steps 2 --euler 2>&1)
last_line_rate "bench_sample Euler" "$out"

if out=$("$bin/bench_kernels" --device cpu --size 0.002 --reps 1 2>&1); then pass "bench_kernels"; else fail "bench_kernels: $out"; fi
# Table rows carry "ok" or "FAIL" in the fourth column from the error; check the error column itself too.
row=' [0-9.]+e[-+][0-9]+ +(ok|FAIL) '
rows=$(grep -cE "$row" <<<"$out")
# The kernel's name is the first 42 characters of a row. Rows whose outputs are stored in bf16 (names
# ending in bf16) are held to 4e-3, the rest to 1e-5.
bad=$(awk -v row="$row" '$0 ~ row {name = substr($0, 1, 42); sub(/ +$/, "", name); lim = (name ~ /bf16$/) ? 4e-3 : 1e-5
            for (i = 1; i < NF; i++) if ($(i + 1) == "ok" || $(i + 1) == "FAIL") if ($i == "nan" || !($i + 0 <= lim)) print}' \
    <<<"$out")
bf16_rows=$(awk -v row="$row" '$0 ~ row {name = substr($0, 1, 42); sub(/ +$/, "", name); if (name ~ /bf16$/) n++} END {print n + 0}' <<<"$out")
[ "$bf16_rows" -ge 3 ] && pass "bench_kernels: $bf16_rows bf16-storage rows" || fail "bench_kernels bf16 rows: $bf16_rows"
[ "$rows" -ge 90 ] && [ -z "$bad" ] && ! grep -q " FAIL " <<<"$out" && pass "bench_kernels: $rows kernels within 1e-5 of the float64 twin (bf16 storage: 4e-3)" \
    || fail "bench_kernels rows $rows, over tolerance: $bad"
# Every row's name starts with a kernel family (tests/kernels/test_<family>.cpp); every family has rows,
# the convolutions 66 (22 of DDPM++'s shapes, three directions).
families="elementwise reduce softmax group_norm residual random optim stf blas conv augment pool resize topk"
missing=""
for f in $families; do grep -qE "^$f " <<<"$out" || missing+=" $f"; done
[ -z "$missing" ] && pass "bench_kernels: rows for every family" || fail "bench_kernels: no rows for$missing"
stray=$(grep -E "$row" <<<"$out" | grep -vE "^($(tr ' ' '|' <<<"$families")) ")
[ -z "$stray" ] && pass "bench_kernels: every row named after its family" || fail "rows outside the families: $stray"
conv_rows=$(grep -cE '^conv (forward|backward_data|backward_weight) ' <<<"$out")
[ "$conv_rows" -eq 66 ] && pass "bench_kernels: 66 convolution rows" || fail "bench_kernels: $conv_rows convolution rows"
# --filter selects one family by the start of the name: softmax's two rows, not "stf softmax_chunk".
out=$("$bin/bench_kernels" --device cpu --size 0.002 --reps 1 --filter softmax 2>&1)
selected=$(grep -E "$row" <<<"$out" | awk '{print $1}' | sort | uniq -c | tr -s ' ')
[ "$selected" = " 2 softmax" ] && pass "--filter softmax: the softmax family's 2 rows" || fail "--filter softmax: $out"
if msg=$("$bin/bench_kernels" --device cpu --filter sofmax 2>&1); then fail "--filter sofmax exited 0"
else grep -q "starts with its family (elementwise, reduce" <<<"$msg" && pass "an unknown --filter names the families" \
    || fail "bad filter: $msg"; fi
# --version 1: only the rows of the kernels kept in a first version (docs/kernels.md), each within the
# tolerance; --version 1 with a family that has none, and an unknown version, fail clearly.
out=$("$bin/bench_kernels" --device cpu --size 0.002 --reps 1 --version 1 2>&1)
v1_rows=$(grep -E "$row" <<<"$out" | awk '{name = substr($0, 1, 42); sub(/ +$/, "", name); print name}' | LC_ALL=C sort | tr '\n' '|')
want_v1="elementwise binary mul, channel broadcast|elementwise copy_strided, transpose|group_norm backward|group_norm forward|optim adam_update_many, DDPM++|optim ema_update_many, DDPM++|optim nan_to_num_many, DDPM++|stf softmax_chunk|stf sq_distances|stf sq_distances, training size|"
[ "$v1_rows" = "$want_v1" ] && ! grep -q " FAIL " <<<"$out" && pass "--version 1: the 10 rows with a first version" \
    || fail "--version 1 rows: $v1_rows"
if msg=$("$bin/bench_kernels" --device cpu --size 0.002 --version 1 --filter softmax 2>&1); then fail "--version 1 --filter softmax exited 0"
else grep -q "that has a first version" <<<"$msg" && pass "--version 1 --filter softmax says softmax has no first version" \
    || fail "version 1 softmax: $msg"; fi
if msg=$("$bin/bench_kernels" --device cpu --version 3 2>&1); then fail "--version 3 exited 0"
else grep -q "expected 1 (the first versions" <<<"$msg" && pass "an unknown --version fails clearly" || fail "bad version: $msg"; fi

# bf16 mixed precision, emulated on the CPU: it runs, says so, and ends with its rate.
out=$("$bin/bench_train" "${tiny[@]}" --batch 4 --steps 1 --warmup 1 --mode bf16 2>&1)
last_line_rate "bench_train --mode bf16" "$out"
grep -q "bf16 mixed precision, emulated on the CPU" <<<"$out" && pass "bench_train bf16 names its mode" || fail "bf16 mode line: $out"
out=$("$bin/bench_sample" "${tiny[@]}" --batch 2 --steps 2 --mode bf16 2>&1)
last_line_rate "bench_sample --mode bf16" "$out"
if msg=$("$bin/bench_train" "${tiny[@]}" --mode bf17 2>&1); then fail "--mode bf17 exited 0"
else grep -q "expected fp32, tf32 or bf16" <<<"$msg" && pass "an unknown --mode fails clearly" || fail "bad mode: $msg"; fi
if msg=$("$bin/bench_train" "${tiny[@]}" --batch 8 --rbatch 4 2>&1); then fail "rbatch < batch exited 0"
else grep -q "smaller than --batch" <<<"$msg" && pass "rbatch < batch fails clearly" || fail "rbatch message: $msg"; fi

finish "bench e2e"
