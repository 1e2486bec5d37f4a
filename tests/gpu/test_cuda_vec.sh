#!/usr/bin/env bash
# The op tests with the vector memory-bound kernels on (SW_CUDA_VEC=1: RMSNorm forward and
# backward in 16-byte vectors, RoPE's loads of 8 heads before their stores, SwiGLU's backward in
# 16-byte vectors), against the same fp64 references and twice for the same bits; then the
# CUDA golden steps (20 bf16 steps bit-identical run to run, the fp32 steps against PyTorch).
set -u
b=${BUILD:-build}/tests/gpu
for t in test_cuda_ops test_cuda_golden; do
  [ -x "$b/$t" ] || { echo "missing $b/$t (run make test-gpu)"; exit 1; }
done
SW_CUDA_VEC=1 "$b/test_cuda_ops" || exit 1
SW_CUDA_VEC=1 "$b/test_cuda_golden"
