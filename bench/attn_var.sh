#!/usr/bin/env bash
# Variants of one pass of the Hopper attention (forward: SW_CUDA_ATTN_FWD; backward: its grid
# order, SW_CUDA_ATTN_BWD_ORDER=unit|kv; docs/cuda.md, "Hopper path") against each other and
# PyTorch SDPA (flash backend forced) in one run: that pass's TFLOP/s per variant and ratio =
# SDPA-flash's time / ours (> 1: we are faster); the first variant's other pass beside
# SDPA-flash's for reference.
# Usage: SW_BENCH_HD=64 SW_BENCH_T=2048,8192 bash bench/attn_var.sh fwd|bwd [iters] [outdir]
# (build first: make CUDA_ARCHS=-gencode=arch=compute_90a,code=sm_90a build/bench/attn_bench).
# VARIANTS="default ws ..." picks the variants: a name starting with "default" runs without the
# switch, so listing it twice ("default default2") shows the run-to-run spread of our side.
set -uo pipefail
pass=${1:?usage: bench/attn_var.sh fwd|bwd [iters] [outdir]}
case $pass in
  fwd) switch=SW_CUDA_ATTN_FWD other=bwd ;;
  bwd) switch=SW_CUDA_ATTN_BWD_ORDER other=fwd ;;
  *) echo "bench/attn_var.sh: the pass is fwd or bwd, not '$pass'" >&2; exit 2 ;;
esac
iters=${2:-5}
out=${3:-/tmp/attn_$pass}
mkdir -p "$out"
bin=${BUILD:-build}/bench/attn_bench
variants=${VARIANTS:?VARIANTS names the variants}
rc=0
: >"$out/ours.jsonl"
for v in $variants; do
  case "$v" in
    default*) env -u "$switch" SW_BENCH_IMPL="$v" "$bin" "$iters" >>"$out/ours.jsonl" || rc=1 ;;
    *) env "$switch=$v" SW_BENCH_IMPL="$v" "$bin" "$iters" >>"$out/ours.jsonl" || rc=1 ;;
  esac
done
SW_BENCH_FLASH_ONLY=1 PYTHONUNBUFFERED=1 python3 bench/attn_torch.py "$iters" >"$out/torch.jsonl" || rc=1
python3 - "$out/ours.jsonl" "$out/torch.jsonl" "$variants" "$pass" "$other" <<'PY'
import json, sys
rows = [json.loads(l) for p in sys.argv[1:3] for l in open(p) if l.startswith("{")]
variants, ps, ot = sys.argv[3].split(), sys.argv[4], sys.argv[5]
by = {}
for r in rows:
    by.setdefault((r["hd"], r["nh"], r["nkv"], r["T"], r["B"]), {})[r["impl"]] = r
flop = "2*B*T^2*nh*hd" if ps == "fwd" else "2.5*2*B*T^2*nh*hd"
print("%s TFLOP/s (causal, %s); (x) = SDPA-flash ms / our ms" % ({"fwd": "forward", "bwd": "backward"}[ps], flop))
print("| hd | heads q/kv | T | B | " + " | ".join("%s %s" % (ps, v) for v in variants) +
      " | %s SDPA-flash | %s %s | %s SDPA-flash |" % (ps, ot, variants[0], ot))
print("|---|---|---|---|" + "---|" * (len(variants) + 3))
for key in sorted(by):
    d = by[key]
    fl = d.get("sdpa_flash")
    cells = []
    for v in variants:
        r = d.get(v)
        cells.append("-" if not r else "%.0f" % r[ps + "_tflops"] +
                     (" (%.2fx)" % (fl[ps + "_ms"] / r[ps + "_ms"]) if fl else ""))
    dd = d.get(variants[0])
    print("| %d | %d/%d | %d | %d | %s | %s | %s | %s |" % (key + (" | ".join(cells),
          "%.0f" % fl[ps + "_tflops"] if fl else "-", "%.0f" % dd[ot + "_tflops"] if dd else "-",
          "%.0f" % fl[ot + "_tflops"] if fl else "-")))
PY
exit $rc
