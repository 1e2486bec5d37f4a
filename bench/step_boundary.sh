#!/usr/bin/env bash
# Issue 17, the step boundary: the same training run with the drained boundary (SW_STEP_OVERLAP=0:
# each step waits for its last CPU updates and NVMe write-backs), with the next forward
# overlapping them but no read-ahead (SW_OPT_READ_AHEAD=0), and as built (both), in one command.
# Prints per schedule the median s/step over the steps after the first, the ratio to the drained
# one, the planner's step-boundary line, the trace's cross-step line (offload/trace_summary.py),
# and checks that the losses are the same bits. ROUNDS=N (default 1) runs the three schedules N
# times in turn (drained, no read-ahead, as built, drained, ...), so that a machine whose speed
# drifts (shared, throttled) slows each schedule alike; the medians are over every round.
# SCHEDULES (default "drained noreadahead overlapped") may add nowritebehind: as built, but each
# NVMe group's writes land before the optimizer goes on (SW_OPT_WRITE_BEHIND=0: no group's
# reads beside the last group's writes).
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
rounds=${ROUNDS:-1}
for r in $(seq "$rounds"); do
  for s in ${SCHEDULES:-drained noreadahead overlapped}; do
    case $s in
      drained) env=(SW_STEP_OVERLAP=0) ;;
      noreadahead) env=(SW_OPT_READ_AHEAD=0) ;;
      nowritebehind) env=(SW_OPT_WRITE_BEHIND=0) ;;
      overlapped) env=() ;;
      *) echo "unknown schedule $s"; exit 2 ;;
    esac
    n=$s; [ "$rounds" = 1 ] || n=$s.$r
    rm -rf "$dir/nv"/*
    env "${env[@]}" SW_LOG_EVERY=1 timeout "${T:-150}" "$bin" train --model "$dir/m" --data "$dir/d.tok" \
      --steps "$steps" $shape --lr 1e-4 --clip 0 $budget --nvme "$dir/nv" --no-save "$@" \
      --trace "$out/$n.trace.json" >"$out/$n.log" 2>&1
    echo "$n: exit $?"
    python3 offload/trace_summary.py "$out/$n.trace.json" >"$out/$n.summary" 2>&1
    grep -E "cross-step|NVMe idle across" "$out/$n.summary" | sed "s/^/  $n: /"
  done
done
grep -h "^step boundary" "$out"/*.log | head -1   # the same plan in every run
python3 - "$out" "$rounds" ${SCHEDULES:-drained noreadahead overlapped} <<'PY'
import re, statistics, sys
out, rounds, scheds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
pat = re.compile(r"^step (\d+)/\d+ \| loss (\S+) .*\| grad norm (\S+) .*\| ([\d.]+) s \| busy(.*)$")
def load1(n):
    rows = []
    try:
        for line in open(f"{out}/{n}.log"):
            m = pat.match(line.strip())
            if m:
                bm = re.search(r"bound/measured ([\d.]+)", line)
                rows.append((int(m.group(1)), m.group(2), m.group(3), float(m.group(4)),
                             float(bm.group(1)) if bm else None))
    except OSError:
        pass
    return rows
def load(s):   # the step lines of every round, the first step of each left out
    if rounds == 1:
        return load1(s)
    rows = []
    for r in range(1, rounds + 1):
        rows += load1(f"{s}.{r}")[1:] if r > 1 else load1(f"{s}.{r}")
    return rows
runs = {s: load(s) for s in scheds}
base = None
for s, r in runs.items():
    if len(r) < 2:
        print(f"{s}: fewer than 2 step lines"); continue
    med = statistics.median(x[3] for x in r[1:])
    base = base or med   # the first schedule's (drained by default)
    bm = [x[4] for x in r[1:] if x[4]]
    print(f"{s:13s} median {med:.3f} s/step over {len(r) - 1} steps after the first ({med / base:.3f} of {scheds[0]})"
          + (f", bound/measured {statistics.median(bm):.2f}" if bm else ""))
names = [s if rounds == 1 else f"{s}.{r}" for s in runs for r in range(1, rounds + 1)]
ls = {n: [(x[1], x[2]) for x in load1(n)] for n in names}   # every run's, every step
same = len(set(tuple(v) for v in ls.values())) == 1
print("losses and norms (as printed) " + ("the same in every schedule" if same else f"DIFFER: {ls}"))
sys.exit(0 if same else 1)
PY
