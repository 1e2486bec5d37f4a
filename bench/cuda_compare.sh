#!/usr/bin/env bash
# Per-layer forward+backward: the CUDA backend (bench/cuda_layer.c) against PyTorch
# (bench/torch_layer.py, HF LlamaDecoderLayer, SDPA, bf16) on the same GPU in one run, then the
# ratio table (ratio = PyTorch time / our time, > 1 means we are faster) with MFU against the
# bf16 GEMM rate measured in the same run.
# Usage: bash bench/cuda_compare.sh [iters] [outdir]   (build first: make bench)
set -euo pipefail
iters=${1:-10}
out=${2:-/tmp}
bin=${BUILD:-build}/bench/cuda_layer
"$bin" "$iters" | tee "$out/cuda_layer.jsonl"
PYTHONUNBUFFERED=1 python3 bench/torch_layer.py "$iters" | tee "$out/torch_layer.jsonl"
# Whole 1B training step (same batch: micro-batches x rows x seq), tokens/s.
gtf=$(python3 -c "import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if '\"gemm\"' in l][0]['tflops'])" "$out/cuda_layer.jsonl")
step_args="${SW_STEP_ARGS:-5 $gtf 4 2 2048}"
if [ -z "${SW_SKIP_STEP:-}" ]; then
  ${BUILD:-build}/bench/cuda_step $step_args | tee "$out/cuda_step.jsonl"
  PYTHONUNBUFFERED=1 python3 bench/torch_step.py $step_args | tee "$out/torch_step.jsonl"
fi
python3 - "$out/cuda_layer.jsonl" "$out/torch_layer.jsonl" "$out/cuda_step.jsonl" "$out/torch_step.jsonl" <<'PY'
import json, os, sys
def load(p):
    return [json.loads(l) for l in open(p) if l.startswith("{")] if os.path.exists(p) else []
cu, to = load(sys.argv[1]), load(sys.argv[2])
cs, ts = load(sys.argv[3]), load(sys.argv[4])
g = {r["impl"]: r for r in cu + to if r["what"] == "gemm"}
print("\nbf16 GEMM 8192^3: ours (cuBLASLt) %.1f TFLOP/s, torch %.1f TFLOP/s" % (g["cuda"]["tflops"], g["torch"]["tflops"]))
tl = {(r["size"], r["T"]): r for r in to if r["what"] == "layer"}
print("\n| layer | seq | ours ms | PyTorch ms | ratio (PyTorch/ours) | ours TFLOP/s | ours MFU | PyTorch MFU | attn fwd ours/PT ms | attn bwd ours/PT ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in cu:
    if r["what"] != "layer":
        continue
    t = tl.get((r["size"], r["T"]))
    if not t:
        continue
    print("| %s | %d | %.2f | %.2f | **%.2fx** | %.0f | %.1f%% | %.1f%% | %.2f / %.2f | %.2f / %.2f |" % (
        r["size"], r["T"], r["ms"], t["ms"], t["ms"] / r["ms"], r["tflops"], 100 * r["mfu"],
        100 * t["mfu"], r["attn_fwd_ms"], t["attn_fwd_ms"], r["attn_bwd_ms"], t["attn_bwd_ms"]))
if cs and ts:
    c, t = cs[0], ts[0]
    print("\n| whole 1B step (%d tokens) | ms | tokens/s | model TFLOP/s | MFU |" % c["tokens"])
    print("|---|---|---|---|---|")
    print("| ours (CUDA backend, in-GPU trainer, recompute) | %.1f | %.0f | %.0f | %.1f%% |" % (c["ms"], c["tokens_per_s"], c["model_tflops"], 100 * c["mfu"]))
    print("| PyTorch (HF, bf16 autocast, SDPA, fused AdamW) | %.1f | %.0f | %.0f | %.1f%% |" % (t["ms"], t["tokens_per_s"], t["model_tflops"], 100 * t["mfu"]))
    print("| ratio (tokens/s ours / PyTorch) | | **%.2fx** | | |" % (c["tokens_per_s"] / t["tokens_per_s"]))
PY
