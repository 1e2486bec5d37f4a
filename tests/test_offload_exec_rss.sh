#!/usr/bin/env bash
# Host memory stays inside the budgets (issue 7): a model whose checkpoint alone is larger than
# --gpu-mem + --cpu-mem, and whose training state is ~4.7x that, trains on the CPU backend (where
# the "GPU" arena is host memory too) with the peak resident set, less what the process held
# before loading (program, libraries), within --gpu-mem + --cpu-mem. The kernel's own count
# (VmHWM of /proc/self/status, printed by train) is the measure.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-exec-rss.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 512 --layers 8 --heads 8 --ffn 1408 --vocab 258 --seed 1 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
mkdir -p "$w/nv"
gpu=40; cpu=48   # MiB
ck=$(( $(stat -c %s "$w/m/model.safetensors") / 1048576 ))
[ "$ck" -gt $((gpu + cpu)) ] || fail "the checkpoint ($ck MiB) should be larger than the budgets"
"$bin" train --model "$w/m" --data "$w/d.tok" --steps 2 --seq-len 64 --batch-tokens 128 --backend cpu \
  --gpu-mem ${gpu}MiB --cpu-mem ${cpu}MiB --nvme "$w/nv" --chunk 131072 --checkpoint-only --quiet --no-save \
  >"$w/out" 2>"$w/err" || { cat "$w/err"; fail "train"; }
line=$(grep "host peak RSS" "$w/out") || fail "no host memory report"
peak=$(sed -n 's/.*host peak RSS \([0-9.]*\) MiB (\([0-9.]*\) MiB of it before loading.*/\1/p' <<<"$line")
base=$(sed -n 's/.*host peak RSS \([0-9.]*\) MiB (\([0-9.]*\) MiB of it before loading.*/\2/p' <<<"$line")
[ -n "$peak" ] && [ -n "$base" ] || fail "cannot read '$line'"
awk -v p="$peak" -v b="$base" -v g=$gpu -v c=$cpu 'BEGIN { exit !(p - b <= g + c) }' \
  || fail "peak RSS $peak MiB - $base MiB at start exceeds --gpu-mem + --cpu-mem = $((gpu + cpu)) MiB"
echo "ok checkpoint $ck MiB; peak RSS $peak MiB - $base MiB at start = $(awk -v p="$peak" -v b="$base" 'BEGIN{printf "%.1f", p-b}') MiB of $((gpu + cpu)) MiB budgets"
