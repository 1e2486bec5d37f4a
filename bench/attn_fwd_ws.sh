#!/usr/bin/env bash
# The Hopper attention forward's variants against each other and PyTorch SDPA (flash backend
# forced) in one run: the default kernel and the warp-specialised ones (SW_CUDA_ATTN_FWD=ws,
# ws3, wsn; docs/cuda.md, "Hopper path"), forward TFLOP/s and ratio = SDPA-flash's time / ours
# (> 1: we are faster); the default's backward beside SDPA-flash's for reference.
# Usage: SW_BENCH_HD=64 SW_BENCH_T=2048,8192,32768 bash bench/attn_fwd_ws.sh [iters] [outdir]
# (build first: make CUDA_ARCHS=-gencode=arch=compute_90a,code=sm_90a build/bench/attn_bench;
# SW_FWD_VARIANTS="default ws ..." picks the variants).
set -uo pipefail
iters=${1:-5}
out=${2:-/tmp/attn_ws}
mkdir -p "$out"
bin=${BUILD:-build}/bench/attn_bench
variants=${SW_FWD_VARIANTS:-"default ws ws3 wsn"}
rc=0
: >"$out/ours.jsonl"
for v in $variants; do
  if [ "$v" = default ]; then
    env -u SW_CUDA_ATTN_FWD SW_BENCH_IMPL=default "$bin" "$iters" >>"$out/ours.jsonl" || rc=1
  else
    SW_CUDA_ATTN_FWD=$v SW_BENCH_IMPL=$v "$bin" "$iters" >>"$out/ours.jsonl" || rc=1
  fi
done
SW_BENCH_FLASH_ONLY=1 PYTHONUNBUFFERED=1 python3 bench/attn_torch.py "$iters" >"$out/torch.jsonl" || rc=1
python3 - "$out/ours.jsonl" "$out/torch.jsonl" "$variants" <<'PY'
import json, sys
rows = [json.loads(l) for p in sys.argv[1:3] for l in open(p) if l.startswith("{")]
variants = sys.argv[3].split()
by = {}
for r in rows:
    by.setdefault((r["hd"], r["nh"], r["nkv"], r["T"], r["B"]), {})[r["impl"]] = r
print("forward TFLOP/s (causal, 2*B*T^2*nh*hd); (x) = SDPA-flash ms / our ms")
print("| hd | heads q/kv | T | B | " + " | ".join("fwd %s" % v for v in variants) +
      " | fwd SDPA-flash | bwd default | bwd SDPA-flash |")
print("|---|---|---|---|" + "---|" * (len(variants) + 3))
for key in sorted(by):
    d = by[key]
    fl = d.get("sdpa_flash")
    cells = []
    for v in variants:
        r = d.get(v)
        cells.append("-" if not r else "%.0f" % r["fwd_tflops"] +
                     (" (%.2fx)" % (fl["fwd_ms"] / r["fwd_ms"]) if fl else ""))
    dd = d.get("default")
    print("| %d | %d/%d | %d | %d | %s | %s | %s | %s |" % (key + (" | ".join(cells),
          "%.0f" % fl["fwd_tflops"] if fl else "-", "%.0f" % dd["bwd_tflops"] if dd else "-",
          "%.0f" % fl["bwd_tflops"] if fl else "-")))
PY
exit $rc
