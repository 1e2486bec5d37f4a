#!/usr/bin/env bash
# --eval-data on the CUDA backend: with the held-out file equal to the training file and one
# batch of windows, the evaluation after step k sees the weights step k+1 trains with, on the
# same rows, so it equals that step's training loss (bf16 compute; checked all resident and with
# the layers streamed from NVMe).
set -u
cd "$(dirname "$0")/../.." || exit 1
bin=${SW_BIN:-${BUILD:-build}/spillway}
w=$(mktemp -d /tmp/sw-gpu-eval.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 512 --layers 4 --heads 8 --ffn 1536 --vocab 258 --seed 1 --out "$w/m" >/dev/null || fail init
# 1040 bytes: 1042 tokens, (1042 - 1) / 64 = 16 windows = one batch of 16 rows
head -c 1040 tests/data/corpus.txt >"$w/one.txt"
"$bin" data --text "$w/one.txt" --out "$w/one.tok" >/dev/null || fail data
mkdir -p "$w/nv"
i=0
for mem in "" "--gpu-mem 740MiB --cpu-mem 40MiB --nvme $w/nv --chunk 65536"; do
  i=$((i + 1))
  # shellcheck disable=SC2086
  "$bin" train --model "$w/m" --data "$w/one.tok" --eval-data "$w/one.tok" --eval-every 1 --steps 5 \
    --seq-len 64 --batch-tokens 1024 --micro-batch-tokens 256 --lr 3e-3 --warmup 0 --backend cuda \
    --run "$w/r$i" $mem >"$w/log$i" 2>&1 || { tail -n 5 "$w/log$i"; fail "train ${mem:-resident}"; }
  python3 - "$w/r$i/metrics.jsonl" "${mem:-all resident}" <<'PY' || fail "eval loss after step k != training loss of step k+1"
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert len(r) == 5
for a, b in zip(r, r[1:]):
    rel = abs(a["eval_loss"] - b["loss"]) / b["loss"]
    assert rel < 1e-5, (a["step"], a["eval_loss"], b["loss"])
print(f"ok {sys.argv[2]}: eval loss after steps 1-4 = the next step's training loss")
PY
done
grep -q "NVMe" "$w/log2" || fail "the second run streamed nothing from NVMe"
