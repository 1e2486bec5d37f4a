#!/usr/bin/env bash
# train --keep none|auto|all and plan --keep (issue 16, keep instead of recompute): on the CPU
# backend, 3 steps with every layer recomputed, every layer kept, and auto under a budget that
# keeps only some layers save byte-identical weights, m and v (the forward is deterministic, so
# the backward sees the same bytes kept or recomputed); the placement table says per layer what
# is kept and its bytes, and the device row "kept activations" is the sum; with ample memory
# auto recomputes nothing; a bad --keep and --keep all without room are one line each.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-keep.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 128 --layers 4 --heads 4 --kv-heads 2 --ffn 384 --vocab 258 --seed 5 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
common=(--model "$w/m" --data "$w/d.tok" --steps 3 --seq-len 64 --batch-tokens 256 --backend cpu
        --threads 2 --cpu-mem 64MiB --lr 1e-3 --clip 0.5)
run() {  # name, then train's extra arguments
  local n=$1; shift
  "$bin" train "${common[@]}" "$@" --run "$w/$n" >"$w/out.$n" 2>"$w/err.$n" || { cat "$w/err.$n"; fail "train $n"; }
}
run none --gpu-mem 64MiB --keep none
grep -qE "^  layers 0-3 +- +recomputed from its checkpoint" "$w/out.none" || { cat "$w/out.none"; fail "--keep none: not every layer recomputed"; }
run all --gpu-mem 64MiB --keep all
run auto --gpu-mem 64MiB
for n in all auto; do
  grep -qE "^  layers 0-3 +[0-9.]+ [KMG]iB +kept: nothing recomputed" "$w/out.$n" || { cat "$w/out.$n"; fail "--keep $n with ample memory: not every layer kept"; }
done
# a budget with room for some layers' parts only: the none plan's device total + 1.5 units
python3 - "$w/out.all" "$w/out.none" >"$w/mixed.gpu" <<'PY' || fail "reading the kept bytes"
import re, sys
allp, nonep = open(sys.argv[1]).read(), open(sys.argv[2]).read()
kept = float(re.search(r"^\s+device\s+kept activations\s+([0-9.]+)", allp, re.M).group(1))
total = float(re.search(r"^\s+device\s+total\s+([0-9.]+)", nonep, re.M).group(1))
reserve = re.search(r"op scratch for these shapes takes ([0-9.]+) MiB", nonep).group(1)
# the device budget is the plan's plus the CPU backend's op scratch
print("%dKiB" % int((total + float(reserve) + kept * 0.6) * 1024))
PY
run mixed --gpu-mem "$(cat "$w/mixed.gpu")"
python3 - "$w/out.mixed" <<'PY' || { cat "$w/out.mixed"; fail "--gpu-mem $(cat "$w/mixed.gpu"): the kept layers"; }
import re, sys
out = open(sys.argv[1]).read()
rows = re.findall(r"^  (layers? [0-9-]+) +(-|[0-9.]+ [KMG]iB) +(.*)$", out.split("keep instead of recompute")[1], re.M)
assert any("recomputed" in r[2] for r in rows) and any("kept" in r[2] for r in rows), rows
unit = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
s = sum(float(b.split()[0]) * unit[b.split()[1]] for _, b, _ in rows if b != "-")
row = float(re.search(r"^\s+device\s+kept activations\s+([0-9.]+)", out, re.M).group(1))
assert abs(s - row) < 0.05 * len(rows), (s, row)
print("ok a tighter budget keeps some layers' parts:", "; ".join("%s %s" % (a, c.split(" (")[0]) for a, _, c in rows))
PY
for n in all auto mixed; do
  for f in weights-00000003/model.safetensors optim-00000003/m/model.safetensors optim-00000003/v/model.safetensors; do
    cmp -s "$w/none/$f" "$w/$n/$f" || fail "--keep $n differs from --keep none in $f"
  done
done
echo "ok --keep none, all, auto (ample) and auto (some layers): the same bytes"
"$bin" train "${common[@]}" --gpu-mem 64MiB --keep most --no-save >"$w/o" 2>"$w/e" && fail "--keep most accepted"
[ "$(wc -l <"$w/e")" = 1 ] && grep -q -- "--keep 'most'" "$w/e" || { cat "$w/e"; fail "--keep most: not one line naming it"; }
"$bin" train "${common[@]}" --gpu-mem 5MiB --keep all --no-save >"$w/o" 2>"$w/e" && fail "--keep all without room accepted"
[ "$(wc -l <"$w/e")" = 1 ] && grep -q -- "--gpu-mem .* short of keeping every layer.*--keep all" "$w/e" || { cat "$w/e"; fail "--keep all without room: not one line naming the budget"; }
echo "ok a bad --keep and --keep all without room: one line each"
# plan: the 1.1B shape, everything resident; with room every layer is kept, --keep none keeps none
shape=(--arch llama --dim 2048 --layers 22 --heads 32 --kv-heads 4 --ffn 5632 --vocab 32000 --cpu-mem 64GiB
       --batch-tokens 16384 --seq-len 2048 --clip 0)
"$bin" plan "${shape[@]}" --gpu-mem 70GiB >"$w/p" || fail "plan"
grep -qE "^  layers 0-21 +[0-9.]+ GiB +kept: nothing recomputed" "$w/p" || { cat "$w/p"; fail "plan at 70GiB keeps not every layer"; }
"$bin" plan "${shape[@]}" --gpu-mem 70GiB --keep none >"$w/p" || fail "plan --keep none"
grep -qE "^  layers 0-21 +- +recomputed" "$w/p" && ! grep -q "kept activations" "$w/p" || { cat "$w/p"; fail "plan --keep none"; }
"$bin" plan "${shape[@]}" --gpu-mem 70GiB --keep bad >"$w/o" 2>"$w/e"; [ $? = 2 ] || fail "plan --keep bad: exit status"
grep -q -- "--keep 'bad'" "$w/e" || fail "plan --keep bad: no line naming it"
echo "ok plan --keep: every layer kept at 70GiB (auto), none with --keep none"
