#!/usr/bin/env bash
# spillway plan --lora-rank: the 405B shape on a 24 GiB GPU, 128 GiB of host memory and NVMe, its
# parameter counts against the arithmetic of the shape; bad LoRA input is one line and exit 2.
set -u
bin=${SW_BIN:-build/spillway}
fail() { echo "FAIL: $*"; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
big="--arch llama --dim 16384 --layers 126 --heads 128 --kv-heads 8 --ffn 53248 --vocab 128256"
budgets="--gpu-mem 24GiB --cpu-mem 128GiB --nvme /nonexistent/a:2TB"

"$bin" plan $big $budgets --lora-rank 16 >"$tmp/out" 2>"$tmp/err"
rc=$?; [ $rc = 0 ] || fail "405B LoRA plan exited $rc: $(cat "$tmp/err")"
for want in "LoRA plan: rank 16 on q,k,v,o,gate,up,down" "base P16 (frozen)" "adapter Adam m" \
            "GPU   total" "host  total" "NVMe  total" "nothing of the base is written back" \
            "predicted step:" "bound by" "largest base of this width that fits these budgets:" \
            "train --lora-rank runs this placement"; do
  grep -q -- "$want" "$tmp/out" || fail "LoRA plan output lacks '$want'"
done
# no optimizer state or gradient row for the base anywhere
grep -E "^  (GPU|host|NVMe) +(P32|Adam m|Adam v|gradient buffers)" "$tmp/out" && fail "a base optimizer row"
# parameter counts from the shape: base = 2 V C + C + L (2 C + 2 C^2 + 2 C kv + 3 C F),
# adapters = L r ((C+C) + 2 (C+kv) + (C+C) + 3 (C+F)), kv = 8 x 128
awk 'BEGIN { C = 16384; L = 126; F = 53248; V = 128256; kv = 1024; r = 16
       base = 2 * V * C + C + L * (2 * C + 2 * C * C + 2 * C * kv + 3 * C * F)
       ad = L * r * (2 * C + C + 2 * (C + kv) + C + 3 * (C + F))
       printf "base: %.3f B parameters\nadapters: %.3f M parameters\n", base / 1e9, ad / 1e6
       printf "%.2f GiB of base P16\n", 2 * base / 2^30 }' >"$tmp/want"
grep -q "^$(sed -n 1p "$tmp/want")," "$tmp/out" || fail "base count: want '$(sed -n 1p "$tmp/want")': $(grep '^base:' "$tmp/out")"
grep -q "^$(sed -n 2p "$tmp/want") " "$tmp/out" || fail "adapter count: want '$(sed -n 2p "$tmp/want")': $(grep '^adapters:' "$tmp/out")"
grep -q "$(sed -n 3p "$tmp/want")" "$tmp/out" || fail "base P16 bytes: want '$(sed -n 3p "$tmp/want")'"
# every tier total within its budget
awk '$2 == "total" && $1 == "GPU"  { if ($3 > 24576.0) bad = 1; n++ }
     $2 == "total" && $1 == "host" { if ($3 > 131072.0) bad = 1; n++ }
     $2 == "total" && $1 == "NVMe" { if ($3 > 2000000000000 / 1048576) bad = 1; n++ }
     END { exit (bad || n != 3) }' "$tmp/out" || fail "a tier total is over its budget: $(grep total "$tmp/out")"

one_line_exit() {  # expected-status pattern description args...
  local want=$1 pat=$2 what=$3; shift 3
  "$bin" plan "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  [ $rc = "$want" ] || fail "$what: exit $rc, expected $want: $(cat "$tmp/err")"
  [ "$(wc -l <"$tmp/err")" = 1 ] || fail "$what: expected one line, got: $(cat "$tmp/err")"
  [ ! -s "$tmp/out" ] || fail "$what: printed to stdout"
  grep -q -- "$pat" "$tmp/err" || fail "$what: message lacks '$pat': $(cat "$tmp/err")"
}
one_line_exit 2 "--lora-rank 0 must be a positive rank" "rank 0" $big $budgets --lora-rank 0
one_line_exit 2 "--lora-rank -3 must be a positive rank" "negative rank" $big $budgets --lora-rank -3
one_line_exit 2 "larger than k_proj's smaller dimension" "rank above k_proj's 1024" $big $budgets --lora-rank 1025
one_line_exit 2 "'lm_head' is not a target" "unknown target" $big $budgets --lora-rank 16 --lora-targets q,lm_head
one_line_exit 2 "--lora-targets needs --lora-rank" "targets without a rank" $big $budgets --lora-targets q
one_line_exit 2 "--prefetch 3: the LoRA executor's P16 window has 2 buffers" "--prefetch other than 2" $big $budgets --lora-rank 16 --prefetch 3
one_line_exit 1 "^spillway: plan: --gpu-mem 4.00 GiB is .* short" "GPU too small" $big --gpu-mem 4GiB --cpu-mem 128GiB --nvme /nonexistent/a:2TB --lora-rank 16
one_line_exit 1 "nvme capacity" "NVMe too small" $big $budgets --lora-rank 16 --nvme /nonexistent/a:100GB
# only q,v: fewer adapters, still all on the GPU
"$bin" plan $big $budgets --lora-rank 16 --lora-targets q,v >"$tmp/out" 2>"$tmp/err" || fail "q,v: $(cat "$tmp/err")"
grep -q "rank 16 on q,v$" "$tmp/out" || fail "targets line: $(head -1 "$tmp/out")"
echo ok
