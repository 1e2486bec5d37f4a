#!/usr/bin/env bash
# The step boundary through `train` (docs/architecture.md "The step boundary"): with the first
# group's CPU update held back 100 ms (SW_TEST_DELAY_ADAM=100:0), the trace shows the last
# updates of each step running into the next one by default and not at all when drained
# (SW_STEP_OVERLAP=0; a save drains too: --save-every 2), offload/trace_summary.py says so, and
# the runs' losses (metrics.jsonl) and saved weights and optimizer state (steps 2 and 4) are the
# same bytes; the read-ahead off as well, or at the step boundary only (none from one NVMe group
# to the next: SW_OPT_READ_AHEAD=boundary), and each group's write-behind waited for at its end
# (SW_OPT_WRITE_BEHIND=0).
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-boundary.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 64 --layers 3 --heads 4 --ffn 128 --vocab 258 --seed 3 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
mkdir -p "$w/nv"
# P16 in host memory, P32/m/v of the upper groups on NVMe, the first groups' in host memory
common=(--model "$w/m" --data "$w/d.tok" --seq-len 32 --batch-tokens 128 --backend cpu --lr 3e-3
        --steps 4 --save-every 2 --clip 0 --gpu-mem 800KiB --cpu-mem 1800KiB --chunk 2048 --nvme "$w/nv" --quiet)
run() {   # NAME ENV...: trains into $w/NAME with a trace
  local name=$1; shift
  env "$@" SW_TEST_DELAY_ADAM=100:0 "$bin" train "${common[@]}" --run "$w/$name" --trace "$w/$name.json" \
    >"$w/$name.out" 2>"$w/$name.err" || { cat "$w/$name.err"; fail "train $name"; }
  python3 offload/trace_summary.py "$w/$name.json" >"$w/$name.sum" || fail "trace_summary $name"
  grep "cross-step overlap" "$w/$name.sum" || fail "$name: no cross-step line"
}
run on
run off SW_STEP_OVERLAP=0
run nora SW_OPT_READ_AHEAD=0
run rabd SW_OPT_READ_AHEAD=boundary
run nowb SW_OPT_WRITE_BEHIND=0
past() { sed -n 's/.* ran \([0-9.]*\) s into the next step.*/\1/p' "$w/$1.sum"; }
awk -v a="$(past on)" 'BEGIN { exit !(a >= 0.1) }' || fail "overlapped: the updates held back 100 ms did not run into the next steps ($(past on) s)"
awk -v a="$(past off)" 'BEGIN { exit !(a == 0) }' || fail "drained: updates ran into the next step ($(past off) s)"
# --gaps: drained, every step ends with the GPU idle while the held-back update (100 ms) runs
python3 offload/trace_summary.py "$w/off.json" --gaps --gap-ms 50 >"$w/off.gaps" || fail "trace_summary --gaps"
idle=$(sed -n 's/^step [0-9]*: [0-9.]* s, GPU idle \([0-9.]*\) s in.*/\1/p' "$w/off.gaps")
echo "$idle" | awk '$1 >= 0.09 { n++ } END { exit !(n == 4 && NR == 4) }' ||
  fail "drained: --gaps did not show a >= 90 ms GPU idle stretch in each of the 4 steps: $(grep '^step' "$w/off.gaps" | tr '\n' ' ')"
# bench/trace_gaps.py: every step's compute spans in the schedule's number (4 micro-batches of
# 32 tokens, 3 layers: 4 + 12 forward, 4 head, 12 backward, 4 embedding)
python3 bench/trace_gaps.py "$w/on.json" 3 4 >"$w/on.gaps" || fail "trace_gaps.py"
[ "$(grep -c '36 compute spans (expected 36)' "$w/on.gaps")" = 3 ] ||
  fail "trace_gaps.py: not 36 compute spans in each of steps 2-4: $(grep '^step' "$w/on.gaps" | tr '\n' ' ')"
# the I/O engine's counters in the trace: drained, every byte a step submits completes within its
# wall time, so each step event's bytes by state add up to the step's submitted bytes
# (metrics.jsonl, counted at submission) and its seconds by state to its duration; the sampled
# counter tracks are there, and trace_summary.py prints the table
python3 - "$w/off.json" "$w/off/metrics.jsonl" <<'PY' || fail "drained: the trace's NVMe counters do not match the steps' bytes"
import json, sys
ev = json.load(open(sys.argv[1]))['traceEvents']
steps = {int(e['name'].split()[1]): e for e in ev if e.get('ph') == 'X' and e['name'].startswith('step ')}
m = {}
for l in open(sys.argv[2]):
    d = json.loads(l)
    m[d['step']] = d
assert sorted(steps) == [1, 2, 3, 4], sorted(steps)
for n, e in steps.items():
    a, d = e['args'], m[n]
    assert sum(a['nvme_read']) == d['nvme_read_bytes'] > 0, (n, a['nvme_read'], d['nvme_read_bytes'])
    assert sum(a['nvme_write']) == d['nvme_write_bytes'] > 0, (n, a['nvme_write'], d['nvme_write_bytes'])
    assert abs(sum(a['nvme_s']) - e['dur'] / 1e6) < 1e-3, (n, a['nvme_s'], e['dur'])
assert any(e.get('ph') == 'C' and e['name'] == 'NVMe GB/s' for e in ev)
assert any(e.get('ph') == 'C' and e['name'] == 'NVMe blocks in flight' for e in ev)
PY
grep -q "^NVMe by what was in flight" "$w/off.sum" || fail "trace_summary.py: no NVMe state table"
losses() { python3 -c 'import json,sys; print(" ".join(repr(json.loads(l)["loss"]) for l in open(sys.argv[1])))' "$1/metrics.jsonl"; }
[ "$(losses "$w/on")" = "$(losses "$w/off")" ] && [ "$(losses "$w/on")" = "$(losses "$w/nora")" ] &&
  [ "$(losses "$w/on")" = "$(losses "$w/nowb")" ] && [ "$(losses "$w/on")" = "$(losses "$w/rabd")" ] ||
  fail "losses differ: on $(losses "$w/on"), off $(losses "$w/off"), no read-ahead $(losses "$w/nora"), no write-behind $(losses "$w/nowb"), read-ahead at the boundary only $(losses "$w/rabd")"
n=0
for f in $(cd "$w/off" && find . -name '*.safetensors'); do
  cmp -s "$w/off/$f" "$w/on/$f" && cmp -s "$w/off/$f" "$w/nora/$f" && cmp -s "$w/off/$f" "$w/nowb/$f" &&
    cmp -s "$w/off/$f" "$w/rabd/$f" ||
    fail "$f differs between the schedules"
  n=$((n + 1))
done
[ $n -ge 3 ] || fail "expected saved weights, m and v ($n files)"
echo "ok overlapped: updates ran $(past on) s into the next steps; drained $(past off) s; losses and $n saved files the same bytes"
