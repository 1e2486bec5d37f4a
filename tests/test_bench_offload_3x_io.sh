#!/usr/bin/env bash
# bench/offload_3x.sh with IO=1 (issue 17: the 3x run read against the disk's rates from both
# sides of it, in one command), on a small NVMe-bound run on the CPU backend:
#  * train got the rates bench-io measured before the run: its planner's NVMe term is the step's
#    bytes at those read and write rates, and its expected step names the sustained mixed rate
#    (BIO_SUSTAIN);
#  * the bound printed at the rates measured after the run is the step's bytes at those rates
#    (or a longer resource of the planner's), and each step's ratio is that bound over the step's
#    time (its tokens over its tokens/s), computed here from the logs.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-3x-io.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
SW_BIN=$bin IO=1 BIO_SIZE=64MiB BIO_CHUNK=16MiB BIO_SUSTAIN=1 OUT="$w/out" \
  MODEL="--dim 128 --layers 4 --heads 4 --kv-heads 2 --ffn 256 --vocab 512" SHAPE="--seq-len 64 --batch-tokens 256" \
  BUDGET="--gpu-mem 4MiB --cpu-mem 8MiB" bash bench/offload_3x.sh "$w" 3 --clip 0 >"$w/out.txt" 2>&1 \
  || { tail -5 "$w/out.txt"; fail "offload_3x.sh with IO=1"; }
for f in io_before.log io_after.log train.log; do [ -s "$w/out/$f" ] || fail "no $f in OUT"; done
python3 - "$w/out" "$w/out.txt" <<'PY' || exit 1
import re, sys
d, printed = sys.argv[1], open(sys.argv[2]).read()
log = open(d + "/train.log").read()
def rates(name):
    t = open("%s/io_%s.log" % (d, name)).read()
    r = {k: float(re.search(r"^best %s\s+([\d.]+) GB/s" % k, t, re.M).group(1)) for k in ("read", "write")}
    # BIO_SUSTAIN: the mix is the sustained one
    r["mix"] = float(re.search(r"^sustained mix ([\d.]+) GB/s over [\d.]+ s", t, re.M).group(1))
    return r
before, after = rates("before"), rates("after")
unit = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
m = re.search(r"NVMe\s+([\d.e+-]+) s\s+\(read ([\d.]+) (\w+) at [\d.]+ GB/s: ([\d.e+-]+) s \+ "
              r"write ([\d.]+) (\w+) at [\d.]+ GB/s: ([\d.e+-]+) s\)", log)
if not m:
    sys.exit("FAIL: no NVMe term in the train log's step-time table")
rb, wb = float(m.group(2)) * unit[m.group(3)], float(m.group(5)) * unit[m.group(6)]
close = lambda a, b, rel: abs(a - b) <= rel * b + 1e-6
# the bytes are printed to 3 digits: 0.5 % covers their rounding
if not (close(float(m.group(4)), rb / 1e9 / before["read"], 0.005) and close(float(m.group(7)), wb / 1e9 / before["write"], 0.005)):
    sys.exit("FAIL: train's NVMe term is not the bytes at the rates measured before: %s (read %.3f, write %.3f GB/s)"
             % (m.group(0), before["read"], before["write"]))
x = re.search(r"^expected step: .* at the measured mixed rate, ([\d.]+) GB/s", log, re.M)
if not x or not close(float(x.group(1)), before["mix"], 0.01):
    sys.exit("FAIL: train's expected step is not at the mixed rate measured before (%.3f GB/s): %s"
             % (before["mix"], x.group(0) if x else "no expected step"))
other = [float(v) for v in re.findall(r"^\s+(?:device compute|GPU compute|PCIe|CPU AdamW)\s+([\d.e+-]+) s", log, re.M)]
bound = max([rb / 1e9 / after["read"] + wb / 1e9 / after["write"]] + other)
mixed = max([(rb + wb) / 1e9 / after["mix"]] + other)
a = re.search(r"^after: .* bound ([\d.e+-]+) s .*; at the mixed rate ([\d.e+-]+) s", printed, re.M)
if not a or not close(float(a.group(1)), bound, 0.005) or not close(float(a.group(2)), mixed, 0.005):
    sys.exit("FAIL: at the rates after the run: printed %s; the bytes at those rates give a bound of %.4f s, "
             "%.4f s at the mixed rate" % (a.group(0) if a else "nothing", bound, mixed))
tokens = int(re.search(r"^step: (\d+) tokens", log, re.M).group(1))
steps = re.findall(r"^step (\d+)/\d+ \|.*\| ([\d.]+) tok/s \|", log, re.M)
rows = dict((int(r[0]), r) for r in re.findall(r"^(\d+) \| ([\d.]+) \| [\d.]+ \| [\d.]+, [\d.]+ \| ([\d.]+), [\d.]+$", printed, re.M))
if len(steps) != 3 or len(rows) != 3:
    sys.exit("FAIL: %d step lines in the log, %d step rows printed (3 steps)" % (len(steps), len(rows)))
for n, tps in steps:
    s = tokens / float(tps)
    got = float(rows[int(n)][2])
    if abs(got - bound / s) > 0.006 + 0.005 * bound / s:
        sys.exit("FAIL: step %s: after-bound / measured printed %.2f, %.4f s / %.4f s = %.3f" % (n, got, bound, s, bound / s))
print("  ok: train at the before rates (read %.3f, write %.3f, mix %.3f GB/s); after: bound %.4f s, 3 steps' ratios"
      % (before["read"], before["write"], before["mix"], bound))
PY
# a bench-io log without its rates: one line naming it, non-zero
printf 'nothing measured\n' >"$w/bad.log"
if python3 bench/nvme_bound.py "$w/out/train.log" after="$w/bad.log" >"$w/bad.out" 2>&1; then fail "nvme_bound.py took a log without rates"; fi
grep -q "bad.log has no bench-io 'best write/read/mix' lines" "$w/bad.out" || { cat "$w/bad.out"; fail "no clear line for the log without rates"; }
echo "test_bench_offload_3x_io: the 3x run's bounds are its bytes at the disk's rates from before and after it"
