#!/usr/bin/env bash
# README.md cannot drift from the CLI: every fenced code block of README.md (except ```text
# blocks, which show output) runs as a bash script (set -e) in a scratch directory that has the
# repository's build/ and tests/ linked in, so a renamed command or flag fails it; `make TARGET`
# lines are checked with `make -n TARGET` instead of run. Every command in `spillway --help` must
# appear in a code block, and every `spillway CMD --flag` written in the prose must be one of
# CMD's options (its --help).
set -u
bin=$(realpath "${SW_BIN:-build/spillway}")
repo=$(cd "$(dirname "$0")/.." && pwd)
readme=$repo/README.md
w=$(mktemp -d /tmp/sw-readme.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
ln -s "$(dirname "$bin")" "$w/build"
ln -s "$repo/tests" "$w/tests"

# blocks into $w/block.N (code) and the make lines into $w/make.N
awk -v dir="$w" '
  /^```/ { if (!inb) { inb = 1; n++; skip = ($0 ~ /^```(text|console|output)/); next } else { inb = 0; next } }
  inb && !skip { if ($0 ~ /^make[ \t]/) print > (dir "/make." n); else print > (dir "/block." n) }
' "$readme"
ls "$w"/block.* >/dev/null 2>&1 || fail "no code blocks found in README.md"

# make targets named in the README exist
for f in "$w"/make.*; do
  [ -e "$f" ] || continue
  while read -r _ rest; do
    for t in ${rest%%#*}; do
      case $t in -*|*=*) continue;; esac
      make -n -C "$repo" "$t" >/dev/null 2>"$w/make.err" || fail "README's 'make $t': $(head -n 1 "$w/make.err")"
      echo "ok make $t (a target of the Makefile)"
    done
  done <"$f"
done

# every command of the CLI is shown
cat "$w"/block.* >"$w/all"
for c in $("$bin" --help | awk '/^commands:/ {on = 1; next} on && NF {print $1}'); do
  grep -qE "(^|[^a-z-])spillway $c( |$)" "$w/all" || fail "README's code blocks never show 'spillway $c'"
done
echo "ok every command of 'spillway --help' is in a code block"

# flags named in the prose are real
grep -v '^    ' "$readme" | grep -o '`spillway [a-z-]*[^`]*`' | tr -d '`' | while read -r _ cmd rest; do
  help=$("$bin" "$cmd" --help 2>&1) || { echo "FAIL: README prose names 'spillway $cmd', not a command"; exit 1; }
  for flag in $(echo "$rest" | grep -o -- '--[a-z0-9-]*'); do
    echo "$help" | grep -q -- "  $flag\b" || { echo "FAIL: README prose: 'spillway $cmd $flag' is not an option of $cmd"; exit 1; }
  done
done || exit 1
echo "ok flags named in README's prose are options of their commands"

# run the blocks in order in one shell, as a reader would (PATH set in one holds in the next)
for f in $(ls "$w"/block.* | sort -t. -k2 -n); do
  echo "echo '@@ block ${f##*.}' >&2"; cat "$f"
done >"$w/script"
( cd "$w" && bash -e -o pipefail "$w/script" ) >"$w/out" 2>&1 || {
  tail -n 20 "$w/out"
  fail "README $(grep '^@@ block' "$w/out" | tail -n 1 | cut -c4-) failed (a command or flag renamed?)"; }
echo "ok $(grep -c "^@@ block" "$w/out") code blocks ran: $(grep -c "^spillway " "$w/script") spillway commands"
[ -s "$w/tour/run/report.html" ] && [ -d "$w/tour/finetuned" ] || fail "the tour left no report or export"
exit 0
