#!/usr/bin/env bash
# Issue 15, Done when 4: what commits cost at scale, and kill -9 + --resume during such a run.
#   bench/commit_cost.sh [DIR] [STEPS] [TRAIN FLAGS...]   DIR: scratch space on the disk under test
# The model and budgets of bench/offload_3x.sh (optimizer state on NVMe, two slots), STEPS steps
# (default 3) of --steps STEPS+1 stopped by --stop-after STEPS (so no end-of-run full save):
#   A  --no-save (no commits; the same placement and slots)
#   B  --run DIR/rb, commits at the default interval; prints "N commits ... took X s, P % of the
#      steps' S s" (the commit's own time), where a commit's time went ("per commit: ... =
#      snapshot + write + hash + fsync + other"), and the loop times of A and B are compared
#   C  --run DIR/rc with --commit-every 1 (so that it resumes from a commit), killed with kill -9
#      after its second step line, then the same command plus --resume; its losses
#      (metrics.jsonl) must equal B's, step for step
#   S  (with SYNC=1) B again with SW_COMMIT_SYNC=1: the commit's durable part (fdatasyncs,
#      commit.json) between steps instead of overlapped with the next step
# Env: OUT (logs, default DIR), SW_BIN, MODEL, SHAPE, BUDGET as in bench/offload_3x.sh; COMMIT
# (B, S and C's --commit-every; default: train's default interval); SYNC=1 runs S.
# Disk: the NVMe tier with two slots (~45 GB for the default model; one run at a time).
set -euo pipefail
dir=${1:-/tmp}/sw-commit.$$
steps=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
bin=${SW_BIN:-build/spillway}
out=${OUT:-$dir}
mkdir -p "$dir/nv" "$out"
trap 'rm -rf "$dir"' EXIT
model=${MODEL:---dim 2048 --layers 32 --heads 16 --kv-heads 8 --ffn 5632 --vocab 32000}
shape=${SHAPE:---seq-len 2048 --batch-tokens 16384}
budget=${BUDGET:---gpu-mem 2GiB --cpu-mem 4GiB --chunk 16777216}
"$bin" init --arch llama $model --out "$dir/m" | tail -1
"$bin" data --text tests/data/corpus.txt --out "$dir/d.tok" | tail -1
train=("$bin" train --model "$dir/m" --data "$dir/d.tok" --steps $((steps + 1)) --stop-after "$steps"
       $shape --lr 1e-4 --schedule constant $budget --nvme "$dir/nv" --quiet "$@")
loop_s() { sed -n 's/^train: [0-9]* steps in \([0-9.]*\) s;.*/\1/p' "$1"; }
losses() { sed -n 's/^{"step": \([0-9]*\),.*"loss": \([^,]*\),.*/\1 \2/p' "$1/metrics.jsonl"; }

"${train[@]}" --no-save 2>&1 | tee "$out/commit_a.log"
every=(${COMMIT:+--commit-every $COMMIT})
"${train[@]}" "${every[@]}" --run "$dir/rb" 2>&1 | tee "$out/commit_b.log"
losses "$dir/rb" >"$out/commit_b.losses"
rm -rf "$dir/rb" "$dir/nv"/*
a=$(loop_s "$out/commit_a.log"); b=$(loop_s "$out/commit_b.log")
echo "loop: A (no commits) $a s, B (commits) $b s: $(python3 -c "print('%+.2f %%' % (100 * ($b - $a) / $a))")"
grep "^train: [0-9]* commit" "$out/commit_b.log" || echo "B made no commit"
grep "^train: per commit" "$out/commit_b.log" || true
if [ "${SYNC:-0}" = 1 ]; then
  SW_COMMIT_SYNC=1 "${train[@]}" "${every[@]}" --run "$dir/rs" 2>&1 | tee "$out/commit_s.log" | grep -v "^step "
  rm -rf "$dir/rs" "$dir/nv"/*
  s_=$(loop_s "$out/commit_s.log")
  echo "loop: A (no commits) $a s, B (commits overlapped) $b s, S (commits synchronous) $s_ s"
  grep "^train: [0-9]* commit\|^train: per commit" "$out/commit_s.log" | sed 's/^/S: /'
fi

"${train[@]}" --commit-every 1 --run "$dir/rc" >"$out/commit_c1.log" 2>&1 &
pid=$!
while ! [ "$(grep -c '^step ' "$out/commit_c1.log")" -ge 2 ]; do
  kill -0 $pid 2>/dev/null || break
  sleep 0.2
done
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
from=$(sed -n 's/^ *"step": \([0-9]*\),.*/\1/p' "$dir/rc/commit.json" 2>/dev/null | head -1)
echo "C killed (kill -9) after $(grep -c '^step ' "$out/commit_c1.log") step lines; last commit: step ${from:-none}"
res=(); [ -e "$dir/rc/commit.json" ] || [ -e "$dir/rc/manifest.json" ] && res=(--resume)
"${train[@]}" --commit-every 1 --run "$dir/rc" "${res[@]}" 2>&1 | tee "$out/commit_c2.log"
losses "$dir/rc" >"$out/commit_c.losses"
if cmp -s "$out/commit_b.losses" "$out/commit_c.losses"; then
  echo "C after kill -9 and --resume: losses identical to B's for steps $(head -1 "$out/commit_b.losses" | cut -d' ' -f1)..$(tail -1 "$out/commit_b.losses" | cut -d' ' -f1)"
else
  echo "C after kill -9 and --resume: LOSSES DIFFER"; paste "$out/commit_b.losses" "$out/commit_c.losses"; exit 1
fi
