#!/usr/bin/env bash
# Issue 7, Done when 1 on the GPU: the placement-invariance test on the CUDA backend (every
# placement bit-identical, and equal to the in-memory trainer on the same backend).
set -eu
dir=$(dirname "$0")/../..
SW_TEST_BACKEND=cuda "${BUILD:-build}/tests/test_offload_exec_invariance"
