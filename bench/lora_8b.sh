#!/usr/bin/env bash
# Issue 18, Done when 4 (NOT yet met: the LoRA executor fetches the base without overlapping
# compute, docs/lora.md "Not done yet"): an 8B-shaped llama (dim 4096, 32 layers, GQA 32/8, ffn
# 14336, vocab 128256) trains LoRA rank 16 with the base streamed from NVMe under --gpu-mem 10GiB
# --cpu-mem 8GiB; prints each step's time next to the plan's predicted step (the planner's bound).
#   bench/lora_8b.sh [DIR] [STEPS] [TRAIN FLAGS...]   DIR: scratch space on the NVMe under test
# Needs ~35 GB free in DIR (the bf16 model from `spillway init`, 16 GB, and its 16 GB NVMe copy).
# Env: SW_BIN (build/spillway), MODEL, SHAPE, BUDGET as bench/offload_3x.sh.
set -euo pipefail
dir=${1:-/tmp}/sw-lora8b.$$
steps=${2:-5}
shift $(( $# < 2 ? $# : 2 ))
bin=${SW_BIN:-build/spillway}
mkdir -p "$dir/nv"
trap 'rm -rf "$dir"' EXIT
model=${MODEL:---dim 4096 --layers 32 --heads 32 --kv-heads 8 --ffn 14336 --vocab 128256}
shape=${SHAPE:---seq-len 2048 --batch-tokens 16384}
budget=${BUDGET:---gpu-mem 10GiB --cpu-mem 8GiB}
"$bin" init --arch llama $model --dtype bf16 --out "$dir/m" | tail -1
"$bin" data --text tests/data/corpus.txt --out "$dir/d.tok" | tail -1
"$bin" train --model "$dir/m" --data "$dir/d.tok" --steps "$steps" $shape --lr 1e-4 $budget \
  --nvme "$dir/nv" --lora-rank 16 --no-save "$@" 2>&1 | tee "$dir/train.log" | grep -E "^predicted step|^step "
