#!/usr/bin/env bash
# bench/op_compare.py (per-op times of two SW_OP_PROFILE=1 runs side by side): a CPU run's
# profile against itself gives 1.000 for every op and class; against a copy whose one GEMM key
# has twice the mean (its total too), that row gives 2.000 and the GEMM class the ratio the
# arithmetic says; a file with no profile table is refused with one line.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-opcmp.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --vocab 320 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
SW_OP_PROFILE=1 "$bin" train --model "$w/m" --data "$w/d.tok" --steps 2 --seq-len 32 --batch-tokens 128 \
  --lr 1e-3 --no-save --gpu-mem 1MiB --cpu-mem 64MiB > "$w/a.txt" 2>&1 || { tail -3 "$w/a.txt"; fail train; }
python3 bench/op_compare.py "$w/a.txt" "$w/a.txt" > "$w/same" || fail "op_compare on one profile"
oprows() { grep '^| [a-z]' "$1" | grep -v '^| op |'; }
rows=$(oprows "$w/same" | wc -l)
[ "$rows" -gt 10 ] || { cat "$w/same"; fail "only $rows op rows"; }
[ "$(oprows "$w/same" | grep -vc '| 1.000 |$')" = 0 ] || { cat "$w/same"; fail "a ratio other than 1.000 against itself"; }
grep -q "^all ops in both: .*(1.000)" "$w/same" || { cat "$w/same"; fail "the summary is not 1.000"; }
# double one GEMM key's mean and total in B
python3 - "$w/a.txt" "$w/b.txt" > "$w/key" <<'PY' || fail "making B"
import re, sys
out, done = [], None
for line in open(sys.argv[1]):
    m = re.match(r"^(\s{2}(matmul_fwd \S.*?)\s+\d+\s+)([0-9.]+)(\s+)([0-9.]+)(.*)$", line.rstrip("\n"))
    if m and not done:
        done = m.group(2)
        line = "%s%.2f%s%.1f%s\n" % (m.group(1), 2 * float(m.group(3)), m.group(4), 2 * float(m.group(5)), m.group(6))
    out.append(line)
open(sys.argv[2], "w").write("".join(out))
print(done)
PY
key=$(cat "$w/key")
python3 bench/op_compare.py "$w/a.txt" "$w/b.txt" > "$w/doubled" || fail "op_compare A B"
grep -F "| $key |" "$w/doubled" | grep -q '| 2.000 |$' || { cat "$w/doubled"; fail "$key not at 2.000"; }
[ "$(oprows "$w/doubled" | grep -vc '| 1.000 |$')" = 1 ] || { cat "$w/doubled"; fail "other rows moved"; }
python3 - "$w/a.txt" "$w/doubled" "$key" <<'PY' || exit 1
import re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"^\s{2}(\S.*?)\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+[0-9.]+%\s*$", line.rstrip("\n"))
    if m:
        rows[m.group(1)] = (int(m.group(2)), float(m.group(3)))
gemm = sum(t for k, (c, t) in rows.items() if k.startswith("matmul_"))
k = sys.argv[3]
want = (gemm + rows[k][1]) / gemm
got = float(re.search(r"^GEMM: .*\(([0-9.]+)\)$", open(sys.argv[2]).read(), re.M).group(1))
if abs(got - want) > 2e-3 + 0.01 * want:   # the tables' rounding (0.01 ms totals, 0.1 us means)
    sys.exit("FAIL: GEMM class ratio %.3f, the arithmetic says %.3f" % (got, want))
print("  ok doubling %s moves its row to 2.000 and the GEMM class to %.3f (arithmetic: %.3f)" % (k, got, want))
PY
echo "no table here" > "$w/empty"
python3 bench/op_compare.py "$w/empty" "$w/a.txt" > "$w/out" 2> "$w/err"; rc=$?
[ $rc != 0 ] && [ "$(wc -l < "$w/err")" = 1 ] && grep -q "no SW_OP_PROFILE table" "$w/err" || { cat "$w/err"; fail "no table: rc $rc"; }
echo "  ok against itself every op at 1.000; a file without a profile refused in one line"
