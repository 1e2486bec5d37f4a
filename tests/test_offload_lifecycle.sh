#!/usr/bin/env bash
# A run's lifecycle as a new user meets it (issue 15's findings, one case each): every wrong
# start is refused with one line that names the cause and the fix and a non-zero exit, before
# anything is written; signals save and say how to go on; two runs never share a directory;
# the NVMe scratch file and the leftovers of an interrupted save never block the next start;
# saved files are checksummed; non-finite values and out-of-vocabulary ids stop a run up front.
# On the CPU backend the driver's own lines never say "GPU", and give no bound/measured figure
# unless rates of this machine were given.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-lifecycle.XXXXXX)
bg=()
cleanup() { for p in "${bg[@]}"; do kill -9 "$p" 2>/dev/null; done; umount "$w/full" "$w/small" 2>/dev/null; rm -rf "$w"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 64 --layers 2 --heads 4 --ffn 96 --vocab 258 --seed 5 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
head -c 20000 tests/data/corpus.txt >"$w/c2.txt"; "$bin" data --text "$w/c2.txt" --out "$w/d2.tok" >/dev/null || fail data2
mkdir -p "$w/nv"
common=(--model "$w/m" --data "$w/d.tok" --lr 2e-3 --seq-len 32 --batch-tokens 64 --backend cpu --quiet)
off=(--gpu-mem 864KiB --cpu-mem 1284KiB --threads 2 --chunk 4096)

# expect NAME RC PATTERN args...: exit RC, one line on stderr containing PATTERN
expect() {
  local name=$1 want=$2 pat=$3; shift 3
  "$bin" "$@" >"$w/out" 2>"$w/err"; local rc=$?
  [ "$rc" = "$want" ] || { cat "$w/err"; fail "$name: exit $rc, expected $want"; }
  # (progress lines of a load that started are not error lines)
  grep -v "^train: loading" "$w/err" >"$w/err1"; mv "$w/err1" "$w/err"
  [ "$(wc -l <"$w/err")" = 1 ] || { cat "$w/err"; fail "$name: expected one line on stderr"; }
  grep -q -- "$pat" "$w/err" || { cat "$w/err"; fail "$name: message does not say '$pat'"; }
  echo "ok $name: $(cut -c1-220 "$w/err")"
}

# 1. --nvme that does not exist, model fits without NVMe: was SIGFPE (exit 136, no message)
expect "missing --nvme dir" 1 "does not exist; create it" train "${common[@]}" --steps 1 --no-save --nvme "$w/nope"
[ ! -e "$w/nope" ] || fail "the missing --nvme directory was created"
# ... and one with no free space (a full tmpfs), same model
if mkdir -p "$w/full" && mount -t tmpfs -o size=64k tmpfs "$w/full" 2>/dev/null; then
  dd if=/dev/zero of="$w/full/filler" bs=4k count=64 status=none 2>/dev/null
  expect "full --nvme dir" 1 "has no free space" train "${common[@]}" --steps 1 --no-save --nvme "$w/full"
  umount "$w/full"
else
  echo "note: cannot mount a tmpfs here; the full --nvme case is not run"
fi

# 2. the NVMe scratch file: removed at the end; a killed run's file is reused by its --resume;
#    another run's file is named; --keep-nvme keeps it and says so
"$bin" train "${common[@]}" "${off[@]}" --nvme "$w/nv" --steps 2 --run "$w/r2" >"$w/out" 2>"$w/err" || { cat "$w/err"; fail "r2"; }
[ -z "$(ls "$w/nv")" ] || fail "the scratch file stayed after the run: $(ls "$w/nv")"
#    (on a small tmpfs when one can be mounted: the killed run's file takes most of it, so the
#    resume fits only because its own file counts as free space)
nvk="$w/nv"
if mkdir -p "$w/small" && mount -t tmpfs -o size=3m tmpfs "$w/small" 2>/dev/null; then nvk="$w/small"; fi
"$bin" train "${common[@]}" "${off[@]}" --nvme "$nvk" --steps 400 --save-every 1 --run "$w/r2k" >"$w/out" 2>&1 &
pid=$!; bg+=($pid)
for _ in $(seq 200); do [ -s "$w/r2k/manifest.json" ] && break; sleep 0.05; done
kill -9 $pid; wait $pid 2>/dev/null
[ -e "$nvk/spillway.data" ] || fail "no scratch file to reuse after kill -9"
k=$(sed -n 's/.*"step": \([0-9]*\),.*/\1/p' "$w/r2k/manifest.json" | head -1)
"$bin" train "${common[@]}" "${off[@]}" --nvme "$nvk" --steps 400 --stop-after $((k + 1)) --run "$w/r2k" --resume \
  >"$w/out" 2>"$w/err"; rc=$?
[ $rc = 0 ] || { cat "$w/err"; fail "the same command plus --resume after kill -9: exit $rc"; }
grep -q "stopped by --stop-after after step $((k + 1))" "$w/out" || { cat "$w/out"; fail "the resumed run did no step"; }
# the stop committed in place: the commit's NVMe state stays (and is said); the run's end removes it
grep -q "committed in $w/r2k (its NVMe state stays in the --nvme directory)" "$w/out" \
  || { cat "$w/out"; fail "the stop did not commit or did not say the NVMe file stays"; }
[ -e "$nvk/spillway.data" ] || fail "the stop's commit lost its NVMe file"
"$bin" train "${common[@]}" "${off[@]}" --nvme "$nvk" --steps 400 --stop-after $((k + 3)) --commit-every 0 --run "$w/r2k" --resume \
  >"$w/out" 2>"$w/err" || { cat "$w/err"; fail "the resume from the commit"; }
grep -q "stopped by --stop-after after step $((k + 3)), saved in" "$w/out" || { cat "$w/out"; fail "no full save at the stop"; }
[ -z "$(ls "$nvk")" ] || fail "the scratch file stayed after the full save that supersedes the commit: $(ls "$nvk")"
echo "ok --resume reuses the killed run's scratch file (step $k -> $((k + 1)), on $( [ "$nvk" = "$w/nv" ] && echo "the test disk" || echo "a 3 MiB tmpfs"))"
[ "$nvk" = "$w/nv" ] || umount "$w/small"
"$bin" train "${common[@]}" "${off[@]}" --nvme "$w/nv" --steps 2 --run "$w/r2keep" --keep-nvme >"$w/out" 2>"$w/err" \
  || { cat "$w/err"; fail "--keep-nvme"; }
[ -e "$w/nv/spillway.data" ] && grep -q -- "--keep-nvme: the NVMe scratch file stays in $w/nv/spillway.data" "$w/out" \
  || fail "--keep-nvme did not keep the file or did not say so"
expect "another run's scratch file" 1 "holds $w/nv/spillway.data left by run $w/r2keep" \
  train "${common[@]}" "${off[@]}" --nvme "$w/nv" --steps 2 --run "$w/r2other"
[ ! -e "$w/r2other" ] || fail "a refused run left its run directory"
rm -f "$w/nv/spillway.data" "$w/nv/spillway.lock"

# 3. forgetting --resume in a directory with a saved run: refused, the run untouched
cp -r "$w/r2" "$w/r2.copy"
expect "manifest without --resume" 1 "add --resume to continue it, or pick another directory" \
  train "${common[@]}" --steps 4 --run "$w/r2"
diff -r -x lock "$w/r2" "$w/r2.copy" >/dev/null || fail "the refused start changed the run directory"

# 4. --run is required (or --no-save); --save-every needs a run directory
expect "no --run" 2 "--run DIR is required" train "${common[@]}" --steps 1
expect "--save-every with --no-save" 2 "--no-save keeps nothing" train "${common[@]}" --steps 1 --no-save --save-every 1
"$bin" train "${common[@]}" --steps 1 --no-save >"$w/out" 2>"$w/err" && grep -q "no-save: nothing was kept" "$w/out" \
  || { cat "$w/err"; fail "--no-save run"; }
echo "ok --no-save trains and says nothing was kept"

# 5. SIGTERM / SIGINT: the step in flight finishes, the state is saved, the line says how to resume;
#    a second signal aborts at once
"$bin" train "${common[@]}" --steps 100000 --save-every 0 --run "$w/r5" >"$w/out5" 2>"$w/err5" &
pid=$!; bg+=($pid)
for _ in $(seq 400); do [ -s "$w/r5/metrics.jsonl" ] && break; sleep 0.05; done
kill -TERM $pid; wait $pid; rc=$?
[ $rc = 143 ] || { cat "$w/err5"; fail "SIGTERM: exit $rc, expected 143"; }
grep -q "stopped by SIGTERM after step [0-9]*, committed in $w/r5; resume with: spillway train .* --resume" "$w/out5" \
  || { cat "$w/out5" "$w/err5"; fail "no line saying how to resume"; }
n=$(sed -n 's/.*stopped by SIGTERM after step \([0-9]*\),.*/\1/p' "$w/out5")
grep -q "\"step\": $n," "$w/r5/commit.json" || fail "the commit is not at step $n"
echo "ok SIGTERM saved step $n: $(grep stopped "$w/out5" | cut -c1-120)"
# (a model whose steps take long enough for the second signal to land inside one)
"$bin" init --arch llama --dim 256 --layers 4 --heads 4 --ffn 768 --vocab 258 --out "$w/mbig" >/dev/null || fail "init big"
"$bin" train --model "$w/mbig" --data "$w/d.tok" --seq-len 128 --batch-tokens 1024 --backend cpu --quiet \
  --steps 100000 --run "$w/r5b" >"$w/out" 2>"$w/err" &
pid=$!; bg+=($pid)
for _ in $(seq 400); do [ -s "$w/r5b/metrics.jsonl" ] && break; sleep 0.05; done
kill -INT $pid
for _ in $(seq 100); do grep -q "SIGINT: finishing" "$w/err" && break; sleep 0.01; done
kill -INT $pid; wait $pid; rc=$?
[ $rc = 130 ] || { cat "$w/err"; fail "two SIGINTs: exit $rc, expected 130"; }
grep -q "second signal: aborting now" "$w/err" || { cat "$w/err"; fail "two SIGINTs: no abort line"; }
grep -q "stopped by" "$w/out" && fail "two SIGINTs: the run still saved"
echo "ok two SIGINTs abort at once"

# 6. --resume refuses a change to any setting that decides the result, naming it
"$bin" train "${common[@]}" --steps 4 --stop-after 2 --commit-every 0 --run "$w/r6" >/dev/null 2>"$w/err" || { cat "$w/err"; fail r6; }
expect "--resume with another --lr" 1 "--lr 0.001 differs from the run's 0.002" \
  train "${common[@]}" --lr 1e-3 --steps 4 --run "$w/r6" --resume
expect "--resume with another --data" 1 "is not the token file the run started with" \
  train "${common[@]/d.tok/d2.tok}" --steps 4 --run "$w/r6" --resume
expect "--resume with another --seq-len" 1 "--seq-len 16 differs" \
  train "${common[@]}" --seq-len 16 --steps 4 --run "$w/r6" --resume
expect "--resume with another --batch-tokens" 1 "--batch-tokens 128 differs" \
  train "${common[@]}" --batch-tokens 128 --steps 4 --run "$w/r6" --resume
expect "--resume with another --schedule" 1 "--schedule constant differs" \
  train "${common[@]}" --schedule constant --steps 4 --run "$w/r6" --resume
expect "--resume with another --seed" 1 "--seed 7 differs" \
  train "${common[@]}" --seed 7 --steps 4 --run "$w/r6" --resume
expect "--resume with another --steps (cosine)" 1 "--steps 5 differs" \
  train "${common[@]}" --steps 5 --run "$w/r6" --resume
cp -r "$w/r6" "$w/r8"; cp -r "$w/r6" "$w/r9"; cp "$w/r6/optim-00000002/m/model.safetensors" "$w/m2.good"
"$bin" train "${common[@]}" "${off[@]}" --nvme "$w/nv" --threads 1 --steps 4 --run "$w/r6" --resume >/dev/null 2>"$w/err" \
  || { cat "$w/err"; fail "--resume with other budgets and threads"; }
echo "ok --resume with other budgets, placement and threads"

# 7. token ids >= the model's vocabulary in a file that does not state its vocabulary
python3 - "$w/big.tok" <<'PY' || fail "writing big.tok"
import struct, sys
toks = [i % 1000 for i in range(5000)]
hdr = b"SWTOKENS" + struct.pack("<IIQII Q QQQ", 1, 2, len(toks), 0, 0, len(toks), 0, 0, 0)
assert len(hdr) == 64
open(sys.argv[1], "wb").write(hdr + struct.pack("<%dH" % len(toks), *toks))
PY
expect "token ids above the vocabulary" 1 "holds token id 999 .* but the model's vocab_size is 258" \
  train "${common[@]/d.tok/big.tok}" --steps 1 --no-save

# 8. NaN in the input weights: one line naming the tensor; a changed byte in a saved file:
#    one line naming the file and the offset
cp -r "$w/m" "$w/mnan"
python3 - "$w/mnan/model.safetensors" <<'PY' || fail "patching NaN"
import json, struct, sys
f = open(sys.argv[1], "r+b"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
off = h["model.layers.1.mlp.up_proj.weight"]["data_offsets"][0]
f.seek(8 + n + off + 4 * 17); f.write(struct.pack("<I", 0x7fc00000))
PY
expect "NaN in the input weights" 1 "model.layers.1.mlp.up_proj.weight holds a non-finite value (nan) at element 17" \
  train "${common[@]/$w\/m/$w/mnan}" --steps 1 --no-save
python3 - "$w/r8/optim-00000002/m/model.safetensors" <<'PY' || fail "patching m"
import struct, sys
f = open(sys.argv[1], "r+b"); n = struct.unpack("<Q", f.read(8))[0]
f.seek(8 + n + 40); f.write(struct.pack("<I", 0x7fc00000))
PY
expect "NaN written into saved m" 1 "optim-00000002/m/model.safetensors: checksum mismatch at offset 0" \
  train "${common[@]}" --steps 4 --run "$w/r8" --resume
# the damaged file put back, the run continues to the same bits as the run that was never damaged
cp "$w/m2.good" "$w/r8/optim-00000002/m/model.safetensors"
"$bin" train "${common[@]}" --steps 4 --run "$w/r8" --resume >/dev/null 2>"$w/err" || { cat "$w/err"; fail "resume after repair"; }
for f in weights-00000004/model.safetensors optim-00000004/m/model.safetensors optim-00000004/v/model.safetensors; do
  cmp -s "$w/r6/$f" "$w/r8/$f" || fail "after the repair, $f differs"
done
echo "ok after the repair --resume continues bit-identically"

# 9. a kill during a save leaves a temporary copy and an uncommitted directory, a kill while the
#    report is rewritten its temporary files (core/report.c): removed on start
mkdir -p "$w/r9/weights-00000005.tmp-AbC123" "$w/r9/weights-00000005" "$w/r9/optim-00000005.tmp-XyZ789/m"
echo x >"$w/r9/weights-00000005.tmp-AbC123/model.safetensors"
echo x >"$w/r9/report.html.tmp.4242"; echo x >"$w/r9/run.json.tmp.4242"
"$bin" train "${common[@]}" --steps 4 --run "$w/r9" --resume >"$w/out" 2>"$w/err"
grep -q "removed 5 leftover(s) of an interrupted save" "$w/out" || { cat "$w/err" "$w/out"; fail "leftovers not reported"; }
ls "$w/r9" | grep -q "tmp\|-00000005" && fail "leftovers remain: $(ls "$w/r9")"
echo "ok leftovers of an interrupted save removed: $(grep leftover "$w/out")"

# 10. two runs on one --nvme directory, or one run directory: the second is refused naming the first
"$bin" train "${common[@]}" "${off[@]}" --nvme "$w/nv" --steps 100000 --run "$w/r10" >/dev/null 2>&1 &
pid=$!; bg+=($pid)
for _ in $(seq 400); do [ -s "$w/r10/metrics.jsonl" ] && break; sleep 0.05; done
expect "a second run on one --nvme" 1 "--nvme $w/nv is in use by another spillway process (run $w/r10)" \
  train "${common[@]}" "${off[@]}" --nvme "$w/nv" --steps 2 --run "$w/r10b"
expect "a second run on one --run" 1 "--run $w/r10 is in use by another spillway process (pid $pid" \
  train "${common[@]}" --steps 100000 --run "$w/r10" --resume
kill -9 $pid; wait $pid 2>/dev/null
rm -f "$w/nv/spillway.data" "$w/nv/spillway.lock"

# 11. init checks free space first; thread counts capped with a warning; wrong-way messages
expect "init without space" 1 "the model needs .* free; free space" \
  init --arch llama --dim 16384 --layers 2000 --heads 128 --ffn 65536 --vocab 258 --out "$w/huge"
[ ! -e "$w/huge" ] && [ -z "$(ls -d "$w"/huge.tmp* 2>/dev/null)" ] || fail "init wrote something"
"$bin" init --arch llama --dim 32 --layers 1 --heads 2 --ffn 64 --vocab 258 --threads 20000 --out "$w/tiny" \
  >/dev/null 2>"$w/err" || { cat "$w/err"; fail "init --threads 20000"; }
grep -q "threads 20000 is more than the $(nproc) cores here; using $(nproc)" "$w/err" || { cat "$w/err"; fail "no thread cap warning"; }
echo "ok init --threads 20000: $(cat "$w/err")"
"$bin" train "${common[@]}" --steps 1 --no-save --threads 20000 >/dev/null 2>"$w/err" || { cat "$w/err"; fail "train --threads 20000"; }
grep -q "threads 20000 is more than the $(nproc) cores here" "$w/err" || { cat "$w/err"; fail "no thread cap warning"; }
expect "--threads -3" 2 "--threads -3 is negative" train "${common[@]}" --steps 1 --no-save --threads -3
expect "micro-batch too large" 2 "--micro-batch-tokens 33554432 is above" \
  train "${common[@]}" --steps 1 --no-save --micro-batch-tokens 33554432 --batch-tokens 33554432
grep -q -- "--micro-batch " "$w/err" && fail "train suggested plan's --micro-batch"

# 12. the CPU backend's lines: the compute device, no bound/measured from a GPU's default rates
loud=(); for a in "${common[@]}"; do [ "$a" = --quiet ] || loud+=("$a"); done   # with the placement table
"$bin" train "${loud[@]}" "${off[@]}" --nvme "$w/nv" --steps 2 --no-save >"$w/out" 2>&1 || fail "cpu run"
grep -n "GPU" "$w/out" && fail "the CPU backend's output says GPU"
grep -q "bound/measured [0-9]" "$w/out" && fail "a bound/measured figure without measured rates"
grep -q "no bound/measured figure on the CPU backend" "$w/out" || fail "the omission is not said"
"$bin" train "${common[@]}" --steps 1 --no-save --gemm-tflops 0.05 --adam-gparams 0.5 >"$w/out" 2>&1 || fail "cpu run with rates"
grep -q "bound/measured [0-9]" "$w/out" || fail "no bound/measured with measured rates"
echo "ok CPU backend: device wording, bound only from given rates"

# 13. a non-finite value never reaches a save (step 1 has lr 0 in the warm-up, step 2 an lr
#     beyond float range): the run stops naming where it appeared, and the previous save stays
#     the one the manifest names
"$bin" train "${common[@]}" --lr 1e39 --warmup 2 --steps 3 --save-every 1 --run "$w/r13" >/dev/null 2>"$w/err"; rc=$?
[ $rc = 1 ] || { cat "$w/err"; fail "non-finite weights: exit $rc, expected 1"; }
grep -q "after step 2: weights of .* holds a non-finite value .*; nothing saved, the save of step 1 stays" "$w/err" \
  || { cat "$w/err"; fail "non-finite weights: message"; }
grep -q '"step": 1,' "$w/r13/manifest.json" && [ ! -e "$w/r13/weights-00000002" ] || fail "a non-finite save was committed"
echo "ok non-finite weights never saved: $(cat "$w/err")"
echo "ok"
