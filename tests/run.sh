#!/usr/bin/env bash
# Test runner: runs each test (binary or .sh) with a timeout; exit 0 pass, 77 skip, else fail.
# Prints one line per test and ends with "N passed, N failed, N skipped"; exit status 1 on any
# failure.  --gpu: the tests need a GPU; without one (no nvidia-smi or no device) all skip.
set -u
gpu=0
if [ "${1:-}" = "--gpu" ]; then gpu=1; shift; fi
timeout_s=${SW_TEST_TIMEOUT:-600}
pass=0; fail=0; skip=0; failed=()
if [ $gpu = 1 ] && ! { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; }; then
  echo "no GPU found (nvidia-smi lists none): skipping every GPU test"
  for t in "$@"; do echo "SKIP $(basename "$t")"; skip=$((skip+1)); done
  echo "0 passed, 0 failed, $skip skipped"
  exit 0
fi
logdir=${SW_TEST_LOGDIR:-$(mktemp -d /tmp/spillway-tests.XXXXXX)}
mkdir -p "$logdir"
for t in "$@"; do
  name=$(basename "$t")
  start=$(date +%s.%N)
  if [[ "$t" == *.sh ]]; then
    timeout -k 10 "$timeout_s" bash "$t" >"$logdir/$name.log" 2>&1; rc=$?
  else
    timeout -k 10 "$timeout_s" "$t" >"$logdir/$name.log" 2>&1; rc=$?
  fi
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" "BEGIN{printf \"%.1f\", b-a}")
  case $rc in
    0)  pass=$((pass+1)); echo "PASS $name (${secs}s)";;
    77) skip=$((skip+1)); echo "SKIP $name: $(tail -n 1 "$logdir/$name.log")";;
    124|137) fail=$((fail+1)); failed+=("$name"); echo "FAIL $name: timed out after ${timeout_s}s";;
    *)  fail=$((fail+1)); failed+=("$name"); echo "FAIL $name (exit $rc), last lines of $logdir/$name.log:"
        tail -n 15 "$logdir/$name.log" | sed 's/^/    /';;
  esac
done
echo "logs: $logdir"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail = 0 ]
