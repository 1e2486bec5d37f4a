#!/usr/bin/env bash
# Issue 18, Done when 4: an 8B-shaped llama (dim 4096, 32 layers, GQA 32/8, ffn 14336, vocab
# 128256) trains LoRA rank 16 with the base streamed (from NVMe as far as the budgets put it
# there) under --gpu-mem 10GiB --cpu-mem 8GiB, 8 x 2048 tokens per step, against the planner's
# bound at this machine's rates, measured in the same run:
#   1. the disk: `spillway bench-io` on DIR (1 MiB, qd 32, 2 threads: train's I/O settings),
#      its best sequential read and write -> --nvme-read-gbs, --nvme-write-gbs;
#   2. the GPU (when torch is there): bench/anchor_rates.py at the model's shapes (bf16 GEMM
#      mix, pinned PCIe each way) -> --gemm-tflops, --h2d-gbs, --d2h-gbs;
#   3. the model (`spillway init`, bf16) and the tokens; train with those rates: each step line
#      ends with bound/measured (the plan's predicted step over the measured one).
# The summary line: the median s/step of the steps after the first, the bound, their ratio.
#   bench/lora_8b.sh [DIR] [STEPS] [TRAIN FLAGS...]   DIR: scratch space on the NVMe under test
# Needs ~28 GB free in DIR (the bf16 model, 16 GB; the NVMe scratch the plan prints, ~6 GB;
# bench-io's file, BIO_SIZE). Env: SW_BIN (build/spillway), MODEL, SHAPE, BUDGET (flags),
# BIO_SIZE (4GiB), T_RATES (seconds for anchor_rates.py, 120), NO_GPU_RATES=1 (skip step 2).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-/tmp}/sw-lora8b.$$
steps=${2:-5}
shift $(( $# < 2 ? $# : 2 ))
bin=${SW_BIN:-build/spillway}
mkdir -p "$dir/nv" "$dir/bio" || exit 1
trap 'rm -rf "$dir"' EXIT
model=${MODEL:---dim 4096 --layers 32 --heads 32 --kv-heads 8 --ffn 14336 --vocab 128256}
shape=${SHAPE:---seq-len 2048 --batch-tokens 16384}
budget=${BUDGET:---gpu-mem 10GiB --cpu-mem 8GiB}
say() { echo "lora_8b: $*"; }

# 1. the disk
rates=()
if "$bin" bench-io --nvme "$dir/bio" --size "${BIO_SIZE:-4GiB}" --bs 1MiB --qd 32 --threads 2 \
     >"$dir/bio.log" 2>&1; then
  grep -E "^best|^ +1 +2 " "$dir/bio.log"
  r=$(sed -n 's/^best read *\([0-9.]*\) GB\/s.*/\1/p' "$dir/bio.log")
  w=$(sed -n 's/^best write *\([0-9.]*\) GB\/s.*/\1/p' "$dir/bio.log")
  [ -n "$r" ] && [ -n "$w" ] && rates+=(--nvme-read-gbs "$r" --nvme-write-gbs "$w")
else
  cat "$dir/bio.log"
  say "bench-io failed: the bound uses the planner's default disk rates"
fi
rm -rf "$dir/bio"

# 2. the GPU
shape_flag() { echo "$model" | sed -n "s/.*$1 \([0-9]*\).*/\1/p"; }
if [ -z "${NO_GPU_RATES:-}" ] && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  timeout "${T_RATES:-120}" python3 "$here/anchor_rates.py" --dim "$(shape_flag --dim)" \
    --heads "$(shape_flag --heads)" --kv-heads "$(shape_flag --kv-heads)" --ffn "$(shape_flag --ffn)" \
    --vocab "$(shape_flag --vocab)" --tokens 2048 --reps 5 --copy-mib 512 >"$dir/gpu.log" 2>&1
  g=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    if l.startswith("{"):
        r = json.loads(l)
        print("--gemm-tflops %s --h2d-gbs %s --d2h-gbs %s" % (r["gemm_tflops_model_mix"], r["h2d_gbs"], r["d2h_gbs"]))' \
    "$dir/gpu.log" 2>/dev/null)
  if [ -n "$g" ]; then
    # shellcheck disable=SC2206
    rates+=($g)
  else
    tail -3 "$dir/gpu.log"
    say "anchor_rates.py gave nothing: the bound uses the planner's default GEMM and PCIe rates"
  fi
else
  say "no torch with CUDA here (or NO_GPU_RATES): the bound uses the planner's default GEMM and PCIe rates"
fi
say "rates measured in this run: ${rates[*]:-none}"

# 3. the model, the tokens, train
# shellcheck disable=SC2086
"$bin" init --arch llama $model --dtype bf16 --out "$dir/m" 2>/dev/null | tail -1 || exit 1
"$bin" data --text "$here/../tests/data/corpus.txt" --out "$dir/d.tok" | tail -1 || exit 1
# shellcheck disable=SC2086
"$bin" train --model "$dir/m" --data "$dir/d.tok" --steps "$steps" $shape --lr 1e-4 $budget \
  --nvme "$dir/nv" --lora-rank 16 --no-save "${rates[@]}" "$@" >"$dir/train.log" 2>&1
rc=$?
grep -E "^  (embed|layers|head|activation)|^  NVMe|^  (GPU compute|PCIe|NVMe) |^predicted step|^step |^train: (GPU|host)" \
  "$dir/train.log"
[ $rc = 0 ] || { tail -5 "$dir/train.log"; say "train failed (exit $rc)"; exit "$rc"; }
python3 - "$dir/train.log" <<'PY'
import re, statistics, sys
t = open(sys.argv[1]).read()
b = float(re.search(r"^predicted step: ([\d.e+-]+) s", t, re.M).group(1))
s = [float(x) for x in re.findall(r"^step \d+/\d+ .*?  ([\d.]+) s  bound/measured", t, re.M)]
after = s[1:] if len(s) > 1 else s
m = statistics.median(after)
print("lora_8b: %d steps, median %.2f s/step of steps %s (all: %s); planner's bound %.3f s; "
      "bound/measured %.3f" % (len(s), m, "2-%d" % len(s) if len(s) > 1 else "1",
                               " ".join("%.2f" % x for x in s), b, b / m))
PY
