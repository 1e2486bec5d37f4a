#!/usr/bin/env bash
# Issue 18, Done when 3 (run where python3 has torch, transformers and peft: the GPU machine).
# A small llama (with a byte tokenizer) trains LoRA adapters for 3 steps on the CPU backend;
# `spillway export` writes them in PEFT's format and, with --merge, the merged model; then
# tests/ref/lora_peft_check.py loads the adapter with peft.PeftModel.from_pretrained on the base
# and compares its logits with the merged export's, and the merged weights with W + (alpha/r) B A
# computed in torch.
#   bash tests/ref/lora_peft_check.sh BIN WORK_DIR [--prepare]   (--prepare: spillway steps only)
set -euo pipefail
bin=$1 w=$2
here=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$w" && mkdir -p "$w"
"$bin" init --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 128 --vocab 259 --seed 1 --out "$w/m" >/dev/null
python3 "$here/tests/ref/byte_tokenizer.py" "$w/m" "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
for i in $(seq 64); do
  echo '{"messages": [{"role": "user", "content": "ping '$i'"}, {"role": "assistant", "content": "pong '$i'"}]}'
done >"$w/chats.jsonl"
"$bin" data --jsonl "$w/chats.jsonl" --tokenizer "$w/m" --out "$w/d.tok" >/dev/null
"$bin" train --model "$w/m" --data "$w/d.tok" --backend cpu --steps 5 --seq-len 32 --batch-tokens 128 \
  --lr 2e-2 --lora-rank 4 --lora-alpha 16 --lora-targets q,k,v,o,gate,up,down --run "$w/run" --quiet
"$bin" export --run "$w/run" --out "$w/peft"
"$bin" export --run "$w/run" --out "$w/merged" --merge
[ "${3:-}" = --prepare ] && exit 0
python3 "$here/tests/ref/lora_peft_check.py" "$w"
