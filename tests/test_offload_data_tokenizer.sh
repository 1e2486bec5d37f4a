#!/usr/bin/env bash
# `train` refuses a token file made with another tokenizer than the model directory's
# tokenizer.json (the fingerprint the token file records, XXH3-64 of tokenizer.json), with one
# line naming the data and the fix, before anything is written; --force accepts it. A byte-level
# token file against a model with no tokenizer.json trains as before.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-datatok.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 32 --layers 1 --heads 2 --ffn 64 --vocab 258 --seed 3 --out "$w/m" >/dev/null || fail init
head -c 20000 tests/data/corpus.txt >"$w/c.txt"
"$bin" data --text "$w/c.txt" --out "$w/d.tok" >/dev/null || fail data
common=(--model "$w/m" --data "$w/d.tok" --lr 1e-3 --seq-len 32 --batch-tokens 64 --backend cpu --quiet --steps 1)

# no tokenizer.json beside the model, byte-level data: trains
"$bin" train "${common[@]}" --run "$w/r0" >"$w/out" 2>&1 || { cat "$w/out"; fail "byte-level data on a model without a tokenizer"; }
echo "ok byte-level data, model without tokenizer.json: trains"

# the model directory gains a tokenizer.json: the byte-level file is refused, nothing written
printf '{"model": {"type": "BPE"}}' >"$w/m/tokenizer.json"
"$bin" train "${common[@]}" --run "$w/r1" >"$w/out" 2>"$w/err"; rc=$?
[ $rc != 0 ] || fail "data made without the model's tokenizer was accepted"
[ "$(wc -l <"$w/err")" = 1 ] || { cat "$w/err"; fail "expected one line on stderr"; }
grep -q "d.tok: made without a tokenizer" "$w/err" && grep -q -- "--force" "$w/err" ||
  { cat "$w/err"; fail "the message does not name the data and --force"; }
[ ! -e "$w/r1/manifest.json" ] || fail "a refused run wrote a manifest"
echo "ok refused: $(cat "$w/err")"

# --force accepts it
"$bin" train "${common[@]}" --run "$w/r2" --force >"$w/out" 2>&1 || { cat "$w/out"; fail "--force was not accepted"; }
echo "ok --force trains"
