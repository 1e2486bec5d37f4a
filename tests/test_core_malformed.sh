#!/usr/bin/env bash
# Malformed inputs through the real binary: each must give exactly one line on stderr, starting
# "spillway: " and naming the thing, a non-zero exit (1 runtime, 2 usage), and no crash (under
# `make asan` the binary is the sanitized one: a sanitizer report would add lines and fail).
set -u
bin=${SW_BIN:-build/spillway}
t=$(mktemp -d /tmp/sw-test-malformed.XXXXXX)
trap 'rm -rf "$t"' EXIT
fails=0

# expect NAME WANT_EXIT PATTERN -- command...
expect() {
  local name=$1 want=$2 pat=$3; shift 4
  "$@" >"$t/out" 2>"$t/err"; local rc=$?
  local lines; lines=$(wc -l <"$t/err")
  if [ "$rc" != "$want" ] || [ "$lines" != 1 ] || ! grep -q "^spillway: .*$pat" "$t/err"; then
    echo "FAIL $name: exit $rc (want $want), $lines stderr lines (want 1), pattern '$pat':"
    sed 's/^/    /' "$t/err" | head -20
    fails=$((fails+1))
  else
    echo "ok   $name: $(cat "$t/err")"
  fi
}

# u64 little-endian as 8 raw bytes
u64() { local v=$1 i; for i in 0 1 2 3 4 5 6 7; do printf "\\$(printf '%03o' $(( (v >> (8*i)) & 255 )))"; done; }
# mkst FILE HEADER DATA_BYTES
mkst() { { u64 ${#2}; printf '%s' "$2"; head -c "$3" /dev/zero; } >"$1"; }

"$bin" init --arch llama --dim 16 --layers 2 --heads 2 --ffn 32 --vocab 40 --out "$t/good" >/dev/null 2>&1 \
  || { echo "FAIL: init of the base model"; exit 1; }
"$bin" info --model "$t/good" >/dev/null 2>&1 || { echo "FAIL: the base model does not validate"; exit 1; }
variant() { rm -rf "$t/$1"; cp -r "$t/good" "$t/$1"; }
st=model.safetensors
size=$(stat -c %s "$t/good/$st")

variant trunc; truncate -s $((size - 100)) "$t/trunc/$st"
expect "truncated safetensors" 1 "trunc/$st: tensor '.*run past the data region.*truncated" -- "$bin" info --model "$t/trunc"

variant hlen; { u64 $((size)); } | dd of="$t/hlen/$st" conv=notrunc status=none
expect "header length past EOF" 1 "hlen/$st: header length $size runs past the end of the file" -- "$bin" info --model "$t/hlen"

variant tiny; head -c 5 "$t/good/$st" >"$t/tiny/$st"
expect "file shorter than 8 bytes" 1 "tiny/$st: 5 bytes, too short" -- "$bin" info --model "$t/tiny"

variant overlap
mkst "$t/overlap/$st" '{"model.embed_tokens.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"model.norm.weight":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}' 24
expect "overlapping offsets" 1 "overlap/$st: tensors 'model.embed_tokens.weight' \[0, 16\] and 'model.norm.weight' \[8, 24\] overlap" -- "$bin" info --model "$t/overlap"

variant mismatch
mkst "$t/mismatch/$st" '{"model.norm.weight":{"dtype":"BF16","shape":[16],"data_offsets":[0,64]}}' 64
expect "dtype/shape mismatch" 1 "mismatch/$st: tensor 'model.norm.weight': BF16 shape of 16 elements needs 32 bytes" -- "$bin" info --model "$t/mismatch"

variant baddtype
mkst "$t/baddtype/$st" '{"model.norm.weight":{"dtype":"I64","shape":[16],"data_offsets":[0,128]}}' 128
expect "unsupported dtype" 1 "tensor 'model.norm.weight': dtype 'I64' is not supported" -- "$bin" info --model "$t/baddtype"

variant badjson; mkst "$t/badjson/$st" '{"a": [1, 2' 0
expect "header not JSON" 1 "badjson/$st: header is not valid JSON" -- "$bin" info --model "$t/badjson"

variant missing; sed -i 's/"tie_word_embeddings": false/"tie_word_embeddings": true/' "$t/missing/config.json"
sed -i 's/"num_hidden_layers": 2/"num_hidden_layers": 3/' "$t/missing/config.json"
expect "missing tensor" 1 "tensor 'model.layers.2.input_layernorm.weight' is missing" -- "$bin" info --model "$t/missing"

variant unknown; sed -i 's/"num_hidden_layers": 2/"num_hidden_layers": 1/' "$t/unknown/config.json"
expect "unknown tensor" 1 "unknown tensor 'model.layers.1.input_layernorm.weight'" -- "$bin" info --model "$t/unknown"

variant shape; sed -i 's/"intermediate_size": 32/"intermediate_size": 48/' "$t/shape/config.json"
expect "shape vs config" 1 "tensor 'model.layers.0.mlp.gate_proj.weight' has shape \[32, 16\] but config.json implies \[48, 16\]" -- "$bin" info --model "$t/shape"

variant notype; sed -i 's/"model_type": "llama"/"model_type": "gpt2"/' "$t/notype/config.json"
expect "unknown model type" 1 "config.json: unknown model type 'gpt2'" -- "$bin" info --model "$t/notype"

variant types; sed -i 's/"hidden_size": 16/"hidden_size": "16"/' "$t/types/config.json"
expect "config wrong type (string)" 1 "config.json: field 'hidden_size' must be an integer, not a string" -- "$bin" info --model "$t/types"

variant types2; sed -i 's/"tie_word_embeddings": false/"tie_word_embeddings": "no"/' "$t/types2/config.json"
expect "config wrong type (bool)" 1 "field 'tie_word_embeddings' must be true or false, not a string" -- "$bin" info --model "$t/types2"

variant types3; sed -i 's/"rope_scaling": null/"rope_scaling": 2/' "$t/types3/config.json"
expect "config wrong type (object)" 1 "field 'rope_scaling' must be an object or null, not an integer" -- "$bin" info --model "$t/types3"

variant cfgjson; echo '{"model_type": "llama",' >"$t/cfgjson/config.json"
expect "config not JSON" 1 "config.json: not valid JSON" -- "$bin" info --model "$t/cfgjson"

variant nost; rm "$t/nost/$st"
expect "no weights" 1 "nost: neither model.safetensors nor model.safetensors.index.json" -- "$bin" info --model "$t/nost"

"$bin" init --arch llama --dim 16 --layers 2 --heads 2 --ffn 32 --vocab 40 --max-shard 3KB --out "$t/shards" >/dev/null 2>&1
sed -i '0,/"model-00001-of/s/"model-00001-of/"model-00002-of/' "$t/shards/model.safetensors.index.json"
expect "index points at the wrong shard" 1 "is listed in model-00002-of-.*which does not hold it" -- "$bin" info --model "$t/shards"

# token files
printf 'hello, world\n' >"$t/text.txt"
"$bin" data --text "$t/text.txt" --out "$t/good.tok" >/dev/null 2>&1 || { echo "FAIL: data"; exit 1; }
{ printf 'NOTTOKEN'; tail -c +9 "$t/good.tok"; } >"$t/magic.tok"
expect "token file bad magic" 1 "magic.tok: bad magic" -- "$bin" info --data "$t/magic.tok"
head -c $(( $(stat -c %s "$t/good.tok") - 3 )) "$t/good.tok" >"$t/trunc.tok"
expect "token file truncated" 1 "trunc.tok: .*the file is truncated" -- "$bin" info --data "$t/trunc.tok"
head -c 20 "$t/good.tok" >"$t/short.tok"
expect "token file shorter than its header" 1 "short.tok: 20 bytes, shorter than the 64-byte" -- "$bin" info --data "$t/short.tok"
printf '{"prompt": "a"}\n' >"$t/bad.jsonl"
expect "jsonl line without response" 1 "bad.jsonl:1: \"prompt\" without \"completion\" or \"response\"" -- "$bin" data --jsonl "$t/bad.jsonl" --out "$t/bad.tok"
[ -e "$t/bad.tok" ] && { echo "FAIL: a failed 'data' left $t/bad.tok behind"; fails=$((fails+1)); }

# usage errors (exit 2)
expect "size flag without a number" 2 "init: --max-shard 'GiB' is not a size" -- \
  "$bin" init --arch llama --dim 16 --layers 2 --heads 2 --ffn 32 --vocab 40 --max-shard GiB --out "$t/x"
expect "size flag without a value" 2 "init: --max-shard needs a value" -- \
  "$bin" init --arch llama --dim 16 --layers 2 --heads 2 --ffn 32 --vocab 40 --out "$t/x" --max-shard
expect "int flag not a number" 2 "init: --dim 'abc' is not a valid integer" -- \
  "$bin" init --arch llama --dim abc --layers 2 --heads 2 --ffn 32 --vocab 40 --out "$t/x"
expect "unknown arch" 2 "init: --arch 'gpt2' is not one of" -- \
  "$bin" init --arch gpt2 --dim 16 --layers 2 --heads 2 --ffn 32 --vocab 40 --out "$t/x"
expect "heads not divisible" 2 "init: --kv-heads 3 must divide --heads 4" -- \
  "$bin" init --arch llama --dim 16 --layers 2 --heads 4 --kv-heads 3 --ffn 32 --vocab 40 --out "$t/x"
expect "init into a non-empty dir" 1 "good: already exists and is not empty" -- \
  "$bin" init --arch llama --dim 16 --layers 2 --heads 2 --ffn 32 --vocab 40 --out "$t/good"
[ -e "$t/x" ] && { echo "FAIL: a failed init left $t/x behind"; fails=$((fails+1)); }
ls "$t" | grep -q tmp- && { echo "FAIL: temporary directories left behind: $(ls "$t")"; fails=$((fails+1)); }

echo "$fails failed"
[ $fails = 0 ]
