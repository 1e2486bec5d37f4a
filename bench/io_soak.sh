#!/usr/bin/env bash
# Bounded soak of the NVMe tier under AddressSanitizer: random mixed reads and writes with
# verification for SECONDS (default 180). Passes when no read ever differs from what was
# written, the engine reports no error, throughput stays steady (no 10-second window below a third of the
# median) and ASan finds no leak or memory error at exit.
#   bench/io_soak.sh [SECONDS]
set -euo pipefail
secs=${1:-180}
make -s BUILD=build-asan OPT=-O1 CUDA=0 \
  SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
  build-asan/tests/test_io_soak
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 SW_IO_SOAK_SECONDS=$secs build-asan/tests/test_io_soak
echo "io_soak: pass (${secs}s, ASan clean)"
