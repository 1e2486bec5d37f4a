#!/usr/bin/env bash
# Issue 16, keep instead of recompute: the 1.1B step through `spillway train` (llama, hidden 2048,
# 22 layers, 32/4 heads, ffn 5632, vocab 32000; 8 x 2048 tokens a step in micro-batches of one
# row; bf16; everything resident; --clip 0) with every layer recomputed in backward (--keep none)
# and with the planner's choice (--keep auto: every layer kept when the GPU has room), one run
# after the other on the same machine. Prints each run's keep line of the placement table, the
# median tokens/s of the steps after the first, the measured GPU peak, and the ratio auto / none.
#   bash bench/keep_step.sh [DIR] [STEPS]
# DIR: scratch for the model (2.2 GB) and the token file (default /tmp); STEPS per run (default 4,
# the first left out of the median). Env: SW_BIN (build/spillway), GPU_MEM (--gpu-mem, default
# 70GiB), KEEPS (the --keep values to run, default "none auto"), OUT (logs, default DIR),
# MODEL (init's shape flags, for a quick try on a small shape), HF=1 (also the PyTorch reference,
# bench/keep_hf_ref.py: HF LlamaForCausalLM at this shape, bf16 autocast, SDPA, fused AdamW, no
# checkpointing; run after spillway's runs, in the same call, and the ratios to it), HF_ROWS (its
# rows per forward, default 8: the whole batch at once), MICRO (spillway's --micro-batch-tokens,
# default 2048: one row per micro-batch).
set -uo pipefail
dir=${1:-/tmp}/sw-keep.$$
steps=${2:-4}
bin=${SW_BIN:-build/spillway}
out=${OUT:-$dir}
mkdir -p "$dir" "$out"
trap 'rm -rf "$dir"' EXIT
model=${MODEL:---dim 2048 --layers 22 --heads 32 --kv-heads 4 --ffn 5632 --vocab 32000}
"$bin" init --arch llama $model --dtype bf16 --out "$dir/m" | tail -1 || exit 1
"$bin" data --text tests/data/corpus.txt --out "$dir/d.tok" | tail -1 || exit 1
declare -A tps
for k in ${KEEPS:-none auto}; do
  "$bin" train --model "$dir/m" --data "$dir/d.tok" --steps "$steps" --seq-len 2048 --batch-tokens 16384 \
    --lr 1e-4 --clip 0 --backend cuda --gpu-mem "${GPU_MEM:-70GiB}" --cpu-mem 16GiB --keep "$k" --micro-batch-tokens "${MICRO:-2048}" --no-save \
    >"$out/keep_step.$k.log" 2>&1 || { tail -5 "$out/keep_step.$k.log"; echo "--keep $k: train failed"; continue; }
  awk '/^keep instead of recompute/ { on = 1 } on && /^$/ { exit } on' "$out/keep_step.$k.log"
  grep -E "^step [0-9]+/" "$out/keep_step.$k.log" | sed -E 's/.*\| ([0-9]+) tok\/s.*/\1/' | tail -n +2 | sort -n \
    >"$out/keep_step.$k.tps"
  n=$(wc -l <"$out/keep_step.$k.tps")
  [ "$n" -gt 0 ] || { echo "--keep $k: no step after the first"; continue; }
  tps[$k]=$(sed -n "$(( (n + 1) / 2 ))p" "$out/keep_step.$k.tps")
  peak=$(grep -o "measured (cudaMemGetInfo): peak [0-9.]* MiB" "$out/keep_step.$k.log" | sed 's/.*peak/peak/')
  [ -n "$peak" ] || peak=$(grep -o "arena peak [0-9.]* MiB" "$out/keep_step.$k.log")
  echo "--keep $k: median ${tps[$k]} tokens/s over $n steps after the first (GPU memory measured: $peak)"
done
if [ "${HF:-0}" = 1 ]; then
  hf=$(PYTHONUNBUFFERED=1 python3 bench/keep_hf_ref.py "$steps" "${HF_ROWS:-8}" 2>"$out/keep_hf_ref.err" | tail -1)
  echo "HF reference: $hf"
  tps[hf]=$(echo "$hf" | sed -nE 's/.*"tokens_per_s": ([0-9]+).*/\1/p')
  [ -n "${tps[hf]}" ] || tail -3 "$out/keep_hf_ref.err"
fi
for k in ${KEEPS:-none auto}; do
  [ -n "${tps[hf]:-}" ] && [ -n "${tps[$k]:-}" ] &&
    awk -v a="${tps[$k]}" -v h="${tps[hf]}" -v k="$k" 'BEGIN { printf "keep %s / HF: %.3fx tokens/s\n", k, a / h }'
done
if [ -n "${tps[none]:-}" ] && [ -n "${tps[auto]:-}" ]; then
  awk -v a="${tps[auto]}" -v n="${tps[none]}" 'BEGIN { printf "keep auto / keep none: %.3fx tokens/s\n", a / n }'
fi
