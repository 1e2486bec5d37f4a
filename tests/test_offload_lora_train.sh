#!/usr/bin/env bash
# train --lora-rank end to end on the CPU backend (issue 18): the adapters after 3 steps are
# byte-identical whether the frozen base lives on the device, in host memory (adapters too) or
# on NVMe (budgets force each placement), and a run stopped after step 2 and resumed gives the
# same bytes as the run that never stopped; export writes PEFT's files and, with --merge, a
# Hugging Face directory. Bad --lora-* input is one line each, nothing kept.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-lora-train.XXXXXX)
mnt=""
trap '[ -n "$mnt" ] && { umount "$mnt" 2>/dev/null || umount -l "$mnt"; }; rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 64 --layers 3 --heads 4 --kv-heads 2 --ffn 96 --vocab 259 --seed 3 --out "$w/m" >/dev/null || fail init
python3 tests/ref/byte_tokenizer.py "$w/m" "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
for i in $(seq 64); do
  echo '{"messages": [{"role": "user", "content": "ping '$i'"}, {"role": "assistant", "content": "pong '$i'"}]}'
done >"$w/chats.jsonl"
"$bin" data --jsonl "$w/chats.jsonl" --tokenizer "$w/m" --out "$w/d.tok" >/dev/null || fail data
mkdir -p "$w/nv"
c=(--model "$w/m" --data "$w/d.tok" --seq-len 32 --batch-tokens 128 --backend cpu --lr 1e-2
   --steps 3 --lora-rank 4 --lora-alpha 8 --threads 2 --chunk 4096)
st=adapters-00000003/model.safetensors

run() {  # name, expected placement line (regex), args...
  local name=$1 pat=$2; shift 2
  "$bin" train "${c[@]}" --run "$w/$name" "$@" >"$w/$name.out" 2>&1 || { cat "$w/$name.out"; fail "$name"; }
  grep -Eq "$pat" "$w/$name.out" || { cat "$w/$name.out"; fail "$name: placement is not '$pat'"; }
  [ -e "$w/$name/$st" ] || fail "$name: no save of step 3"
}
run device 'layers 0-2 .* GPU +GPU'
run host 'layers 0-2 .* host +host ' --gpu-mem 700KiB
run nvme 'layers 0-2 .* NVMe +GPU' --gpu-mem 900KiB --cpu-mem 400KiB --nvme "$w/nv"
for p in host nvme; do
  cmp -s "$w/device/$st" "$w/$p/$st" || fail "adapters with the base on $p differ from the device run"
  echo "ok placement $p: adapters, m and v byte-identical to the base on the device"
done
[ -z "$(ls "$w/nv")" ] || fail "the NVMe scratch file was left behind"
# run.json as for full fine-tuning: the budgets as given, the LoRA placement as `plan` prints it
# (the same placement line train printed), the measured peaks of a finished run; report.html
# shows the placement and budgets
python3 - "$w/nvme/run.json" "$(grep -E 'layers 0-2 .* NVMe +GPU' "$w/nvme.out" | head -1)" <<'PY' || fail "run.json of the NVMe run"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["budgets"]["gpu_mem"] == 900 * 1024 and r["budgets"]["cpu_mem"] == 400 * 1024, r["budgets"]
assert sys.argv[2] and sys.argv[2] in r["placement"], "train's placement line not in run.json"
assert "adapter" in r["placement"], "no LoRA plan in run.json"
m = r["measured"]
assert r["finished"] is True and r["steps"] == 3 and m["arena_peak"] > 0 and m["host_peak_rss"] > 0, r
PY
grep -q 'id="placement"' "$w/nvme/report.html" && grep -q 'id="budgets"' "$w/nvme/report.html" \
  || fail "report.html of a LoRA run has no placement or budgets"
echo "ok run.json: budgets, the LoRA placement and measured peaks; report.html shows them"

"$bin" train "${c[@]}" --run "$w/r" --stop-after 2 >"$w/r.out" 2>&1 || { cat "$w/r.out"; fail "first half"; }
[ -e "$w/r/adapters-00000002/model.safetensors" ] || fail "no save after step 2"
grep -q '"finished": false' "$w/r/run.json" || fail "run.json of a run stopped after step 2 says finished"
"$bin" train "${c[@]}" --run "$w/r" --resume >"$w/r2.out" 2>&1 || { cat "$w/r2.out"; fail "resume"; }
grep -q "^step 3/3" "$w/r2.out" && ! grep -q "^step [12]/3" "$w/r2.out" || fail "resume did not run step 3 only"
[ ! -e "$w/r/adapters-00000002" ] || fail "the superseded save was not removed"
cmp -s "$w/device/$st" "$w/r/$st" || fail "2 steps + resume 1 differ from 3 steps"
[ "$(grep -o '"step": [0-9]*' "$w/r/metrics.jsonl" | tr '\n' ' ')" = '"step": 1 "step": 2 "step": 3 ' ] \
  || { cat "$w/r/metrics.jsonl"; fail "metrics.jsonl after the resume"; }
[ -s "$w/r/report.html" ] || fail "no report.html"
grep -q '"finished": true' "$w/r/run.json" || fail "run.json after the resumed run's last step is not finished"
echo "ok resume: 2 steps + --resume 1 step byte-identical to 3 steps (metrics.jsonl: steps 1, 2, 3)"

# SIGINT: the step in flight finishes, is saved, exit 130; --resume goes on from it; a second
# process on the same run directory is refused while the first runs. --commit-every N saves.
"$bin" train "${c[@]}" --steps 100000 --run "$w/sig" --commit-every 5 --quiet >"$w/sig.out" 2>&1 &
pid=$!
for i in $(seq 100); do [ -e "$w/sig/lora.json" ] && break; sleep 0.1; done
"$bin" train "${c[@]}" --steps 100000 --run "$w/sig" --resume >"$w/out" 2>"$w/err"
[ $? = 1 ] && grep -q "in use by another spillway process" "$w/err" || { cat "$w/err"; fail "a second process on the run"; }
echo "ok busy: $(cat "$w/err")"
kill -INT $pid
wait $pid; rc=$?
[ $rc = 130 ] || { cat "$w/sig.out"; fail "SIGINT: exit $rc, expected 130"; }
last=$(grep -o '^step [0-9]*' "$w/sig.out" | tail -1 | cut -d' ' -f2)
grep -q "stopped by SIGINT after step $last, saved" "$w/sig.out" || { tail -3 "$w/sig.out"; fail "SIGINT: no save of step $last"; }
grep -q "\"step\": $last," "$w/sig/lora.json" || fail "SIGINT: lora.json does not name step $last"
ls "$w/sig" | grep -q '^adapters-' || fail "no save"
"$bin" train "${c[@]}" --steps $((last + 1)) --run "$w/sig2" --commit-every 5 --stop-after 5 --quiet >/dev/null 2>&1 || fail "commit-every run"
[ -e "$w/sig2/adapters-00000005/model.safetensors" ] || fail "--commit-every 5: no save of step 5"
echo "ok SIGINT: stopped after step $last, saved, exit 130"

# --eval-data: with lr 0 the adapters stay at B = 0, so the held-out loss is the base's: the
# same bits as full fine-tuning's evaluation after a step at lr 0 (metrics.jsonl), here with the
# base streamed from host memory
"$bin" train --model "$w/m" --data "$w/d.tok" --eval-data "$w/d.tok" --seq-len 32 --batch-tokens 128 \
  --backend cpu --threads 2 --lr 0 --steps 1 --run "$w/full_ev" --quiet >/dev/null 2>&1 || fail "full eval run"
want=$(grep -o '"eval_loss": [0-9.e+-]*' "$w/full_ev/metrics.jsonl" | tail -1 | cut -d' ' -f2)
"$bin" train "${c[@]}" --eval-data "$w/d.tok" --lr 0 --steps 1 --no-save --quiet --gpu-mem 700KiB >"$w/ev.out" 2>&1 \
  || { cat "$w/ev.out"; fail "LoRA eval run"; }
got=$(grep -o 'eval loss [0-9.e+-]*' "$w/ev.out" | cut -d' ' -f3)
[ -n "$want" ] && [ "$got" = "$want" ] || fail "eval loss $got, full fine-tuning's at lr 0: $want"
echo "ok eval: held-out loss $got, full fine-tuning's at lr 0 to the printed digit"

expect_fail() {  # name, exit status, pattern, args...
  local name=$1 want=$2 pat=$3; shift 3
  "$bin" train "$@" >"$w/out" 2>"$w/err"; rc=$?
  [ $rc = "$want" ] || { cat "$w/err"; fail "$name: exit $rc, expected $want"; }
  [ "$(wc -l <"$w/err")" = 1 ] || { cat "$w/err"; fail "$name: expected one error line"; }
  grep -q -- "$pat" "$w/err" || { cat "$w/err"; fail "$name: message does not say '$pat'"; }
  echo "ok $name: $(cat "$w/err")"
}
b=(--model "$w/m" --data "$w/d.tok" --seq-len 32 --batch-tokens 128 --backend cpu --steps 3 --no-save --quiet)
expect_fail "rank 0" 2 "give a rank of at least 1" "${b[@]}" --lora-rank 0
expect_fail "unknown target" 2 "'x' is not a target" "${b[@]}" --lora-rank 4 --lora-targets q,x
expect_fail "alpha without rank" 2 "need --lora-rank" "${b[@]}" --lora-alpha 16
expect_fail "targets without rank" 2 "need --lora-rank" "${b[@]}" --lora-targets q
expect_fail "dropout" 2 "lora-dropout other than 0 with --lora-rank is not implemented" "${b[@]}" --lora-rank 4 --lora-dropout 0.1
expect_fail "rank above a side" 1 "lora-rank" "${b[@]}" --lora-rank 100
expect_fail "--prefetch other than 2" 1 "P16 window has 2 buffers" "${b[@]}" --lora-rank 4 --prefetch 3
expect_fail "resume, other rank" 1 "lora_rank" "${c[@]}" --lora-rank 8 --steps 4 --run "$w/r" --resume
expect_fail "existing run" 1 "already holds a run" "${c[@]}" --run "$w/device"
cp -r "$w/device" "$w/bad"
printf 'X' | dd of="$w/bad/$st" bs=1 seek=2000 conv=notrunc 2>/dev/null
expect_fail "damaged save" 1 "checksum does not match" "${c[@]}" --steps 4 --schedule constant --run "$w/bad" --resume
cp -r "$w/device" "$w/bad2"
echo '{"format": ' >"$w/bad2/lora.json"
expect_fail "malformed lora.json" 1 "lora.json" "${c[@]}" --run "$w/bad2" --resume
mkdir -p "$w/nvl"
( exec 9>"$w/nvl/spillway.lock"; flock 9; exec sleep 30 ) >/dev/null 2>&1 &
holder=$!
for i in $(seq 50); do [ -e "$w/nvl/spillway.lock" ] && break; sleep 0.1; done
sleep 0.2
expect_fail "--nvme in use" 1 "in use by another spillway process" "${b[@]}" --lora-rank 4 --nvme "$w/nvl"
kill $holder 2>/dev/null; wait $holder 2>/dev/null
# An NVMe failure in a step (injected: io/io.h SPILLWAY_IO_FAULT): the first block read, one
# read mid-step (block 30 of 40 in step 1: the forward reads 24 blocks of 8 KiB of the base, the
# backward the rest), a checksum mismatch, and the write of the first checkpoint (the load
# writes 24 blocks first): one line naming the transfer (after the engine's warning that
# injection is on), exit 1, no save, the NVMe scratch file removed.
for f in "EIO:read:1:the base" "EIO:read:30:read of" "corrupt:read:10:checksum mismatch" \
         "EIO:write:25:write of a checkpoint"; do
  spec=${f%:*} pat=${f##*:}
  rm -rf "$w/io" "$w/nvf"; mkdir -p "$w/nvf"
  SPILLWAY_IO_FAULT=$spec "$bin" train "${c[@]}" --run "$w/io" --quiet --gpu-mem 900KiB --cpu-mem 400KiB \
    --nvme "$w/nvf" >"$w/out" 2>"$w/err"; rc=$?
  [ $rc = 1 ] || { cat "$w/err"; fail "I/O fault $spec: exit $rc, expected 1"; }
  [ "$(grep -vc '^warning: io: fault injection active' "$w/err")" = 1 ] || { cat "$w/err"; fail "I/O fault $spec: expected one error line"; }
  grep -q "lora: NVMe .*$pat" "$w/err" || { cat "$w/err"; fail "I/O fault $spec: message does not say '$pat'"; }
  [ -z "$(ls "$w/io" | grep adapters)" ] || fail "I/O fault $spec: a save was written"
  [ -z "$(ls "$w/nvf")" ] || fail "I/O fault $spec: the NVMe scratch file was left behind"
  echo "ok I/O fault $spec: $(grep -v '^warning' "$w/err")"
done
"$bin" export --run "$w/device" --out "$w/peft" >"$w/out" 2>&1 || { cat "$w/out"; fail export; }
[ -e "$w/peft/adapter_model.safetensors" ] && [ -e "$w/peft/adapter_config.json" ] || fail "export: PEFT files missing"
head -c 20000 "$w/peft/adapter_model.safetensors" | grep -aq "base_model.model.model.layers.2.mlp.down_proj.lora_B.weight" \
  || fail "export: PEFT tensor names missing"
head -c 20000 "$w/peft/adapter_model.safetensors" | grep -aq "adam_m" && fail "export: optimizer state in the adapter"
grep -q '"peft_type": "LORA"' "$w/peft/adapter_config.json" && grep -q '"r": 4' "$w/peft/adapter_config.json" \
  || fail "export: adapter_config.json"
echo "ok export: adapter_model.safetensors + adapter_config.json"
ex_fail() {  # name, exit status, pattern, args...
  local name=$1 want=$2 pat=$3; shift 3
  "$bin" export "$@" >"$w/out" 2>"$w/err"; rc=$?
  [ $rc = "$want" ] && [ "$(wc -l <"$w/err")" = 1 ] && grep -q -- "$pat" "$w/err" \
    || { cat "$w/err"; fail "export $name: exit $rc"; }
  echo "ok export $name: $(cat "$w/err")"
}
"$bin" export --run "$w/device" --out "$w/merged" --merge >"$w/out" 2>&1 || { cat "$w/out"; fail "export --merge"; }
[ -e "$w/merged/model.safetensors" ] && [ -e "$w/merged/config.json" ] && [ -e "$w/merged/tokenizer.json" ] \
  || fail "export --merge: the Hugging Face directory is incomplete"
cmp -s "$w/m/model.safetensors" "$w/merged/model.safetensors" && fail "export --merge: the base, unchanged"
"$bin" info --model "$w/merged" >/dev/null || fail "export --merge: spillway cannot read the merged model"
echo "ok export --merge: a Hugging Face directory in the base's dtype (values: tests/ref/lora_peft_check.sh)"
mkdir -p "$w/full"
ex_fail "--merge, not LoRA" 2 "merge is for LoRA runs" --run "$w/full" --out "$w/m2" --merge
ex_fail "existing out" 1 "already exists" --run "$w/device" --out "$w/peft"
ex_fail "no run" 1 "lora.json\|manifest.json" --run "$w/full" --out "$w/m2"
[ ! -e "$w/m2" ] || fail "export left output behind"
# a run directory without room for two saves: one line before the first step (a real tmpfs;
# skipped without root)
mkdir -p "$w/small"
if mount -t tmpfs -o size=1m tmpfs "$w/small" 2>/dev/null; then
  mnt="$w/small"
  expect_fail "full disk" 1 "the adapters' saves need" "${c[@]}" --run "$w/small/r"
  [ -z "$(ls "$w/small/r" 2>/dev/null | grep adapters)" ] || fail "full disk: a save was written"
else
  echo "ok   (full disk case skipped: cannot mount a tmpfs without root)"
fi
echo "PASS"
