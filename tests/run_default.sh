#!/usr/bin/env bash
# make run: the embedded default job, a real offloaded fine-tune that a newcomer can look at.
# `spillway init` a small llama (byte-level vocabulary of `spillway data`), tokenize
# tests/data/corpus.txt, and train it with budgets small enough that the layers' weights stream
# from the host cache and their optimizer state lives on "NVMe" (a directory of the run), on the
# GPU when there is one, else on the CPU backend. Sized to finish in seconds on 2 cores while
# the loss visibly falls (from ln(258) = 5.55 to below 3). Everything stays in
# runs/default-<date>/ (git-ignored): model/, data.tok, nvme/ and the run directory run/ with
# metrics.jsonl, report.html and the trained state; the end prints how to resume it, export it
# and open its report.
#   usage: tests/run_default.sh BIN [DIR]   (SW_RUN_STEPS: steps, default 80)
set -euo pipefail
bin=$1
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${2:-runs/default-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$dir"
backend=cpu
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  backend=cuda
fi
steps=${SW_RUN_STEPS:-80}
start=$(date +%s.%N)
"$bin" init --arch llama --dim 128 --layers 2 --heads 4 --ffn 384 --vocab 258 --seed 1 --out "$dir/model" >/dev/null
"$bin" data --text "$here/tests/data/corpus.txt" --out "$dir/data.tok" >/dev/null
mkdir -p "$dir/nvme"
# the compute device's budget: on cuda --gpu-mem counts all device memory the process takes,
# the CUDA context (about 0.5 GiB, measured at start) and 128 MiB for kernels loaded on first use
# included, so 768 MiB leaves the run about 100 MiB; on the CPU backend its arena (host memory
# standing in for the device) gets 5 MiB, of which the op scratch of its 2 worker threads takes
# 0.84 MiB (--threads 2: the scratch grows with the threads, and a tiny model gains nothing from
# more). Host: 5 MiB holds the layers' P16 cache but not their P32/m/v, which go to nvme/ (on
# cuda 12 MiB)
dev_mem=5MiB; host_mem=5MiB; threads=(--threads 2)
[ $backend = cuda ] && { dev_mem=768MiB; host_mem=12MiB; threads=(); }
# a constant learning rate (after 5 warm-up steps): the run can then be continued with a larger
# --steps (docs/runs.md: with the cosine schedule --steps fixes every step's lr and may not change)
args=(--model "$dir/model" --data "$dir/data.tok" --backend $backend --schedule constant --lr 3e-3
      --warmup 5 --weight-decay 0.01 --seq-len 128 --batch-tokens 512 --gpu-mem $dev_mem
      --cpu-mem $host_mem "${threads[@]}" --nvme "$dir/nvme" --chunk 32768 --run "$dir/run")
echo "make run: training a 2-layer llama for $steps steps on the $backend backend into $dir/"
"$bin" train "${args[@]}" --steps "$steps" --quiet
rm -f "$dir/nvme/spillway.data"   # scratch of the NVMe tier; the saved state is in run/
loss() { sed -n 's/.*"loss": \([^,]*\),.*/\1/p' "$dir/run/metrics.jsonl"; }
first=$(loss | head -n 1)
last=$(loss | tail -n 5 | awk '{s+=$1} END {printf "%.4f", s/NR}')
end=$(date +%s.%N)
awk -v a="$start" -v b="$end" -v f="$first" -v l="$last" 'BEGIN {
  printf "make run: loss %.4f -> %.4f (mean of the last 5 steps; ln(258) = 5.553) in %.1f s\n", f, l, b - a }'
q() { printf '%q ' "$@"; }
cat <<EOF

The run is kept in $dir/. Next:
  resume it for $steps more steps:
    $(q "$bin" train "${args[@]}" --steps $((2 * steps)) --quiet)--resume
  export the trained model as a Hugging Face directory:
    $bin export --run $dir/run --out $dir/exported
  open its report (loss curve, throughput, where the time went, placement):
    xdg-open $dir/run/report.html    # or open that file in any browser
EOF
