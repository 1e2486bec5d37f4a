#!/usr/bin/env python3
"""The GPU-side rates of the planner's bound, measured for bench/anchor.sh (issue 17): the bf16 GEMM
rate at the GEMM shapes of one training step of the model (cuBLAS through torch.matmul), and the
PCIe rates of pinned host <-> GPU copies, each way alone and both ways at once.

GEMM: for one micro-batch of --tokens tokens, the decoder layer's seven matrices (q, k, v, o, gate,
up, down) in forward (X W), backward data (dY W^T) and backward weight (X^T dY), and lm_head in
vocab chunks of --vocab-chunk (as the executor computes the head), each counted as often as a
step runs it (a layer's forward twice: forward and the recompute in backward; the head once).
Rate = the FLOPs of that mix / the time of that mix, each shape timed alone (median of --reps
after warm-up). Also the 8192^3 product, the number earlier benches quote.

PCIe: --copy-mib MiB between a pinned host buffer and the GPU, each way alone and both ways at
once on two streams (the planner treats the link as full duplex), median of --reps.
GB/s = 1e9 B/s. Prints one JSON line.

  python3 bench/anchor_rates.py --dim 3072 --heads 24 --kv-heads 8 --ffn 8192 --vocab 32000
"""
import argparse
import json
import sys


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=3072)
    p.add_argument("--heads", type=int, default=24)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=0, help="default dim / heads")
    p.add_argument("--ffn", type=int, default=8192)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--vocab-chunk", type=int, default=8192)
    p.add_argument("--tokens", type=int, default=2048, help="tokens per micro-batch")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--copy-mib", type=int, default=512)
    a = p.parse_args()
    if a.head_dim <= 0:
        a.head_dim = a.dim // a.heads
    return a


def timed(torch, fn, reps):
    """Median seconds of fn() over reps runs (CUDA events), after two warm-up runs."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1) / 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def gemm_mix(torch, a):
    T = a.tokens
    q = a.heads * a.head_dim
    kv = a.kv_heads * a.head_dim
    # (in, out, uses per step): a layer's matrices run forward twice (forward, recompute)
    mats = [(a.dim, q, 2), (a.dim, kv, 2), (a.dim, kv, 2), (q, a.dim, 2),
            (a.dim, a.ffn, 2), (a.dim, a.ffn, 2), (a.ffn, a.dim, 2)]
    head = []
    left = a.vocab
    while left > 0:
        head.append(min(a.vocab_chunk, left))
        left -= head[-1]
    flops = 0.0
    secs = 0.0
    cache = {}
    bf = torch.bfloat16

    def mm_time(m, k, n):
        # C[m,n] = A[m,k] B[k,n]; the same shape timed once
        key = (m, k, n)
        if key not in cache:
            A = torch.randn(m, k, device="cuda", dtype=bf)
            B = torch.randn(k, n, device="cuda", dtype=bf)
            C = torch.empty(m, n, device="cuda", dtype=bf)
            cache[key] = timed(torch, lambda: torch.matmul(A, B, out=C), a.reps)
        return cache[key]

    def add(m, k, n, uses):
        nonlocal flops, secs
        flops += uses * 2.0 * m * k * n
        secs += uses * mm_time(m, k, n)

    for (din, dout, fw) in mats:
        add(T, din, dout, fw)      # forward (and recompute): X W
        add(T, dout, din, 1)       # backward data: dY W^T
        add(din, T, dout, 1)       # backward weight: X^T dY
    for vc in head:
        add(T, a.dim, vc, 1)
        add(T, vc, a.dim, 1)
        add(a.dim, T, vc, 1)
    shapes = {"%dx%dx%d" % k: round(2.0 * k[0] * k[1] * k[2] / v / 1e12, 1) for k, v in cache.items()}
    return flops / secs / 1e12, shapes


def linear_fwd(torch, a):
    # a layer's forward GEMMs as nn.Linear runs them (Y = X W^T, W stored [out, in]): the layout
    # of bench/cuda_layer's, whose rates it prints beside these (gemm_mix's matmul is another)
    T, q, kv = a.tokens, a.heads * a.head_dim, a.kv_heads * a.head_dim
    out = {}
    for (din, dout) in [(a.dim, q), (a.dim, kv), (q, a.dim), (a.dim, a.ffn), (a.ffn, a.dim)]:
        key = "%dx%dx%d" % (T, din, dout)
        if key in out:
            continue
        X = torch.randn(T, din, device="cuda", dtype=torch.bfloat16)
        W = torch.randn(dout, din, device="cuda", dtype=torch.bfloat16)
        s = timed(torch, lambda: torch.nn.functional.linear(X, W), a.reps)
        out[key] = round(2.0 * T * din * dout / s / 1e12, 1)
    return out


def big_gemm(torch, reps):
    n = 8192
    A = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    B = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    C = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    s = timed(torch, lambda: torch.matmul(A, B, out=C), reps)
    return 2.0 * n ** 3 / s / 1e12


def pcie(torch, a):
    nbytes = a.copy_mib << 20
    h_src = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    h_dst = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    h_src.fill_(1)
    d_dst = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    d_src = torch.ones(nbytes, dtype=torch.uint8, device="cuda")
    s1 = torch.cuda.Stream()
    s2 = torch.cuda.Stream()
    h2d = timed(torch, lambda: d_dst.copy_(h_src, non_blocking=True), a.reps)
    d2h = timed(torch, lambda: h_dst.copy_(d_src, non_blocking=True), a.reps)

    def both():
        cur = torch.cuda.current_stream()
        s1.wait_stream(cur)
        s2.wait_stream(cur)
        with torch.cuda.stream(s1):
            d_dst.copy_(h_src, non_blocking=True)
        with torch.cuda.stream(s2):
            h_dst.copy_(d_src, non_blocking=True)
        cur.wait_stream(s1)
        cur.wait_stream(s2)

    duplex = timed(torch, both, a.reps)
    return {"h2d_gbs": round(nbytes / h2d / 1e9, 2), "d2h_gbs": round(nbytes / d2h / 1e9, 2),
            "duplex_h2d_plus_d2h_gbs": round(2 * nbytes / duplex / 1e9, 2),
            "copy_mib": a.copy_mib}


def main():
    a = parse_args()
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("anchor_rates: no CUDA device")
    mix, shapes = gemm_mix(torch, a)
    res = {"what": "rates", "gpu": torch.cuda.get_device_name(0),
           "gemm_tflops_model_mix": round(mix, 1), "gemm_tflops_8192": round(big_gemm(torch, a.reps), 1),
           "gemm_shapes_tflops": shapes, "linear_fwd_tflops": linear_fwd(torch, a), "tokens": a.tokens}
    res.update(pcie(torch, a))
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    sys.exit(main())
