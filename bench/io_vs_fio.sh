#!/usr/bin/env bash
# spillway bench-io against fio on the same path, same file size, block size and queue depth.
#
#   bench/io_vs_fio.sh PATH [SIZE] [BS_LIST] [QD_LIST] [REPS]
#   e.g. bench/io_vs_fio.sh /mnt/nvme 4GiB 256KiB,1MiB,4MiB 8,32 2
#
# fio: ioengine=io_uring, direct=1, numjobs=1, rw=write then rw=read, fio's defaults otherwise.
# spillway: bench-io --threads 1 (one ring, the same queue depth), checksums on (XXH3), requests
# of qd*bs/2 bytes split into blocks of bs (its 4 request buffers span 2*qd*bs, fio's qd*bs; both
# keep qd blocks in flight at the device). Each measurement is the best of REPS runs (both
# tools alike). Prints a table per (bs, qd), then best read and best write of each tool and the
# ratios. Env: SW_BIN (build/spillway), FIO (fio).
set -euo pipefail
path=${1:?usage: bench/io_vs_fio.sh PATH [SIZE] [BS_LIST] [QD_LIST] [REPS]}
size=${2:-4GiB}; bs_list=${3:-256KiB,1MiB,4MiB}; qd_list=${4:-8,32}; reps=${5:-2}
bin=${SW_BIN:-build/spillway}; fio=${FIO:-fio}
command -v "$fio" >/dev/null || { echo "io_vs_fio: fio not found (set FIO=/path/to/fio)"; exit 1; }
[ -d "$path" ] || { echo "io_vs_fio: $path is not a directory"; exit 1; }

bytes() {  # 4GiB / 256KiB / 1MiB / 4096 -> bytes
  local v=$1 n u
  n=${v%%[!0-9]*}; u=${v#$n}
  case ${u,,} in
    ""|b) echo "$n";; k|kib) echo $((n<<10));; m|mib) echo $((n<<20));; g|gib) echo $((n<<30));;
    *) echo "io_vs_fio: cannot read size '$v' (use KiB/MiB/GiB)" >&2; exit 1;;
  esac
}
size_b=$(bytes "$size")
tmp=$(mktemp -d)
# Both tools use the same file (bench-io's), so they see the same blocks and the same cache state.
fiofile="$path/spillway-bench.data"
[ $((size_b % (4 << 20))) = 0 ] || { echo "io_vs_fio: SIZE must be a multiple of 4MiB"; exit 1; }
trap 'rm -rf "$tmp" "$fiofile"' EXIT

echo "# fio $($fio --version) vs spillway bench-io on $path ($(df -h --output=source "$path" | tail -1)), size $size, best of $reps"
# fio lays the file out once (untimed; bench-io then finds it written and skips its prefill).
$fio --name=layout --filename="$fiofile" --size="$size_b" --bs=1048576 --iodepth=16 \
  --ioengine=io_uring --direct=1 --rw=write --output=/dev/null
fio_gbs() {  # rw bs qd -> GB/s
  $fio --name=sw --filename="$fiofile" --size="$size_b" --bs="$2" --iodepth="$3" \
    --ioengine=io_uring --direct=1 --rw="$1" --numjobs=1 --output-format=terse \
    --terse-version=3 | awk -F';' -v rw="$1" '{print ((rw=="read") ? $7 : $48) * 1024 / 1e9}'
}
# Interleaved: for each repetition and each (bs, qd): fio write, fio read, bench-io (which
# writes, reads and mixes). The best of REPS per tool and cell is kept.
IFS=, read -ra BS <<< "$bs_list"; IFS=, read -ra QD <<< "$qd_list"
: > "$tmp/fio.tsv"; : > "$tmp/sw.tsv"
for r in $(seq "$reps"); do
  for bs in "${BS[@]}"; do
    bsb=$(bytes "$bs")
    for qd in "${QD[@]}"; do
      printf "%s\t%s\t%s\t%s\n" "$bsb" "$qd" "$(fio_gbs write "$bsb" "$qd")" "$(fio_gbs read "$bsb" "$qd")" >> "$tmp/fio.tsv"
      # Requests of qd*bs/2 bytes (>= bs): bench-io's buffers (4 requests) then span 2*qd*bs,
      # twice fio's (iodepth*bs), the smallest set that keeps qd blocks in flight while a
      # request completes. Host-cached virtual disks copy through the host's CPU caches and
      # reward a small buffer set; a real NVMe DMAs and does not care.
      chunk=$(( qd * bsb / 2 > bsb ? qd * bsb / 2 : bsb ))
      "$bin" bench-io --nvme "$path" --size "$size" --bs "$bs" --qd "$qd" --threads 1 --keep --chunk "$chunk" \
        --tsv "$tmp/one.tsv" > "$tmp/sw.log" 2>&1 || { cat "$tmp/sw.log"; exit 1; }
      cat "$tmp/one.tsv" >> "$tmp/sw.tsv"
    done
  done
done

printf "%-8s %4s | %9s %9s %6s | %9s %9s %6s\n" bs qd "fio wr" "sw wr" ratio "fio rd" "sw rd" ratio
: > "$tmp/rows"
for bs in "${BS[@]}"; do
  bsb=$(bytes "$bs")
  for qd in "${QD[@]}"; do
    read -r fw fr < <(awk -F'\t' -v b="$bsb" -v q="$qd" '$1==b && $2==q {
        if ($3>w) w=$3; if ($4>r) r=$4 } END {print w+0, r+0}' "$tmp/fio.tsv")
    read -r sw sr < <(awk -F'\t' -v b="$bsb" -v q="$qd" '$1==1 && $3==b && $4==q {
        if ($5>w) w=$5; if ($6>r) r=$6 } END {print w+0, r+0}' "$tmp/sw.tsv")
    printf "%-8s %4s | %9.3f %9.3f %6.3f | %9.3f %9.3f %6.3f\n" "$bs" "$qd" "$fw" "$sw" \
      "$(awk -v a="$sw" -v b="$fw" 'BEGIN{print (b>0?a/b:0)}')" "$fr" "$sr" \
      "$(awk -v a="$sr" -v b="$fr" 'BEGIN{print (b>0?a/b:0)}')"
    echo "$fw $sw $fr $sr" >> "$tmp/rows"
  done
done
awk '{ if ($1>fw) fw=$1; if ($2>sw) sw=$2; if ($3>fr) fr=$3; if ($4>sr) sr=$4 }
  END { printf "best write: fio %.3f GB/s, spillway %.3f GB/s, ratio %.3f %s\n", fw, sw, sw/fw, ((sw>=0.95*fw) ? "(>= 0.95: ok)" : "(< 0.95: BELOW TARGET)");
        printf "best read:  fio %.3f GB/s, spillway %.3f GB/s, ratio %.3f %s\n", fr, sr, sr/fr, ((sr>=0.95*fr) ? "(>= 0.95: ok)" : "(< 0.95: BELOW TARGET)") }' "$tmp/rows"
# Medians over every measurement (all cells, all repetitions): robust to the bursts of a
# shared or host-cached disk, where a single best can be one lucky second.
med() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
fw=$(cut -f3 "$tmp/fio.tsv" | med); fr=$(cut -f4 "$tmp/fio.tsv" | med)
sw=$(cut -f5 "$tmp/sw.tsv" | med); sr=$(cut -f6 "$tmp/sw.tsv" | med)
awk -v fw="$fw" -v sw="$sw" -v fr="$fr" -v sr="$sr" 'BEGIN {
  printf "median write: fio %.3f GB/s, spillway %.3f GB/s, ratio %.3f\n", fw, sw, sw/fw;
  printf "median read:  fio %.3f GB/s, spillway %.3f GB/s, ratio %.3f\n", fr, sr, sr/fr }'
