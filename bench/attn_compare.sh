#!/usr/bin/env bash
# Causal attention alone, ours against PyTorch SDPA (flash backend forced; cuDNN backend and the
# flash_attn package beside it where they run), forward and backward TFLOP/s on the same GPU in
# one run, and the ratio table (ratio = their time / ours, > 1 means we are faster). Also our
# previous kernels (SW_CUDA_ATTN_MMA16=1) for reference, and with SW_WITH_2PASS=1 the backward's
# two-pass dQ (SW_CUDA_ATTN_DQ=2pass).
# Usage: bash bench/attn_compare.sh [iters] [outdir]   (build first: make build/bench/attn_bench)
set -uo pipefail
iters=${1:-10}
out=${2:-/tmp}
mkdir -p "$out"
bin=${BUILD:-build}/bench/attn_bench
rc=0
: >"$out/attn_ours.jsonl"
"$bin" "$iters" | tee "$out/attn_ours.jsonl" || rc=1
if [ -z "${SW_SKIP_OLD:-}" ]; then
  SW_CUDA_ATTN_MMA16=1 SW_BENCH_IMPL=ours_mma16 "$bin" "$iters" | tee "$out/attn_ours_old.jsonl" || rc=1
fi
: >"$out/attn_ours_2pass.jsonl"
if [ -n "${SW_WITH_2PASS:-}" ]; then  # the backward's two-pass dQ (what runs without the scratch)
  SW_CUDA_ATTN_DQ=2pass SW_BENCH_IMPL=ours_2pass "$bin" "$iters" | tee "$out/attn_ours_2pass.jsonl" || rc=1
fi
PYTHONUNBUFFERED=1 python3 bench/attn_torch.py "$iters" | tee "$out/attn_torch.jsonl" || rc=1
python3 - "$out"/attn_ours.jsonl "$out"/attn_torch.jsonl "$out"/attn_ours_2pass.jsonl $( [ -z "${SW_SKIP_OLD:-}" ] && echo "$out/attn_ours_old.jsonl" ) <<'PY'
import json, os, sys
rows = []
for p in sys.argv[1:]:
    if os.path.exists(p):
        rows += [json.loads(l) for l in open(p) if l.startswith("{")]
by = {}
for r in rows:
    by.setdefault((r["hd"], r["nh"], r["nkv"], r["T"], r["B"]), {})[r["impl"]] = r
def cell(d, impl, what):
    r = d.get(impl)
    return "%.0f" % r[what + "_tflops"] if r else "-"
def ratio(d, impl, what):
    a, b = d.get("ours"), d.get(impl)
    return "**%.2fx**" % (b[what + "_ms"] / a[what + "_ms"]) if a and b else "-"
print("\nTFLOP/s (causal; forward 2*B*T^2*nh*hd, backward 2.5x that); ratio = their ms / our ms")
print("| hd | heads q/kv | T | B | fwd ours | fwd SDPA-flash | fwd ratio | bwd ours | bwd SDPA-flash | bwd ratio | fwd/bwd cuDNN | fwd/bwd flash_attn | fwd ours (16-row kernel) | bwd ours (two-pass dQ) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for key in sorted(by):
    d = by[key]
    hd, nh, nkv, T, B = key
    print("| %d | %d/%d | %d | %d | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s |" % (
        hd, nh, nkv, T, B, cell(d, "ours", "fwd"), cell(d, "sdpa_flash", "fwd"), ratio(d, "sdpa_flash", "fwd"),
        cell(d, "ours", "bwd"), cell(d, "sdpa_flash", "bwd"), ratio(d, "sdpa_flash", "bwd"),
        cell(d, "sdpa_cudnn", "fwd"), cell(d, "sdpa_cudnn", "bwd"),
        cell(d, "flash_attn", "fwd"), cell(d, "flash_attn", "bwd"), cell(d, "ours_mma16", "fwd"),
        cell(d, "ours_2pass", "bwd")))
PY
exit $rc
