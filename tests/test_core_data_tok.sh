#!/usr/bin/env bash
# spillway data with a tokenizer, on a small hand-written byte-level tokenizer (one id per byte,
# so the expected ids and masks follow from the text): the formats and their masks, EOS packing,
# --max-len truncation and --drop-long with their counts, u32 ids past 65536, identical output
# on 1 and 2 threads, --decode, template detection errors, and every malformed line: one error
# line naming the file and line, exit 1, nothing written (a previous file is left as it was).
set -u
bin=${SW_BIN:-build/spillway}
t=$(mktemp -d /tmp/sw-test-datatok.XXXXXX)
trap 'rm -rf "$t"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }

# tokenizer DIR CHAT_TEMPLATE [BIG_ID]: ids 0..255 = bytes (GPT-2 byte-to-unicode vocabulary, no
# merges), then <|im_start|> 256, <|im_end|> 257, <|endoftext|> 258 (and <|big|> BIG_ID)
mktok() { mkdir -p "$1" && python3 "$(dirname "$0")/ref/byte_tokenizer.py" "$@"; }
chatml="{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
mktok "$t/tok" "$chatml"
# dump X.tok: "ids" and "mask" lines
dump() { python3 - "$1" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
magic, ver, tb, n, flags, vocab, nt, fp = struct.unpack_from("<8sIIQIIQQ", b, 0)
ids = struct.unpack_from("<%d%s" % (n, "H" if tb == 2 else "I"), b, 64)
m = b[64 + n * tb:]
print("v%d tb%d vocab%d fp%s" % (ver, tb, vocab, "set" if fp else "0"))
print(" ".join(map(str, ids)))
print("".join(str((m[i // 8] >> (i % 8)) & 1) if flags & 1 else "1" for i in range(n)))
PY
}

# --- formats and masks: ids are bytes, EOS = 257
printf '%s\n' '{"text": "ab"}' '{"prompt": "x", "completion": "yz"}' \
  '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}]}' >"$t/f.jsonl"
out=$("$bin" data --jsonl "$t/f.jsonl" --tokenizer "$t/tok" --out "$t/f.tok" 2>&1) || fail "data: $out"
echo "$out" | grep -q "3 examples (text 1, prompt/completion 1, messages 1, template chatml), 31 tokens, 8 targets; truncated 0, dropped 0" || fail "summary: $out"
# text: a b EOS (all targets); prompt: x y z EOS (y z EOS); chat: <|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n EOS
got=$(dump "$t/f.tok")
[ "$(echo "$got" | sed -n 1p)" = "v2 tb2 vocab259 fpset" ] || fail "header: $got"
[ "$(echo "$got" | sed -n 2p)" = "97 98 257 120 121 122 257 256 117 115 101 114 10 113 257 10 256 97 115 115 105 115 116 97 110 116 10 65 257 10 257" ] \
  || fail "ids: $(echo "$got" | sed -n 2p)"
[ "$(echo "$got" | sed -n 3p)" = "1110111000000000000000000001100" ] || fail "mask: $(echo "$got" | sed -n 3p)"
echo "ok   formats, masks, EOS packing"

# --- decode round trip
dec=$("$bin" data --decode "$t/f.tok" --tokenizer "$t/tok") || fail "decode"
[ "$dec" = "$(printf 'ab<|im_end|>xyz<|im_end|><|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n<|im_end|>')" ] || fail "decode: $dec"
mktok "$t/tok2" "$chatml" 300   # another tokenizer.json
"$bin" data --decode "$t/f.tok" --tokenizer "$t/tok2" >/dev/null 2>"$t/err" && fail "decode with another tokenizer accepted"
echo "ok   --decode"

# --- --max-len: truncate (EOS kept, not a target) or drop, counted
printf '%s\n' '{"text": "abcdef"}' '{"text": "gh"}' '{"prompt": "p", "completion": "qrstu"}' >"$t/m.jsonl"
out=$("$bin" data --jsonl "$t/m.jsonl" --tokenizer "$t/tok" --out "$t/m.tok" --max-len 4) || fail "max-len"
echo "$out" | grep -q "3 examples .*, 11 tokens, 8 targets; truncated 2, dropped 0 (--max-len 4)" || fail "truncate summary: $out"
[ "$(dump "$t/m.tok" | sed -n 2p)" = "97 98 99 257 103 104 257 112 113 114 257" ] || fail "truncated ids: $(dump "$t/m.tok")"
[ "$(dump "$t/m.tok" | sed -n 3p)" = "11101110110" ] || fail "truncated mask: $(dump "$t/m.tok")"
out=$("$bin" data --jsonl "$t/m.jsonl" --tokenizer "$t/tok" --out "$t/d.tok" --max-len 4 --drop-long) || fail "drop-long"
echo "$out" | grep -q "3 examples .*, 3 tokens, 3 targets; truncated 0, dropped 2 (--max-len 4)" || fail "drop summary: $out"
"$bin" data --jsonl "$t/m.jsonl" --tokenizer "$t/tok" --out "$t/e.tok" --max-len 2 --drop-long >/dev/null 2>"$t/err" && fail "all dropped accepted"
grep -q "every example is longer than --max-len 2" "$t/err" && [ ! -e "$t/e.tok" ] || fail "all dropped: $(cat "$t/err")"
echo "ok   --max-len, --drop-long"

# --- u32 ids past 65535; threads give identical files
mktok "$t/big" "$chatml" 70000
printf '{"text": "x<|big|>y"}\n' >"$t/b.jsonl"
"$bin" data --jsonl "$t/b.jsonl" --tokenizer "$t/big" --out "$t/b.tok" >/dev/null || fail "u32 data"
[ "$(dump "$t/b.tok" | sed -n 1,2p | tr '\n' ' ')" = "v2 tb4 vocab70001 fpset 120 70000 121 257 " ] || fail "u32: $(dump "$t/b.tok")"
python3 -c "
import json, random
r = random.Random(1)
for i in range(3000):
    w = ' '.join(r.choice(['alpha', 'beta', 'γάμμα', '数据', '🙂', 'x\ty', '  ']) for _ in range(r.randint(0, 40)))
    print(json.dumps({'messages': [{'role': 'user', 'content': w}, {'role': 'assistant', 'content': w[::-1]}]} if i % 3 else {'text': w}, ensure_ascii=False))
" >"$t/many.jsonl"
"$bin" data --jsonl "$t/many.jsonl" --tokenizer "$t/tok" --out "$t/t1.tok" --threads 1 >/dev/null || fail "threads 1"
"$bin" data --jsonl "$t/many.jsonl" --tokenizer "$t/tok" --out "$t/t2.tok" --threads 2 >/dev/null || fail "threads 2"
cmp -s "$t/t1.tok" "$t/t2.tok" || fail "1 and 2 threads differ"
echo "ok   u32 ids, threads"

# --text with a tokenizer (no loss mask in the output): the ids decode back to the file, then EOS
printf 'hello world\nsecond line\n' >"$t/in.txt"
if "$bin" data --text "$t/in.txt" --tokenizer "$t/tok" --out "$t/text.tok" >/dev/null 2>"$t/err" &&
   "$bin" data --decode "$t/text.tok" --tokenizer "$t/tok" >"$t/dec" 2>>"$t/err" &&
   head -c "$(stat -c %s "$t/in.txt")" "$t/dec" | cmp -s - "$t/in.txt"; then
  echo "ok   --text with a tokenizer decodes back to the file"
else
  cat "$t/err"; fail "--text with a tokenizer"
fi

# --- errors: one line, exit 1 (2 for usage), nothing written, a previous file untouched
echo keep >"$t/out.tok"
expect() {   # expect NAME WANT_EXIT PATTERN -- command...
  local name=$1 want=$2 pat=$3; shift 4
  "$@" >/dev/null 2>"$t/err"; local rc=$?
  if [ "$rc" != "$want" ] || [ "$(wc -l <"$t/err")" != 1 ] || ! grep -q "^spillway: .*$pat" "$t/err" \
     || [ "$(cat "$t/out.tok")" != keep ] || ls "$t" | grep -q 'out.tok.tmp'; then
    fail "$name: exit $rc (want $want): $(cat "$t/err")"
  else
    echo "ok   $name: $(cat "$t/err")"
  fi
}
line() { printf '%s\n' '{"text": "fine"}' '{"text": "fine too"}' "$1" >"$t/bad.jsonl"; }
D() { "$bin" data --jsonl "$t/bad.jsonl" --tokenizer "$t/tok" --out "$t/out.tok" "$@"; }
line '{"text": "a"'; expect "bad JSON" 1 "bad.jsonl:3: not valid JSON" -- D
line '{"txt": "a"}'; expect "missing field" 1 "bad.jsonl:3: none of the fields" -- D
line '{"text": 3}'; expect "wrong type" 1 "bad.jsonl:3: \"text\" must be a string, not a number" -- D
line '{"prompt": "a"}'; expect "prompt without completion" 1 "bad.jsonl:3: \"prompt\" without" -- D
line '{"messages": []}'; expect "empty messages" 1 "bad.jsonl:3: \"messages\" is empty" -- D
line '{"messages": [{"role": "assistant", "content": "a"}]}'; expect "role out of order" 1 "bad.jsonl:3: message 1 is from the assistant where the user was expected" -- D
line '{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}'; expect "unknown role" 1 "bad.jsonl:3: message 2 has role \"bot\"" -- D
line '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": 1}]}'; expect "content type" 1 "bad.jsonl:3: message 2: \"content\" must be a string" -- D
line '{"messages": [{"role": "user", "content": "a"}]}'; expect "no assistant" 1 "bad.jsonl:3: no assistant message" -- D
printf '{"text": "ok"}\n{"text": "\xff\xfe"}\n' >"$t/bad.jsonl"; expect "non-UTF-8" 1 "bad.jsonl:2: not valid UTF-8" -- D
printf 'ok\nabc\xff\n' >"$t/bad.txt"; expect "--text not UTF-8" 1 "bad.txt:2: not valid UTF-8 (byte 7 of the file is 0xff)" -- "$bin" data --text "$t/bad.txt" --tokenizer "$t/tok" --out "$t/out.tok"
line '{"text": "a"}'; expect "forced format" 1 "bad.jsonl:1: no \"messages\" field" -- D --format messages
: >"$t/bad.jsonl"; expect "empty file" 1 "bad.jsonl: no examples" -- D
line '{"text": "a"}'; expect "unknown --chat-template" 1 "--chat-template vicuna: unknown; supported: llama3, chatml" -- D --chat-template vicuna
line '{"text": "a"}'; expect "bad --format" 2 "--format must be text, prompt or messages" -- D --format chat
line '{"text": "a"}'; expect "--drop-long alone" 2 "--drop-long needs --max-len" -- D --drop-long
mktok "$t/notmpl" ""
line '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}'
expect "no chat_template" 1 "tokenizer_config.json has no chat_template; choose one with --chat-template NAME" -- "$bin" data --jsonl "$t/bad.jsonl" --tokenizer "$t/notmpl" --out "$t/out.tok"
mktok "$t/vicuna" "{% for m in messages %}USER: {{ m['content'] }} ASSISTANT:{% endfor %}"
expect "unknown template" 1 "chat_template is not one of the supported families; choose one with --chat-template NAME (llama3, chatml" -- "$bin" data --jsonl "$t/bad.jsonl" --tokenizer "$t/vicuna" --out "$t/out.tok"
mktok "$t/l31" "{{- bos_token }}<|start_header_id|>system<|end_header_id|>{{ 'Cutting Knowledge Date: December 2023' }}<|eot_id|>"
expect "llama 3.1 template" 1 "Llama 3.1+ template" -- "$bin" data --jsonl "$t/bad.jsonl" --tokenizer "$t/l31" --out "$t/out.tok"
"$bin" data --jsonl "$t/bad.jsonl" --tokenizer "$t/vicuna" --chat-template chatml --out "$t/ok.tok" >/dev/null || fail "--chat-template overrides detection"
expect "mistral with system" 1 "bad.jsonl:1: the mistral template has no system role" -- \
  sh -c "printf '%s\n' '{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}' >'$t/bad.jsonl'; python3 -c \"import json;p='$t/tok/tokenizer_config.json';c=json.load(open(p));c['bos_token']='<|im_start|>';json.dump(c,open(p,'w'))\"; exec '$bin' data --jsonl '$t/bad.jsonl' --tokenizer '$t/tok' --chat-template mistral --out '$t/out.tok'"
expect "messages without tokenizer" 1 "bad.jsonl:1: a \"messages\" conversation needs the model's chat template; give --tokenizer" -- "$bin" data --jsonl "$t/bad.jsonl" --out "$t/out.tok"
expect "missing tokenizer dir" 1 "/nonexistent" -- "$bin" data --jsonl "$t/bad.jsonl" --tokenizer /nonexistent --out "$t/out.tok"
[ "$fails" = 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all passed"
