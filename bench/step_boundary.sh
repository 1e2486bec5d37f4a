#!/usr/bin/env bash
# Issue 17, the step boundary: the same training run with the drained boundary (SW_STEP_OVERLAP=0:
# each step waits for its last CPU updates and NVMe write-backs), with the next forward
# overlapping them but no read-ahead (SW_OPT_READ_AHEAD=0), and as built (both), in one command.
# Prints per schedule the median s/step over the steps after the first, the ratio to the drained
# one, the planner's step-boundary line, the trace's cross-step line (offload/trace_summary.py),
# and checks that the losses are the same bits.
#   bash bench/step_boundary.sh DIR [STEPS] [TRAIN FLAGS...]
# DIR: scratch space on the disk under test. Env: MODEL (init flags; default a 0.68 B llama,
# dim 2048, 12 layers, GQA 16/8, ffn 5632, vocab 32000), SHAPE (default --seq-len 2048
# --batch-tokens 16384), BUDGET (default --gpu-mem 2GiB --cpu-mem 6GiB --chunk 16777216
# --checkpoint-only: the first layers' optimizer state in host memory, the rest on NVMe, as in
# regime 3), SW_BIN, OUT (traces and logs; default DIR), T (timeout per run, 150 s).
set -uo pipefail
dir=${1:?usage: bench/step_boundary.sh DIR [STEPS] [TRAIN FLAGS...]}/sw-boundary.$$
steps=${2:-5}
shift $(( $# < 2 ? $# : 2 ))
bin=${SW_BIN:-build/spillway}
out=${OUT:-$dir}
mkdir -p "$dir/nv" "$out"
trap 'rm -rf "$dir"' EXIT
model=${MODEL:---dim 2048 --layers 12 --heads 16 --kv-heads 8 --ffn 5632 --vocab 32000}
shape=${SHAPE:---seq-len 2048 --batch-tokens 16384}
budget=${BUDGET:---gpu-mem 2GiB --cpu-mem 6GiB --chunk 16777216 --checkpoint-only}
"$bin" init --arch llama $model --out "$dir/m" | tail -1
"$bin" data --text tests/data/corpus.txt --out "$dir/d.tok" | tail -1
for s in drained noreadahead overlapped; do
  case $s in
    drained) env=(SW_STEP_OVERLAP=0) ;;
    noreadahead) env=(SW_OPT_READ_AHEAD=0) ;;
    overlapped) env=() ;;
  esac
  rm -rf "$dir/nv"/*
  env "${env[@]}" SW_LOG_EVERY=1 timeout "${T:-150}" "$bin" train --model "$dir/m" --data "$dir/d.tok" \
    --steps "$steps" $shape --lr 1e-4 --clip 0 $budget --nvme "$dir/nv" --no-save "$@" \
    --trace "$out/$s.trace.json" >"$out/$s.log" 2>&1
  echo "$s: exit $?"
  python3 offload/trace_summary.py "$out/$s.trace.json" 2>/dev/null | grep "cross-step" | sed "s/^/  $s: /"
done
grep -h "^step boundary" "$out/overlapped.log" | head -1
python3 - "$out" <<'PY'
import re, statistics, sys
out = sys.argv[1]
pat = re.compile(r"^step (\d+)/\d+ \| loss (\S+) .*\| grad norm (\S+) .*\| ([\d.]+) s \| busy(.*)$")
def load(s):
    rows = []
    try:
        for line in open(f"{out}/{s}.log"):
            m = pat.match(line.strip())
            if m:
                bm = re.search(r"bound/measured ([\d.]+)", line)
                rows.append((int(m.group(1)), m.group(2), m.group(3), float(m.group(4)),
                             float(bm.group(1)) if bm else None))
    except OSError:
        pass
    return rows
runs = {s: load(s) for s in ("drained", "noreadahead", "overlapped")}
base = None
for s, r in runs.items():
    if len(r) < 2:
        print(f"{s}: fewer than 2 step lines"); continue
    med = statistics.median(x[3] for x in r[1:])
    base = base or med
    bm = [x[4] for x in r[1:] if x[4]]
    print(f"{s:12s} median {med:.3f} s/step over steps 2..{len(r)} ({med / base:.3f} of drained)"
          + (f", bound/measured {statistics.median(bm):.2f}" if bm else ""))
ls = {s: [(x[1], x[2]) for x in r] for s, r in runs.items() if r}
same = len(set(tuple(v) for v in ls.values())) == 1
print("losses and norms (as printed) " + ("the same in every schedule" if same else f"DIFFER: {ls}"))
sys.exit(0 if same else 1)
PY
