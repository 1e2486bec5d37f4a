#!/usr/bin/env bash
# `spillway report` on bad input: a missing run directory, a directory without metrics.jsonl, a
# malformed metrics line (not JSON, no step, a loss that is not a number), a damaged run.json
# and a full filesystem (when a tmpfs can be mounted) each give one line naming the file (and line), exit 1, and leave report.html exactly as it was,
# with no temporary file behind. A missing --run is a usage error (exit 2).
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-report-bad.XXXXXX)
trap 'umount "$w/full" 2>/dev/null; rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_fail() {  # name, expected exit, pattern, run dir
  local name=$1 want=$2 pat=$3 dir=$4
  "$bin" report --run "$dir" >"$w/out" 2>"$w/err"; rc=$?
  [ $rc = "$want" ] || { cat "$w/err"; fail "$name: exit $rc, expected $want"; }
  [ "$(wc -l <"$w/err")" = 1 ] || { cat "$w/err"; fail "$name: expected one error line"; }
  grep -q -- "$pat" "$w/err" || { cat "$w/err"; fail "$name: message does not say '$pat'"; }
  echo "ok $name: $(cat "$w/err")"
}
good='{"step": 1, "loss": 5.5, "tokens_per_s": 100, "step_s": 1, "compute_s": 0.5}'
mkrun() {  # dir, lines...: a run directory with these metrics lines and an old report.html
  mkdir -p "$1"; local d=$1; shift
  printf '%s\n' "$@" >"$d/metrics.jsonl"
  echo "old report" >"$d/report.html"
}
unchanged() {  # dir
  [ "$(cat "$1/report.html")" = "old report" ] || fail "$1/report.html was changed"
  ls -a "$1" | grep -q tmp && fail "a temporary file was left in $1: $(ls -a "$1")"
  return 0
}

"$bin" report >"$w/out" 2>"$w/err"; [ $? = 2 ] || fail "report without --run should exit 2"
echo "ok no --run: $(cat "$w/err")"
expect_fail "missing run directory" 1 "$w/nope" "$w/nope"
mkdir -p "$w/empty"
expect_fail "no metrics.jsonl" 1 "metrics.jsonl does not exist" "$w/empty"
[ -e "$w/empty/report.html" ] && fail "a report was written for a directory with no metrics"

mkrun "$w/notjson" "$good" '{"step": 2, "loss": 5.1}' '{"step": 3, "loss": 4.9'
expect_fail "truncated line" 1 "metrics.jsonl line 3" "$w/notjson"
unchanged "$w/notjson"
mkrun "$w/nostep" "$good" '{"loss": 5.1}'
expect_fail "no step" 1 "metrics.jsonl line 2: no non-negative integer \"step\"" "$w/nostep"
unchanged "$w/nostep"
mkrun "$w/strloss" "$good" '{"step": 2, "loss": "low"}'
expect_fail "loss not a number" 1 "metrics.jsonl line 2: \"loss\" is not a number" "$w/strloss"
unchanged "$w/strloss"
mkrun "$w/badrun" "$good"
echo '{"command": [' >"$w/badrun/run.json"
expect_fail "damaged run.json" 1 "run.json" "$w/badrun"
unchanged "$w/badrun"

# a full filesystem: the write fails, the old report stays (needs a tmpfs: root)
m=$w/full
mkdir -p "$m"
if mount -t tmpfs -o size=256k tmpfs "$m" 2>/dev/null; then
  mkrun "$m/run" "$good" '{"step": 2, "loss": 5.0}'
  dd if=/dev/zero of="$m/filler" bs=4k count=1000 status=none 2>/dev/null
  expect_fail "full disk" 1 "No space left on device" "$m/run"
  unchanged "$m/run"
  umount "$m"
else
  echo "(no full-disk case: cannot mount a tmpfs here without root)"
fi

# and the good case writes it
mkrun "$w/ok" "$good" '{"step": 2, "loss": 5.0}'
"$bin" report --run "$w/ok" >"$w/out" 2>&1 || { cat "$w/out"; fail "a good run directory"; }
grep -q '<polyline class="loss-train"' "$w/ok/report.html" || fail "no loss curve in the good report"
echo "ok good run directory: $(cat "$w/out")"
