#!/usr/bin/env bash
# The Hopper attention backward's variants (SW_CUDA_ATTN_BWD=wg, wgp, wgp4, wgpp) against PyTorch
# SDPA-flash: bench/attn_var.sh bwd with SW_BWD_VARIANTS (default "default wgp"; list "default"
# twice, e.g. "default wgp default2", to see our side's run-to-run spread).
# Usage: SW_BENCH_HD=64 SW_BENCH_T=2048,4096,8192 bash bench/attn_bwd_var.sh [iters] [outdir]
VARIANTS=${SW_BWD_VARIANTS:-"default wgp"} exec bash "$(dirname "$0")/attn_var.sh" bwd "${1:-5}" "${2:-/tmp/attn_bwd}"
