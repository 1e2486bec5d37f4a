#!/usr/bin/env bash
# spillway bench-io --quick runs in seconds and recommends train flags; bad input is one line
# and exit 2; a missing path or an injected I/O error is one line naming it and exit 1; the
# test files are removed afterwards.
set -u
bin=${SW_BIN:-build/spillway}
fail() { echo "FAIL: $*"; exit 1; }
d=$(mktemp -d /tmp/sw-io-bench.XXXXXX); trap 'rm -rf "$d"' EXIT
mkdir -p "$d/a" "$d/b"

out=$("$bin" bench-io --nvme "$d/a" --quick 2>&1) || fail "bench-io --quick failed: $out"
echo "$out"
echo "$out" | grep -Eq '^ +1 +1 +1MiB +16 +[0-9.]+ +[0-9.]+ +[0-9.]+$' || fail "no result row"
echo "$out" | grep -q 'recommended (pass to spillway train): --io-bs 1MiB --io-qd 16 --io-threads 1 --io-stripe 1MiB' \
  || fail "no recommendation line"
[ -z "$(ls "$d/a")" ] || fail "test file left behind: $(ls "$d/a")"

# Two paths: the scaling table appears; --tsv rows parse.
out=$("$bin" bench-io --nvme "$d/a,$d/b" --quick --tsv "$d/r.tsv" 2>&1) || fail "two paths: $out"
echo "$out" | grep -q 'path scaling' || fail "no path scaling table"
[ "$(wc -l < "$d/r.tsv")" = 3 ] || fail "tsv should have 3 rows: $(cat "$d/r.tsv")"
awk -F'\t' 'NF != 7 || $6 <= 0 { exit 1 }' "$d/r.tsv" || fail "bad tsv: $(cat "$d/r.tsv")"

# --sustain 2: the best mix again for at least 2 s; the rate is the passes' bytes over that time
# (8 chunks of 8 MiB: each pass reads 4 and writes 4, 64 MiB).
t0=$(date +%s.%N)
out=$("$bin" bench-io --nvme "$d/a" --quick --sustain 2 2>&1) || fail "--sustain 2: $out"
t1=$(date +%s.%N)
line=$(echo "$out" | grep '^sustained mix [0-9]') || fail "no sustained mix line: $out"
echo "$line"
python3 - "$line" "$t0" "$t1" <<'PY' || exit 1
import re, sys
m = re.match(r"sustained mix ([\d.]+) GB/s over ([\d.]+) s, (\d+) passes \(first ([\d.]+), last ([\d.]+) GB/s; "
             r"threads 1, bs 1MiB, qd 16\)$", sys.argv[1])
if not m:
    sys.exit("FAIL: unreadable: " + sys.argv[1])
rate, secs, passes = float(m.group(1)), float(m.group(2)), int(m.group(3))
if secs < 2 or float(sys.argv[3]) - float(sys.argv[2]) < 2:
    sys.exit("FAIL: --sustain 2 ran %.1f s (the command %.1f s)" % (secs, float(sys.argv[3]) - float(sys.argv[2])))
mb = rate * secs * 1e3 / passes    # MB a pass
if abs(mb - 64 * 2**20 / 1e6) > 0.03 * 64 * 2**20 / 1e6:
    sys.exit("FAIL: %.3f GB/s x %.1f s / %d passes = %.1f MB a pass, not 64 MiB" % (rate, secs, passes, mb))
print("  ok: %d passes of 64 MiB in %.1f s" % (passes, secs))
PY
# and what the drives had in flight meanwhile: the four states' seconds add up to the mix's time,
# and their bytes (GB/s x seconds) to its passes' 64 MiB each
infl=$(echo "$out" | grep '^sustained mix in flight') || fail "no 'sustained mix in flight' line: $out"
echo "$infl"
python3 - "$line" "$infl" <<'PY' || exit 1
import re, sys
secs, passes = re.search(r"over ([\d.]+) s, (\d+) passes", sys.argv[1]).groups()
secs, passes = float(secs), int(passes)
m = re.match(r"sustained mix in flight: both ([\d.]+) s \(([\d.]+) GB/s\), reads alone ([\d.]+) s \(([\d.]+) GB/s\), "
             r"writes alone ([\d.]+) s \(([\d.]+) GB/s\), nothing ([\d.]+) s$", sys.argv[2])
if not m:
    sys.exit("FAIL: unreadable: " + sys.argv[2])
v = [float(x) for x in m.groups()]
t = v[0] + v[2] + v[4] + v[6]
if abs(t - secs) > 0.05 + 0.01 * secs:
    sys.exit("FAIL: the states add up to %.2f s of the mix's %.1f s" % (t, secs))
gb = v[0] * v[1] + v[2] * v[3] + v[4] * v[5]
want = passes * 64 * 2**20 / 1e9
if abs(gb - want) > 0.05 * want:
    sys.exit("FAIL: the states moved %.3f GB, the passes %.3f GB" % (gb, want))
print("  ok: the states add up to %.2f s and %.3f GB" % (t, gb))
PY
[ -z "$(ls "$d/a")" ] || fail "test file left behind after --sustain"

usage() {  # args... : expects exit 2 and one line
  out=$("$bin" bench-io "$@" 2>&1); rc=$?
  [ $rc = 2 ] || fail "'$*' should exit 2, got $rc: $out"
  [ "$(echo "$out" | wc -l)" = 1 ] || fail "'$*': expected one line, got: $out"
  echo "ok usage: $out"
}
usage --quick
usage --nvme "$d/a" --bs 3000
usage --nvme "$d/a" --bs 1MiB,lots
usage --nvme "$d/a" --qd 0
usage --nvme "$d/a" --threads 1,x
usage --nvme "$d/a" --size 1MiB --chunk 1MiB
usage --nvme "$d/a:big" --quick
usage --nvme "$d/a,$d/a" --quick
usage --nvme "$d/a" --quick --sustain -1
usage --nvme "$d/a" --quick --sustain soon

out=$("$bin" bench-io --nvme "$d/missing" --quick 2>&1); rc=$?
[ $rc = 1 ] || fail "missing path should exit 1, got $rc"
echo "$out" | grep -q "$d/missing: No such file or directory" || fail "missing path not named: $out"

out=$(SPILLWAY_IO_FAULT=EIO:read:3 "$bin" bench-io --nvme "$d/a" --quick 2>&1); rc=$?
[ $rc = 1 ] || fail "injected EIO should exit 1, got $rc: $out"
echo "$out" | grep -q "spillway: bench-io: io: read of $d/a/spillway-bench.data at offset [0-9]* ([0-9]* bytes): Input/output error" \
  || fail "EIO message does not name file and offset: $out"
out=$(SPILLWAY_IO_FAULT=corrupt:read:2 "$bin" bench-io --nvme "$d/a" --quick 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "checksum mismatch" || fail "corruption not caught: $out"
[ -z "$(ls "$d/a")" ] || fail "test file left behind after failure"
exit 0
