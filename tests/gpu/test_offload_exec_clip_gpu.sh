#!/usr/bin/env bash
# Issue 14, Done when 1 on the GPU: one-pass clipping (speculate, validate, roll back) gives final
# weights, m and v bit-identical to the two-pass scheme in every placement, with clipping firing
# on some steps and not others and with an injected non-finite gradient, on the CUDA backend.
set -u
dir=$(dirname "$0")/../..
cd "$dir" || exit 1
bin=${BUILD:-build}/tests/test_offload_exec_clip   # make test-gpu builds it
SW_TEST_BACKEND=cuda "$bin"
