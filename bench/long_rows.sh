#!/usr/bin/env bash
# Issue 16, Done when 4: a 32K-token row trains under a 24 GB card's budget (--gpu-mem 24GiB) for
# a 1B and an 8B shape; prints each run's plan summary, its step lines and the GPU memory
# measured (cudaMemGetInfo) against --gpu-mem.
#   bench/long_rows.sh [DIR] [SEQ] [SHAPES...]   DIR: scratch space (the 8B needs ~16 GB for its
#   bf16 weights + ~20 GB of NVMe state); SEQ: tokens per row (default 32768); SHAPES: 1b 8b
# Env: SW_BIN (build/spillway), STEPS (default 2), CPU_MEM (default 100GiB).
set -euo pipefail
dir=${1:-/tmp}/sw-long.$$
seq=${2:-32768}
shift $(( $# < 2 ? $# : 2 ))
shapes=("$@"); [ ${#shapes[@]} -gt 0 ] || shapes=(1b 8b)
bin=${SW_BIN:-build/spillway}
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
"$bin" data --text tests/data/corpus.txt --out "$dir/d.tok" | tail -1
for s in "${shapes[@]}"; do
  case $s in
    1b) m="--dim 2048 --layers 16 --heads 32 --kv-heads 8 --head-dim 64 --ffn 8192 --vocab 128256" ;;  # Llama 3.2 1B
    8b) m="--dim 4096 --layers 32 --heads 32 --kv-heads 8 --ffn 14336 --vocab 128256" ;;                # Llama 3.1 8B
    *) echo "long_rows: unknown shape '$s' (1b 8b)" >&2; exit 2 ;;
  esac
  echo "=== $s, one row of $seq tokens per step, --gpu-mem 24GiB"
  # shellcheck disable=SC2086
  "$bin" init --arch llama $m --dtype bf16 --out "$dir/$s" | tail -1
  mkdir -p "$dir/nv"
  "$bin" train --model "$dir/$s" --data "$dir/d.tok" --steps "${STEPS:-2}" --seq-len "$seq" \
    --batch-tokens "$seq" --lr 1e-5 --clip 1.0 --gpu-mem 24GiB --cpu-mem "${CPU_MEM:-100GiB}" \
    --nvme "$dir/nv" --checkpoint-only --no-save 2>&1 |
    grep -E "^step |predicted step|layer activations|GPU memory measured|^train: [0-9]+ steps|short|spillway:" || true
  rm -rf "${dir:?}/$s" "$dir/nv"
done
