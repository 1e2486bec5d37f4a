#!/usr/bin/env bash
# bench/anchor.sh's table with an io-after stage: each NVMe run's bound again at the disk's rates
# measured after the runs. A small NVMe-bound `train` on the CPU backend gives the run's log (its
# planner counts the bytes a step reads and writes); `spillway bench-io` gives the format of the
# rate logs, and the io-after copy gets rates slow enough that the NVMe term is the whole bound.
# The printed bound must be read bytes / read rate + write bytes / write rate, and the mixed-rate
# time (read + write bytes) / mix rate (the sustained mix, which the io-after log also has),
# computed here from the log's own byte counts.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-anchor-io.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 128 --layers 4 --heads 4 --kv-heads 2 --ffn 256 --vocab 512 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
mkdir -p "$w/nv" "$w/bio" "$w/logs"
SW_LOG_EVERY=1 "$bin" train --model "$w/m" --data "$w/d.tok" --steps 3 --seq-len 64 --batch-tokens 256 --lr 1e-3 \
  --clip 0 --no-save --gpu-mem 4MiB --cpu-mem 8MiB --nvme "$w/nv" --checkpoint-only > "$w/logs/r3.log" 2>&1 \
  || { tail -3 "$w/logs/r3.log"; fail "train with --nvme"; }
"$bin" bench-io --nvme "$w/bio" --size 64MiB --chunk 16MiB --bs 1MiB --qd 32 --threads 2 > "$w/logs/io_bench.log" 2>&1 \
  || { tail -3 "$w/logs/io_bench.log"; fail bench-io; }
# the rates after the runs: write 0.002, read 0.004, mix 0.003 GB/s
sed -E 's/^best write +[0-9.]+ GB\/s/best write 0.002 GB\/s/; s/^best read +[0-9.]+ GB\/s/best read 0.004 GB\/s/;
        s/^best mix +[0-9.]+ GB\/s/best mix 0.003 GB\/s/' "$w/logs/io_bench.log" > "$w/logs/io_after.log"
grep -q "^best read 0.004 GB/s" "$w/logs/io_after.log" || { cat "$w/logs/io_bench.log"; fail "no 'best read' line in bench-io's output"; }
# and a sustained mix (bench-io --sustain), which the table takes for the mixed rate
echo "sustained mix 0.0036 GB/s over 60.0 s, 3 passes (first 0.004, last 0.003 GB/s; threads 2, bs 1MiB, qd 32)" >> "$w/logs/io_after.log"
BATCH=256 SEQ=64 LOGS="$w/logs" bash bench/anchor.sh "$w/a" table > "$w/table" 2>&1 || { tail -5 "$w/table"; fail "anchor.sh table"; }
grep -q "^disk, .*after the runs (io-after): write 0.002, read 0.004, mix (sustained) 0.004 GB/s" "$w/table" \
  || { grep "^disk" "$w/table"; fail "the io-after rates not printed"; }
line=$(grep "^  r3: bound " "$w/table") || { cat "$w/table"; fail "no bound at the io-after rates for r3"; }
python3 - "$w/logs/r3.log" "$line" <<'PY' || exit 1
import re, sys
log, line = open(sys.argv[1]).read(), sys.argv[2]
unit = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
m = re.search(r"NVMe\s+\S+ s\s+\(read ([\d.]+) (\w+) at .* \+ write ([\d.]+) (\w+) at", log)
if not m:
    sys.exit("FAIL: no NVMe line in the train log")
rb, wb = float(m.group(1)) * unit[m.group(2)], float(m.group(3)) * unit[m.group(4)]
if rb <= 0 or wb <= 0:
    sys.exit("FAIL: the run moves no NVMe bytes (%s)" % m.group(0))
nvme = rb / 0.004e9 + wb / 0.002e9
mixed = (rb + wb) / 0.0036e9
got = re.search(r"bound ([\d.]+) s \(NVMe ([\d.]+) s\).* at the mixed rate ([\d.]+) s", line)
if not got:
    sys.exit("FAIL: unreadable: " + line)
b, n, x = (float(v) for v in got.groups())
# the log prints the bytes to 3 digits, the table the seconds to 3 decimals
for what, v, ref in (("NVMe", n, nvme), ("bound", b, nvme), ("mixed", x, mixed)):
    if abs(v - ref) > 0.002 * ref + 0.002:
        sys.exit("FAIL: %s %.3f s, the bytes at the io-after rates give %.3f s (%s)" % (what, v, ref, line))
print("  ok: bound %.3f s = %.0f B / 0.004 GB/s + %.0f B / 0.002 GB/s; mixed %.3f s" % (b, rb, wb, x))
PY
echo "test_bench_anchor_io_after: the table's io-after bound is the run's bytes at those rates"
