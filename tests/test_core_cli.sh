#!/usr/bin/env bash
# init / info / data happy paths: parameter counts from the formula, determinism from --seed,
# byte-level token ids, --help on each command.
set -u
bin=${SW_BIN:-build/spillway}
t=$(mktemp -d /tmp/sw-test-cli.XXXXXX)
trap 'rm -rf "$t"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

for c in init info data; do "$bin" $c --help >/dev/null || fail "$c --help should exit 0"; done

# llama dim 32, 3 layers, 4 heads, 2 kv heads (hd 8), ffn 48, vocab 100, untied:
# per layer 2*32 + 32*32 + 2*16*32 + 32*32 + 3*48*32 = 7744; total 100*32*2 + 3*7744 + 32 = 29664
"$bin" init --arch llama --dim 32 --layers 3 --heads 4 --kv-heads 2 --ffn 48 --vocab 100 --seed 5 --out "$t/a" \
  >/dev/null || fail "init a"
"$bin" init --arch llama --dim 32 --layers 3 --heads 4 --kv-heads 2 --ffn 48 --vocab 100 --seed 5 --out "$t/b" \
  >/dev/null || fail "init b"
"$bin" init --arch llama --dim 32 --layers 3 --heads 4 --kv-heads 2 --ffn 48 --vocab 100 --seed 6 --out "$t/c" \
  >/dev/null || fail "init c"
cmp -s "$t/a/model.safetensors" "$t/b/model.safetensors" || fail "same seed should give identical files"
# the thread count does not change the bytes (a tensor larger than one 2^18-element chunk too)
"$bin" init --arch llama --dim 512 --layers 1 --heads 4 --ffn 64 --vocab 1100 --threads 1 --out "$t/t1" >/dev/null || fail "init t1"
"$bin" init --arch llama --dim 512 --layers 1 --heads 4 --ffn 64 --vocab 1100 --threads 3 --out "$t/t3" >/dev/null || fail "init t3"
cmp -s "$t/t1/model.safetensors" "$t/t3/model.safetensors" || fail "--threads 1 and 3 should give identical files"
cmp -s "$t/a/model.safetensors" "$t/c/model.safetensors" && fail "another seed should give another model"
# 29664 fp32 parameters + header
[ $(stat -c %s "$t/a/model.safetensors") -gt $((29664 * 4)) ] || fail "file too small"
[ $(stat -c %s "$t/a/model.safetensors") -lt $((29664 * 4 + 4096)) ] || fail "file too large"
out=$("$bin" info --model "$t/a") || fail "info --model"
echo "$out" | grep -q "^total  *29664 " || fail "info total, got: $out"
echo "$out" | grep -q "^layer 0  *7744 " || fail "info layer 0, got: $out"
echo "$out" | grep -q "^embed  *3200 " || fail "info embed, got: $out"

# qwen2 tied with bias, bf16, sharded: per layer 7744 + 32 + 2*16 = 7808; total 3200 + 3*7808 + 32 = 26656
"$bin" init --arch qwen2 --dim 32 --layers 3 --heads 4 --kv-heads 2 --ffn 48 --vocab 100 --tie --dtype bf16 \
  --max-shard 8KiB --out "$t/q" >/dev/null || fail "init qwen2"
[ -f "$t/q/model.safetensors.index.json" ] || fail "expected shards"
out=$("$bin" info --model "$t/q") || fail "info --model q"
echo "$out" | grep -q "^total  *26656 " || fail "qwen2 total, got: $out"
echo "$out" | grep -q "attention bias yes, stored as BF16" || fail "qwen2 summary, got: $out"

# byte-level data: "hi\n" -> 256 'h' 'i' '\n' 257
printf 'hi\n' >"$t/x.txt"
"$bin" data --text "$t/x.txt" --out "$t/x.tok" >/dev/null || fail "data"
[ "$(od -An -tu2 -j64 "$t/x.tok" | tr -s ' ')" = " 256 104 105 10 257" ] || fail "tokens: $(od -An -tu2 -j64 "$t/x.tok")"
"$bin" info --data "$t/x.tok" | grep -q "5 tokens (u16, largest id 257), vocab 258, no loss mask, 5 targets" || fail "info --data"
printf '{"prompt":"ab","response":"c"}\n\n{"text":"d"}\n' >"$t/x.jsonl"
"$bin" data --jsonl "$t/x.jsonl" --out "$t/j.tok" >/dev/null || fail "data --jsonl"
# BOS a b c EOS BOS d EOS; targets: c EOS d EOS -> bits 3,4,6,7 = 0xd8 (LSB first)
"$bin" info --data "$t/j.tok" | grep -q "8 tokens (u16, largest id 257), vocab 258, loss mask, 4 targets" || fail "jsonl info: $("$bin" info --data "$t/j.tok")"
[ "$(od -An -tx1 -j80 "$t/j.tok" | tr -d ' ')" = "d8" ] || fail "mask byte: $(od -An -tx1 -j80 "$t/j.tok")"
exit 0
