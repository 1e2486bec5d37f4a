#!/usr/bin/env bash
# train --io-depth N (issue 17): N activation checkpoints in flight to / from NVMe each way,
# 2N pinned staging buffers of one checkpoint, at most 16 (the planner's cap). On the CPU
# backend with the host too small for every checkpoint (some spilled to NVMe): the plan's
# staging row names min(2N, 16) checkpoints for N = 1, 2, 8, 20; the runs save byte-identical
# weights, m and v whatever the depth (the staging only changes when the copies wait); and
# 0, 65 and -1 are refused with one line naming --io-depth.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-iodepth.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 128 --layers 4 --heads 4 --ffn 384 --vocab 258 --seed 3 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
mkdir -p "$w/nv"
common=(--model "$w/m" --data "$w/d.tok" --steps 2 --seq-len 256 --batch-tokens 8192 --backend cpu
        --threads 2 --gpu-mem 8MiB --cpu-mem 14MiB --nvme "$w/nv" --checkpoint-only --lr 1e-3)
for d in 1 2 8 20; do
  "$bin" train "${common[@]}" --io-depth $d --run "$w/r$d" >"$w/out$d" 2>"$w/err$d" || { cat "$w/err$d"; fail "train --io-depth $d"; }
  want=$(( 2 * d < 16 ? 2 * d : 16 ))
  grep -qE "^  host +I/O staging checkpoints +[0-9.]+ +pinned, $want checkpoints on their way" "$w/out$d" \
    || { grep "staging checkpoints" "$w/out$d"; fail "--io-depth $d: the staging row does not name $want checkpoints"; }
  grep -qE "^  NVMe +[1-9][0-9]* \(" "$w/out$d" || { cat "$w/out$d"; fail "--io-depth $d: no checkpoint spilled to NVMe"; }
done
echo "ok --io-depth 1, 2, 8, 20: 2, 4, 16, 16 checkpoint staging buffers, checkpoints on NVMe"
for f in weights-00000002/model.safetensors optim-00000002/m/model.safetensors optim-00000002/v/model.safetensors; do
  for d in 2 8; do
    cmp -s "$w/r1/$f" "$w/r$d/$f" || fail "--io-depth 1 and $d differ in $f"
  done
done
echo "ok --io-depth 1, 2 and 8: the same bytes"
for bad in 0 65 -1; do
  "$bin" train "${common[@]}" --io-depth $bad --no-save >"$w/o" 2>"$w/e" && fail "--io-depth $bad accepted"
  [ "$(wc -l <"$w/e")" = 1 ] && grep -q -- "--io-depth $bad" "$w/e" || { cat "$w/e"; fail "--io-depth $bad: not one line naming it"; }
done
echo "ok --io-depth 0, 65, -1: one line each"
