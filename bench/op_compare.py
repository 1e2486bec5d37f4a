#!/usr/bin/env python3
"""Per-op times of two runs side by side, from their SW_OP_PROFILE=1 tables (core/op_profile.h):
usually bench/cuda_layer at a model's layer shape (A, the bench the planner's layer rate comes
from) against `spillway train` on that model (B, the step). For every op key in both: calls and
mean microseconds in each, and B's mean over A's. Then the ops of B that A also ran, timed at
A's means against B's own: how much slower (or faster) the same work runs in the step, split
into GEMMs (matmul_*), attention, and the rest (memory-bound kernels). A weight-gradient GEMM
written with beta = 0 (key suffix " dW set", the step's first micro-batch) is compared with A's
accumulating GEMM of the same shape, as its own row.

Usage: python3 bench/op_compare.py A.txt B.txt [--top N]
(each file: anything holding the "op profile (SW_OP_PROFILE=1)" table, e.g. a run's stderr)"""
import re
import sys

ROW = re.compile(r"^\s{2}(\S.*?)\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)%\s*$")


def read(path):
    ops, on = {}, False
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("op profile (SW_OP_PROFILE=1)"):
                ops, on = {}, True   # the last table in the file
                continue
            if not on:
                continue
            m = ROW.match(line.rstrip("\n"))
            if m:
                key, calls, total_ms, mean_us = m.group(1), int(m.group(2)), float(m.group(3)), float(m.group(4))
                ops[key] = (calls, total_ms, mean_us)
            elif ops and not line.startswith("  op "):
                on = False
    if not ops:
        sys.exit(f"op_compare: {path}: no SW_OP_PROFILE table (run with SW_OP_PROFILE=1)")
    return ops


def base(key):
    return key[:-len(" dW set")] if key.endswith(" dW set") else key


def kind(key):
    return "GEMM" if key.startswith("matmul_") else "attention" if key.startswith("attention") else "other"


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__.split("\n\n")[-1])
    top = int(argv[argv.index("--top") + 1]) if "--top" in argv else 0
    a, b = read(argv[0]), read(argv[1])
    rows = []
    for key, (cb, tb, mb) in b.items():
        ref = a.get(key) or a.get(base(key))
        if ref:
            rows.append((key, ref, (cb, tb, mb)))
    if not rows:
        sys.exit("op_compare: the two runs have no op key in common (different shapes?)")
    rows.sort(key=lambda r: -r[2][1])
    print(f"| op | calls A | mean us A | calls B | mean us B | B / A |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, (ca, _, ma), (cb, _, mb) in rows[:top or len(rows)]:
        print(f"| {key} | {ca} | {ma:.1f} | {cb} | {mb:.1f} | {mb / ma:.3f} |" if ma > 0 else
              f"| {key} | {ca} | {ma:.1f} | {cb} | {mb:.1f} | - |")
    print()
    sums = {}
    for key, (ca, ta, _), (cb, tb, _) in rows:
        k = kind(key)
        at_a, got = sums.get(k, (0.0, 0.0))
        sums[k] = (at_a + cb * ta / ca, got + tb)   # A's mean from its total: more digits
    all_a = sum(v[0] for v in sums.values())
    all_b = sum(v[1] for v in sums.values())
    for k in ("GEMM", "attention", "other"):
        if k in sums:
            at_a, got = sums[k]
            print(f"{k}: B's calls at A's means {at_a:.2f} ms, in B {got:.2f} ms ({got / at_a:.3f})"
                  if at_a > 0 else f"{k}: {got:.2f} ms in B")
    print(f"all ops in both: B's calls at A's means {all_a:.2f} ms, in B {all_b:.2f} ms "
          f"({all_b / all_a:.3f})" if all_a > 0 else "")
    only = sorted(((t, k) for k, (_, t, _) in b.items() if not (a.get(k) or a.get(base(k)))), reverse=True)
    if only:
        print("in B only: " + ", ".join(f"{k} {t:.2f} ms" for t, k in only[:8]))


if __name__ == "__main__":
    main(sys.argv[1:])
