#!/usr/bin/env bash
# bench-adam: bad input is one line on stderr and exit 2; a tiny run prints the table.
set -u
bin=${SW_BIN:-build/spillway}
fail() { echo "FAIL: $*"; exit 1; }
usage() {   # usage ARGS... : exit 2, exactly one line naming the option
  local out
  out=$("$bin" bench-adam "$@" 2>&1 >/dev/null); rc=$?
  [ $rc = 2 ] || fail "bench-adam $*: exit $rc, expected 2"
  [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "bench-adam $*: expected one line, got: $out"
  printf "%s\n" "$out" | grep -q -- "$1" || fail "bench-adam $*: message does not name $1: $out"
}
usage --params 0
usage --params -5
usage --params 12X
usage --params 1.5
usage --threads abc
usage --threads 0
usage --threads 1,,2
usage --threads 2,
usage --reps 0
usage --path sse
usage --bogus 1
"$bin" bench-adam --help >/dev/null || fail "--help should exit 0"
# threads, Gparam/s, adam GB/s, triad-nt, triad-rfo, ratio, read GB/s, adam/read, pattern, adam/pat
row='^ +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+% +[0-9.]+ +[0-9.]+% +[0-9.]+ +[0-9.]+%$'
out=$("$bin" bench-adam --params 300K --threads 1,2,64 --reps 1 2>&1) || fail "tiny run failed: $out"
echo "$out"
echo "$out" | grep -q "Gparam/s" || fail "no table header"
[ "$(echo "$out" | grep -cE "$row")" -ge 2 ] || fail "expected rows for 1 and 2 threads"
echo "$out" | grep -q "bytes counted: AdamW 30 per parameter" || fail "bytes-per-parameter note missing"
# the triad's arrays are fp32: 12 B per element (STREAM's 24 B is for fp64; counting 24 here
# doubled the reference bandwidth once)
echo "$out" | grep -q "triad 12 per element of fp32" || fail "triad bytes note missing or not 12: $out"
# Gparam/s x 30 = adam GB/s; ratio = adam GB/s / the faster triad; adam/read and adam/pat likewise
echo "$out" | grep -E "$row" | awk '{ r = $3 / ($4 > $5 ? $4 : $5) * 100; p = $3 / $9 * 100; d = $3 / $7 * 100;
  if ($2 * 30 < $3 - 0.2 || $2 * 30 > $3 + 0.2 || r < $6 - 1 || r > $6 + 1 || d < $8 - 1 || d > $8 + 1 ||
      p < $10 - 1 || p > $10 + 1) { print "inconsistent row: " $0; bad = 1 } } END { exit bad }' ||
  fail "a row's columns do not agree"
out=$(SW_ADAMW_PATH=scalar "$bin" bench-adam --params 100K --threads 1 --reps 1 2>&1) || fail "scalar run failed"
echo "$out" | grep -q "path scalar" || fail "SW_ADAMW_PATH=scalar not honoured: $out"
# the measurement switches are read and reported on one line (the update and the pattern kernel
# run with them; their bits are tests/test_optim_adamw.c's business)
echo "$out" | grep -q "^switches: SW_ADAMW_PATH=scalar SW_ADAMW_PREFETCH=2048 .*SW_ADAMW_CHUNK=32768 SW_ADAMW_FLUSH=0 " ||
  fail "no default switches line: $out"
out=$(SW_ADAMW_FLUSH=1 SW_ADAMW_FLUSH_BLOCK=1024 SW_ADAMW_BURST=2 SW_ADAMW_CHUNK=8192 \
      "$bin" bench-adam --params 300K --threads 1,2 --reps 1 2>&1) || fail "run with switches failed: $out"
echo "$out" | grep -q "^switches: .*SW_ADAMW_CHUNK=8192 SW_ADAMW_FLUSH=[01] SW_ADAMW_FLUSH_BLOCK=1024 SW_ADAMW_BURST=2$" ||
  fail "switches not reported: $out"
[ "$(echo "$out" | grep -cE "$row")" -ge 2 ] || fail "switches: expected rows for 1 and 2 threads: $out"
out=$(SW_ADAMW_CHUNK=100 "$bin" bench-adam --params 100K --threads 1 --reps 1 2>&1) || fail "run with a bad SW_ADAMW_CHUNK failed: $out"
echo "$out" | grep -q "SW_ADAMW_CHUNK=100 is not a multiple of 64" || fail "no warning for SW_ADAMW_CHUNK=100: $out"
echo "$out" | grep -q "^switches: .*SW_ADAMW_CHUNK=32768 " || fail "bad SW_ADAMW_CHUNK: default not used: $out"
exit 0
