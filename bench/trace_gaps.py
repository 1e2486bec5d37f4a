#!/usr/bin/env python3
"""Where the compute stream idles between its spans, each step of a `spillway train --trace`
file but the first: each gap between consecutive compute spans, classed by the spans' place in
the step (forward: embedding, L layers x M micro-batches; the head; backward: L x M; the
embedding: one backward pass, every layer in the compute spans the executor records), summed
per class with the H2D and D2H busy time beside, and the largest gaps. Work queued on the
compute stream outside a span counts as a gap. docs/perf.md uses it on regime 1.
Usage: trace_gaps.py TRACE.json LAYERS MICRO_BATCHES"""
import json, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'offload'))
from trace_summary import merge   # a track's spans as disjoint intervals
path, L, M = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ev = json.load(open(path))['traceEvents']
names = {e['tid']: e['args']['name'] for e in ev if e.get('ph') == 'M'}
tid = {v: k for k, v in names.items()}
X = [e for e in ev if e.get('ph') == 'X']
steps = sorted((e['ts'], e['ts'] + e['dur'], e['name']) for e in X if e['tid'] == tid['step'])
busy = {}
for e in X:
    busy.setdefault(names.get(e['tid'], e['tid']), []).append((e['ts'], e['ts'] + e['dur']))
busy = {k: v if k == 'compute' else merge(v) for k, v in busy.items()}   # beside: count overlaps once
def beside(a, b, track):
    return sum(max(0, min(b, y) - max(a, x)) for x, y in busy.get(track, []))
for a, b, nm in steps[1:]:
    cs = sorted((x, y) for x, y in busy.get('compute', []) if x >= a and x < b)
    if not cs:
        print(f"{nm}: {(b - a) / 1e3:.1f} ms, no compute spans (dropped? see the train log)")
        continue
    seq = ['emb-f'] * M + ['fwd %d' % (i // M) for i in range(L * M)] + ['head'] * M + \
          ['bwd %d' % (L - 1 - i // M) for i in range(L * M)] + ['emb-b'] * M
    print(f"{nm}: {(b - a) / 1e3:.1f} ms, {len(cs)} compute spans (expected {len(seq)}), "
          f"first at {(cs[0][0] - a) / 1e3:.2f} ms, last ends {(b - cs[-1][1]) / 1e3:.2f} ms before the end")
    cls = {}
    big = []
    for i in range(1, len(cs)):
        g = cs[i][0] - cs[i - 1][1]
        if g <= 0:
            continue
        p, q = (seq[i - 1], seq[i]) if len(cs) == len(seq) else ('?', '?')
        kind = ('fwd' if p.startswith('fwd') or p == 'emb-f' else 'bwd' if p.startswith('bwd') else p)
        kind += ' layer->layer' if p != q else ' mb->mb'
        c = cls.setdefault(kind, [0, 0.0, 0.0, 0.0])
        c[0] += 1; c[1] += g
        c[2] += beside(cs[i - 1][1], cs[i][0], 'H2D'); c[3] += beside(cs[i - 1][1], cs[i][0], 'D2H')
        big.append((g, p, q))
    tot = sum(c[1] for c in cls.values())
    print(f"  idle between spans: {tot / 1e3:.2f} ms")
    for k, c in sorted(cls.items(), key=lambda kv: -kv[1][1]):
        print(f"  {k:<22} {c[0]:4d} gaps {c[1] / 1e3:7.2f} ms (mean {c[1] / c[0]:6.1f} us); H2D busy meanwhile {c[2] / 1e3:.2f} ms, D2H {c[3] / 1e3:.2f} ms")
    big.sort(reverse=True)
    print("  largest: " + ", ".join(f"{g:.0f} us {p}->{q}" for g, p, q in big[:12]))
