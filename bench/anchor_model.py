#!/usr/bin/env python3
"""A dependency-aware model of one training step of spillway's executor when every streamed group's
state is in host memory (issue 17, regime 1), to say how much of the gap between a measured step
and the planner's bound each change of the issue's candidate list would close.

The planner's bound is the largest of four busy times (compute, PCIe, NVMe, CPU AdamW), as if
they overlapped perfectly. The executor (offload/exec_step.c, exec_opt.c) orders them:
  * forward, group by group (P16 of streamed groups fetched ahead into K = 2 GPU buffers);
  * backward: the head, layers L..1, the embedding. A group's backward needs one of --grad-bufs
    GPU gradient buffers (the planner's default and train's: one); a streamed group's gradient
    is copied to one of --host-grad-bufs pinned host buffers (two) and updated there by the CPU
    AdamW thread, one group at a time; the host buffer is free when its update is done, the GPU
    buffer when the copy is done. The thread that issues the GPU work waits for a free host
    buffer before it issues the next group (exec_hgrad_acquire), so a slow AdamW holds the GPU
    back as well;
  * the step ends when every update is done (exec_opt_drain); the next forward starts then,
    unless --overlap-next: a group's forward then waits only for its own update (candidate 1).
Groups resident on the GPU (--resident bottom layers and the embedding) are updated by GPU AdamW
on the compute stream (--gpu-adam-gparams).

Per-group times come from rates; give the busy times a run measured (`spillway train` step line:
compute, d2h, adam) to calibrate them: --compute-s spreads the step's compute over the groups by
their FLOPs (the planner's count), --adam-s gives the in-run AdamW rate, --d2h-s the D2H rate.
--ckpt-host-layers N: the bottom N layers' checkpoints are kept in host memory; with
--ckpt-on-compute their copies (out in forward, back in backward) stall the compute stream, as
before commit 4ae46a8; else they run beside it on the copy streams. Not modelled: the issuing
thread's own launch time, the small syncs at the end of a step.

  python3 bench/anchor_model.py --compute-s 0.81 --adam-s 0.65 --d2h-s 0.20
prints the modelled step for the executor as it is and for each change, one JSON line per case.
"""
import argparse
import json


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=26)
    p.add_argument("--resident", type=int, default=5, help="bottom decoder layers resident on the GPU "
                   "(the embedding too); the rest and the head are streamed from host memory")
    p.add_argument("--dim", type=int, default=3072)
    p.add_argument("--heads", type=int, default=24)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--ffn", type=int, default=8192)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--tokens", type=int, default=16384, help="tokens per step")
    p.add_argument("--compute-s", type=float, default=0.0, help="measured compute busy per step "
                   "(0: from --gemm-tflops)")
    p.add_argument("--gemm-tflops", type=float, default=400.0)
    p.add_argument("--adam-s", type=float, default=0.0, help="measured CPU AdamW busy per step "
                   "(0: from --adam-gparams)")
    p.add_argument("--adam-gparams", type=float, default=2.0)
    p.add_argument("--bench-adam-gparams", type=float, default=0.0,
                   help="AdamW rate alone (spillway bench-adam): the case 'AdamW at its bench rate'")
    p.add_argument("--d2h-s", type=float, default=0.0, help="measured D2H busy per step (0: from --d2h-gbs)")
    p.add_argument("--d2h-gbs", type=float, default=40.0)
    p.add_argument("--h2d-gbs", type=float, default=40.0)
    p.add_argument("--gpu-adam-gparams", type=float, default=80.0,
                   help="GPU AdamW of resident groups (about 30 B per parameter at ~2.5 TB/s)")
    p.add_argument("--measured-s", type=float, default=0.0, help="the measured step, printed beside")
    p.add_argument("--ckpt-host-layers", type=int, default=0,
                   help="bottom layers whose checkpoints are kept in host memory")
    return p.parse_args()


def groups(a):
    """[(name, params, flops_fwd, flops_bwd, streamed)] in forward order: embed, layers, head."""
    hd = a.dim // a.heads
    q, kv = a.heads * hd, a.kv_heads * hd
    n_layer = a.dim * q + 2 * a.dim * kv + q * a.dim + 3 * a.dim * a.ffn + 2 * a.dim
    att = 2.0 * a.seq * q          # per token, forward, causal (the planner's count)
    T = a.tokens
    g = [("embed", a.vocab * a.dim, 0.0, 0.0, False)]
    for l in range(a.layers):
        fw = T * (2.0 * n_layer + att)
        # backward: the recompute of the forward + 2x the forward
        g.append(("layer%d" % l, n_layer, fw, 3.0 * fw, l >= a.resident))
    n_head = a.vocab * a.dim + a.dim
    g.append(("head", n_head, 0.0, 6.0 * T * n_head, True))
    return g


class Streams:
    """When the compute stream, the H2D copy stream and the D2H copy stream are next free."""
    def __init__(self):
        self.gpu = self.hs = self.ds = 0.0


def fwd_group(t, i, n, ff, st, ready, done, rate, h2d, K=2, stall=0.0):
    """Group i's forward after `ready` (its P16 final): a streamed group's P16 is fetched into
    one of K window buffers, free once the forward K groups back is done. stall: copies queued
    on the compute stream with it (its checkpoints going out)."""
    if st:
        free_buf = done[i - K] if i >= K else 0.0
        f0 = max(t.hs, free_buf, ready)
        t.hs = f0 + 2.0 * n / h2d
        ready = t.hs
    t.gpu = max(t.gpu, ready) + ff / rate + stall
    done.append(t.gpu)


def bwd_group(t, s, n, fb, st, rate, h2d, stall=0.0):
    """A group's backward from s (its P16 fetched under the previous group's compute); stall:
    its checkpoints' copies back on the compute stream."""
    if st:
        f0 = max(t.hs, s - fb / rate)
        t.hs = f0 + 2.0 * n / h2d
        s = max(s, t.hs)
    t.gpu = s + fb / rate + stall


def bwd_step_group(a, t, gk, g, ngb, gb_free, host, updated, rate, h2d, d2h):
    """The gk-th group of the backward on the GPU; a resident one's GPU AdamW after it. Returns
    the GPU gradient buffer a streamed group's gradient is in, None for a resident group."""
    name, n, ff, fb, st = g
    k = gk % ngb
    bwd_group(t, max(t.gpu, gb_free[k], host), n, fb, st, rate, h2d, ckpt_stall(a, name, h2d, d2h, False))
    if not st:
        gpu_update(a, t, name, n, k, gb_free, updated)
        return None
    return k


def grad_copy(t, n, k, host, gb_free, d2h):
    """A streamed group's fp32 gradient to pinned host memory once the issuing thread queued it
    (host): on the D2H stream, which frees GPU buffer k. Returns when it lands."""
    t.ds = max(t.gpu, t.ds, host) + 4.0 * n / d2h
    gb_free[k] = t.ds
    return t.ds


def ckpt_stall(a, name, h2d, d2h, fwd):
    """Seconds a layer's host checkpoints (tokens x dim bf16) hold the compute stream: 0 unless
    a.ckpt_on_compute."""
    if not a.ckpt_on_compute or not name.startswith("layer") or int(name[5:]) >= a.ckpt_host_layers:
        return 0.0
    return 2.0 * a.tokens * a.dim / (d2h if fwd else h2d)


def backward_order(gs):
    """The backward's groups: the head, the layers top-down, the embedding."""
    return [gs[-1]] + list(reversed(gs[1:-1])) + [gs[0]]


def gpu_update(a, t, name, n, k, gb_free, updated):
    """A resident group's AdamW on the compute stream, which frees its GPU gradient buffer."""
    t.gpu += n / (a.gpu_adam_gparams * 1e9)
    gb_free[k] = t.gpu
    updated[name] = t.gpu


def simulate(a, gs, rate, adam_rate, d2h, h2d, ngb, nhg, overlap_next, steps=4):
    """Step ends of `steps` consecutive steps (seconds)."""
    K = 2
    t = Streams()
    cpu = 0.0        # AdamW thread free
    updated = {name: 0.0 for name, *_ in gs}   # when each group's last update landed
    ends = []
    t_start = 0.0
    for _ in range(steps):
        host = t_start                     # the issuing thread
        t.gpu = max(t.gpu, t_start)
        # ---- forward: P16 fetch of streamed groups into K buffers
        done = []
        for i, (name, n, ff, fb, st) in enumerate(gs[:-1]):   # the head runs in backward
            fwd_group(t, i, n, ff, st, updated[name] if overlap_next else t_start, done, rate, h2d, K,
                      ckpt_stall(a, name, h2d, d2h, True))
        # ---- backward: head, layers top-down, embedding
        gb_free = [t.gpu] * ngb
        hb_free = [max(cpu, t_start)] * nhg
        for gk, g in enumerate(backward_order(gs)):
            k = bwd_step_group(a, t, gk, g, ngb, gb_free, host, updated, rate, h2d, d2h)
            if k is None:
                continue
            name, n = g[0], g[1]
            # grad_end: the issuing thread waits for a free host buffer
            j = min(range(nhg), key=lambda x: hb_free[x])
            host = max(host, hb_free[j])
            a0 = max(grad_copy(t, n, k, host, gb_free, d2h), cpu)
            cpu = a0 + n / adam_rate
            hb_free[j] = cpu
            updated[name] = cpu
        end_gpu = t.gpu
        if overlap_next:
            # the next forward starts when the GPU is free; groups wait for their own update
            t_next = end_gpu
            ends.append(max(end_gpu, cpu))
        else:
            t_next = max(end_gpu, cpu, t.ds)
            ends.append(t_next)
        t_start = t_next
    return ends


def simulate_first_needed(a, gs, rate, adam_rate, d2h, h2d, ngb, nhg, steps=4, landed_only=True):
    """As simulate() with the next forward overlapping, nhg pinned host gradient buffers and the
    optimizer thread taking, of the updates waiting, the one of the lowest group (the one the
    next forward needs first: exec_opt.c exec_opt_take) instead of the oldest. landed_only: of
    those whose gradient has landed (as built since 9ae68d6); else of all sent, waiting for the
    pick's gradient (before: the issuing thread sends each update when it queues the copy)."""
    K = 2
    t = Streams()
    cpu = 0.0
    updated = {name: 0.0 for name, *_ in gs}
    index = {name: i for i, (name, *_) in enumerate(gs)}
    pending = []                      # (arrival, group index, name, params, buffer, sent)
    hb_free = [0.0] * nhg
    ends = []
    t_start = 0.0

    def run_one():
        nonlocal cpu
        key = 0 if landed_only else 5   # landed, or only sent
        ready = [p for p in pending if p[key] <= cpu]
        if not ready:                 # idle until the next one lands (is sent)
            cpu = min(p[key] for p in pending)
            ready = [p for p in pending if p[key] <= cpu]
        p = min(ready, key=lambda x: x[1])
        pending.remove(p)
        cpu = max(cpu, p[0]) + p[3] / adam_rate
        updated[p[2]] = cpu
        hb_free[p[4]] = cpu

    for _ in range(steps):
        host = t_start
        t.gpu = max(t.gpu, t_start)
        done = []
        for i, (name, n, ff, fb, st) in enumerate(gs[:-1]):
            while any(p[2] == name for p in pending):
                run_one()             # its update must land before its P16 is used
            if st:                    # the issuing thread waits for it (exec_group_wait)
                host = max(host, updated[name])
            fwd_group(t, i, n, ff, st, updated[name], done, rate, h2d, K, ckpt_stall(a, name, h2d, d2h, True))
        gb_free = [t.gpu] * ngb
        for gk, g in enumerate(backward_order(gs)):
            k = bwd_step_group(a, t, gk, g, ngb, gb_free, host, updated, rate, h2d, d2h)
            if k is None:
                continue
            name, n = g[0], g[1]
            # a free host buffer: one no update is waiting on; else the CPU runs until one frees
            while all(any(p[4] == j for p in pending) for j in range(nhg)):
                run_one()
            free = [j for j in range(nhg) if not any(p[4] == j for p in pending)]
            j = min(free, key=lambda x: hb_free[x])
            host = max(host, hb_free[j])
            pending.append((grad_copy(t, n, k, host, gb_free, d2h), index[name], name, n, j, host))
        t_start = t.gpu                 # the next forward starts when the GPU is free
        ends.append(t_start)
    return ends


def main():
    a = parse_args()
    gs = groups(a)
    flops = sum(ff + fb for _, _, ff, fb, _ in gs)
    rate = flops / a.compute_s if a.compute_s > 0 else a.gemm_tflops * 1e12
    cpu_params = sum(n for _, n, _, _, st in gs if st)
    adam_rate = cpu_params / a.adam_s if a.adam_s > 0 else a.adam_gparams * 1e9
    d2h_bytes = 4.0 * cpu_params
    d2h = d2h_bytes / a.d2h_s if a.d2h_s > 0 else a.d2h_gbs * 1e9
    h2d = a.h2d_gbs * 1e9
    bench_adam = a.bench_adam_gparams * 1e9 if a.bench_adam_gparams > 0 else adam_rate
    print(json.dumps({"what": "inputs", "compute_s": round(flops / rate, 4),
                      "effective_tflops": round(rate / 1e12, 1), "cpu_adam_params": cpu_params,
                      "adam_gparams_in_run": round(adam_rate / 1e9, 3), "adam_s": round(cpu_params / adam_rate, 4),
                      "d2h_gbs": round(d2h / 1e9, 1), "bound_s": round(max(flops / rate, cpu_params / adam_rate), 4),
                      # the planner's bound with the one-buffer stall counted: every streamed
                      # group's gradient copy is on the critical path after the compute
                      "compute_plus_grad_d2h_s": round(flops / rate + d2h_bytes / d2h, 4)}))
    r0 = a.resident
    # two GPU gradient buffers cost one group's fp32 gradient of GPU memory: the planner then
    # keeps one resident layer fewer (spillway plan --grad-buffers 2 on the 2.8B regime-1 budgets)
    r2 = max(0, r0 - 1)
    cases = [
        ("as built: 1 GPU gradient buffer, 2 host, drain at the end", 1, 2, False, adam_rate, r0),
        ("2 GPU gradient buffers (one resident layer fewer)", 2, 2, False, adam_rate, r2),
        ("3 host gradient buffers", 1, 3, False, adam_rate, r0),
        ("next forward overlaps the last updates (candidate 1)", 1, 2, True, adam_rate, r0),
        ("AdamW at its bench rate (candidate 3: its threads off the issuing and I/O cores)", 1, 2, False, bench_adam, r0),
        ("2 GPU gradient buffers + AdamW at its bench rate", 2, 2, False, bench_adam, r2),
        ("all: 2 GPU buffers, 3 host, overlap, bench AdamW", 2, 3, True, bench_adam, r2),
    ]
    # the optimizer queue since this model's first cases: as many pinned host gradient buffers
    # as the streamed groups (the planner's cap, 16), the update the next forward needs first
    cases += [
        ("2 GPU buffers, 16 host, next-needed update first, overlap (as built since)", 2, -16, True, adam_rate, r2),
        ("the same with AdamW at its bench rate", 2, -16, True, bench_adam, r2),
    ]
    # with the bottom layers' checkpoints in host memory (--ckpt-host-layers): copied on the
    # compute stream (before 4ae46a8) or beside it; the lowest group picked among all updates
    # sent (before 9ae68d6) or among those landed. Each case: (ngb, nhg, overlap, rate, resident,
    # checkpoints on the compute stream, landed-only pick)
    cases = [c + (False, True) for c in cases]
    if a.ckpt_host_layers:
        cases += [
            ("2 GPU buffers, 2 host, arrival order, checkpoint copies on the compute stream (r1-q2, 8e7bb6a)", 2, 2, True, adam_rate, r0, True, True),
            ("2 GPU buffers, 16 host, lowest sent first, checkpoint copies on the compute stream (r1, 8e7bb6a)", 2, -16, True, adam_rate, r0, True, False),
            ("the same, lowest landed first (9ae68d6)", 2, -16, True, adam_rate, r0, True, True),
            ("the same, lowest sent first, checkpoint copies beside the compute (4ae46a8)", 2, -16, True, adam_rate, r0, False, False),
            ("both: lowest landed first, checkpoint copies beside the compute (as built now)", 2, -16, True, adam_rate, r0, False, True),
        ]
    for name, ngb, nhg, ov, ar, res, ck_cs, landed in cases:
        a.resident = res
        a.ckpt_on_compute = ck_cs
        gs = groups(a)
        cpu_params = sum(n for _, n, _, _, st in gs if st)
        if nhg < 0:
            ends = simulate_first_needed(a, gs, rate, ar, d2h, h2d, ngb, min(-nhg, sum(1 for g in gs if g[4])),
                                         landed_only=landed)
        else:
            ends = simulate(a, gs, rate, ar, d2h, h2d, ngb, nhg, ov)
        step = ends[-1] - ends[-2]
        bound = max(flops / rate, cpu_params / ar)
        r = {"case": name, "step_s": round(step, 4), "bound_s": round(bound, 4),
             "bound_over_step": round(bound / step, 3), "resident_layers": res}
        if a.measured_s > 0:
            r["measured_s"] = a.measured_s
        print(json.dumps(r))


if __name__ == "__main__":
    main()
