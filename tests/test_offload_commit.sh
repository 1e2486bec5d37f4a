#!/usr/bin/env bash
# Commits in place (issue 15, Done when 1, 2 and 5's train side) on the CPU backend: a commit
# copies nothing that lies on NVMe (no weights-N/optim-N between full saves), keeps the
# committed NVMe slot and the scratch file, and --resume continues from it reading the slots
# where they lie, byte-identical to a run never stopped, also under other budgets. A changed
# byte in the committed slot, the commit's state file or commit.json, a read error at resume, a
# missing or moved scratch file, each give exit 1 and one line naming the place (group, state,
# slot, file and offset for the NVMe slot) and write nothing over the commit; once the fault is
# removed --resume continues byte-identically. export checks the manifest's checksum and the
# saved files' checksums. Bad --commit-every settings: one line, exit 2 (or 1), nothing written.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-commit.XXXXXX)
trap 'umount "$w/tiny" 2>/dev/null; rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 32 --layers 2 --heads 2 --ffn 64 --vocab 258 --seed 1 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
steps=6
loud=(--model "$w/m" --data "$w/d.tok" --seq-len 32 --batch-tokens 64 --backend cpu --lr 3e-3
      --warmup 1 --weight-decay 0.01 --steps $steps)
common=("${loud[@]}" --quiet)
nvme=(--gpu-mem 496KiB --cpu-mem 660KiB --threads 2 --chunk 2048)     # P32/m/v of the layers on NVMe
host=(--gpu-mem 496KiB --cpu-mem 4MiB --threads 2 --chunk 2048)       # all state in host memory
final=(weights-0000000$steps/model.safetensors optim-0000000$steps/m/model.safetensors
       optim-0000000$steps/v/model.safetensors)
mkdir -p "$w/nv" "$w/nv0" "$w/nv2"
"$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv0" --commit-every 0 --run "$w/ref" >/dev/null 2>"$w/err" \
  || { cat "$w/err"; fail "the uninterrupted run"; }

# expect NAME RC PATTERN args...: exit RC, one line on stderr (besides progress and the fault
# injection's warning) containing PATTERN
expect() {
  local name=$1 want=$2 pat=$3; shift 3
  "$bin" "$@" >"$w/out" 2>"$w/err"; local rc=$?
  [ "$rc" = "$want" ] || { cat "$w/err"; fail "$name: exit $rc, expected $want"; }
  grep -v "^train: loading\|^train: resuming\|^warning: io: fault injection active" "$w/err" >"$w/err1"
  [ "$(wc -l <"$w/err1")" = 1 ] || { cat "$w/err"; fail "$name: expected one line on stderr"; }
  grep -q -- "$pat" "$w/err1" || { cat "$w/err"; fail "$name: message does not say '$pat'"; }
  echo "ok $name: $(cut -c1-260 "$w/err1")"
}
# same RUN: the finished run's weights, m and v equal the uninterrupted run's; the scratch file gone
same() {
  for f in "${final[@]}"; do cmp -s "$w/ref/$f" "$1/$f" || fail "$1: $f differs from the uninterrupted run's"; done
  [ -z "$(ls "$2")" ] || fail "$1: the --nvme directory still holds $(ls "$2")"
  ls "$1" | grep -q "commit\|tmp" && fail "$1: commit files or temporaries stayed: $(ls "$1")"
  return 0
}
# committed RUN STEP: the run holds a commit at STEP, no full copy, the scratch file kept
committed() {
  grep -q "\"step\": $2," "$1/commit.json" || fail "$1: no commit at step $2"
  ls "$1" | grep -q "^weights-\|^optim-" && fail "$1: a commit made a full copy: $(ls "$1")"
  return 0
}
# the committed slot's bytes in spillway.data: the extents of P32/m/v of that slot, found by
# replaying the NVMe engine's placement (io/io.h: an extent of a stripe or more starts on a
# stripe boundary, a smaller one moves to the next boundary only when it would cross one)
slot_extents() {
  python3 - "$1" <<'PY'
import json, struct, sys
run = sys.argv[1]
c = json.load(open(run + "/commit.json"))
b = open(run + "/" + c["state"], "rb").read()
magic, ver, ng, step, slot, slots, size, stripe, nalloc = struct.unpack_from("<8sIiqiiQQQ", b, 0)
at, out = 0, []
for i in range(nalloc):
    ln, g, k, s, _ = struct.unpack_from("<Qiiii", b, 56 + 24 * i)
    if ln >= stripe or at // stripe != (at + ln - 1) // stripe:
        at = (at + stripe - 1) // stripe * stripe
    if g >= 0 and s == slot:
        out.append((at, ln, g, k))
    at += ln
for e in out:
    print(*e)
PY
}

# 1. commits copy nothing on NVMe; --resume under the same placement reads the slots in place
"$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --commit-every 1 --stop-after 3 --run "$w/a" >"$w/out" 2>"$w/err" \
  || { cat "$w/err"; fail "first half"; }
committed "$w/a" 3
[ -e "$w/nv/spillway.data" ] || fail "the commit's scratch file was removed"
grep -q "committed in $w/a (its NVMe state stays in the --nvme directory)" "$w/out" || { cat "$w/out"; fail "the stop line"; }
slot_extents "$w/a" >"$w/ext"
[ -s "$w/ext" ] || fail "no optimizer state of the committed slot on NVMe"
echo "ok a commit at step 3 copies nothing ($(wc -l <"$w/ext") NVMe extents of the committed slot stay where they are)"
cp -r "$w/a" "$w/a.keep"; cp "$w/nv/spillway.data" "$w/data.keep"; cp "$w/nv/spillway.lock" "$w/lock.keep"
# (the finished run removes the scratch file and its lock: both are put back with the commit)
restore() { rm -rf "$w/a"; cp -r "$w/a.keep" "$w/a"; cp "$w/data.keep" "$w/nv/spillway.data"; cp "$w/lock.keep" "$w/nv/spillway.lock"; }

# 2. a changed byte in the committed slot: one line naming group, state, slot, file and offset;
#    the commit is not written over; the byte put back, --resume continues byte-identically
read -r off len g k <"$w/ext"
python3 - "$w/nv/spillway.data" $((off + 100)) <<'PY'
import sys
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x10]))
PY
sum_slot() { while read -r o l _ _; do dd if="$w/nv/spillway.data" bs=4096 skip=$((o / 4096)) count=$((l / 4096)) status=none; done <"$w/ext" | md5sum; }
before=$(sum_slot)
states=("P32 (weights)" "Adam m" "Adam v")
expect "a changed byte in the committed NVMe slot" 1 \
  "${states[$k]} of group $g (from .*), slot [01], elements 0\.\.[0-9]*: io: read of $w/nv/spillway.data at offset [0-9]* .*checksum mismatch" \
  train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --commit-every 1 --run "$w/a" --resume
[ "$(sum_slot)" = "$before" ] || fail "the failed resume wrote over the committed slot"
cmp -s "$w/a/commit.json" "$w/a.keep/commit.json" || fail "the failed resume changed commit.json"
cp "$w/data.keep" "$w/nv/spillway.data"
"$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --commit-every 1 --run "$w/a" --resume >"$w/out" 2>"$w/err" \
  || { cat "$w/err"; fail "resume after the repair"; }
grep -q "full save" "$w/err" "$w/out" && fail "the resume under the same placement did not read the slots in place"
same "$w/a" "$w/nv"
echo "ok after the repair --resume continues in place, byte-identical"

# 3. a read error at resume (EIO injected into the first read): one line, then a clean resume
restore
before=$(sum_slot)
SPILLWAY_IO_FAULT="EIO:read:1" expect "EIO reading the committed slot" 1 \
  "of group [0-9]* (from .*), slot [01], elements .*: io: read of $w/nv/spillway.data at offset" \
  train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --commit-every 2 --run "$w/a" --resume
[ "$(sum_slot)" = "$before" ] || fail "the failed resume wrote over the committed slot"
"$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --commit-every 2 --run "$w/a" --resume >/dev/null 2>"$w/err" \
  || { cat "$w/err"; fail "resume after EIO"; }
same "$w/a" "$w/nv"

# 4. a changed byte in the commit's state file, and in commit.json
restore
st=$(sed -n 's/.*"state": "\(commit-[01].state\)".*/\1/p' "$w/a/commit.json")
python3 - "$w/a/$st" <<'PY'
import sys
f = open(sys.argv[1], "r+b"); f.seek(60); b = f.read(1); f.seek(60); f.write(bytes([b[0] ^ 1]))
PY
expect "a changed byte in the commit's state file" 1 "$w/a/$st: checksum mismatch at offset 0" \
  train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --run "$w/a" --resume
cp "$w/a.keep/$st" "$w/a/$st"
sed -i 's/"data_index": \([0-9]*\)/"data_index": 1\1/' "$w/a/commit.json"
expect "a changed commit.json" 1 "$w/a/commit.json: checksum mismatch (recorded" \
  train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --run "$w/a" --resume
cp "$w/a.keep/commit.json" "$w/a/commit.json"
"$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --run "$w/a" --resume >/dev/null 2>"$w/err" \
  || { cat "$w/err"; fail "resume after repairing the run directory"; }
same "$w/a" "$w/nv"

# 5. a changed setting, the scratch file gone, or another --nvme: one line naming it; nothing changed
restore
expect "another --lr on resume from a commit" 1 "--lr 0.001 differs from the run's 0.003 ($w/a/commit.json)" \
  train "${common[@]}" "${nvme[@]}" --lr 1e-3 --nvme "$w/nv" --run "$w/a" --resume
[ -e "$w/nv/spillway.data" ] || fail "a refused resume removed the commit's NVMe file"
rm "$w/nv/spillway.data"
expect "the commit's scratch file gone" 1 "lies in $w/nv/spillway.data, which is gone" \
  train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --run "$w/a" --resume
expect "another --nvme on resume" 1 "lies in spillway.data in --nvme $w/nv; resume with that --nvme" \
  train "${common[@]}" "${nvme[@]}" --nvme "$w/nv2" --run "$w/a" --resume
cmp -s "$w/a/commit.json" "$w/a.keep/commit.json" || fail "a refused resume changed commit.json"
rm -f "$w/nv2/spillway.lock"

# 6. other budgets on resume: the placement changes, the commit becomes a full save first
cp "$w/data.keep" "$w/nv/spillway.data"
"$bin" train "${common[@]}" "${host[@]}" --nvme "$w/nv" --run "$w/a" --resume >"$w/out" 2>"$w/err" \
  || { cat "$w/err"; fail "resume under other budgets"; }
grep -q "the placement differs from the committed one: the commit of step 3 becomes a full save" "$w/err" "$w/out" \
  || { cat "$w/err" "$w/out"; fail "the conversion was not said"; }
same "$w/a" "$w/nv"
echo "ok --resume under other budgets: the commit became a full save, the run byte-identical"
# ... and a commit of host-resident state resumed with the state on NVMe (no conversion needed)
"$bin" train "${common[@]}" "${host[@]}" --nvme "$w/nv" --commit-every 2 --stop-after 4 --run "$w/b" >/dev/null 2>"$w/err" \
  || { cat "$w/err"; fail "host run"; }
committed "$w/b" 4
[ -z "$(ls "$w/nv")" ] || fail "a commit with no state on NVMe kept the scratch file"
"$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --run "$w/b" --resume >"$w/out" 2>"$w/err" \
  || { cat "$w/err"; fail "host commit resumed on NVMe"; }
same "$w/b" "$w/nv"
echo "ok a commit of host-resident state resumes under a placement with NVMe, byte-identical"

# 7. export: a run with only commits exports its last commit (the same bytes as a full save of
#    that step exported); one whose commit.json names no model is refused; a changed manifest;
#    a changed saved weight
"$bin" train "${common[@]}" --commit-every 1 --stop-after 2 --run "$w/c" >/dev/null 2>&1 || fail "run c"
"$bin" train "${common[@]}" --commit-every 0 --save-every 2 --stop-after 2 --run "$w/c2" >/dev/null 2>&1 || fail "run c2"
"$bin" export --run "$w/c" --out "$w/x1" --fp32 >"$w/out" 2>"$w/err" || { cat "$w/err"; fail "export of a run with commits only"; }
grep -q "commit of step 2" "$w/out" || { cat "$w/out"; fail "the export does not name the commit"; }
"$bin" export --run "$w/c2" --out "$w/x1s" --fp32 >/dev/null 2>&1 || fail "export of c2"
cmp -s "$w/x1/model.safetensors" "$w/x1s/model.safetensors" || fail "the export of a commit differs from the export of the full save of the same step"
echo "ok export of a run with commits only: byte-identical to the export of a full save of its step"
cp -r "$w/c" "$w/c3"
python3 - "$w/c3/commit.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); del j["model"]; json.dump(j, open(sys.argv[1], "w"), indent=1)
PY
expect "export of a commit naming no model" 1 "records no model directory" export --run "$w/c3" --out "$w/x1b"
[ ! -e "$w/x1b" ] || fail "export wrote something"
cp -r "$w/b" "$w/b2"
sed -i 's/"data_index": \([0-9]*\)/"data_index": 1\1/' "$w/b2/manifest.json"
expect "export with a changed manifest" 1 "export: $w/b2/manifest.json: checksum mismatch" export --run "$w/b2" --out "$w/x2"
rm -rf "$w/b2"; cp -r "$w/b" "$w/b2"
python3 - "$w/b2/${final[0]}" <<'PY'
import sys
f = open(sys.argv[1], "r+b"); f.seek(-8, 2); b = f.read(1); f.seek(-8, 2); f.write(bytes([b[0] ^ 4]))
PY
expect "export with a changed weight" 1 "export: $w/b2/${final[0]}: checksum mismatch at offset 0" export --run "$w/b2" --out "$w/x3"
[ ! -e "$w/x2" ] && [ ! -e "$w/x3" ] || fail "a refused export wrote something"
"$bin" export --run "$w/b" --out "$w/x4" >/dev/null 2>"$w/err" || { cat "$w/err"; fail "export of the good run"; }

# 8. bad --commit-every settings
expect "--commit-every -3" 2 "--commit-every -3: give N >= 1" train "${common[@]}" --commit-every -3 --run "$w/d"
expect "--commit-every with --no-save" 2 "--no-save keeps nothing" train "${common[@]}" --commit-every 2 --no-save
expect "--commit-every with --checkpoint-only" 1 "--checkpoint-only keeps one NVMe slot" \
  train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --checkpoint-only --commit-every 1 --run "$w/d"
[ ! -e "$w/d" ] && [ -z "$(ls "$w/nv")" ] || fail "a refused start left $(ls "$w/d" "$w/nv" 2>&1)"
# 9. faults while a run commits: an I/O error on a write mid-run, a short read at resume: one
#    line, exit 1, the commit's NVMe file kept; --resume continues byte-identically
rm -rf "$w/f"
SPILLWAY_IO_FAULT="EIO:write:400" "$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --commit-every 1 --run "$w/f" \
  >"$w/out" 2>"$w/err"; rc=$?
[ $rc = 1 ] || { cat "$w/err"; fail "EIO on a write mid-run: exit $rc"; }
grep -v "^warning: io: fault injection active\|^train: loading" "$w/err" >"$w/err1"
[ "$(wc -l <"$w/err1")" = 1 ] && grep -q "executor: NVMe write .* failed: .*Input/output error" "$w/err1" \
  || { cat "$w/err"; fail "EIO on a write mid-run: the line"; }
c=$(sed -n 's/^ *"step": \([0-9]*\),.*/\1/p' "$w/f/commit.json" | head -1)
[ -n "$c" ] && [ -e "$w/nv/spillway.data" ] || fail "EIO mid-run: no commit, or its NVMe file was removed"
echo "ok EIO on a write mid-run after the commit of step $c: $(cut -c1-160 "$w/err1")"
SPILLWAY_IO_FAULT="short:read:3" expect "a short read at resume" 1 "slot [01], elements .*: io: read of $w/nv/spillway.data" \
  train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --commit-every 1 --run "$w/f" --resume
"$bin" train "${common[@]}" "${nvme[@]}" --nvme "$w/nv" --commit-every 1 --run "$w/f" --resume >/dev/null 2>"$w/err" \
  || { cat "$w/err"; fail "resume after the faults"; }
same "$w/f" "$w/nv"

# 10. plan states the disk for the 70B shape: the export is 2 bytes per parameter (counted here
#     from the shape) plus a header under 1 MiB
"$bin" plan --arch llama --dim 8192 --layers 80 --heads 64 --kv-heads 8 --ffn 28672 --vocab 128256 \
  --gpu-mem 24GB --cpu-mem 128GB --nvme "$w/nv:4TB" --batch-tokens 65536 --seq-len 4096 >"$w/plan" 2>&1 \
  || { cat "$w/plan"; fail "plan 70B"; }
for l in "--nvme        NVMe tier, two slots" "--run         commits: two state files of" \
         "--run         one full save" "export --out  one export"; do
  grep -q -- "$l" "$w/plan" || fail "plan does not state '$l'"
done
python3 - "$w/plan" <<'PY' || fail "the export figure"
import re, sys
d, L, h, kv, hd, f, V = 8192, 80, 64, 8, 128, 28672, 128256
n = 2 * V * d + L * (2 * d + d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * f) + d
t = open(sys.argv[1]).read()
m = re.search(r"one export \(bf16[^)]*\)\s+([0-9.]+) GiB", t)
got = float(m.group(1)) * 2**30
assert 2 * n <= got + 0.01 * 2**30 and got < 2 * n + 2**20 + 0.01 * 2**30, (got, 2 * n)
print("ok plan 70B: one export %.2f GiB for %d parameters" % (got / 2**30, n))
PY

# 11. disk: the commit state file is the size train and plan print; a run directory without room
#    for the commits and the end-of-run save is refused before the first step
"$bin" train "${loud[@]}" "${nvme[@]}" --nvme "$w/nv" --commit-every 1 --stop-after 1 --run "$w/e" >"$w/out" 2>"$w/err" \
  || { cat "$w/err"; fail "run e"; }
said=$(sed -n 's/.*commits: two state files of \([0-9.]* [KMG]*i*B\) .*/\1/p' "$w/out")
st=$(sed -n 's/.*"state": "\(commit-[01].state\)".*/\1/p' "$w/e/commit.json")
real=$(python3 -c "import os,sys; b=os.path.getsize(sys.argv[1]); print('%.2f KiB' % (b / 1024))" "$w/e/$st")
[ "$said" = "$real" ] || fail "train printed a commit state file of '$said', the file is $real"
echo "ok the printed commit state file size is the file's ($real)"
if mkdir -p "$w/tiny" && mount -t tmpfs -o size=256k tmpfs "$w/tiny" 2>/dev/null; then
  expect "a run directory too small" 1 "has .* free but the run needs .* there (commits .*, the full save at the end" \
    train "${common[@]}" --commit-every 1 --run "$w/tiny/r"
  [ -z "$(ls "$w/tiny")" ] || fail "the refused run left $(ls "$w/tiny")"
  umount "$w/tiny"
else
  echo "note: cannot mount a tmpfs here; the small run directory case is not run"
fi
echo "ok commits"
