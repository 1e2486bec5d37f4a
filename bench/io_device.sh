#!/usr/bin/env bash
# One-shot NVMe-tier evaluation on a machine (used for the GPU machine's numbers in
# docs/perf.md): what the disk is, the topology, tests, fio vs bench-io, path scaling and a
# full sweep with the recommended flags. Logs go to $OUT (default ./io-device-out).
#   bench/io_device.sh [DIR]      DIR: where to put the test files (default: a directory on
#                                 the filesystem with the most free space among . and /tmp)
# fio: the system's, else one unpacked from .dev-fiodeps/*.deb (Debian packages carried along).
set -uo pipefail
OUT=${OUT:-io-device-out}; mkdir -p "$OUT"
SIZE=${SIZE:-4GiB}; REPS=${REPS:-2}
exec > >(tee "$OUT/log") 2>&1
echo "== machine"; date -u; uname -r; nproc; free -g | head -2
lsblk -o NAME,SIZE,TYPE,ROTA,MODEL,MOUNTPOINT 2>/dev/null | head -30
command -v nvidia-smi >/dev/null && nvidia-smi -L
pick() {
  local best="" bestav=0 d av
  for d in "$PWD" /tmp; do
    av=$(df -Pk "$d" | awk 'NR==2{print $4}')
    [ "$av" -gt "$bestav" ] && { best=$d; bestav=$av; }
  done
  echo "$best"
}
base=${1:-$(pick)}/sw-io-bench.$$
mkdir -p "$base"/p1 "$base"/p2 "$base"/p3 "$base"/p4
trap 'rm -rf "$base"' EXIT
df -hT "$base" | tail -1
echo "== build and tests"
make -j"$(nproc)" CUDA=0 >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
make -j"$(nproc)" CUDA=0 test 2>&1 | tail -9
echo "== topology"
build/spillway bench-io --nvme "$base/p1" --quick --size 64MiB | head -20
echo "== fio"
FIO=$(command -v fio || true); [ -n "${FORCE_CARRIED_FIO:-}" ] && FIO=""
if [ -z "$FIO" ] && ls .dev-fiodeps/*.deb >/dev/null 2>&1; then
  root=/tmp/fio-root; mkdir -p $root
  for f in .dev-fiodeps/*.deb; do dpkg -x "$f" $root; done
  lp=$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu/ceph
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s/usr/bin/fio "$@"\n' "$lp" "$root" > /tmp/fio-wrap
  chmod +x /tmp/fio-wrap; FIO=/tmp/fio-wrap
  echo "fio: carried ($(LD_LIBRARY_PATH=$lp ldd $root/usr/bin/fio | grep -c 'not found') libraries missing)"
  LD_LIBRARY_PATH=$lp ldd $root/usr/bin/fio | grep 'not found'
fi
echo "fio: ${FIO:-none} $($FIO --version 2>&1)"
echo "== fio vs bench-io (1 path, 1 ring)"
FIO=$FIO bash bench/io_vs_fio.sh "$base/p1" "$SIZE" "${BS_LIST:-256KiB,1MiB,4MiB}" "${QD_LIST:-8,32}" "$REPS"
echo "== bench-io sweep + path scaling (4 directories on one filesystem)"
build/spillway bench-io --nvme "$base/p1,$base/p2,$base/p3,$base/p4" --size "$SIZE" \
  --bs "${SWEEP_BS:-1MiB,4MiB}" --qd "${SWEEP_QD:-8,32}" --threads 1,2 --tsv "$OUT/sweep.tsv"
echo "== done"; date -u
