#!/usr/bin/env python3
"""PyTorch reference for `spillway bench-adam`: the same sizes and thread counts, measured by
code that is not ours.

* triad: torch.add(b, c, alpha=3.0, out=a) on fp32 tensors of N elements, 12 B per element
  counted (read b, c; write a), as bench-adam counts its own triad.
* AdamW: torch.optim.AdamW over one fp32 parameter of N elements with an fp32 gradient,
  fused=True (one pass per step, the fastest CPU AdamW in torch) and foreach=True (torch's
  default on multi-tensor lists): Gparam/s, and GB/s at 28 B per parameter (read p, g, m, v;
  write p, m, v). torch's optimizer writes no bf16 copy of the weights; spillway's writes it in
  the same pass (2 B more). "fused+bf16" is what a torch user does to get that copy: the fused
  step, then h.copy_(p) into a preallocated bf16 tensor (a second pass: 4 B read, 2 B written),
  timed together; its Gparam/s is the like-for-like reference for spillway's.

Best of R timed runs after one warm-up each. Prints one line per thread count and a JSON line.
Usage: python3 bench/torch_adam.py [N=256e6] [threads=1,2,4,8,16] [reps=5]"""
import json
import sys
import time

import torch


def best(fn, reps):
    fn()
    t = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t


def main():
    a = sys.argv[1:]
    n = int(float(a[0])) if len(a) > 0 else 256_000_000
    threads = [int(x) for x in (a[1] if len(a) > 1 else "1,2,4,8,16").split(",")]
    reps = int(a[2]) if len(a) > 2 else 5
    torch.manual_seed(0)
    ta, tb, tc = torch.empty(n), torch.rand(n), torch.rand(n)
    p = torch.nn.Parameter(torch.rand(n) * 0.04 - 0.02)
    p.grad = (torch.rand(n) - 0.5) * 1e-3
    opts = {
        "fused": torch.optim.AdamW([p], lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                                   weight_decay=0.01, fused=True),
        "foreach": torch.optim.AdamW([p], lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                                     weight_decay=0.01, foreach=True),
    }
    h = torch.empty(n, dtype=torch.bfloat16)
    fused = opts["fused"]

    def fused_bf16():
        fused.step()
        h.copy_(p.detach())

    print(f"torch {torch.__version__}, N = {n}, best of {reps}; triad 12 B/element, AdamW 28 B/param")
    print(f"{'threads':>7} {'triad GB/s':>11} {'fused Gp/s':>11} {'fused GB/s':>11} "
          f"{'foreach Gp/s':>13} {'foreach GB/s':>13} {'fused+bf16 Gp/s':>16}")
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        tt = best(lambda: torch.add(tb, tc, alpha=3.0, out=ta), reps)
        row = {"threads": t, "triad_gbs": n * 12 / tt / 1e9}
        for name, o in opts.items():
            s = best(o.step, reps)
            row[name + "_gparams"] = n / s / 1e9
            row[name + "_gbs"] = n * 28 / s / 1e9
        row["fused_bf16_gparams"] = n / best(fused_bf16, reps) / 1e9
        rows.append(row)
        print(f"{t:7d} {row['triad_gbs']:11.1f} {row['fused_gparams']:11.3f} "
              f"{row['fused_gbs']:11.1f} {row['foreach_gparams']:13.3f} {row['foreach_gbs']:13.1f} "
              f"{row['fused_bf16_gparams']:16.3f}",
              flush=True)
    print(json.dumps({"n": n, "reps": reps, "rows": rows}))


if __name__ == "__main__":
    main()
