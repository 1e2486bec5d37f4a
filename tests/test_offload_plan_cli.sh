#!/usr/bin/env bash
# spillway plan from the command line: a 175B-class config on a 24 GiB GPU without any files;
# shortfalls are one line on stderr, exit 1, nothing on stdout; usage errors exit 2.
set -u
bin=${SW_BIN:-build/spillway}
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
big="--arch llama --dim 12288 --layers 96 --heads 96 --ffn 49152 --vocab 50272"
budgets="--gpu-mem 24GiB --cpu-mem 128GiB --batch-tokens 65536 --seq-len 2048"

# one slot fits two 2 TB disks (paths that do not exist here: capacities given)
"$bin" plan $big $budgets --nvme /nonexistent/a:2TB,/nonexistent/b:2TB --checkpoint-only >"$tmp/out" 2>"$tmp/err"
rc=$?; [ $rc = 0 ] || fail "175B plan exited $rc: $(cat "$tmp/err")"
for want in "96 layers, dim 12288" "placement" "layers 0-" "activation checkpoints" "GPU   total" \
            "host  total" "NVMe  total" "two slots (a step writes the other slot" "one slot, checkpoint-only" \
            "GPU compute" "PCIe" "CPU AdamW" "predicted step:" "bound by" "tokens/s" "/nonexistent/a"; do
  grep -q -- "$want" "$tmp/out" || fail "plan output lacks '$want'"
done
# every tier total within its budget (MiB column against the budget)
awk '$2 == "total" && $1 == "GPU"  { if ($3 > 24576.0) bad = 1; n++ }
     $2 == "total" && $1 == "host" { if ($3 > 131072.0) bad = 1; n++ }
     $2 == "total" && $1 == "NVMe" { if ($3 > 4000000000000 / 1048576) bad = 1; n++ }
     END { exit (bad || n != 3) }' "$tmp/out" || fail "a tier total is over its budget: $(grep total "$tmp/out")"
grep -q "bound by NVMe" "$tmp/out" || fail "175B on 2 disks should be NVMe-bound: $(grep predicted "$tmp/out")"
! grep -q "^expected step:" "$tmp/out" || fail "an expected step without --nvme-mix-gbs"
# with the disk's mixed rate: every byte read and written at it (the bytes from the NVMe line)
"$bin" plan $big $budgets --nvme /nonexistent/a:2TB,/nonexistent/b:2TB --checkpoint-only --nvme-mix-gbs 1.5 \
  >"$tmp/out" 2>"$tmp/err" || fail "plan with --nvme-mix-gbs: $(cat "$tmp/err")"
python3 - "$tmp/out" <<'PY' || fail "expected step: $(grep -E '^(expected|predicted|step boundary)|NVMe  .* s  ' "$tmp/out")"
import re, sys
t = open(sys.argv[1]).read()
u = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
m = re.search(r"NVMe\s+[\d.]+ s  \(read ([\d.]+) (\w+) at .* \+ write ([\d.]+) (\w+) at", t)
e = re.search(r"^expected step: ([\d.]+) s \(the disk's .* at the measured mixed rate, 1.50 GB/s: ([\d.]+) s\)$", t, re.M)
b = re.search(r"^step boundary: \+ ([\d.e+-]+) s of idle NVMe", t, re.M)
mix = (float(m.group(1)) * u[m.group(2)] + float(m.group(3)) * u[m.group(4)]) / 1.5e9
assert abs(float(e.group(2)) / mix - 1) < 2e-3, (e.group(2), mix)
assert abs(float(e.group(1)) - (mix + float(b.group(1)))) / mix < 2e-3, (e.group(1), mix)
PY

# a compute-bound plan (a 2.8B llama in a 10 GiB GPU and ample host memory, one pass, at the
# H100 machine's rates) with the rate of the GPU's memory-bound work between the layers: the
# expected step is the predicted one plus those bytes at that rate
m28="--arch llama --dim 3072 --layers 26 --heads 24 --kv-heads 8 --ffn 8192 --vocab 32000 --gpu-mem 10GiB --cpu-mem 100GiB --seq-len 2048 --batch-tokens 16384 --clip 0 --gemm-tflops 533.6 --h2d-gbs 54.85 --d2h-gbs 50.74 --adam-gparams 4.45"
"$bin" plan $m28 >"$tmp/out" 2>"$tmp/err" || fail "2.8B plan: $(cat "$tmp/err")"
! grep -q "^expected step:" "$tmp/out" || fail "an expected step without --gpu-bw-gbs"
"$bin" plan $m28 --gpu-bw-gbs 2000 >"$tmp/out" 2>"$tmp/err" || fail "2.8B plan with --gpu-bw-gbs: $(cat "$tmp/err")"
python3 - "$tmp/out" <<'PY' || fail "expected step: $(grep -E '^(expected|predicted|step boundary)' "$tmp/out")"
import re, sys
t = open(sys.argv[1]).read()
u = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
p = float(re.search(r"^predicted step: ([\d.e+-]+) s, bound by GPU compute", t, re.M).group(1))
b = float(re.search(r"^step boundary: \+ ([\d.e+-]+) s of idle", t, re.M).group(1))
e = re.search(r"^expected step: ([\d.e+-]+) s \(the GPU's memory-bound work beside the layers "
              r"\(sums of squares, resident AdamW, gradient zeroing\), ([\d.]+) (\w+) at 2000 GB/s: "
              r"([\d.e+-]+) s more compute\)$", t, re.M)
gb = float(e.group(2)) * u[e.group(3)] / 1e9
assert abs(float(e.group(4)) / (gb / 2000) - 1) < 5e-3, (e.group(4), gb / 2000)
assert abs(float(e.group(1)) - (p + b + float(e.group(4)))) < 2e-3 * p, (e.group(1), p, b, e.group(4))
PY

# the same with two slots does not fit 2 x 2 TB: one line naming the tier and the shortfall
"$bin" plan $big $budgets --nvme /nonexistent/a:2TB,/nonexistent/b:2TB >"$tmp/out" 2>"$tmp/err"
rc=$?; [ $rc = 1 ] || fail "two slots on 2 x 2 TB should exit 1, got $rc"
[ "$(wc -l <"$tmp/err")" = 1 ] || fail "expected one line, got: $(cat "$tmp/err")"
[ ! -s "$tmp/out" ] || fail "a failed plan printed to stdout"
grep -q "^spillway: --nvme paths hold 3.64 TiB, .* short of the .* the plan needs on disk" "$tmp/err" || fail "nvme message: $(cat "$tmp/err")"
grep -q -- "--checkpoint-only (one slot: " "$tmp/err" || fail "nvme message should offer one slot: $(cat "$tmp/err")"

# GPU and host shortfalls
"$bin" plan $big --gpu-mem 2GiB --cpu-mem 128GiB >"$tmp/out" 2>"$tmp/err"
rc=$?; [ $rc = 1 ] || fail "--gpu-mem 2GiB should exit 1, got $rc"
[ "$(wc -l <"$tmp/err")" = 1 ] && [ ! -s "$tmp/out" ] || fail "gpu shortfall: $(cat "$tmp/err" "$tmp/out")"
grep -q "^spillway: --gpu-mem 2.00 GiB is .* GiB short of the GPU working set (.*GiB: P16 prefetch window" "$tmp/err" || fail "gpu message: $(cat "$tmp/err")"
"$bin" plan $big --gpu-mem 24GiB --cpu-mem 4GiB --nvme /nonexistent/a:100TB >"$tmp/out" 2>"$tmp/err"
rc=$?; [ $rc = 1 ] || fail "--cpu-mem 4GiB should exit 1, got $rc"
[ "$(wc -l <"$tmp/err")" = 1 ] || fail "host shortfall: $(cat "$tmp/err")"
grep -q "^spillway: --cpu-mem 4.00 GiB is .* short of what the host must hold" "$tmp/err" || fail "host message: $(cat "$tmp/err")"

# a small model fits on the GPU entirely; --nvme PATH without a size takes its free space
"$bin" plan --arch qwen2 --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --vocab 256 --tie-embeddings \
  --gpu-mem 64MiB --cpu-mem 1GiB --batch-tokens 256 --seq-len 64 --nvme "$tmp" >"$tmp/out" 2>"$tmp/err" \
  || fail "small plan: $(cat "$tmp/err")"
grep -q "the whole model fits on the GPU" "$tmp/out" || fail "small model should be GPU-resident"
grep -q "bound by GPU compute" "$tmp/out" || fail "small resident model should be compute-bound"

# usage errors: exit 2, one line
one_line_exit() {  # expected-status description args...
  local want=$1 what=$2; shift 2
  "$bin" plan "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  [ $rc = "$want" ] || fail "$what: exit $rc, expected $want: $(cat "$tmp/err")"
  [ "$(wc -l <"$tmp/err")" = 1 ] || fail "$what: expected one line, got: $(cat "$tmp/err")"
  [ ! -s "$tmp/out" ] || fail "$what: printed to stdout"
}
one_line_exit 2 "no model" --gpu-mem 1GiB --cpu-mem 1GiB
one_line_exit 2 "both --model and --arch" --model "$tmp" $big --gpu-mem 1GiB --cpu-mem 1GiB
one_line_exit 2 "missing --vocab" --arch llama --dim 64 --layers 2 --heads 4 --ffn 128 --gpu-mem 1GiB --cpu-mem 1GiB
one_line_exit 2 "bad --arch" --arch gpt2 --dim 64 --layers 2 --heads 4 --ffn 128 --vocab 9 --gpu-mem 1GiB --cpu-mem 1GiB
one_line_exit 2 "kv-heads not dividing heads" $big --kv-heads 7 --gpu-mem 1GiB --cpu-mem 1GiB
one_line_exit 2 "batch not a multiple" $big --gpu-mem 24GiB --cpu-mem 1GiB --batch-tokens 1000
one_line_exit 2 "missing --gpu-mem" $big --cpu-mem 1GiB
one_line_exit 2 "bad size" $big --gpu-mem 24XB --cpu-mem 1GiB
one_line_exit 2 "negative --nvme-mix-gbs" $big $budgets --nvme-mix-gbs -1
grep -q -- "--nvme-mix-gbs, --adam-gparams and --gpu-bw-gbs must be positive" "$tmp/err" || fail "negative --nvme-mix-gbs: $(cat "$tmp/err")"
one_line_exit 2 "negative --gpu-bw-gbs" $big $budgets --gpu-bw-gbs -1
grep -q -- "--gpu-bw-gbs must be positive" "$tmp/err" || fail "negative --gpu-bw-gbs: $(cat "$tmp/err")"
one_line_exit 2 "negative --h2d-gbs" $big $budgets --h2d-gbs -40
one_line_exit 2 "--nvme-mix-gbs nan" $big $budgets --nvme-mix-gbs nan
one_line_exit 2 "bad dtype" $big --gpu-mem 24GiB --cpu-mem 1GiB --dtype fp8
one_line_exit 2 "empty nvme" $big --gpu-mem 24GiB --cpu-mem 1GiB --nvme ,
one_line_exit 1 "nvme path missing, no size" $big --gpu-mem 24GiB --cpu-mem 1GiB --nvme /nonexistent/x
one_line_exit 1 "--model without a config" --model "$tmp/none" --gpu-mem 24GiB --cpu-mem 1GiB
"$bin" plan --help >/dev/null || fail "--help should exit 0"
exit 0
