#!/usr/bin/env bash
# The Hopper attention forward's variants (SW_CUDA_ATTN_FWD=ws, ws3, wsn, wsp, ...) against
# PyTorch SDPA-flash: bench/attn_var.sh fwd with SW_FWD_VARIANTS (default "default ws ws3 wsn").
# Usage: SW_BENCH_HD=64 SW_BENCH_T=2048,8192,32768 bash bench/attn_fwd_ws.sh [iters] [outdir]
VARIANTS=${SW_FWD_VARIANTS:-"default ws ws3 wsn"} exec bash "$(dirname "$0")/attn_var.sh" fwd "${1:-5}" "${2:-/tmp/attn_ws}"
