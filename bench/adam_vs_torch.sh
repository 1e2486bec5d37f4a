#!/usr/bin/env bash
# spillway's CPU AdamW against PyTorch's on the same machine, alternated so that drift of a
# shared host hits both: ROUNDS times, `spillway bench-adam` then bench/torch_adam.py, at one
# thread count and size. Prints each round and the medians:
#   ours      spillway's Gparam/s (AdamW + the bf16 copy in one pass, 30 B per parameter)
#   fused     torch.optim.AdamW(fused=True) Gparam/s (28 B, no bf16 copy)
#   fused+bf16  the fused step and h.copy_(p) into bf16, timed together (what a torch user runs
#             to get the compute copy spillway writes)
#   triad / torch triad: bench-adam's triad-rfo (ordinary stores, 12 B) and torch.add(out=)
#
#   bash bench/adam_vs_torch.sh                  # 256M parameters, 16 threads, 3 rounds
# Environment: ADAM_PARAMS (256e6), ADAM_THREADS (16), ROUNDS (3), REPS (5), SW_BIN.
set -u
bin=${SW_BIN:-build/spillway}
n=${ADAM_PARAMS:-256e6}
t=${ADAM_THREADS:-16}
rounds=${ROUNDS:-3}
reps=${REPS:-5}
[ -x "$bin" ] || { echo "adam_vs_torch: $bin is not built; run make first" >&2; exit 1; }
python3 -c "import torch" 2>/dev/null || { echo "adam_vs_torch: needs python3 with torch" >&2; exit 1; }
nint=$(python3 -c "print(int(float('$n')))")
row_re='^ +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+% +[0-9.]+ +[0-9.]+% +[0-9.]+ +[0-9.]+%$'
res=()
printf '%5s %10s %10s %12s %9s %9s %12s %11s\n' round "ours Gp/s" "fused Gp/s" "fused+bf16" \
  "ours/fus" "ours/f+b" "triad-rfo" "torch triad"
for r in $(seq 1 "$rounds"); do
  ours=$("$bin" bench-adam --params "$nint" --threads "$t" --reps "$reps" 2>&1) ||
    { echo "adam_vs_torch: bench-adam failed: $ours" >&2; exit 1; }
  row=$(echo "$ours" | grep -E "$row_re" | tail -n 1)
  [ -n "$row" ] || { echo "adam_vs_torch: no row in bench-adam's output: $ours" >&2; exit 1; }
  js=$(python3 "$(dirname "$0")/torch_adam.py" "$nint" "$t" "$reps" | tail -n 1) ||
    { echo "adam_vs_torch: torch_adam.py failed" >&2; exit 1; }
  line=$(python3 - "$row" "$js" <<'EOF'
import json, sys
c = sys.argv[1].split()
j = json.loads(sys.argv[2])["rows"][0]
ours, rfo = float(c[1]), float(c[4])
print(ours, j["fused_gparams"], j["fused_bf16_gparams"], rfo, j["triad_gbs"])
EOF
)
  read -r g f fb rfo tt <<<"$line"
  res+=("$line")
  awk -v r="$r" -v g="$g" -v f="$f" -v fb="$fb" -v rfo="$rfo" -v tt="$tt" 'BEGIN {
    printf "%5d %10.3f %10.3f %12.3f %9.3f %9.3f %12.1f %11.1f\n", r, g, f, fb, g / f, g / fb, rfo, tt }'
done
printf '%s\n' "${res[@]}" | python3 -c '
import statistics, sys
rows = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
med = [statistics.median(c) for c in zip(*rows)]
rg = statistics.median(r[0] / r[1] for r in rows)
rb = statistics.median(r[0] / r[2] for r in rows)
print("median %10.3f %10.3f %12.3f %9.3f %9.3f %12.1f %11.1f" % (med[0], med[1], med[2], rg, rb, med[3], med[4]))
'
echo "Gparam/s at $t threads, $nint parameters, best of $reps per run; ratios per round, then their median"
