#!/usr/bin/env bash
# The kill -9 torture of tests/test_offload_kill9.sh at scale: KILLS (default 200) kills at
# random moments of CPU-backend runs (steps, commits, full saves, the end-of-run save; state on
# NVMe, host and device), each followed by --resume (from the last commit: in place, or through a
# full save when the placement drawn again differs) under a placement drawn again; final
# weights, m and v byte-identical to an uninterrupted run. Usage: bench/kill9_torture.sh [KILLS] (from the
# repository root, after make; SW_BIN picks the binary).
set -u
SW_KILLS=${1:-200} exec bash "$(dirname "$0")/../tests/test_offload_kill9.sh"
