#!/usr/bin/env bash
# spillway tokenize: encode/decode through the CLI on the hand-written byte-level tokenizer (ids
# worked out by hand: see tests/test_core_tokenizer.c), and its bad inputs: one line, exit 1.
set -u
bin=${SW_BIN:-build/spillway}
here=$(cd "$(dirname "$0")" && pwd)
tk="$here/data/tokenizers/bytelevel"
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d /tmp/sw-tokcli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
out=$(printf 'the the' | "$bin" tokenize --tokenizer "$tk") || fail "encode failed"
[ "$out" = "116 257 258" ] || fail "encode gave '$out', expected '116 257 258'"
out=$(echo "116 257 258 259" | "$bin" tokenize --tokenizer "$tk" --decode) || fail "decode failed"
[ "$out" = "the the<|end|>" ] || fail "decode gave '$out'"
out=$(echo "116 257 258 259" | "$bin" tokenize --tokenizer "$tk" --decode --skip-special)
[ "$out" = "the the" ] || fail "decode --skip-special gave '$out'"
printf '"the the"\n"a<|end|>b"\n"e\\u0301"\n' >"$tmp/docs.jsonl"
out=$("$bin" tokenize --tokenizer "$tk" --jsonl "$tmp/docs.jsonl" --threads 2) || fail "--jsonl failed"
expect=$(printf '116 257 258\t"the the"\n97 259 98\t"a<|end|>b"\n195 169\t"\\u00E9"')
[ "$out" = "$expect" ] || fail "--jsonl gave: $out"
one_line() {   # one_line WANT CMD...: exit 1 and exactly one stderr line containing WANT
  local want=$1; shift
  local err rc
  err=$("$@" 2>&1 >/dev/null </dev/null); rc=$?
  [ $rc = 1 ] || fail "$*: exit $rc, expected 1"
  [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] || fail "$*: expected one line, got: $err"
  printf '%s\n' "$err" | grep -qF -- "$want" || fail "$*: message lacks '$want': $err"
}
one_line "/nonexistent/tokenizer.json" "$bin" tokenize --tokenizer /nonexistent
printf '"ok"\n{"text": 1}\n' >"$tmp/bad.jsonl"
one_line "line 2" "$bin" tokenize --tokenizer "$tk" --jsonl "$tmp/bad.jsonl"
printf '"ok"\n"bad \\udc00"\n' >"$tmp/bad2.jsonl"
one_line "line 2" "$bin" tokenize --tokenizer "$tk" --jsonl "$tmp/bad2.jsonl"
printf 'a\xffb' >"$tmp/bad.txt"
err=$("$bin" tokenize --tokenizer "$tk" <"$tmp/bad.txt" 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] && printf '%s' "$err" | grep -q "not valid UTF-8 at byte 1" ||
  fail "invalid UTF-8: exit $rc: $err"
err=$(echo "116 99999" | "$bin" tokenize --tokenizer "$tk" --decode 2>&1 >/dev/null); rc=$?
[ $rc = 1 ] && printf '%s' "$err" | grep -q "cannot decode id 99999" || fail "bad id: exit $rc: $err"
exit 0
