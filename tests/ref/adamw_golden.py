#!/usr/bin/env python3
"""Writes tests/ref/adamw_golden.bin: torch.optim.AdamW trajectories that tests/test_optim_torch.c
checks spillway's AdamW, LR schedules and gradient clipping against (rel. 1e-6).

Each run: a few fp32 tensors (with and without weight decay, as two param groups), a given LR
schedule from transformers (HF) and torch.nn.utils.clip_grad_norm_; per step the file holds the
gradient given, the lr torch used, the total norm clip_grad_norm_ returned and p, exp_avg,
exp_avg_sq after optimizer.step().

Usage: python3 tests/ref/adamw_golden.py [OUT]   (needs torch and transformers; CPU is enough)

Format, little-endian:
  char magic[8] "SWADAMG1"; u32 version (1); u32 nruns
  per run: u32 ntensors, nsteps, schedule (0 constant, 1 cosine), reserved
           f64 lr, beta1, beta2, eps, weight_decay, max_norm (0: no clipping), min_lr_rate
           i64 warmup_steps, total_steps
           per tensor: u32 n, u32 decay
           per tensor: f32 p0[n]
           per step:   f64 lr_used, f64 total_norm
                       per tensor: f32 g[n], p[n], exp_avg[n], exp_avg_sq[n]
"""
import struct
import sys

import torch
from transformers import get_constant_schedule, get_cosine_with_min_lr_schedule_with_warmup

RUNS = [
    # cosine with warm-up and a floor, clipping on (steps 0, 2 and 4 clip, others do not)
    dict(sizes=[(257,), (48, 33), (131,)], decay=[1, 1, 0], steps=6, schedule=1, lr=1e-3,
         betas=(0.9, 0.95), eps=1e-8, wd=0.1, max_norm=1.0, min_lr_rate=0.1, warmup=2, total=6,
         gscale=[3.0, 0.01, 5.0, 0.02, 40.0, 0.005]),
    # constant lr, no clipping, torch's default betas
    dict(sizes=[(300,), (17, 19)], decay=[1, 0], steps=4, schedule=0, lr=3e-3,
         betas=(0.9, 0.999), eps=1e-6, wd=0.01, max_norm=0.0, min_lr_rate=0.0, warmup=0, total=0,
         gscale=[1.0, 0.1, 10.0, 0.001]),
]


def f32(t):
    return t.detach().to(torch.float32).contiguous().numpy().tobytes()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/ref/adamw_golden.bin"
    torch.manual_seed(1234)
    blob = bytearray(b"SWADAMG1" + struct.pack("<II", 1, len(RUNS)))
    for r in RUNS:
        params = [torch.nn.Parameter(torch.randn(*s, dtype=torch.float32) * 0.05) for s in r["sizes"]]
        groups = [
            {"params": [p for p, d in zip(params, r["decay"]) if d], "weight_decay": r["wd"]},
            {"params": [p for p, d in zip(params, r["decay"]) if not d], "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW(groups, lr=r["lr"], betas=r["betas"], eps=r["eps"], foreach=False)
        if r["schedule"] == 1:
            sched = get_cosine_with_min_lr_schedule_with_warmup(
                opt, num_warmup_steps=r["warmup"], num_training_steps=r["total"],
                min_lr_rate=r["min_lr_rate"])
        else:
            sched = get_constant_schedule(opt)
        blob += struct.pack("<IIII", len(params), r["steps"], r["schedule"], 0)
        blob += struct.pack("<7d", r["lr"], r["betas"][0], r["betas"][1], r["eps"], r["wd"],
                            r["max_norm"], r["min_lr_rate"])
        blob += struct.pack("<qq", r["warmup"], r["total"])
        for p, d in zip(params, r["decay"]):
            blob += struct.pack("<II", p.numel(), d)
        for p in params:
            blob += f32(p)
        for s in range(r["steps"]):
            grads = []
            for p in params:
                g = torch.randn(p.shape, dtype=torch.float32) * r["gscale"][s] / (p.numel() ** 0.5)
                g[torch.rand(p.shape) < 0.1] = 0.0
                grads.append(g)
                p.grad = g.clone()
            if r["max_norm"] > 0:
                norm = float(torch.nn.utils.clip_grad_norm_(params, r["max_norm"]))
            else:
                norm = float(torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(g) for g in grads])))
            lr_used = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            blob += struct.pack("<dd", lr_used, norm)
            for p, g in zip(params, grads):
                st = opt.state[p]
                blob += f32(g) + f32(p) + f32(st["exp_avg"]) + f32(st["exp_avg_sq"])
            print(f"run {RUNS.index(r)} step {s + 1}: lr {lr_used:.6g} grad norm {norm:.6g}")
    with open(out, "wb") as f:
        f.write(blob)
    print(f"wrote {out}: {len(blob)} bytes (torch {torch.__version__})")


if __name__ == "__main__":
    main()
