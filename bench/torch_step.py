#!/usr/bin/env python3
"""PyTorch baseline for bench/cuda_step.c: one training step of HF LlamaForCausalLM with Llama
3.2 1B's shapes (random init), bf16 autocast over fp32 parameters, SDPA attention, fused AdamW,
clip_grad_norm_(1.0), the same batch split into the same micro-batches. Prints one JSON line.
Usage: python3 bench/torch_step.py [steps] [gemm_tflops] [rows] [micro_batches] [seq]"""
import json
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def median_step(cfg, M, rows, T, steps, clip, betas, weight_decay):
    """The median of `steps` timed training steps (after two warm-up steps) of HF
    LlamaForCausalLM(cfg), random init, on the GPU: bf16 autocast over fp32 parameters, M
    micro-batches of rows x T random tokens each, then clip_grad_norm_(clip) unless clip is 0,
    fused AdamW. Returns (seconds, the last micro-batch's loss, peak GiB allocated)."""
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=betas, eps=1e-8,
                            weight_decay=weight_decay, fused=True)
    ids = torch.randint(0, cfg.vocab_size, (M, rows, T), device="cuda")

    def step():
        for m in range(M):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(input_ids=ids[m], labels=ids[m], use_cache=False)
            (out.loss / M).backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out.loss

    ts = []
    for s in range(steps + 2):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        if s >= 2:
            ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2], float(loss), torch.cuda.max_memory_allocated() / 2**30


def main():
    a = sys.argv[1:]
    steps = int(a[0]) if len(a) > 0 else 5
    gemm_tf = float(a[1]) if len(a) > 1 else 0.0
    rows = int(a[2]) if len(a) > 2 else 4
    M = int(a[3]) if len(a) > 3 else 2
    T = int(a[4]) if len(a) > 4 else 2048
    cfg = LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                      num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                      vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0,
                      rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                      rms_norm_eps=1e-5, tie_word_embeddings=True, attn_implementation="sdpa")
    sec, loss, _ = median_step(cfg, M, rows, T, steps, clip=1.0, betas=(0.9, 0.95), weight_decay=0.1)
    ntok = M * rows * T
    C, F, qd, kvd, L = 2048, 8192, 2048, 512, 16
    P = L * (2 * C * qd + 2 * C * kvd + 3 * C * F) + C * cfg.vocab_size
    flops = 6.0 * P * ntok + 6.0 * L * qd * T * ntok
    tf = flops / sec / 1e12
    print(json.dumps({"what": "step", "impl": "torch", "tokens": ntok, "ms": round(sec * 1e3, 1),
                      "tokens_per_s": round(ntok / sec), "model_tflops": round(tf, 1),
                      "mfu": round(tf / gemm_tf, 3) if gemm_tf else 0, "loss": round(loss, 4)}),
          flush=True)


if __name__ == "__main__":
    main()
