#!/usr/bin/env python3
"""PyTorch side of bench/attn_compare.sh: causal attention forward and backward through
torch.nn.functional.scaled_dot_product_attention with the flash backend forced (and the cuDNN
backend, and the flash_attn package's flash_attn_func where installed), on the shapes of
bench/attn_bench.c: head dims 64 and 128, GQA 8:1 and 1:1, T = 1K..32K, 32768 tokens per batch,
width 2048. Tensors are (B, T, heads, hd) as ours, viewed as (B, heads, T, hd) for SDPA (no copy).
Backward is timed alone (autograd.grad on a kept graph). One JSON line per shape and impl.

Usage: python3 bench/attn_torch.py [iters]"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

TOKENS, WIDTH = 32768, 2048


def timed(fn, iters, warm=2):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def sdpa_fns(backend, q, k, v, do):
    def fwd():
        with torch.no_grad(), sdpa_kernel(backend):
            F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True, enable_gqa=True)
    with sdpa_kernel(backend):
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True, enable_gqa=True)

    def bwd():
        torch.autograd.grad(o, (q, k, v), do.transpose(1, 2), retain_graph=True)
    return fwd, bwd


def fa_fns(q, k, v, do):
    from flash_attn import flash_attn_func

    def fwd():
        with torch.no_grad():
            flash_attn_func(q, k, v, causal=True)
    o = flash_attn_func(q, k, v, causal=True)

    def bwd():
        torch.autograd.grad(o, (q, k, v), do, retain_graph=True)
    return fwd, bwd


def main():
    iters = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    try:
        import flash_attn  # noqa: F401
        have_fa = True
        print("# flash_attn %s" % flash_attn.__version__, file=sys.stderr)
    except Exception:
        have_fa = False
        print("# flash_attn package not installed", file=sys.stderr)
    print("# torch %s on %s" % (torch.__version__, torch.cuda.get_device_name()), file=sys.stderr)
    only_hd = os.environ.get("SW_BENCH_HD")
    only_t = os.environ.get("SW_BENCH_T")
    impls = [("sdpa_flash", SDPBackend.FLASH_ATTENTION), ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION)]
    if os.environ.get("SW_BENCH_FLASH_ONLY"):
        impls = impls[:1]
    shapes = []  # (hd, nh, nkv, T, B)
    if os.environ.get("SW_BENCH_SHAPES"):  # "hd:nh:nkv:T:B,..." (e.g. the 70B layer: 128:64:8:4096:1)
        shapes = [tuple(int(x) for x in s.split(":")) for s in os.environ["SW_BENCH_SHAPES"].split(",")]
    else:
        for hd in (64, 128):
            for group in (8, 1):
                T = 1024
                while T <= TOKENS:
                    if not ((only_hd and str(hd) not in only_hd.split(",")) or
                            (only_t and str(T) not in only_t.split(","))):
                        shapes.append((hd, WIDTH // hd, WIDTH // hd // group, T, TOKENS // T))
                    T *= 2
    for hd, nh, nkv, T, B in shapes:
        g = torch.Generator(device="cuda").manual_seed(T + hd)
        mk = lambda h: (torch.rand(B, T, h, hd, device="cuda", generator=g) * 2 - 1).to(
            torch.bfloat16).requires_grad_()
        q, k, v = mk(nh), mk(nkv), mk(nkv)
        do = (torch.rand(B, T, nh, hd, device="cuda", generator=g) * 2 - 1).to(torch.bfloat16)
        fl = 2.0 * B * nh * hd * T * T
        todo = list(impls) + ([("flash_attn", None)] if have_fa else [])
        for name, backend in todo:
            try:
                fwd, bwd = fa_fns(q, k, v, do) if backend is None else sdpa_fns(backend, q, k, v, do)
                fm, bm = timed(fwd, iters), timed(bwd, iters)
            except Exception as e:  # a backend that refuses the shape: say so, go on
                print("# %s hd=%d T=%d: %s" % (name, hd, T, str(e).splitlines()[0][:160]),
                      file=sys.stderr)
                continue
            print(json.dumps({"impl": name, "hd": hd, "nh": nh, "nkv": nkv, "T": T, "B": B,
                              "fwd_ms": round(fm, 4), "bwd_ms": round(bm, 4),
                              "fwd_tflops": round(fl / (fm * 1e-3) / 1e12, 1),
                              "bwd_tflops": round(2.5 * fl / (bm * 1e-3) / 1e12, 1)}), flush=True)
            torch.cuda.empty_cache()
        del q, k, v, do

if __name__ == "__main__":
    main()
