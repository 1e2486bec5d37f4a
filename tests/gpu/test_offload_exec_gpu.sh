#!/usr/bin/env bash
# Issue 7, Done when 1 on the GPU: the placement-invariance test on the CUDA backend (every
# placement bit-identical, and equal to the in-memory trainer on the same backend).
set -u
dir=$(dirname "$0")/../..
cd "$dir" || exit 1
inv=${BUILD:-build}/tests/test_offload_exec_invariance   # make test-gpu builds it
SW_TEST_BACKEND=cuda "$inv" || exit 1

# Issue 7, Done when 3/4 on the GPU: --gpu-mem bounds the device memory the process takes,
# measured (cudaMemGetInfo against the free memory before the context existed), not only the
# arena; a budget below the context fails before any work, naming it.
bin=${SW_BIN:-${BUILD:-build}/spillway}
w=$(mktemp -d /tmp/sw-gpu-budget.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 256 --layers 4 --heads 8 --kv-heads 4 --ffn 704 --vocab 1024 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
mkdir -p "$w/nv"
common=(--model "$w/m" --data "$w/d.tok" --steps 3 --lr 1e-3 --seq-len 128 --batch-tokens 1024 --backend cuda)
"$bin" train "${common[@]}" --no-save --gpu-mem 1GiB --cpu-mem 256MiB --nvme "$w/nv" >"$w/out" 2>"$w/err" \
  || { cat "$w/err"; fail "train under --gpu-mem 1GiB"; }
grep "^GPU budget" "$w/out" || fail "no GPU budget line"
line=$(grep "GPU memory measured" "$w/out") || { cat "$w/out"; fail "no measured GPU memory line"; }
echo "$line"
peak=$(echo "$line" | sed -E 's/.*peak ([0-9.]+) MiB.*/\1/')
awk -v p="$peak" 'BEGIN { exit !(p > 200 && p <= 1024) }' || fail "measured peak $peak MiB is not within (200, 1024] MiB"
"$bin" train "${common[@]}" --run "$w/r_small" --gpu-mem 200MiB --nvme "$w/nv" >"$w/out" 2>"$w/err"; rc=$?
[ $rc = 1 ] || fail "--gpu-mem 200MiB: exit $rc, expected 1"
grep -q "CUDA context" "$w/err" || { cat "$w/err"; fail "the error does not name the CUDA context"; }
[ ! -e "$w/r_small" ] || fail "the run directory was created before the budget check"
echo "ok: $(cat "$w/err")"
