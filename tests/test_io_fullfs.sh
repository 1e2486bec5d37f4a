#!/usr/bin/env bash
# A real full filesystem: a small tmpfs. The NVMe tier must fail at once, naming the path and
# the shortfall, and leave no file behind; a size that fits works (round trip incl. checksums).
# Needs permission to mount (root); otherwise skips (77).
set -u
bin=${SW_BIN:-build/spillway}
fail() { echo "FAIL: $*"; exit 1; }
m=$(mktemp -d /tmp/sw-io-fullfs.XXXXXX)
if ! mount -t tmpfs -o size=24m tmpfs "$m" 2>/dev/null; then
  rmdir "$m"; echo "skip: cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)"; exit 77
fi
# io_uring releases registered files asynchronously after exit: retry the unmount briefly.
unmount() { for _ in 1 2 3 4 5 6 7 8 9 10; do umount "$m" 2>/dev/null && { rmdir "$m"; return; }; sleep 0.2; done; umount -l "$m"; rmdir "$m"; }
trap unmount EXIT
out=$("$bin" bench-io --nvme "$m" --quick --size 64MiB 2>&1); rc=$?
[ $rc = 1 ] || fail "64MiB on a 24MiB tmpfs should exit 1, got $rc: $out"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "expected one line: $out"
echo "$out" | grep -q "$m: spillway-bench.data needs 64.00 MiB more but only 24.00 MiB is free (short by 40.00 MiB)" \
  || fail "message does not give the path and the shortfall: $out"
[ -z "$(ls "$m")" ] || fail "file left behind on the full filesystem"
# Fill most of it, then a size that no longer fits fails the same way.
dd if=/dev/zero of="$m/filler" bs=1M count=20 status=none
out=$("$bin" bench-io --nvme "$m" --quick --size 8MiB --chunk 1MiB 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "short by" || fail "filled tmpfs: $out"
rm -f "$m/filler"
out=$("$bin" bench-io --nvme "$m" --quick --size 16MiB --chunk 2MiB 2>&1) || fail "16MiB should fit: $out"
echo "$out"
exit 0
