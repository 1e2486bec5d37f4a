#!/usr/bin/env bash
# The Hopper attention backward's variants against each other and PyTorch SDPA (flash backend
# forced) in one run: backward TFLOP/s of the default kernel and of each SW_CUDA_ATTN_BWD value
# (docs/cuda.md, "Hopper path"), ratio = SDPA-flash's time / ours (> 1: we are faster).
# Usage: SW_BENCH_HD=64 SW_BENCH_T=2048,4096,8192 bash bench/attn_bwd_var.sh [iters] [outdir]
# (build first: make CUDA_ARCHS=-gencode=arch=compute_90a,code=sm_90a build/bench/attn_bench;
# SW_BWD_VARIANTS="default wgp default2" picks the variants: a name starting with "default" runs
# without SW_CUDA_ATTN_BWD, so listing it twice shows the run-to-run spread of our side).
set -uo pipefail
iters=${1:-5}
out=${2:-/tmp/attn_bwd}
mkdir -p "$out"
bin=${BUILD:-build}/bench/attn_bench
variants=${SW_BWD_VARIANTS:-"default wgp"}
rc=0
: >"$out/ours.jsonl"
for v in $variants; do
  case "$v" in
    default*) env -u SW_CUDA_ATTN_BWD SW_BENCH_IMPL="$v" "$bin" "$iters" >>"$out/ours.jsonl" || rc=1 ;;
    *) SW_CUDA_ATTN_BWD=$v SW_BENCH_IMPL="$v" "$bin" "$iters" >>"$out/ours.jsonl" || rc=1 ;;
  esac
done
SW_BENCH_FLASH_ONLY=1 PYTHONUNBUFFERED=1 python3 bench/attn_torch.py "$iters" >"$out/torch.jsonl" || rc=1
python3 - "$out/ours.jsonl" "$out/torch.jsonl" "$variants" <<'PY'
import json, sys
rows = [json.loads(l) for p in sys.argv[1:3] for l in open(p) if l.startswith("{")]
variants = sys.argv[3].split()
by = {}
for r in rows:
    by.setdefault((r["hd"], r["nh"], r["nkv"], r["T"], r["B"]), {})[r["impl"]] = r
print("backward TFLOP/s (causal, 2.5*2*B*T^2*nh*hd); (x) = SDPA-flash ms / our ms")
print("| hd | heads q/kv | T | B | " + " | ".join("bwd %s" % v for v in variants) +
      " | bwd SDPA-flash | fwd default | fwd SDPA-flash |")
print("|---|---|---|---|" + "---|" * (len(variants) + 3))
for key in sorted(by):
    d = by[key]
    fl = d.get("sdpa_flash")
    cells = []
    for v in variants:
        r = d.get(v)
        cells.append("-" if not r else "%.0f" % r["bwd_tflops"] +
                     (" (%.2fx)" % (fl["bwd_ms"] / r["bwd_ms"]) if fl else ""))
    dd = d.get(variants[0]) if variants else None
    print("| %d | %d/%d | %d | %d | %s | %s | %s | %s |" % (key + (" | ".join(cells),
          "%.0f" % fl["bwd_tflops"] if fl else "-", "%.0f" % dd["fwd_tflops"] if dd else "-",
          "%.0f" % fl["fwd_tflops"] if fl else "-")))
PY
exit $rc
