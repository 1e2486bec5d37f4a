#!/usr/bin/env python3
"""PyTorch baseline for bench/cuda_layer.c: HF LlamaDecoderLayer (SDPA attention, bf16
parameters and activations) forward + backward on the same shapes (sequence 2048 and 4096, 8192
too for the 70B; SW_BENCH_SEQ=T[,T...] sets them for every layer), batch 1; plus the cuBLAS bf16
GEMM rate through torch.matmul. Prints one JSON line per measurement.

Usage: python3 bench/torch_layer.py [iters]"""
import json
import math
import os
import sys

import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

CFGS = [("1B", 2048, 8192, 32, 8, 64), ("8B", 4096, 14336, 32, 8, 128),
        ("70B", 8192, 28672, 64, 8, 128)]


def timed(fn, iters, warm=3):
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


def gemm(iters):
    m = 8192
    a = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    ms = timed(lambda: a @ b.t(), iters)
    tf = 2 * m ** 3 / (ms * 1e-3) / 1e12
    print(json.dumps({"what": "gemm", "impl": "torch", "M": m, "ms": round(ms, 4), "tflops": round(tf, 1)}),
          flush=True)
    return tf


def layer(name, C, F, nh, nkv, hd, T, iters, gemm_tf):
    cfg = LlamaConfig(hidden_size=C, intermediate_size=F, num_attention_heads=nh,
                      num_key_value_heads=nkv, head_dim=hd, max_position_embeddings=8192,
                      rope_theta=500000.0, rms_norm_eps=1e-5, attention_bias=False,
                      mlp_bias=False, hidden_act="silu", attn_implementation="sdpa")
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    lay = LlamaDecoderLayer(cfg, layer_idx=0).to("cuda", torch.bfloat16)
    rot = LlamaRotaryEmbedding(cfg).to("cuda")
    x = torch.randn(1, T, C, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dy = torch.randn(1, T, C, device="cuda", dtype=torch.bfloat16) * 0.01
    pos = torch.arange(T, device="cuda")[None]
    with torch.no_grad():
        pe = rot(x, pos)

    def step():
        out = lay(x, position_embeddings=pe, attention_mask=None, position_ids=pos)
        out = out[0] if isinstance(out, tuple) else out
        out.backward(dy)

    def fwd():
        with torch.no_grad():
            lay(x, position_embeddings=pe, attention_mask=None, position_ids=pos)

    ms = timed(step, iters)
    fms = timed(fwd, iters)
    P = C * (2 * nh * hd + 2 * nkv * hd) + 3 * C * F
    flops = 6 * P * T + 6 * nh * hd * T * T
    tf = flops / (ms * 1e-3) / 1e12
    # SDPA alone (is_causal), forward and forward+backward, for the attention split.
    q = torch.randn(1, nh, T, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, nkv, T, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1, nkv, T, hd, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    do = torch.randn(1, nh, T, hd, device="cuda", dtype=torch.bfloat16)
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def afwd():
        with torch.no_grad():
            sdpa(q, k, v, is_causal=True, enable_gqa=True)

    def afb():
        sdpa(q, k, v, is_causal=True, enable_gqa=True).backward(do)

    am = timed(afwd, iters)
    abm = timed(afb, iters) - am
    afl = 2 * nh * hd * T * T
    print(json.dumps({"what": "layer", "impl": "torch", "size": name, "T": T, "ms": round(ms, 3),
                      "fwd_ms": round(fms, 3), "tflops": round(tf, 1), "mfu": round(tf / gemm_tf, 3),
                      "attn_fwd_ms": round(am, 3), "attn_fwd_tflops": round(afl / (am * 1e-3) / 1e12, 1),
                      "attn_bwd_ms": round(abm, 3),
                      "attn_bwd_tflops": round(2.5 * afl / (abm * 1e-3) / 1e12, 1)}), flush=True)
    del lay, x, dy
    torch.cuda.empty_cache()


def main():
    iters = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    only = os.environ.get("SW_BENCH_ONLY")
    gtf = gemm(iters)
    for name, C, F, nh, nkv, hd in CFGS:
        if only and only != name:
            continue
        seq = os.environ.get("SW_BENCH_SEQ") or ("2048,4096,8192" if name == "70B" else "2048,4096")
        for T in (int(t) for t in seq.split(",")):
            layer(name, C, F, nh, nkv, hd, T, iters, gtf)


if __name__ == "__main__":
    main()
