#!/usr/bin/env bash
# Keep instead of recompute on the GPU (issue 16): tests/test_offload_keep.c on the CUDA
# backend. Every keep pattern (none, all, auto with ample memory, auto keeping some layers'
# parts, beside weights streamed from the host and optimizer state on NVMe) trains to the same
# losses, norms and final P32/m/v, byte for byte, as recomputing every layer; each run's
# allocations equal the plan's buffer table inside --gpu-mem.
set -u
dir=$(dirname "$0")/../..
cd "$dir" || exit 1
t=${BUILD:-build}/tests/test_offload_keep   # make test-gpu builds it
[ -x "$t" ] || { echo "missing $t (run make test-gpu)"; exit 1; }
SW_TEST_BACKEND=cuda "$t"
