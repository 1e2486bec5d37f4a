#!/usr/bin/env bash
# Issue 7, Done when 3: a model whose training state (P16 + P32 + m + v, 14 B per parameter) is
# more than 3x --gpu-mem + --cpu-mem trains 10 steps with the rest on the local disk; prints the
# measured GPU memory (cudaMemGetInfo) and host memory (peak RSS, pinned) against the budgets and
# summarises the trace (busy time per track, overlap between tracks).
#   bench/offload_3x.sh [DIR] [STEPS] [TRAIN FLAGS...]   DIR: scratch space on the disk under test
#   (default /tmp); further flags go to train (e.g. the measured --nvme-read-gbs X)
# Model: llama, dim 2048, 32 layers, GQA 16/8, ffn 5632, vocab 32000: 1.64 B parameters,
# 22.9 GB of state against 2 GiB + 4 GiB of budgets (3.6x). Needs ~30 GB free in DIR.
# Env: OUT (where trace.json and the log go, default DIR), SW_BIN (build/spillway); MODEL, SHAPE
# and BUDGET replace the model, the sequence/batch and the budgets (for a quick try elsewhere);
# SLOTS (default --checkpoint-only: one optimizer slot on NVMe; SLOTS= for two, which one-pass
# clipping needs: with one slot clipping runs two backward passes, docs/architecture.md).
# IO=1: the disk measured by `spillway bench-io` in DIR right before the run (BIO_SIZE, default
# 16GiB: about what a step moves each way; 1 MiB, qd 32, 2 threads: train's I/O settings;
# BIO_CHUNK its --chunk; BIO_SUSTAIN=S its --sustain S: the mix rate then is the one held over S
# seconds of the mix, not a short test's), those rates passed to train (its bound and expected
# step are then this disk's), the disk measured again right after, and every step against the
# bound at the rates from both sides (bench/nvme_bound.py): a virtual disk's rates can move by
# 2x within minutes of sustained load. Flags given after STEPS override the measured rates.
set -euo pipefail
dir=${1:-/tmp}/sw-3x.$$
steps=${2:-10}
shift $(( $# < 2 ? $# : 2 ))
bin=${SW_BIN:-build/spillway}
out=${OUT:-$dir}
mkdir -p "$dir/nv" "$out"
trap 'rm -rf "$dir"' EXIT
df -h "$dir" | tail -1
t0=$(date +%s)
model=${MODEL:---dim 2048 --layers 32 --heads 16 --kv-heads 8 --ffn 5632 --vocab 32000}
shape=${SHAPE:---seq-len 2048 --batch-tokens 16384}
budget=${BUDGET:---gpu-mem 2GiB --cpu-mem 4GiB --chunk 16777216}
"$bin" init --arch llama $model --out "$dir/m" | tail -1
"$bin" data --text tests/data/corpus.txt --out "$dir/d.tok" | tail -1
echo "init + data: $(( $(date +%s) - t0 )) s"
# bio NAME: bench-io on DIR, its log OUT/io_NAME.log, its best rates printed
bio() {
  mkdir -p "$dir/bio"
  "$bin" bench-io --nvme "$dir/bio" --size "${BIO_SIZE:-16GiB}" ${BIO_CHUNK:+--chunk "$BIO_CHUNK"} --bs 1MiB \
    --qd 32 --threads 2 ${BIO_SUSTAIN:+--sustain "$BIO_SUSTAIN"} >"$out/io_$1.log" 2>&1 || { tail -3 "$out/io_$1.log"; echo "offload_3x: bench-io ($1 the run) failed" >&2; exit 1; }
  rm -rf "$dir/bio"
  echo "disk $1 the run (spillway bench-io, ${BIO_SIZE:-16GiB}):"
  grep "^best\|^sustained" "$out/io_$1.log"
}
bound=$(dirname "$0")/nvme_bound.py
rates=()
if [ "${IO:-0}" = 1 ]; then
  bio before
  # bench-io's best rates before the run as train's flags (the sustained mix where it ran one)
  flags=$(python3 "$bound" --flags "$out/io_before.log")
  read -ra rates <<<"$flags"
fi
"$bin" train --model "$dir/m" --data "$dir/d.tok" --steps "$steps" $shape --lr 1e-4 $budget \
  --nvme "$dir/nv" ${SLOTS---checkpoint-only} --no-save ${rates[@]+"${rates[@]}"} "$@" --trace "$out/trace.json" 2>&1 | tee "$out/train.log"
if [ "${IO:-0}" = 1 ]; then   # after the run: a failure here warns and keeps the run's results
  at=(before="$out/io_before.log")
  if (bio after); then at+=(after="$out/io_after.log"); fi
  python3 "$bound" "$out/train.log" "${at[@]}" || echo "offload_3x: nvme_bound.py failed (the run's logs are in $out)" >&2
fi
python3 offload/trace_summary.py "$out/trace.json" | tee "$out/trace_summary.txt"
python3 offload/trace_summary.py "$out/trace.json" --skip-s 30 | tee "$out/trace_summary_steady.txt" || true
