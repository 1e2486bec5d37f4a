#!/usr/bin/env bash
# SW_OPT_SETS=N (issue 17): the optimizer's NVMe stream through N pinned staging sets instead of
# two, so that a chunk's read waits for the write of the chunk N before it (with two, for the one
# submitted just before it). On the CPU backend with every layer's P32/m/v on NVMe in chunks of
# 65536 parameters (four chunks a layer of 213248): the plan's staging row says N buffers and
# holds N sets of P32, m, v (fp32) and P16 (bf16) of one chunk, 4 KiB-aligned; the runs with 2,
# 3 and 4 sets save byte-identical weights, m and v; and 1, 5 and a word are refused with one
# line naming SW_OPT_SETS.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-optsets.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 128 --layers 4 --heads 4 --ffn 384 --vocab 258 --seed 3 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
mkdir -p "$w/nv"
common=(--model "$w/m" --data "$w/d.tok" --steps 3 --seq-len 256 --batch-tokens 8192 --backend cpu
        --threads 2 --gpu-mem 8MiB --cpu-mem 16MiB --chunk 65536 --nvme "$w/nv" --checkpoint-only --lr 1e-3)
for n in 2 3 4; do
  SW_OPT_SETS=$n "$bin" train "${common[@]}" --run "$w/r$n" >"$w/out$n" 2>"$w/err$n" || { cat "$w/err$n"; fail "SW_OPT_SETS=$n train"; }
  grep -qE "^  layers 0-3 +[0-9]+  host +NVMe +NVMe +NVMe " "$w/out$n" || { cat "$w/out$n"; fail "the layers' state is not on NVMe ($n sets)"; }
  python3 - "$w/out$n" $n <<'PY' || fail "the staging row with $n sets"
import re, sys
n = int(sys.argv[2])
row = [l for l in open(sys.argv[1]) if re.match(r"\s+host\s+I/O staging optimizer\s", l)]
assert row and re.search(r"pinned, %d buffers of one chunk \(65536 params\)" % n, row[0]), row
mib = float(row[0].split()[4])
up = lambda b: (b + 4095) // 4096 * 4096
want = n * up(3 * up(65536 * 4) + up(65536 * 2)) / 2**20
assert abs(mib - want) < 0.05 + 1e-9, (mib, want)
print("ok %d sets: %.1f MiB of optimizer staging (want %.2f)" % (n, mib, want))
PY
done
for f in weights-00000003/model.safetensors optim-00000003/m/model.safetensors optim-00000003/v/model.safetensors; do
  for n in 3 4; do
    cmp -s "$w/r2/$f" "$w/r$n/$f" || fail "2 and $n staging sets differ in $f"
  done
done
echo "ok 2, 3 and 4 staging sets: the same bytes"
for bad in 1 5 many; do
  SW_OPT_SETS=$bad "$bin" train "${common[@]}" --no-save >"$w/o" 2>"$w/e" && fail "SW_OPT_SETS=$bad accepted"
  [ "$(wc -l <"$w/e")" = 1 ] && grep -q "SW_OPT_SETS" "$w/e" || { cat "$w/e"; fail "SW_OPT_SETS=$bad: not one line naming it"; }
done
echo "ok SW_OPT_SETS=1, 5, many: one line each"
