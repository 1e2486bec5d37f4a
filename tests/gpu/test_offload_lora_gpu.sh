#!/usr/bin/env bash
# Issue 18 on the GPU: the LoRA executor's placement invariance on the CUDA backend (the base on
# the device, in host memory, on NVMe; adapters, checkpoints and the carry on the device or in
# host memory: adapters, m and v bit-identical), where the base's fetches run on the copy stream
# overlapping compute; then train --lora-rank through the CLI, all resident and under budgets
# (--gpu-mem 1GiB --cpu-mem 64MiB --nvme: the placement printed), the same adapters.
set -u
dir=$(dirname "$0")/../..
cd "$dir" || exit 1
SW_TEST_BACKEND=cuda "${BUILD:-build}/tests/test_offload_lora_golden" || exit 1
bin=${SW_BIN:-${BUILD:-build}/spillway}
w=$(mktemp -d /tmp/sw-gpu-lora.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 256 --layers 4 --heads 8 --kv-heads 4 --ffn 704 --vocab 1024 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
mkdir -p "$w/nv"
c=(--model "$w/m" --data "$w/d.tok" --steps 3 --lr 1e-3 --seq-len 128 --batch-tokens 1024 --backend cuda --lora-rank 8)
"$bin" train "${c[@]}" --run "$w/a" >"$w/a.out" 2>&1 || { cat "$w/a.out"; fail "all resident"; }
"$bin" train "${c[@]}" --run "$w/b" --gpu-mem 1GiB --cpu-mem 64MiB --nvme "$w/nv" >"$w/b.out" 2>&1 \
  || { cat "$w/b.out"; fail "under budgets"; }
grep -E "^  (embed|layers|head)" "$w/b.out"
cmp -s "$w/a/adapters-00000003/model.safetensors" "$w/b/adapters-00000003/model.safetensors" \
  || fail "the budgeted run's adapters differ from the resident run's"
echo "PASS"
