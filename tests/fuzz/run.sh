#!/usr/bin/env bash
# make fuzz: links each tests/fuzz/fuzz_*.c (safetensors header, config.json, token file, JSONL line + chat render) against the sanitized libspillway.a in BUILD and runs
# it under libFuzzer for FUZZ_SECONDS (default 60) from a small generated seed corpus.
# Exit status non-zero when a target crashes (the reproducer is left in BUILD/fuzz/).
set -eu
build=$1; shift
secs=${FUZZ_SECONDS:-60}
cc=${FUZZ_CC:-clang}
libs=${FUZZ_LIBS:--ljansson -lm -lpthread}
out=$build/fuzz
mkdir -p "$out"

seeds() {   # seeds NAME DIR
  local d=$2; mkdir -p "$d"
  case $1 in
  fuzz_safetensors)
    mk() { local h=$1 n=${#1} i; { for i in 0 1 2 3 4 5 6 7; do printf "\\$(printf '%03o' $(( (n >> (8*i)) & 255 )))"; done
           printf '%s' "$h"; head -c "$2" /dev/zero; } >"$d/$3"; }
    mk '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}}' 32 s1
    mk '{"w":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}' 2 s2
    mk '{}' 0 s3;;
  fuzz_tokens)
    le() { local v=$1 n=$2 i; for ((i = 0; i < n; i++)); do printf "\\$(printf '%03o' $(( (v >> (8*i)) & 255 )))"; done; }
    { printf SWTOKENS; le 1 4; le 2 4; le 3 8; le 0 4; le 258 4; le 3 8; le 0 24; le 256 2; le 104 2; le 257 2; } >"$d/t1"
    { printf SWTOKENS; le 1 4; le 4 4; le 9 8; le 1 4; le 0 4; le 6 8; le 0 24; for i in 1 2 3 4 5 6 7 8 9; do le $i 4; done; le 248 1; le 1 1; } >"$d/t2";;
  fuzz_jsonl)
    printf '%s' '{"text": "hello \u00e9 \ud83d\ude00"}' >"$d/j1"
    printf '%s' '{"prompt": "2+2=", "completion": " 4", "id": 7}' >"$d/j2"
    printf '%s' '{"messages": [{"role": "system", "content": "  s  "}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>r</think>\n\na"}, {"role": "user", "content": ""}, {"role": "assistant", "content": "\u3000x\u00a0"}]}' >"$d/j3"
    printf '%s' '{"messages": [{"role": "user", "content": "<tool_response>x</tool_response>"}, {"role": "assistant", "content": "</think>"}]}' >"$d/j4";;
  fuzz_tokenizer)
    cp tests/data/tokenizers/bytelevel/tokenizer.json "$d/bytelevel.json"
    cp tests/data/tokenizers/sentencepiece/tokenizer.json "$d/sentencepiece.json";;
  fuzz_config)
    printf '%s' '{"model_type":"llama","hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":96,"vocab_size":50,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192},"tie_word_embeddings":false}' >"$d/c1"
    printf '%s' '{"model_type":"qwen2","hidden_size":32,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8,"vocab_size":9,"torch_dtype":"bfloat16","eos_token_id":[1,2]}' >"$d/c2"
    printf '%s' '{"model_type":"mistral","hidden_size":16,"num_hidden_layers":1,"num_attention_heads":2,"intermediate_size":8,"vocab_size":9,"rope_parameters":{"rope_theta":500000.0,"rope_type":"linear","factor":2}}' >"$d/c3";;
  esac
}

status=0
for src in "$@"; do
  name=$(basename "$src" .c)
  bin=$out/$name
  echo "fuzz: building $name"
  $cc -g -O1 -I. -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
      "$src" "$build/libspillway.a" $libs -o "$bin"
  corpus=$out/$name.corpus
  seeds "$name" "$corpus"
  echo "fuzz: running $name for ${secs}s"
  # -close_fd_mask=2: the parsers' one-line error messages would flood the log
  if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -close_fd_mask=2 \
        -artifact_prefix="$out/$name-" -print_final_stats=1 "$corpus" >"$out/$name.log" 2>&1; then
    echo "fuzz: $name: no crash ($(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$out/$name.log" | grep -o '[0-9]*$') runs)"
  else
    echo "fuzz: $name: CRASH, see $out/$name.log"; tail -n 30 "$out/$name.log"; status=1
  fi
done
exit $status
