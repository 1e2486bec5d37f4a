#!/usr/bin/env bash
# Per-layer forward+backward: the CUDA backend (bench/cuda_layer.c) against PyTorch
# (bench/torch_layer.py, HF LlamaDecoderLayer, SDPA, bf16) on the same GPU in one run, then the
# ratio table (ratio = PyTorch time / our time, > 1 means we are faster) with MFU against the
# bf16 GEMM rate measured in the same run. Layers at sequence 2048 and 4096, the 70B also at 8192
# (SW_BENCH_SEQ=T[,T...] sets the lengths, SW_BENCH_ONLY=1B|8B|70B one layer size).
# Usage: bash bench/cuda_compare.sh [iters] [outdir]   (build first: make bench)
# Each stage runs even when an earlier one failed (the table shows what was measured); the exit
# status is 1 when any stage failed.
set -uo pipefail
iters=${1:-10}
out=${2:-/tmp}
mkdir -p "$out"
rm -f "$out"/cuda_layer.jsonl "$out"/torch_layer.jsonl "$out"/cuda_step.jsonl "$out"/torch_step.jsonl
bin=${BUILD:-build}/bench/cuda_layer
rc=0
stage() {  # name cmd...: runs cmd, its stdout to $out/name.jsonl too
  local name=$1; shift
  "$@" | tee "$out/$name.jsonl"
  local r=${PIPESTATUS[0]}
  [ "$r" = 0 ] || { echo "cuda_compare: $name failed (exit $r)" >&2; rc=1; }
}
stage cuda_layer "$bin" "$iters"
stage torch_layer env PYTHONUNBUFFERED=1 python3 bench/torch_layer.py "$iters"
# Whole 1B training step (same batch: micro-batches x rows x seq), tokens/s. MFU against our
# GEMM rate (PyTorch's when ours is missing, 0 when neither ran).
gtf=$(python3 - "$out/cuda_layer.jsonl" "$out/torch_layer.jsonl" <<'GTF'
import json, os, sys
for p in sys.argv[1:]:
    rows = [json.loads(l) for l in open(p) if l.startswith("{")] if os.path.exists(p) else []
    g = [r["tflops"] for r in rows if r.get("what") == "gemm"]
    if g:
        print(g[0])
        break
else:
    print(0)
GTF
) || gtf=0
step_args="${SW_STEP_ARGS:-5 $gtf 4 2 2048}"
if [ -z "${SW_SKIP_STEP:-}" ]; then
  stage cuda_step ${BUILD:-build}/bench/cuda_step $step_args
  stage torch_step env PYTHONUNBUFFERED=1 python3 bench/torch_step.py $step_args
fi
python3 - "$out/cuda_layer.jsonl" "$out/torch_layer.jsonl" "$out/cuda_step.jsonl" "$out/torch_step.jsonl" <<'PY'
import json, os, sys
def load(p):
    return [json.loads(l) for l in open(p) if l.startswith("{")] if os.path.exists(p) else []
cu, to = load(sys.argv[1]), load(sys.argv[2])
cs, ts = load(sys.argv[3]), load(sys.argv[4])
g = {r["impl"]: r["tflops"] for r in cu + to if r["what"] == "gemm"}
print("\nbf16 GEMM 8192^3: ours (cuBLASLt) %s TFLOP/s, torch %s TFLOP/s" % (g.get("cuda", "-"), g.get("torch", "-")))
tl = {(r["size"], r["T"]): r for r in to if r["what"] == "layer"}
print("\n| layer | seq | ours ms | PyTorch ms | ratio (PyTorch/ours) | ours TFLOP/s | ours MFU | PyTorch MFU | attn fwd ours/PT ms | attn bwd ours/PT ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in cu:
    if r["what"] != "layer":
        continue
    t = tl.get((r["size"], r["T"]))
    if not t:  # PyTorch's run is missing: ours alone
        print("| %s | %d | %.2f | - | - | %.0f | %.1f%% | - | %.2f / - | %.2f / - |" % (
            r["size"], r["T"], r["ms"], r["tflops"], 100 * r["mfu"], r["attn_fwd_ms"], r["attn_bwd_ms"]))
        continue
    # both MFUs against one denominator, our measured GEMM rate (torch_layer.py's own "mfu" is
    # against torch's GEMM rate, which differs by a few %)
    t_mfu = t["tflops"] / g["cuda"] if g.get("cuda") else t["mfu"]
    print("| %s | %d | %.2f | %.2f | **%.2fx** | %.0f | %.1f%% | %.1f%% | %.2f / %.2f | %.2f / %.2f |" % (
        r["size"], r["T"], r["ms"], t["ms"], t["ms"] / r["ms"], r["tflops"], 100 * r["mfu"],
        100 * t_mfu, r["attn_fwd_ms"], t["attn_fwd_ms"], r["attn_bwd_ms"], t["attn_bwd_ms"]))
if cs and ts:
    c, t = cs[0], ts[0]
    print("\n| whole 1B step (%d tokens) | ms | tokens/s | model TFLOP/s | MFU |" % c["tokens"])
    print("|---|---|---|---|---|")
    print("| ours (CUDA backend, in-GPU trainer, recompute) | %.1f | %.0f | %.0f | %.1f%% |" % (c["ms"], c["tokens_per_s"], c["model_tflops"], 100 * c["mfu"]))
    print("| PyTorch (HF, bf16 autocast, SDPA, fused AdamW) | %.1f | %.0f | %.0f | %.1f%% |" % (t["ms"], t["tokens_per_s"], t["model_tflops"], 100 * t["mfu"]))
    print("| ratio (tokens/s ours / PyTorch) | | **%.2fx** | | |" % (c["tokens_per_s"] / t["tokens_per_s"]))
PY
exit $rc
