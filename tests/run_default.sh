#!/usr/bin/env bash
# make run: the embedded default job, a real offloaded fine-tune. `spillway init` a small llama
# (byte-level vocabulary of `spillway data`), tokenize tests/data/corpus.txt, and train it with
# budgets small enough that every layer's weights stream from the host cache and the layers'
# optimizer state lives on "NVMe" (a temporary directory), on the GPU when there is one, else on
# the CPU backend. The loss starts near ln(258) = 5.55.
set -euo pipefail
bin=$1
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/spillway-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
backend=cpu
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  backend=cuda
fi
start=$(date +%s.%N)
"$bin" init --arch llama --dim 192 --layers 3 --heads 6 --ffn 512 --vocab 258 --seed 1 --out "$work/model"
"$bin" data --text "$here/tests/data/corpus.txt" --out "$work/data.tok"
mkdir -p "$work/nvme"
# GPU budget on cuda: the working set plus the GEMM workspace; on the CPU backend 7 MiB
gpu_mem=7MiB
[ $backend = cuda ] && gpu_mem=48MiB
"$bin" train --model "$work/model" --data "$work/data.tok" --backend $backend \
  --steps ${SW_RUN_STEPS:-150} --lr 3e-3 --warmup 10 --min-lr 3e-4 --weight-decay 0.01 \
  --seq-len 128 --batch-tokens 1024 --gpu-mem $gpu_mem --cpu-mem 12MiB --nvme "$work/nvme" \
  --chunk 65536 --run "$work/run" --trace "$work/run/trace.json"
first=$(head -n 1 "$work/run/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/')
last=$(tail -n 5 "$work/run/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/' | awk '{s+=$1} END {printf "%.4f", s/NR}')
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" -v f="$first" -v l="$last" 'BEGIN {
  printf "make run: loss %.4f -> %.4f (mean of the last 5 steps; ln(258) = 5.553) in %.1f s, backend '"$backend"'\n", f, l, b - a }'
