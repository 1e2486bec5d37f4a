#!/usr/bin/env bash
# Faults during a training run (issue 15, Done when 2) on the CPU backend: EIO, ENOSPC, short
# and corrupted reads injected into the I/O engine (SPILLWAY_IO_FAULT, docs/io.md), bit flips in
# the NVMe scratch file while the run uses it, and bit flips in every kind of file of the run
# directory. Each gives exit 1 and one line naming the place (file and offset, or file and
# setting), commits nothing, and once the fault is removed `--resume` continues from the last
# save to final weights, m and v byte-identical to those of a run that never failed.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-faults.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 32 --layers 2 --heads 2 --ffn 64 --vocab 258 --seed 1 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
steps=4
common=(--model "$w/m" --data "$w/d.tok" --seq-len 32 --batch-tokens 64 --backend cpu --lr 3e-3
        --warmup 1 --weight-decay 0.01 --steps $steps --save-every 1 --quiet)
# P32, m and v of the layers, and P16, on NVMe: every step reads and writes the scratch file
nvme=(--gpu-mem 496KiB --cpu-mem 660KiB --threads 2 --chunk 2048 --nvme "$w/nv")
final=(weights-0000000$steps/model.safetensors optim-0000000$steps/m/model.safetensors
       optim-0000000$steps/v/model.safetensors)
mkdir -p "$w/nv"
"$bin" train "${common[@]}" "${nvme[@]}" --run "$w/ref" >/dev/null 2>"$w/err" || { cat "$w/err"; fail "the run without faults"; }

saved_step() { sed -n 's/^ *"step": \([0-9]*\),.*/\1/p' "$1/manifest.json" 2>/dev/null | head -1; }

# failed NAME RUN PATTERN: the run just ended (stderr in $w/err, exit in $rc) with exit 1 and
# one line (besides the fault injection's own warning) matching PATTERN; nothing half-written:
# no temporary copy in the run directory, the scratch file removed
failed() {
  local name=$1 r=$2 pat=$3
  [ "$rc" = 1 ] || { cat "$w/err"; fail "$name: exit $rc, expected 1"; }
  grep -v "^warning: io: fault injection active\|^train: loading" "$w/err" >"$w/err1"
  [ "$(wc -l <"$w/err1")" = 1 ] || { cat "$w/err"; fail "$name: expected one line on stderr"; }
  grep -q -- "$pat" "$w/err1" || { cat "$w/err"; fail "$name: the line does not say '$pat'"; }
  ls "$r" | grep -q "tmp" && fail "$name: a temporary copy stayed: $(ls "$r")"
  [ -z "$(ls "$w/nv")" ] || fail "$name: the --nvme directory still holds $(ls "$w/nv")"
  return 0
}

# resumed NAME RUN: --resume (no fault) finishes the run byte-identical to the reference
resumed() {
  local name=$1 r=$2 f res=(--resume)
  [ -e "$r/manifest.json" ] || res=()   # failed before its first save: the same command again
  "$bin" train "${common[@]}" "${nvme[@]}" --run "$r" "${res[@]}" >/dev/null 2>"$w/err" \
    || { cat "$w/err"; fail "$name: --resume after the fault was removed"; }
  for f in "${final[@]}"; do cmp -s "$w/ref/$f" "$r/$f" || fail "$name: after --resume, $f differs from the run without faults"; done
}

# 1. faults injected into the I/O engine. The NTH transfer of OP is drawn in the middle of the
#    run: the run's count of OP transfers is found first (the first NTH the run survives, by
#    bisection)
survives() {
  rm -rf "$w/probe"
  SPILLWAY_IO_FAULT="EIO:$1:$2" "$bin" train "${common[@]}" "${nvme[@]}" --run "$w/probe" >/dev/null 2>&1
}
total_of() {
  local op=$1 lo=1 hi=64
  while [ $hi -lt 1000000 ] && ! survives "$op" $hi; do lo=$hi; hi=$((hi * 2)); done
  while [ $((hi - lo)) -gt 1 ]; do
    local mid=$(((lo + hi) / 2))
    if survives "$op" $mid; then hi=$mid; else lo=$mid; fi
  done
  echo $hi
}
nr=$(total_of read); nw=$(total_of write)
[ "$nr" -lt 1000000 ] && [ "$nw" -lt 1000000 ] || fail "the run does not end under an injected fault"
i=0
for spec in "EIO:read:$((nr * 5 / 8)):Input/output error" "ENOSPC:write:$((nw * 5 / 8)):No space left on device" \
            "short:read:$((nr * 7 / 16)):short read at end of file" "corrupt:read:$((nr * 3 / 4)):checksum mismatch" \
            "EIO:write:$((nw * 3 / 4)):Input/output error"; do
  i=$((i + 1)); kind=${spec%%:*}; rest=${spec#*:}; op=${rest%%:*}; rest=${rest#*:}; nth=${rest%%:*}; cause=${rest#*:}
  r="$w/io$i"
  SPILLWAY_IO_FAULT="$kind:$op:$nth" "$bin" train "${common[@]}" "${nvme[@]}" --run "$r" >/dev/null 2>"$w/err"; rc=$?
  failed "$kind $op $nth" "$r" "$op of $w/nv/spillway.data at offset [0-9]* ([0-9]* bytes): $cause"
  s=$(saved_step "$r")
  [ -n "$s" ] && [ "$s" -lt $steps ] || fail "$kind $op $nth: the fault did not land between saves (saved step '${s}')"
  line=$(cat "$w/err1")
  resumed "$kind $op $nth" "$r"
  echo "ok SPILLWAY_IO_FAULT=$kind:$op:$nth: exit 1 after the save of step $s, '$line'; --resume byte-identical"
done
# half transfers are re-queued by the engine: the run does not notice
SPILLWAY_IO_FAULT="partial:any:$((nr / 4)):64" "$bin" train "${common[@]}" "${nvme[@]}" --run "$w/partial" >/dev/null 2>"$w/err" \
  || { cat "$w/err"; fail "64 partial transfers: the run failed"; }
for f in "${final[@]}"; do cmp -s "$w/ref/$f" "$w/partial/$f" || fail "64 partial transfers: $f differs"; done
echo "ok SPILLWAY_IO_FAULT=partial:any:$((nr / 4)):64: re-queued, byte-identical"

# 2. a bit flipped in each kind of file of the run directory (stopped after the save of step 2):
#    --resume refuses it naming the file (and the offset of the damaged piece), and continues
#    byte-identically once the bit is flipped back. Bits that keep the JSON valid are chosen
#    in the manifest: the step, the data position, a setting, a file's size, the checksum piece
"$bin" train "${common[@]}" "${nvme[@]}" --stop-after 2 --run "$w/s2" >/dev/null 2>"$w/err" || { cat "$w/err"; fail "the run stopped at step 2"; }
# flip FILE WHERE: flips bit 0 of the byte at offset WHERE (a number, negative from the end), or
# of the last byte of the first occurrence of the text WHERE; prints the offset
flip() {
  python3 - "$1" "$2" <<'PY'
import sys
p, where = sys.argv[1], sys.argv[2]
d = open(p, "rb").read()
try:
    o = int(where) % len(d)
except ValueError:
    o = d.index(where.encode()) + len(where) - 1
with open(p, "r+b") as f:
    f.seek(o); f.write(bytes([d[o] ^ 1]))
print(o)
PY
}
for spec in "weights-00000002/model.safetensors|-100|weights-00000002/model.safetensors: checksum mismatch at offset 0" \
            "weights-00000002/model.safetensors|20|weights-00000002/model.safetensors: checksum mismatch at offset 0" \
            "weights-00000002/config.json|\"hidden_size\": 32|weights-00000002/config.json: checksum mismatch at offset 0" \
            "optim-00000002/m/model.safetensors|-8|optim-00000002/m/model.safetensors: checksum mismatch at offset 0" \
            "optim-00000002/v/model.safetensors|1000|optim-00000002/v/model.safetensors: checksum mismatch at offset 0" \
            "manifest.json|\"step\": 2|manifest.json: checksum mismatch" \
            "manifest.json|\"data_index\": 4|manifest.json: checksum mismatch" \
            "manifest.json|\"lr\": \"0.003|manifest.json: checksum mismatch" \
            "manifest.json|\"size\": 150720|manifest.json: checksum mismatch" \
            "manifest.json|\"checksum_piece\": 16777216|manifest.json: checksum mismatch" \
            "manifest.json|\"versio|manifest.json: checksum mismatch" \
            "manifest.json|\"manifest_xxh|manifest.json lacks its checksum (manifest_xxh3) or its version" \
            "manifest.json|{|manifest.json: .*(line 1); the run directory is damaged"; do
  f=${spec%%|*}; rest=${spec#*|}; where=${rest%%|*}; pat=${rest#*|}
  where=$(printf '%b' "$where")
  r="$w/rd"; rm -rf "$r"; cp -r "$w/s2" "$r"
  off=$(flip "$r/$f" "$where") || fail "flipping a bit of $f"
  "$bin" train "${common[@]}" "${nvme[@]}" --run "$r" --resume >/dev/null 2>"$w/err"; rc=$?
  failed "bit flip in $f at $off" "$r" "$pat"
  line=$(cat "$w/err1")
  flip "$r/$f" "$off" >/dev/null
  resumed "bit flip in $f at $off" "$r"
  echo "ok bit flip in $f at offset $off: exit 1, '$line'; flipped back, --resume byte-identical"
done

# ... and in metrics.jsonl, the run's log (not its state): the record whose step number changed
#     is dropped with one warning naming the line, and the run goes on to the same bits
r="$w/rd"; rm -rf "$r"; cp -r "$w/s2" "$r"
flip "$r/metrics.jsonl" '{"step": 2' >/dev/null
"$bin" train "${common[@]}" "${nvme[@]}" --run "$r" --resume >/dev/null 2>"$w/err" || { cat "$w/err"; fail "a bit flipped in metrics.jsonl: --resume failed"; }
[ "$(wc -l <"$w/err")" = 1 ] && grep -q "^warning: .*$r/metrics.jsonl: line 2 is not the record it should be" "$w/err" \
  || { cat "$w/err"; fail "a bit flipped in metrics.jsonl: no warning naming line 2"; }
for f in "${final[@]}"; do cmp -s "$w/ref/$f" "$r/$f" || fail "a bit flipped in metrics.jsonl: $f differs"; done
[ "$(sed -n 's/^{"step": \([0-9]*\),.*/\1/p' "$r/metrics.jsonl" | tr '\n' ' ')" = "1 3 4 " ] || fail "metrics.jsonl after the damaged line: $(cut -c1-12 "$r/metrics.jsonl")"
echo "ok bit flip in metrics.jsonl: exit 0, '$(cat "$w/err")'; byte-identical"

# 3. bits flipped in the NVMe scratch file while the run uses it: the run is stopped (SIGSTOP)
#    every few ms from its first save on, one bit of a random byte of spillway.data flipped, and
#    continued (SIGCONT), until the run ends. The first flipped piece that is read back stops the run with the file
#    and the offset of that piece (which must hold a flipped byte); the scratch file goes away
#    with the run, so --resume starts from the last save and needs nothing repaired
for trial in $(seq 10); do
  r="$w/nvflip$trial"
  python3 - "$w/nv/spillway.data" "$w/flips" "$r/manifest.json" "$bin" train "${common[@]}" "${nvme[@]}" --run "$r" 2>"$w/err" <<'PY'
import os, random, signal, subprocess, sys, time
path, log, man = sys.argv[1], open(sys.argv[2], "w"), sys.argv[3]
p = subprocess.Popen(sys.argv[4:], stdout=subprocess.DEVNULL)
while p.poll() is None:
    time.sleep(0.002)
    if not os.path.exists(man):   # flips start after the first save
        continue
    p.send_signal(signal.SIGSTOP)
    try:
        with open(path, "r+b") as f:
            size = f.seek(0, 2)
            if size:
                o = random.randrange(size)
                f.seek(o); b = f.read(1)[0]; f.seek(o); f.write(bytes([b ^ (1 << random.randrange(8))]))
                f.flush()
                log.write("%d\n" % o); log.flush()
    except OSError:
        pass   # not created yet, or already removed
    p.send_signal(signal.SIGCONT)
sys.exit(p.returncode)
PY
  rc=$?
  [ $rc = 0 ] && continue   # every flip was overwritten before it was read: try again
  failed "bits flipped in the scratch file" "$r" "NVMe read[A-Za-z0-9 ()]* failed: io: read of $w/nv/spillway.data at offset [0-9]* ([0-9]* bytes): checksum mismatch (stored [0-9a-f]*, read [0-9a-f]*): the data on disk is corrupt"
  line=$(cat "$w/err1")
  lo=$(sed -n 's/.* at offset \([0-9]*\) (\([0-9]*\) bytes).*/\1/p' "$w/err1"); len=$(sed -n 's/.* at offset \([0-9]*\) (\([0-9]*\) bytes).*/\2/p' "$w/err1")
  awk -v lo="$lo" -v hi="$((lo + len))" '$1 >= lo && $1 < hi { f = 1 } END { exit !f }' "$w/flips" \
    || fail "bits flipped in the scratch file: the piece named ($lo + $len) holds none of the flipped bytes ($(tr '\n' ' ' <"$w/flips"))"
  s=$(saved_step "$r")
  [ -n "$s" ] && [ "$s" -lt $steps ] || fail "bits flipped in the scratch file: the run stopped without a save before it (saved step '${s}')"
  resumed "bits flipped in the scratch file" "$r"
  echo "ok $(wc -l <"$w/flips") bit(s) flipped in spillway.data during the run: exit 1 after the save of step $s, '$line'; --resume byte-identical"
  break
done
[ $rc != 0 ] || fail "10 runs survived bits flipped in their scratch file"
echo "ok"
