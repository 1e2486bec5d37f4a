#!/usr/bin/env bash
# The end of a run as a commit, export from a commit, and no non-finite value in a commit
# (issue 15) on the CPU backend:
#   1. --end-commit: a run with its optimizer state on NVMe ends with a commit (no weights-N or
#      optim-N copy), keeps its scratch file, and export reads the commit where it lies: fp32 and
#      bf16 exports byte-identical to those of an uninterrupted run that ended with a full save;
#   2. export from a commit checks what it reads: a changed byte in the committed NVMe slot, or
#      the scratch file gone, give one line and exit 1, and --out is not created;
#   3. --end-commit with commits off, or with --no-save: one line, nothing written;
#   4. a non-finite value in the NVMe-resident optimizer state is caught when committing (not at
#      the next resume): one line naming the NVMe slot, the state and the tensor; the last commit
#      stays and resumes;
#   5. a state file of several 16 MiB checksum pieces (hashed while written, not read back)
#      passes --resume's read-back verification, and a flipped byte in its second piece is found.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-cend.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 32 --layers 2 --heads 2 --ffn 64 --vocab 258 --seed 1 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
common=(--model "$w/m" --data "$w/d.tok" --seq-len 32 --batch-tokens 64 --backend cpu --lr 3e-3
        --warmup 1 --weight-decay 0.01 --steps 6 --quiet)
nvme=(--gpu-mem 496KiB --cpu-mem 660KiB --threads 2 --chunk 2048)     # P32/m/v of the layers on NVMe
mkdir -p "$w/nv0" "$w/nv1"

expect() {   # NAME RC PATTERN args...: exit RC, one line on stderr containing PATTERN
  local name=$1 want=$2 pat=$3; shift 3
  "$bin" "$@" >"$w/out" 2>"$w/err"; local rc=$?
  [ "$rc" = "$want" ] || { cat "$w/err"; fail "$name: exit $rc, expected $want"; }
  [ "$(wc -l <"$w/err")" = 1 ] || { cat "$w/err"; fail "$name: expected one line on stderr"; }
  grep -q -- "$pat" "$w/err" || { cat "$w/err"; fail "$name: message does not say '$pat'"; }
  echo "ok $name: $(cut -c1-240 "$w/err")"
}

# 1. the reference ends with a full save; the other run ends with a commit
"$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv0" --commit-every 0 --run "$w/ref" >/dev/null 2>"$w/err" \
  || { cat "$w/err"; fail "the reference run"; }
"$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv1" --commit-every 2 --end-commit --run "$w/a" >"$w/out" 2>"$w/err" \
  || { cat "$w/err"; fail "the --end-commit run"; }
grep -q '"step": 6,' "$w/a/commit.json" || fail "the run did not end with the commit of step 6"
grep -q '"nvme_groups": [1-9]' "$w/a/commit.json" || fail "no optimizer state on NVMe in the commit: the test's placement changed"
ls "$w/a" | grep -q "^weights-\|^optim-\|manifest" && fail "--end-commit made a full save: $(ls "$w/a")"
[ -e "$w/nv1/spillway.data" ] || fail "the scratch file holding the commit was removed"
grep -q "ends with the commit of step 6 in $w/a" "$w/out" || { cat "$w/out"; fail "the summary does not say the run ends with a commit"; }
for dt in --fp32 ""; do
  "$bin" export --run "$w/ref" --out "$w/xr$dt" $dt >/dev/null 2>"$w/err" || { cat "$w/err"; fail "export of the reference"; }
  "$bin" export --run "$w/a" --out "$w/xa$dt" $dt >"$w/out" 2>"$w/err" || { cat "$w/err"; fail "export from the commit"; }
  grep -q "$w/a, commit of step 6" "$w/out" || { cat "$w/out"; fail "export does not name the commit"; }
  cmp -s "$w/xr$dt/model.safetensors" "$w/xa$dt/model.safetensors" || fail "export ${dt:-bf16} from the commit differs from the full save's"
  cmp -s "$w/xr$dt/config.json" "$w/xa$dt/config.json" || fail "config.json differs"
done
echo "ok --end-commit: no full copy, the scratch file kept; fp32 and bf16 exports from the commit byte-identical to the full save's"
"$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv1" --end-commit --run "$w/a" --resume >"$w/out" 2>"$w/err"
grep -q "already at step 6" "$w/err" || { cat "$w/err"; fail "--resume of a run ended by a commit"; }

# 2. what export reads from a commit is checked
cp "$w/nv1/spillway.data" "$w/keep.data"
python3 - "$w/nv1/spillway.data" "$w/a/commit-0.state" "$w/a/commit-1.state" "$w/a/commit.json" <<'PY'
# flip one byte in every written 4 KiB block of the committed slot's P32 extents: the extents
# named by the state file (24-byte allocation records after a 56-byte header)
import json, struct, sys
data, s0, s1, cj = sys.argv[1:5]
c = json.load(open(cj))
st = open(s0 if c["state"] == "commit-0.state" else s1, "rb").read()
magic, ver, ng, step, slot, slots, size, stripe, nal = struct.unpack_from("<8sIiqiiQQQ", st, 0)
at, off = 56, 0
targets = []
for i in range(nal):
    ln, g, k, sl, _ = struct.unpack_from("<Qiiii", st, at + 24 * i)
    # the engine's placement: an extent of a stripe or more starts on a stripe boundary; a
    # smaller one moves to the next boundary only when it would cross one
    if ln >= stripe and off % stripe:
        off += stripe - off % stripe
    elif ln < stripe and off // stripe != (off + ln - 1) // stripe:
        off += stripe - off % stripe
    if g >= 0 and k == 0 and sl == slot:
        targets.append(off)
    off += ln
f = open(data, "r+b")
for t in targets:
    f.seek(t + 100); b = f.read(1); f.seek(t + 100); f.write(bytes([b[0] ^ 0x10]))
print(len(targets))
PY
[ $? = 0 ] || fail "patching the NVMe slot"
"$bin" export --run "$w/a" --out "$w/xbad" >"$w/out" 2>"$w/err"; rc=$?
[ $rc = 1 ] || { cat "$w/err"; fail "export from a changed NVMe slot: exit $rc"; }
grep -q "export: P32 of group [0-9]* (from .*), slot [01]: io: read of $w/nv1/spillway.data at offset [0-9]* .*checksum mismatch" "$w/err" \
  || { cat "$w/err"; fail "export from a changed NVMe slot: message"; }
[ ! -e "$w/xbad" ] || fail "a refused export wrote --out"
echo "ok export from a changed NVMe slot: $(head -c 240 "$w/err")"
cp "$w/keep.data" "$w/nv1/spillway.data"
mv "$w/nv1/spillway.data" "$w/nv1/moved"
expect "export from a commit whose scratch file is gone" 1 "lies in $w/nv1/spillway.data, which is gone" export --run "$w/a" --out "$w/xbad"
[ ! -e "$w/xbad" ] || fail "a refused export wrote --out"
mv "$w/nv1/moved" "$w/nv1/spillway.data"
"$bin" export --run "$w/a" --out "$w/xgood" --fp32 >/dev/null 2>&1 || fail "export after the repair"
cmp -s "$w/xr--fp32/model.safetensors" "$w/xgood/model.safetensors" || fail "export after the repair differs"
echo "ok after the repair the export is byte-identical again"
# a commit.json that does not read: one line, not a silent export of an older save
cp -r "$w/a" "$w/a8"; head -c 100 "$w/a/commit.json" >"$w/a8/commit.json"
expect "export with a truncated commit.json" 1 "export: $w/a8/commit.json: .*the run directory is damaged" export --run "$w/a8" --out "$w/x8"
[ ! -e "$w/x8" ] || fail "a refused export wrote --out"
# export takes the run's lock: not while a train holds it (it could move the committed state)
mkdir -p "$w/nv7"
"$bin" train "${common[@]}" "${nvme[@]}" --steps 100000 --commit-every 1 --nvme "$w/nv7" --run "$w/r7" >/dev/null 2>&1 &
pid7=$!
for _ in $(seq 400); do [ -e "$w/r7/commit.json" ] && break; sleep 0.02; done
expect "export while the run trains" 1 "export: --run $w/r7 is in use by a spillway process" export --run "$w/r7" --out "$w/x7"
kill -9 $pid7; wait $pid7 2>/dev/null
[ ! -e "$w/x7" ] || fail "a refused export wrote --out"

# 3. --end-commit without commits
expect "--end-commit with --commit-every 0" 1 "--end-commit ends the run with a commit, but --commit-every 0" \
  train "${common[@]}" --commit-every 0 --end-commit --run "$w/b"
[ ! -e "$w/b/manifest.json" ] && [ ! -e "$w/b/commit.json" ] || fail "a refused run wrote state"
expect "--end-commit with --no-save" 2 "--no-save keeps nothing" train "${common[@]}" --end-commit --no-save

# 4. lr far beyond float range at step 2 (step 1 has lr 0 in the warm-up): the NVMe state of
#    step 2 is not finite; the commit refuses it naming the NVMe slot, the commit of step 1 stays
mkdir -p "$w/nv2"
"$bin" train "${common[@]}" "${nvme[@]}" --lr 1e39 --warmup 2 --steps 3 --commit-every 1 --nvme "$w/nv2" --run "$w/n" >/dev/null 2>"$w/err"; rc=$?
[ $rc = 1 ] || { cat "$w/err"; fail "non-finite NVMe state: exit $rc, expected 1"; }
grep -q "^spillway: train: commit of step 2, the NVMe slot [01]: .* of model.layers.[01]\..* holds a non-finite value (.*) at element [0-9]*; nothing committed, the last commit stays" "$w/err" \
  || { cat "$w/err"; fail "non-finite NVMe state: message"; }
[ "$(wc -l <"$w/err")" = 1 ] || { cat "$w/err"; fail "non-finite NVMe state: one line expected"; }
grep -q '"step": 1,' "$w/n/commit.json" || fail "the commit of step 1 is not the one kept"
echo "ok a non-finite value in the NVMe state is refused at the commit: $(cut -c1-240 "$w/err")"
"$bin" train "${common[@]}" "${nvme[@]}" --lr 1e39 --warmup 2 --steps 3 --commit-every 1 --stop-after 1 --nvme "$w/nv2" --run "$w/n" --resume >/dev/null 2>"$w/err" \
  || { cat "$w/err"; fail "the commit of step 1 does not resume"; }
echo "ok the last commit stays and resumes"
# ... and when the step before the commit was not checked as it wrote (a stop between commits;
# forced here by SW_TEST_COMMIT_READBACK=1), the commit reads the slot back and refuses the same
rm -rf "$w/n" "$w/nv2"; mkdir -p "$w/nv2"
SW_TEST_COMMIT_READBACK=1 "$bin" train "${common[@]}" "${nvme[@]}" --lr 1e39 --warmup 2 --steps 3 --commit-every 1 --nvme "$w/nv2" --run "$w/n" >/dev/null 2>"$w/err"; rc=$?
[ $rc = 1 ] || { cat "$w/err"; fail "non-finite NVMe state read back: exit $rc, expected 1"; }
grep -q "^spillway: train: commit of step 2, the NVMe slot [01]: .* of model.layers.[01]\..* holds a non-finite value (.*) at element [0-9]*; nothing committed, the last commit stays" "$w/err" \
  || { cat "$w/err"; fail "non-finite NVMe state read back: message"; }
grep -q '"step": 1,' "$w/n/commit.json" || fail "read back: the commit of step 1 is not the one kept"
echo "ok ... also when the commit reads the NVMe slot back: $(cut -c1-200 "$w/err")"

# 5. a state file of several checksum pieces: a model whose state in memory is ~40 MiB
"$bin" init --arch llama --dim 256 --layers 1 --heads 4 --ffn 512 --vocab 12000 --seed 2 --out "$w/big" >/dev/null || fail "init big"
big=(--model "$w/big" --data "$w/d.tok" --seq-len 32 --batch-tokens 64 --backend cpu --lr 1e-3 --steps 2 --quiet --threads 2)
"$bin" train "${big[@]}" --commit-every 1 --stop-after 1 --run "$w/g" >/dev/null 2>"$w/err" || { cat "$w/err"; fail "big run"; }
n=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['state_xxh3']))" "$w/g/commit.json")
[ "$n" -ge 3 ] || fail "the state file has $n checksum pieces, expected 3 or more"
cp -r "$w/g" "$w/g2"
st=$(sed -n 's/.*"state": "\(commit-[01].state\)".*/\1/p' "$w/g2/commit.json")
python3 - "$w/g2/$st" <<'PY'
import sys
f = open(sys.argv[1], "r+b"); f.seek((16 << 20) + 12345); b = f.read(1); f.seek((16 << 20) + 12345); f.write(bytes([b[0] ^ 1]))
PY
expect "a changed byte in the second piece of a state file" 1 "$w/g2/$st: checksum mismatch at offset 16777216" \
  train "${big[@]}" --run "$w/g2" --resume
"$bin" train "${big[@]}" --run "$w/g" --resume >/dev/null 2>"$w/err" || { cat "$w/err"; fail "--resume of a state file of $n pieces"; }
echo "ok a state file of $n checksum pieces, hashed while written, passes the read-back verification"

# 6. the commit's durable part overlaps the next step; the next step's optimizer does not write
#    NVMe (the slot the previous commit names) until the new commit.json is in place. With
#    commit.json held back 3 s (SW_COMMIT_DELAY_MS), a kill -9 inside that window (after step
#    2's state file is written, before its commit.json) must leave the commit of step 1 whole:
#    --resume continues from it, byte-identical to the uninterrupted run. Without the gate the
#    following steps (40 ms each) would have rewritten step 1's slot by then.
mkdir -p "$w/nv6" "$w/nv6b"
"$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv6b" --commit-every 1 --end-commit --run "$w/r6ref" >/dev/null 2>"$w/err"   || { cat "$w/err"; fail "overlap: the reference"; }
SW_COMMIT_DELAY_MS=3000 "$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv6" --commit-every 1 --end-commit --run "$w/r6" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 400); do   # the commit of step 1 named, step 2's state file written
  grep -q '"step": 1,' "$w/r6/commit.json" 2>/dev/null && [ -e "$w/r6/commit-1.state" ] && break
  sleep 0.02
done
sleep 1
kill -9 $pid; wait $pid 2>/dev/null
grep -q '"step": 1,' "$w/r6/commit.json" || fail "overlap: the kill did not land inside the commit of step 2's window"
"$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv6" --commit-every 1 --end-commit --run "$w/r6" --resume >/dev/null 2>"$w/err" \
  || { cat "$w/err"; fail "overlap: --resume after a kill inside the window"; }
for r in r6ref r6; do "$bin" export --run "$w/$r" --out "$w/x6$r" --fp32 >/dev/null 2>&1 || fail "overlap: export $r"; done
cmp -s "$w/x6r6ref/model.safetensors" "$w/x6r6/model.safetensors" || fail "overlap: the resumed run differs"
cmp -s "$w/r6ref/metrics.jsonl" "$w/r6/metrics.jsonl" || true
l1=$(sed -n 's/.*"loss": \([^,]*\),.*/\1/p' "$w/r6ref/metrics.jsonl" | tr '\n' ' ')
l2=$(sed -n 's/.*"loss": \([^,]*\),.*/\1/p' "$w/r6/metrics.jsonl" | tr '\n' ' ')
[ "$l1" = "$l2" ] || fail "overlap: losses '$l2' differ from '$l1'"
echo "ok a kill -9 while a commit is made durable (the next step held at the gate): the previous commit resumes, byte-identical"
# the synchronous durable part (SW_COMMIT_SYNC=1) gives the same bytes
mkdir -p "$w/nv6c"
SW_COMMIT_SYNC=1 "$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv6c" --commit-every 1 --end-commit --run "$w/r6s" >"$w/out" 2>"$w/err" \
  || { cat "$w/err"; fail "SW_COMMIT_SYNC run"; }
grep -q "made durable between steps (SW_COMMIT_SYNC)" "$w/out" || { cat "$w/out"; fail "SW_COMMIT_SYNC: the summary does not say so"; }
"$bin" export --run "$w/r6s" --out "$w/x6s" --fp32 >/dev/null 2>&1 || fail "export r6s"
cmp -s "$w/x6r6ref/model.safetensors" "$w/x6s/model.safetensors" || fail "SW_COMMIT_SYNC: the run differs"
echo "ok synchronous commits (SW_COMMIT_SYNC=1): byte-identical"
echo "ok"
