#!/usr/bin/env python3
"""Summarises a `spillway train --trace` file: busy seconds per track, and how long each pair
of tracks was busy at the same time (overlap), over the whole trace or from --skip-s on; and
the step boundary: how long each step's last updates and NVMe transfers (the optimizer's spans,
named with their step's number) ran past the start of the next step, and how much GPU compute
of the next step ran meanwhile (docs/architecture.md "The step boundary"), with one line per
boundary: when the next forward's first compute starts against the last CPU AdamW and the last
write-back of the step before; and each step's busy
seconds per track with its own late work: the optimizer thread's spans count for the step they
serve (their name's number), whenever they ran, the other spans for the step they ran in.
NVMe spans of the optimizer thread run from a request's submission to its completion. Where
the run had an NVMe tier: each step's wall time split by what the drives had in flight (both
directions, reads alone, writes alone, nothing) with the rate served in each, from the I/O
engine's counters; and each step's idle stretches of the disk at the trace's samples of the
blocks in flight, with how much of them ended with an optimizer read's submission (the
optimizer's chunk edges).
With --gaps: each step's GPU idle stretches (no compute span) of at least --gap-ms (1 ms),
where in the step they fall and which other tracks were busy during them (what the GPU waited on).
Usage: trace_summary.py TRACE.json [--skip-s SECONDS] [--gaps] [--gap-ms MS]"""
import bisect, json, re, sys

def merge(iv):
    iv = sorted(iv)
    out = []
    for a, b in iv:
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out

def inter(x, y):
    """Seconds both x and y (sorted, merged) are busy."""
    return sum(b - a for a, b in intersect(x, y))

def main():
    path = sys.argv[1]
    skip = float(sys.argv[sys.argv.index('--skip-s') + 1]) if '--skip-s' in sys.argv else 0.0
    ev = json.load(open(path))['traceEvents']
    names = {e['tid']: e['args']['name'] for e in ev if e.get('ph') == 'M'}
    step_tid = next((k for k, v in names.items() if v == 'step'), None)
    spans, steps, tagged, adam_end, raw, io_steps, opt_reads = {}, [], {}, {}, [], [], []
    t0 = min((e['ts'] for e in ev if e.get('ph') == 'X'), default=0)
    for e in ev:
        if e.get('ph') != 'X':
            continue
        a = (e['ts'] - t0) / 1e6
        if a < skip:
            continue
        b = a + e['dur'] / 1e6
        if e['tid'] == step_tid:
            steps.append((a, b, int(e['name'].split()[1])))
            if 'nvme_s' in e.get('args', {}):
                io_steps.append((int(e['name'].split()[1]), b - a, e['args']))
            continue
        spans.setdefault(e['tid'], []).append((a, b))
        mt = re.match(r'(adam|read|write) (\d+)$', e['name'])
        if mt:   # the optimizer thread's work for step N
            n = int(mt.group(2))
            tagged[n] = max(tagged.get(n, b), b)
            if mt.group(1) == 'adam':
                adam_end[n] = max(adam_end.get(n, b), b)
            elif mt.group(1) == 'read':
                opt_reads.append(a)   # an optimizer read's submission
        raw.append((e['tid'], a, b, int(mt.group(2)) if mt else None))
    m = {k: merge(v) for k, v in spans.items()}
    end = max((b for v in m.values() for _, b in v), default=0)
    print(f"trace {path}: {end - skip:.2f} s (from {skip:.2f} s)")
    print(f"{'track':<12} {'busy s':>8} {'share':>6}")
    for k in sorted(m):
        busy = sum(b - a for a, b in m[k])
        print(f"{names.get(k, k):<12} {busy:8.2f} {busy / max(end - skip, 1e-9):6.1%}")
    print("overlap (seconds both busy):")
    keys = sorted(m)
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            o = inter(m[keys[i]], m[keys[j]])
            if o > 0:
                print(f"  {names.get(keys[i])} & {names.get(keys[j])}: {o:.2f}")

    # the schedule's point: the GPU computes while NVMe reads ahead and the CPU runs AdamW
    by = {names.get(k): m[k] for k in keys}
    trio = ('compute', 'NVMe read', 'optimizer')
    if all(t in by for t in trio):
        both = by['compute']
        for t in trio[1:]:
            both = intersect(both, by[t])
        print(f"all three of compute, NVMe read and optimizer busy: {sum(b - a for a, b in both):.2f} s")
    nvme = merge(by.get('NVMe read', []) + by.get('NVMe write', []))
    boundary(steps, tagged, adam_end, by.get('compute', []), nvme)
    per_step(steps, raw, names, nvme)
    nvme_states(io_steps)
    # every sample, those before --skip-s too: the value held at a step's start is the last one before it
    flight = sorted(((e['ts'] - t0) / 1e6, e['args']['read'] + e['args']['write']) for e in ev
                    if e.get('ph') == 'C' and e.get('name') == 'NVMe blocks in flight')
    idle_edges(steps, flight, sorted(opt_reads))
    if '--gaps' in sys.argv:
        gms = float(sys.argv[sys.argv.index('--gap-ms') + 1]) if '--gap-ms' in sys.argv else 1.0
        gaps(steps, by, gms / 1e3)

def boundary(steps, tagged, adam_end, compute, nvme):
    """The step boundary: step N's optimizer work (CPU AdamW, its NVMe reads and write-backs)
    running past step N+1's start, and step N+1's compute in that time; and the disk's idle
    stretch across the boundary (from the last NVMe transfer before step N+1's start to the
    first one after it, 0 when one is in flight then): what the planner's step-boundary term
    predicts for an NVMe-bound step. Then one line per boundary, in seconds from step N+1's
    start: when step N's last CPU AdamW span ends, when step N+1's first compute span starts,
    and when step N's late work (every optimizer span of step N) ends; and how long the forward
    ran under that late work, and under step N's CPU AdamW, with the compute in the first. The
    forward waits for the update of the first group it needs, which is updated last when its
    state is off the GPU (docs/architecture.md "The step boundary"), so where the last AdamW
    span is that group's, the forward starts after it and can run only under the write-backs
    left."""
    steps.sort()
    past = ov = 0.0
    n = 0
    idle, lines = [], []
    for (a0, b0, s0), (a1, b1, s1) in zip(steps, steps[1:]):
        if s1 != s0 + 1 or not nvme:
            continue
        before = [b for a, b in nvme if a <= a1]
        after = [a for a, b in nvme if b > a1]
        if before and after:
            idle.append(max(0.0, min(after) - max(before)) if max(before) < a1 else 0.0)
    if idle:
        idle.sort()
        print(f"NVMe idle across the step boundary: median {idle[len(idle) // 2]:.3f} s "
              f"(min {idle[0]:.3f}, max {idle[-1]:.3f}; {len(idle)} boundaries)")
    for (a0, b0, s0), (a1, b1, s1) in zip(steps, steps[1:]):
        if s1 != s0 + 1:
            continue
        n += 1
        end = tagged.get(s0, a1)
        if end > a1:
            past += end - a1
            ov += inter(compute, [[a1, end]])
        first = min((a for a, b in compute if a1 <= a < b1), default=None)
        if first is None or s0 not in tagged:
            continue
        adam = adam_end.get(s0)
        under = max(0.0, end - first)
        ends = f"ends {adam - a1:+.3f} s" if adam is not None else "none"
        lines.append(f"boundary {s0}->{s1}: step {s0}'s last CPU AdamW {ends}, its late work "
                     f"{end - a1:+.3f} s; step {s1}'s first compute {first - a1:+.3f} s: the forward under the late "
                     f"work {under:.3f} s ({inter(compute, [[first, end]]) if under else 0.0:.3f} s of compute), "
                     f"under the CPU AdamW {max(0.0, adam - first) if adam is not None else 0.0:.3f} s")
    if n:
        print(f"cross-step overlap: the last updates/write-backs of a step ran {past:.2f} s into the next "
              f"step ({past / n:.3f} s per boundary, {n} boundaries); next step's compute meanwhile: {ov:.2f} s")
    for line in lines:
        print(line)

def gaps(steps, by, least):
    """Per step: the stretches of its wall time with no compute span, at least `least` seconds
    long, and how much of them each other track was busy (the GPU waiting on a copy, on CPU
    AdamW, on the disk, or on nothing traced: the issuing thread)."""
    others = [t for t in by if t != 'compute']
    for a0, b0, n in sorted(steps):
        idle = [iv for iv in complement(by.get('compute', []), a0, b0) if iv[1] - iv[0] >= least]
        tot = sum(b - a for a, b in idle)
        cov = {t: inter(idle, by[t]) for t in others}
        alone = tot - inter(idle, merge([tuple(iv) for t in others for iv in by[t]]))
        print(f"step {n}: {b0 - a0:.3f} s, GPU idle {tot:.3f} s in {len(idle)} stretches >= {least * 1e3:g} ms; "
              "busy meanwhile: " + ", ".join(f"{t} {v:.3f}" for t, v in cov.items() if v > 0)
              + f"; nothing traced {alone:.3f} s")
        for a, b in sorted(sorted(idle, key=lambda iv: iv[0] - iv[1])[:16]):   # the 16 longest, in order
            busy = [t for t in others if inter([[a, b]], by[t]) > 0.5 * (b - a)]
            print(f"   at {1e3 * (a - a0):8.1f} ms of {1e3 * (b0 - a0):.0f}: {1e3 * (b - a):6.1f} ms idle, "
                  f"mostly beside: {' '.join(busy) or '-'}")

def complement(iv, a0, b0):
    """The stretches of [a0, b0] not covered by the sorted, merged intervals iv."""
    out, x = [], a0
    for a, b in iv:
        if b <= a0 or a >= b0:
            continue
        if a > x:
            out.append([x, a])
        x = max(x, b)
    if x < b0:
        out.append([x, b0])
    return out

def per_step(steps, raw, names, nvme):
    """Busy seconds per step and track: the optimizer thread's spans (adam/read/write N) count
    for step N wherever they ran (its late work, under step N+1, included), every other span for
    the step whose wall time it falls in (clipped to it); 'late' is how long step N's own work
    ran past its end; 'NVMe idle' how long in the step's wall time no NVMe transfer was in
    flight (what the planner's step-boundary term predicts for an NVMe-bound step)."""
    if not steps:
        return
    tids = sorted({t for t, _, _, _ in raw})
    print("per step (optimizer spans by the step they serve, the rest by the step they ran in):")
    nv = [t for t in tids if names.get(t) in ('NVMe read', 'NVMe write')]
    print(f"{'step':>6} {'wall s':>7} " + " ".join(f"{names.get(t, t):>10}" for t in tids) + f" {'late s':>7}"
          + (f" {'NVMe idle':>9}" if nv else ""))
    for a0, b0, n in sorted(steps):
        row, late = [], 0.0
        for t in tids:
            iv = []
            for tt, a, b, tag in raw:
                if tt != t:
                    continue
                if tag == n:
                    iv.append((a, b))
                    late = max(late, b - b0)
                elif tag is None and b > a0 and a < b0:
                    iv.append((max(a, a0), min(b, b0)))
            row.append(sum(y - x for x, y in merge(iv)))
        idle = (b0 - a0) - inter(nvme, [[a0, b0]])   # the disk's idle time in the step's wall time
        print(f"{n:>6} {b0 - a0:7.2f} " + " ".join(f"{x:10.2f}" for x in row) + f" {late:7.2f}"
              + (f" {idle:9.2f}" if nv else ""))

def nvme_states(io_steps):
    """Per step, from the I/O engine's counters (the step event's args): how the step's wall time
    split between both directions in flight, reads alone, writes alone and nothing, and the rate
    the drives served in each (the bytes completed in that state over its seconds): a step
    slower than the disk's mixed rate shows here which direction ran alone, and how fast."""
    if not io_steps:
        return
    print("NVMe by what was in flight (the I/O engine's counters, each step's wall time; GB/s = 1e9 B/s):")
    print(f"{'step':>6} {'wall s':>7} {'read GB':>8} {'write GB':>8} {'GB/s':>6} | {'both s':>6} {'GB/s':>6} | "
          f"{'reads alone s':>13} {'GB/s':>6} | {'writes alone s':>14} {'GB/s':>6} | {'idle s':>6}")
    rate = lambda b, t: b / t / 1e9 if t > 0 else 0.0
    for n, wall, g in sorted(io_steps):
        t, r, w = g['nvme_s'], g['nvme_read'], g['nvme_write']
        print(f"{n:>6} {wall:7.2f} {sum(r) / 1e9:8.3f} {sum(w) / 1e9:8.3f} {rate(sum(r) + sum(w), wall):6.2f} | "
              f"{t[3]:6.2f} {rate(r[3] + w[3], t[3]):6.2f} | {t[1]:13.2f} {rate(r[1] + w[1], t[1]):6.2f} | "
              f"{t[2]:14.2f} {rate(r[2] + w[2], t[2]):6.2f} | {t[0]:6.2f}")

def idle_edges(steps, flight, opt_reads, slack=0.005):
    """Per step, the disk's idle stretches seen by the trace's samples of the blocks in flight
    (from a sample with none to the next with some; a sample's value holds until the next, so a
    stretch may begin before the step and run past it: each step counts the part within its wall
    time), and how much of them ended with an optimizer read's submission (one starting from
    `slack` before the stretch to its end, wherever the step boundary falls): the optimizer's
    chunk edges, where the read of a chunk waits for the write of the chunk two before it (two
    staging sets) to complete, so the drives drain until it is submitted (docs/architecture.md;
    docs/io.md on the write's checksum, which made most of that wait)."""
    if not flight or not steps:
        return
    stretches = []   # (start, end, ended by an optimizer read)
    i = 0
    while i < len(flight):
        if flight[i][1] != 0:
            i += 1
            continue
        j = i
        while j < len(flight) and flight[j][1] == 0:
            j += 1
        a = flight[i][0]
        b = flight[j][0] if j < len(flight) else max(b0 for _, b0, _ in steps)
        lo = bisect.bisect_left(opt_reads, a - slack)
        stretches.append((a, b, lo < len(opt_reads) and opt_reads[lo] <= b))
        i = j
    print("NVMe idle at the trace's samples of the blocks in flight (each step; 'at chunk edges': ended by an optimizer read's submission):")
    for a0, b0, n in sorted(steps):
        tot = edge = 0.0
        k = 0
        for a, b, e in stretches:
            d = min(b, b0) - max(a, a0)
            if d > 0:
                tot += d
                k += 1
                edge += d if e else 0.0
        print(f"  step {n}: idle {tot:.2f} s in {k} stretches, {edge:.2f} s of it at the optimizer's chunk edges")

def intersect(x, y):
    """The intervals where both x and y (sorted, merged) are busy."""
    i = j = 0
    out = []
    while i < len(x) and j < len(y):
        a = max(x[i][0], y[j][0]); b = min(x[i][1], y[j][1])
        if b > a:
            out.append([a, b])
        if x[i][1] < y[j][1]:
            i += 1
        else:
            j += 1
    return out

if __name__ == '__main__':
    main()
