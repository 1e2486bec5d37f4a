#!/usr/bin/env bash
# The vector memory-bound kernels (the default; SW_CUDA_VEC=0 turns them off: RMSNorm forward
# and backward in 16-byte vectors, RoPE in 16-byte accesses (or, where hd / 2 is not a multiple
# of 8, 8 heads' loads before their stores), SwiGLU's backward in 16-byte vectors):
# the op tests (each bf16 case of these ops also runs the other form and compares: the same
# bits where the arithmetic is the same, the fp64 reference's tolerance elsewhere), then the
# CUDA golden steps (the fp32 steps against PyTorch, 20 bf16 steps bit-identical run to run).
# The op tests must say that each op's vector form ran (the default alone does not: their guards
# also need bf16 and 16-byte-aligned operands), the golden steps that one did.
set -u
b=${BUILD:-build}/tests/gpu
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in test_cuda_ops test_cuda_golden; do
  [ -x "$b/$t" ] || { echo "missing $b/$t (run make test-gpu)"; exit 1; }
  env -u SW_CUDA_VEC "$b/$t" > "$log" 2>&1
  rc=$?
  cat "$log"
  [ $rc = 0 ] || exit $rc
  ops="rmsnorm_fwd rmsnorm_bwd rope rope_heads swiglu_bwd"
  [ $t = test_cuda_ops ] || ops=rmsnorm_fwd
  for op in $ops; do
    grep -q "vector kernel ran: $op " "$log" || { echo "FAIL: $t did not run the vector $op"; exit 1; }
  done
done
echo "test_cuda_vec: the vector forms ran and passed (op tests: all four ops; golden steps)"
