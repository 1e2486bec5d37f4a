#!/usr/bin/env bash
# The pinned staging of the NVMe streams (issue 17), on the CPU backend with a model whose
# checkpoints partly spill to NVMe and whose layers' P32/m/v live there. Neither knob changes a
# bit of the result; each is refused out of range with one line naming it.
# * train --io-depth N: N activation checkpoints in flight to / from NVMe each way, 2N staging
#   buffers of one checkpoint, at most 16 (the planner's cap). The plan's staging row names
#   min(2N, 16) checkpoints for N = 1, 2, 8, 20; the runs with 1, 2 and 8 save byte-identical
#   weights, m and v; 0, 65 and -1 are refused.
# * SW_OPT_SETS=N: the optimizer's NVMe stream through N staging sets instead of two, so that a
#   chunk's read waits for the write of the chunk N before it (with two, for the one submitted
#   just before it). In chunks of 65536 parameters (four a layer of 213248): the staging row says
#   N buffers and holds N sets of P32, m, v (fp32) and P16 (bf16) of one chunk, 4 KiB-aligned;
#   2, 3 and 4 sets save byte-identical weights, m and v; 1, 5 and a word are refused.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-staging.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 128 --layers 4 --heads 4 --ffn 384 --vocab 258 --seed 3 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
mkdir -p "$w/nv"
base=(--model "$w/m" --data "$w/d.tok" --steps 2 --seq-len 256 --batch-tokens 8192 --backend cpu
      --threads 2 --gpu-mem 8MiB --nvme "$w/nv" --checkpoint-only --lr 1e-3)
# same A B: runs A and B saved byte-identical weights, m and v
same() {
  for f in weights-00000002/model.safetensors optim-00000002/m/model.safetensors optim-00000002/v/model.safetensors; do
    cmp -s "$w/$1/$f" "$w/$2/$f" || fail "runs $1 and $2 differ in $f"
  done
}
# refused WHAT CMD...: CMD fails with one line naming WHAT (up to an '=')
refused() {
  local what=$1; shift
  "$@" >"$w/o" 2>"$w/e" && fail "$what accepted"
  [ "$(wc -l <"$w/e")" = 1 ] && grep -q -- "${what%%=*}" "$w/e" || { cat "$w/e"; fail "$what: not one line naming it"; }
}

common=("${base[@]}" --cpu-mem 14MiB)
for d in 1 2 8 20; do
  "$bin" train "${common[@]}" --io-depth $d --run "$w/d$d" >"$w/out" 2>"$w/err" || { cat "$w/err"; fail "train --io-depth $d"; }
  want=$(( 2 * d < 16 ? 2 * d : 16 ))
  grep -qE "^  host +I/O staging checkpoints +[0-9.]+ +pinned, $want checkpoints on their way" "$w/out" \
    || { grep "staging checkpoints" "$w/out"; fail "--io-depth $d: the staging row does not name $want checkpoints"; }
  grep -qE "^  NVMe +[1-9][0-9]* \(" "$w/out" || { cat "$w/out"; fail "--io-depth $d: no checkpoint spilled to NVMe"; }
done
echo "ok --io-depth 1, 2, 8, 20: 2, 4, 16, 16 checkpoint staging buffers, checkpoints on NVMe"
same d1 d2 && same d1 d8
echo "ok --io-depth 1, 2 and 8: the same bytes"
for bad in 0 65 -1; do refused "--io-depth $bad" "$bin" train "${common[@]}" --io-depth $bad --no-save; done
echo "ok --io-depth 0, 65, -1: one line each"

common=("${base[@]}" --cpu-mem 16MiB --chunk 65536)
for n in 2 3 4; do
  SW_OPT_SETS=$n "$bin" train "${common[@]}" --run "$w/s$n" >"$w/out" 2>"$w/err" || { cat "$w/err"; fail "SW_OPT_SETS=$n train"; }
  grep -qE "^  layers 0-3 +[0-9]+  host +NVMe +NVMe +NVMe " "$w/out" || { cat "$w/out"; fail "the layers' state is not on NVMe ($n sets)"; }
  python3 - "$w/out" $n <<'PY' || fail "the staging row with $n sets"
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
same s2 s3 && same s2 s4
echo "ok 2, 3 and 4 staging sets: the same bytes"
for bad in 1 5 many; do refused "SW_OPT_SETS=$bad" env SW_OPT_SETS=$bad "$bin" train "${common[@]}" --no-save; done
echo "ok SW_OPT_SETS=1, 5, many: one line each"
