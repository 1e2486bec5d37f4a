#!/usr/bin/env bash
# spillway export with the tokenizer files: a small model trained a few steps on tokenizer-made
# data exports with tokenizer.json / tokenizer_config.json (and the other tokenizer files present)
# copied byte for byte beside the weights; an existing --out, a --tokenizer directory without a
# tokenizer and a filesystem too small (a real tmpfs; skipped without root) each fail with one
# line, exit 1 and nothing written.
set -u
bin=${SW_BIN:-build/spillway}
here=$(cd "$(dirname "$0")/.." && pwd)
t=$(mktemp -d /tmp/sw-test-export.XXXXXX)
m=""
cleanup() { [ -n "$m" ] && { umount "$m" 2>/dev/null || umount -l "$m"; rmdir "$m"; }; rm -rf "$t"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 32 --layers 2 --heads 2 --ffn 64 --vocab 259 --seed 3 --out "$t/model" >/dev/null || fail init
python3 "$here/tests/ref/byte_tokenizer.py" "$t/model" "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
printf '{"role": "x"}\n' >"$t/model/special_tokens_map.json"
for i in $(seq 40); do
  echo '{"messages": [{"role": "user", "content": "ping '$i'"}, {"role": "assistant", "content": "pong"}]}'
done >"$t/chats.jsonl"
"$bin" data --jsonl "$t/chats.jsonl" --tokenizer "$t/model" --out "$t/d.tok" >/dev/null || fail data
mkdir -p "$t/nvme"
"$bin" train --model "$t/model" --data "$t/d.tok" --backend cpu --steps 2 --seq-len 32 --batch-tokens 64 \
  --gpu-mem 64MiB --cpu-mem 64MiB --nvme "$t/nvme" --run "$t/run" --quiet >/dev/null 2>&1 || fail train
out=$("$bin" export --run "$t/run" --out "$t/hf" --tokenizer "$t/model") || fail "export: $out"
echo "$out" | grep -q "3 tokenizer files from $t/model" || fail "export summary: $out"
for f in tokenizer.json tokenizer_config.json special_tokens_map.json; do
  cmp -s "$t/model/$f" "$t/hf/$f" || fail "$f not copied byte for byte"
done
[ -f "$t/hf/model.safetensors" ] && [ -f "$t/hf/config.json" ] || fail "weights missing"
"$bin" info --model "$t/hf" >/dev/null || fail "the export does not validate"
echo "ok   export copies the tokenizer files"

expect() {   # expect NAME PATTERN -- command...
  local name=$1 pat=$2; shift 3
  "$@" >/dev/null 2>"$t/err"; local rc=$?
  [ $rc = 1 ] && [ "$(wc -l <"$t/err")" = 1 ] && grep -q "^spillway: .*$pat" "$t/err" \
    || fail "$name: exit $rc: $(cat "$t/err")"
  echo "ok   $name: $(cat "$t/err")"
}
expect "existing --out" "export: $t/hf already exists" -- "$bin" export --run "$t/run" --out "$t/hf" --tokenizer "$t/model"
expect "no tokenizer there" "no tokenizer.json or tokenizer.model there" -- "$bin" export --run "$t/run" --out "$t/hf2" --tokenizer "$t/nvme"
[ ! -e "$t/hf2" ] && ! ls "$t" | grep -q export- || fail "something left behind"

m=$(mktemp -d /tmp/sw-export-fullfs.XXXXXX)
if ! mount -t tmpfs -o size=64k tmpfs "$m" 2>/dev/null; then
  rmdir "$m"; m=""; echo "ok   (full filesystem case skipped: cannot mount a tmpfs without root)"; exit 0
fi
expect "full filesystem" "export: $m/hf needs .* but only .* is free there (short by " -- "$bin" export --run "$t/run" --out "$m/hf" --tokenizer "$t/model"
[ -z "$(ls -A "$m")" ] || fail "files left on the full filesystem: $(ls -A "$m")"
exit 0
