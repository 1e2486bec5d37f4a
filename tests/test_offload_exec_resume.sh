#!/usr/bin/env bash
# No lost work: a run stopped after a save and resumed with --resume gives the same bits as the
# run that never stopped: the same losses and grad norms for the steps after the save, and
# byte-identical fp32 weights, m and v at the end. The resumed half runs under another placement
# (all resident instead of streamed from NVMe), which must not matter either. Bad resumes fail
# with one line and leave the run as it was.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-exec-resume.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 64 --layers 3 --heads 4 --kv-heads 2 --ffn 96 --vocab 258 --seed 3 --out "$w/m" >/dev/null || fail init
"$bin" init --arch llama --dim 64 --layers 2 --heads 4 --ffn 96 --vocab 258 --out "$w/other" >/dev/null || fail init other
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
mkdir -p "$w/nv1" "$w/nv2"
common=(--model "$w/m" --data "$w/d.tok" --lr 3e-3 --warmup 2 --weight-decay 0.01 --seq-len 32
        --batch-tokens 128 --backend cpu --quiet)
offload=(--gpu-mem 864KiB --cpu-mem 1284KiB --threads 2 --chunk 4096)

"$bin" train "${common[@]}" "${offload[@]}" --nvme "$w/nv1" --steps 6 --save-every 3 --run "$w/a" \
  >"$w/out" 2>"$w/err" || { cat "$w/err"; fail "uninterrupted run"; }
"$bin" train "${common[@]}" "${offload[@]}" --nvme "$w/nv2" --steps 6 --stop-after 3 --commit-every 0 --run "$w/b" \
  >"$w/out" 2>"$w/err" || { cat "$w/err"; fail "first half"; }
[ -e "$w/b/weights-00000003/model.safetensors" ] && [ -e "$w/b/optim-00000003/m/model.safetensors" ] \
  || fail "the save after step 3 is missing"
[ ! -e "$w/a/weights-00000003" ] && [ ! -e "$w/a/optim-00000003" ] || fail "the superseded save was not removed"
cp -r "$w/b" "$w/b.saved"

# bad resumes: one line, exit 1, the run directory untouched
expect_fail() {  # name, pattern, args...
  local name=$1 pat=$2; shift 2
  "$bin" train "$@" >"$w/out" 2>"$w/err"; rc=$?
  [ $rc = 1 ] || { cat "$w/err"; fail "$name: exit $rc, expected 1"; }
  [ "$(wc -l <"$w/err")" = 1 ] || { cat "$w/err"; fail "$name: expected one error line"; }
  grep -q -- "$pat" "$w/err" || { cat "$w/err"; fail "$name: message does not say '$pat'"; }
  echo "ok $name: $(cat "$w/err")"
}
mkdir -p "$w/empty"
expect_fail "nothing saved" "manifest.json does not exist" "${common[@]}" --steps 6 --run "$w/empty" --resume
expect_fail "already there" "already at step 3" "${common[@]}" --steps 3 --run "$w/b" --resume
expect_fail "another model" "does not hold the tensors" "${common[@]/$w\/m/$w/other}" --steps 6 --run "$w/b" --resume
cp -r "$w/b" "$w/bad"; echo '{"step": 3, "weights": 7}' >"$w/bad/manifest.json"
expect_fail "damaged manifest" "damaged" "${common[@]}" --steps 6 --run "$w/bad" --resume
cp -r "$w/b" "$w/bad2"; printf '{"step": 3,' >"$w/bad2/manifest.json"
expect_fail "truncated manifest" "damaged" "${common[@]}" --steps 6 --run "$w/bad2" --resume
cp -r "$w/b" "$w/bad3"; rm "$w/bad3/optim-00000003/v/model.safetensors"
expect_fail "missing optimizer state" "optim-00000003/v" "${common[@]}" --steps 6 --run "$w/bad3" --resume
diff -r -x lock "$w/b" "$w/b.saved" >/dev/null || fail "a failed resume changed the run directory"

# resume under another placement: everything resident (no --gpu-mem, no NVMe)
"$bin" train "${common[@]}" --steps 6 --save-every 3 --run "$w/b" --resume >"$w/out" 2>"$w/err" \
  || { cat "$w/err"; fail "resume"; }
grep -q "^step 4/6" "$w/out" || fail "the resumed run did not start at step 4"
grep -q "^step 1/6" "$w/out" && fail "the resumed run started over"
field() { sed -n "s/.*\"step\": $2, \"loss\": \([^,]*\), \"lr\": \([^,]*\), \"grad_norm\": \([^,]*\),.*/\1 \2 \3/p" "$1"; }
for s in 4 5 6; do
  ra=$(field "$w/a/metrics.jsonl" $s); rb=$(field "$w/b/metrics.jsonl" $s)
  [ -n "$ra" ] && [ "$ra" = "$rb" ] || fail "step $s: uninterrupted '$ra' vs resumed '$rb'"
done
echo "ok steps 4-6 identical: $(field "$w/b/metrics.jsonl" 6)"
for f in weights-00000006/model.safetensors optim-00000006/m/model.safetensors optim-00000006/v/model.safetensors; do
  cmp -s "$w/a/$f" "$w/b/$f" || fail "$f differs between the uninterrupted and the resumed run"
done
echo "ok weights, m and v after step 6 byte-identical"
# and the model did train: the saved weights differ from the initial ones after export
"$bin" export --run "$w/b" --out "$w/hf" --fp32 >/dev/null || fail export
cmp -s "$w/hf/model.safetensors" "$w/m/model.safetensors" && fail "the exported weights equal the initial ones"
echo "ok"
