#!/usr/bin/env bash
# offload/trace_summary.py's per-boundary and idle lines on a trace written here, whose spans
# give the answers by hand: step 1's last CPU AdamW span ends 0.6 s into step 2, its last
# write-back 1.2 s in; step 2's compute starts 0.62 s in, and 0.18 s of it falls before 1.2 s.
# A second trace has step 2's forward start 0.2 s in, under the AdamW (0.4 s of it left).
# The samples of the blocks in flight have three idle stretches in step 2: 10.10-10.15 s, ended
# by an optimizer read submitted at 10.146 s (a chunk edge); 12.0-12.2 s, with no read; and
# 19.9-20.3 s, across the boundary into step 3 (20-30 s), ended by a read at 20.298 s (0.1 s of
# it in step 2, 0.3 s in step 3, all at a chunk edge); and one in step 1, 5.0-5.3 s, whose read
# came 4 ms before it.
set -u
w=$(mktemp -d /tmp/sw-tsum.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# trace FILE FIRST: steps [0,10] and [10,20] s; step 1's optimizer spans (adam 1: 9.0-9.5 and
# 10.0-10.6; write 1: 10.6-11.2); compute spans 1-8 (step 1), then from FIRST: FIRST-(FIRST+0.08),
# 10.9-11.0, 11.5-19
trace() {
  python3 - "$1" "$2" <<'PY'
import json, sys
path, first = sys.argv[1], float(sys.argv[2])
ev = [{"name": "thread_name", "ph": "M", "pid": 1, "tid": t, "args": {"name": n}}
      for t, n in ((1, "compute"), (4, "NVMe read"), (5, "NVMe write"), (6, "optimizer"), (7, "step"))]
def x(tid, name, a, b):
    ev.append({"name": name, "ph": "X", "pid": 1, "tid": tid, "ts": a * 1e6, "dur": (b - a) * 1e6})
x(7, "step 1", 0, 10); x(7, "step 2", 10, 20); x(7, "step 3", 20, 30)
x(6, "adam 1", 9.0, 9.5); x(6, "adam 1", 10.0, 10.6); x(5, "write 1", 10.6, 11.2)
x(4, "read 1", 4.996, 5.4); x(4, "read 2", 10.146, 10.5); x(4, "read 3", 20.298, 20.5)
for t, r, w in ((1.0, 3, 0), (5.0, 0, 0), (5.3, 2, 2), (10.0, 5, 0), (10.1, 0, 0), (10.12, 0, 0),
                (10.15, 3, 0), (12.0, 0, 0), (12.2, 0, 4), (19.9, 0, 0), (20.3, 1, 0)):
    ev.append({"name": "NVMe blocks in flight", "ph": "C", "pid": 1, "ts": t * 1e6, "args": {"read": r, "write": w}})
for a, b in ((1, 8), (first, first + 0.08), (10.9, 11.0), (11.5, 19)):
    x(1, "compute", a, b)
json.dump({"traceEvents": ev}, open(path, "w"))
PY
}
trace "$w/a.json" 10.62 || fail "writing the trace"
python3 offload/trace_summary.py "$w/a.json" >"$w/a.sum" 2>&1 || { cat "$w/a.sum"; fail "trace_summary.py"; }
want="boundary 1->2: step 1's last CPU AdamW ends +0.600 s, its late work +1.200 s; step 2's first compute +0.620 s: the forward under the late work 0.580 s (0.180 s of compute), under the CPU AdamW 0.000 s"
grep -qxF "$want" "$w/a.sum" || { grep "^boundary" "$w/a.sum"; fail "expected: $want"; }
trace "$w/b.json" 10.2 || fail "writing the trace"
python3 offload/trace_summary.py "$w/b.json" >"$w/b.sum" 2>&1 || { cat "$w/b.sum"; fail "trace_summary.py"; }
want="boundary 1->2: step 1's last CPU AdamW ends +0.600 s, its late work +1.200 s; step 2's first compute +0.200 s: the forward under the late work 1.000 s (0.180 s of compute), under the CPU AdamW 0.400 s"
grep -qxF "$want" "$w/b.sum" || { grep "^boundary" "$w/b.sum"; fail "expected: $want"; }
for want in "  step 1: idle 0.30 s in 1 stretches, 0.30 s of it at the optimizer's chunk edges" \
            "  step 2: idle 0.35 s in 3 stretches, 0.15 s of it at the optimizer's chunk edges" \
            "  step 3: idle 0.30 s in 1 stretches, 0.30 s of it at the optimizer's chunk edges"; do
  grep -qxF "$want" "$w/a.sum" || { grep -A3 "^NVMe idle at" "$w/a.sum"; fail "expected: $want"; }
done
echo "test_trace_summary_boundary: the boundary and idle lines' times are the trace's"
