#!/usr/bin/env bash
# CLI usage errors: one line on stderr, exit 2; --help exits 0.
set -u
bin=${SW_BIN:-build/spillway}
fail() { echo "FAIL: $*"; exit 1; }
out=$("$bin" 2>&1); [ $? = 2 ] || fail "no command should exit 2"
out=$("$bin" frobnicate 2>&1); [ $? = 2 ] || fail "unknown command should exit 2"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "unknown command: expected one line, got: $out"
echo "$out" | grep -q "unknown command 'frobnicate'" || fail "message does not name the command: $out"
"$bin" --help >/dev/null || fail "--help should exit 0"
exit 0
