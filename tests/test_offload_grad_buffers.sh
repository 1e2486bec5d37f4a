#!/usr/bin/env bash
# --grad-buffers N (issue 17): N group-sized fp32 gradient buffers on the device, so that a
# layer's backward need not wait for the previous layer's gradient to reach the host. Every
# group streamed (P16 from the host cache, CPU AdamW): 1, 2 and 3 buffers save byte-identical
# weights, m and v (the buffers only change when the device waits), the plan's device row
# "gradient buffers" is N times one group's fp32 gradient (the largest, a layer: 213248
# parameters x 4 B, in the arena's 256-byte blocks), and a bad count or a budget too small for
# the buffers is one line naming --grad-buffers.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-gradbufs.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 128 --layers 4 --heads 4 --ffn 384 --vocab 258 --seed 3 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
common=(--model "$w/m" --data "$w/d.tok" --steps 3 --seq-len 64 --batch-tokens 256 --backend cpu
        --threads 2 --gpu-mem 5MiB --cpu-mem 64MiB --lr 1e-3)
for n in 1 2 3; do
  "$bin" train "${common[@]}" --grad-buffers $n --run "$w/r$n" >"$w/out$n" 2>"$w/err$n" || { cat "$w/err$n"; fail "train --grad-buffers $n"; }
  grep -qE "^  layers 0-3 +[0-9]+  host " "$w/out$n" || { cat "$w/out$n"; fail "the layers are not streamed ($n buffers)"; }
  python3 - "$w/out$n" $n <<'PY' || fail "gradient buffer row with $n buffers"
import re, sys
n = int(sys.argv[2])
row = [l for l in open(sys.argv[1]) if re.match(r"\s+device gradient buffers\s", l)]
assert row, "no row"
mib = float(row[0].split()[3])
want = n * ((213248 * 4 + 255) // 256 * 256) / 2**20
assert abs(mib - want) < 0.05 + 1e-9, (mib, want)
print("ok %d gradient buffers: %.1f MiB on the device (want %.2f)" % (n, mib, want))
PY
done
for f in weights-00000003/model.safetensors optim-00000003/m/model.safetensors optim-00000003/v/model.safetensors; do
  cmp -s "$w/r1/$f" "$w/r2/$f" && cmp -s "$w/r1/$f" "$w/r3/$f" || fail "1, 2 and 3 gradient buffers differ in $f"
done
echo "ok 1, 2 and 3 gradient buffers: the same bytes"
for bad in 0 9 -1; do
  "$bin" train "${common[@]}" --grad-buffers $bad --no-save >"$w/o" 2>"$w/e" && fail "--grad-buffers $bad accepted"
  [ "$(wc -l <"$w/e")" = 1 ] && grep -q -- "--grad-buffers $bad" "$w/e" || { cat "$w/e"; fail "--grad-buffers $bad: not one line naming it"; }
done
echo "ok --grad-buffers 0, 9, -1: one line each"
"$bin" train "${common[@]}" --gpu-mem 3MiB --grad-buffers 4 --no-save >"$w/o" 2>"$w/e" && fail "a budget too small was accepted"
grep -q "short of the device working set.*--grad-buffers" "$w/e" || { cat "$w/e"; fail "the short budget does not name --grad-buffers"; }
echo "ok a budget too small for 4 buffers names --grad-buffers"
