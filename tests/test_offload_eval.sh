#!/usr/bin/env bash
# --eval-data: the held-out loss is the forward of the current weights, through the same homes
# and P16 window as training. Checked against training itself: when the held-out file is the
# training file and holds exactly one batch of windows, step k+1 trains on the same rows (in
# another order) under the weights the evaluation after step k saw, so its loss equals that
# evaluation's up to the order of the sum. The held-out loss is also the same bits whatever the
# placement (all on the device; P16 streamed and optimizer state on "NVMe"), and a bad
# --eval-data is one line before anything is written.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-eval.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 64 --layers 2 --heads 4 --ffn 128 --vocab 258 --seed 1 --out "$w/m" >/dev/null || fail init
# 260 bytes: 262 tokens with BOS and EOS, (262 - 1) / 64 = 4 windows = one batch of 4 rows
head -c 260 tests/data/corpus.txt >"$w/one.txt"
"$bin" data --text "$w/one.txt" --out "$w/one.tok" >/dev/null || fail data
base=(--model "$w/m" --data "$w/one.tok" --eval-every 1 --steps 5 --seq-len 64 --batch-tokens 256
      --micro-batch-tokens 128 --lr 3e-3 --warmup 0 --backend cpu --quiet)
common=("${base[@]}" --eval-data "$w/one.tok")
"$bin" train "${common[@]}" --run "$w/r1" >"$w/log1" 2>&1 || { cat "$w/log1"; fail "train with --eval-data"; }
python3 - "$w/r1/metrics.jsonl" <<'PY' || fail "eval loss after step k != training loss of step k+1"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert len(recs) == 5 and all("eval_loss" in r for r in recs), "an eval_loss on every step"
for a, b in zip(recs, recs[1:]):
    e, t = a["eval_loss"], b["loss"]
    rel = abs(e - t) / abs(t)
    print(f"eval after step {a['step']}: {e:.9f}  training loss of step {b['step']}: {t:.9f}  rel {rel:.1e}")
    assert rel < 1e-5, "differs"
# and it moved: the evaluation follows the updates
assert abs(recs[0]["eval_loss"] - recs[-1]["eval_loss"]) > 1e-3, "eval loss never changed"
PY
grep -q "eval loss" "$w/log1" || fail "the step line shows no eval loss"
# the same run with P16 streamed from the host and optimizer state on NVMe: the same bits
mkdir -p "$w/nv"
"$bin" train "${common[@]}" --run "$w/r2" --gpu-mem 1928KiB --cpu-mem 1284KiB --threads 2 --chunk 4096 --nvme "$w/nv" \
  >"$w/log2" 2>&1 || { cat "$w/log2"; fail "offloaded train with --eval-data"; }
grep -o '"eval_loss": [^,]*' "$w/r1/metrics.jsonl" >"$w/e1"
grep -o '"eval_loss": [^,]*' "$w/r2/metrics.jsonl" >"$w/e2"
cmp -s "$w/e1" "$w/e2" || { paste "$w/e1" "$w/e2"; fail "eval loss depends on the placement"; }
echo "ok eval loss identical with P16 streamed and optimizer state on NVMe ($(wc -l <"$w/e1") evaluations)"
# a tied model (the LM head is the embedding; the final norm fetched apart when streamed), offloaded
"$bin" init --arch llama --dim 64 --layers 2 --heads 4 --ffn 128 --vocab 258 --tie --seed 2 --out "$w/mt" >/dev/null || fail init tied
"$bin" train "${common[@]}" --model "$w/mt" --run "$w/r4" --gpu-mem 1928KiB --cpu-mem 1284KiB --threads 2 --chunk 4096 \
  --nvme "$w/nv" >"$w/log4" 2>&1 || { cat "$w/log4"; fail "tied offloaded train with --eval-data"; }
python3 - "$w/r4/metrics.jsonl" <<'PY' || fail "tied: eval loss after step k != training loss of step k+1"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
for a, b in zip(recs, recs[1:]):
    assert abs(a["eval_loss"] - b["loss"]) / abs(b["loss"]) < 1e-5, (a, b)
print("ok tied, offloaded: eval loss after each step = the next step's training loss")
PY
# a missing --eval-data: one line naming it, nothing written
"$bin" train "${base[@]}" --eval-data "$w/nope.tok" --run "$w/r3" >"$w/out" 2>"$w/err"
[ $? != 0 ] || fail "a missing --eval-data was accepted"
[ "$(wc -l <"$w/err")" = 1 ] && grep -q "nope.tok" "$w/err" || { cat "$w/err"; fail "the message does not name the file"; }
[ ! -e "$w/r3/manifest.json" ] || fail "a refused run wrote a manifest"
echo "ok missing --eval-data: $(cat "$w/err")"
