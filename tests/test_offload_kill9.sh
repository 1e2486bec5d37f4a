#!/usr/bin/env bash
# kill -9 torture (issue 15, Done when 1) on the CPU backend: runs are killed at random moments
# (loading, steps, commits, full saves, the end-of-run save), each followed by the same command
# plus --resume (or a fresh start when nothing was committed yet) under a placement drawn again
# each time: the optimizer state on NVMe (committed in place in its slot), in host memory, or on
# the device (written to the commit's state file). A resume under the committed placement reads
# the NVMe slots where they lie; under another one it turns the commit into a full save first.
# Each start draws --commit-every 1 or 2 and --save-every 0 or 3, and with --save-every 0
# --end-commit or not. Every run's final weights, m and v must be byte-identical to those of one
# uninterrupted run (a run that ended with a commit: its export --fp32, read from the commit, to
# the uninterrupted run's); metrics.jsonl must hold each step once; nothing may be left of an
# interrupted save or commit, nor in the --nvme directory (unless the run ended with a commit).
# SW_KILLS (default 30) kills; bench/kill9_torture.sh runs it with 200.
set -u
bin=${SW_BIN:-build/spillway}
kills_wanted=${SW_KILLS:-30}
w=$(mktemp -d /tmp/sw-kill9.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill -9 $pid 2>/dev/null; rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 32 --layers 2 --heads 2 --ffn 64 --vocab 258 --seed 1 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
steps=6
common=(--model "$w/m" --data "$w/d.tok" --seq-len 32 --batch-tokens 64 --backend cpu --lr 3e-3
        --warmup 1 --weight-decay 0.01 --steps $steps --quiet)
placements=("--gpu-mem 496KiB --cpu-mem 660KiB --threads 2 --chunk 2048"   # P32/m/v of the layers on NVMe
            "--gpu-mem 496KiB --cpu-mem 4MiB --threads 2 --chunk 2048"     # all state in host memory
            "")                                                # all on the device
names=(nvme host device)
files=(weights-0000000$steps/model.safetensors optim-0000000$steps/m/model.safetensors
       optim-0000000$steps/v/model.safetensors)

mkdir -p "$w/nv0"
start=$(date +%s.%N)
"$bin" train "${common[@]}" ${placements[0]} --nvme "$w/nv0" --run "$w/ref" >/dev/null 2>"$w/err" \
  || { cat "$w/err"; fail "the uninterrupted run"; }
dur=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%d", (b - a) * 1000 }')
[ "$dur" -gt 0 ] || dur=300
"$bin" export --run "$w/ref" --out "$w/ref.x" --fp32 >/dev/null 2>"$w/err" || { cat "$w/err"; fail "export of the reference"; }
# the run in $1 ended with a commit of the last step (--end-commit)
ended_by_commit() {
  grep -q "\"step\": $steps," "$1/commit.json" 2>/dev/null && ! grep -q "\"step\": $steps," "$1/manifest.json" 2>/dev/null
}

# killed inside a commit: its temporary record, or a state file newer than the record (which
# names the other one), or a state file before the first record
in_a_commit() {
  [ -e "$1/commit.json.tmp" ] && return 0
  local named f
  named=$(sed -n 's/.*"state": "\(commit-[01].state\)".*/\1/p' "$1/commit.json" 2>/dev/null)
  for f in "$1"/commit-[01].state; do
    [ -e "$f" ] || continue
    [ -e "$1/commit.json" ] || return 0
    [ "$(basename "$f")" != "$named" ] && [ "$f" -nt "$1/commit.json" ] && return 0
  done
  return 1
}
kills=0; in_save=0; in_commit=0; from_commit=0; trials=0; runs=0; end_commit=0
# the last step kept in run directory $1: the newer of the manifest's and the commit's
kept() {
  local a b
  a=$(sed -n 's/^ *"step": \([0-9]*\),.*/\1/p' "$1/manifest.json" 2>/dev/null | head -1)
  b=$(sed -n 's/^ *"step": \([0-9]*\),.*/\1/p' "$1/commit.json" 2>/dev/null | head -1)
  a=${a:-0}; b=${b:-0}; echo $(( a > b ? a : b ))
}
declare -A by_place
while [ $kills -lt "$kills_wanted" ]; do
  trials=$((trials + 1)); r="$w/run$trials"; nv="$w/nv$trials"; mkdir -p "$nv"
  todo=$((2 + RANDOM % 3))   # kills in this trial before it may finish
  clean=1
  for attempt in $(seq 100); do
    p=$((RANDOM % 3))
    # killed after the end-of-run save's commit: the run is done (its scratch file stays)
    grep -q "\"step\": $steps," "$r/manifest.json" 2>/dev/null && { clean=0; break; }
    ended_by_commit "$r" && { clean=0; break; }
    resume=(); { [ -e "$r/manifest.json" ] || [ -e "$r/commit.json" ]; } && resume=(--resume)
    [ -e "$r/commit.json" ] && from_commit=$((from_commit + 1))
    every=(--commit-every $((1 + RANDOM % 2)) --save-every $(( (RANDOM % 2) * 3 )))
    [ "${every[3]}" = 0 ] && [ $((RANDOM % 2)) = 1 ] && every+=(--end-commit)
    "$bin" train "${common[@]}" ${placements[$p]} "${every[@]}" --nvme "$nv" --run "$r" "${resume[@]}" >"$w/out" 2>"$w/err" &
    pid=$!; runs=$((runs + 1))
    if [ $todo -gt 0 ]; then
      # a random moment of this run's life: the uninterrupted run's wall time, scaled to the
      # steps left (plus one step's worth for loading)
      done_=$(kept "$r")
      ms=$((RANDOM % (dur * (steps - done_ + 1) / (steps + 1) + 1)))
      sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
      kill -9 $pid 2>/dev/null
      { wait $pid; } 2>/dev/null; rc=$?; pid=
      if [ $rc = 137 ]; then   # killed (not a run that had already ended: that counts no kill)
        kills=$((kills + 1)); todo=$((todo - 1)); dur=$((dur + dur / 20 + 1))
        by_place[${names[$p]}]=$(( ${by_place[${names[$p]}]:-0} + 1 ))
        # inside a save: a temporary copy, or a save not yet committed by the manifest
        last=$(sed -n 's/.*"weights": "weights-\([0-9]*\)".*/\1/p' "$r/manifest.json" 2>/dev/null)
        ls "$r" 2>/dev/null | grep -v "^weights-${last:-x}\$" | grep -q "\.tmp-\|manifest.json.tmp\|^weights-" && in_save=$((in_save + 1))
        in_a_commit "$r" && in_commit=$((in_commit + 1))
        continue
      fi
      # the run ended before its kill: runs are shorter than thought (a loaded machine at the
      # reference run), so aim earlier from now on
      dur=$((dur * 4 / 5 + 1))
      [ $rc = 0 ] || { cat "$w/err"; fail "trial $trials: a run exited $rc"; }
      break
    fi
    wait $pid; rc=$?; pid=
    [ $rc = 0 ] || { cat "$w/err"; fail "trial $trials: the run after ${attempt} start(s) exited $rc"; }
    break
  done
  if ended_by_commit "$r"; then
    end_commit=$((end_commit + 1))
    "$bin" export --run "$r" --out "$w/x$trials" --fp32 >/dev/null 2>"$w/err" || { cat "$w/err"; fail "trial $trials: export from its last commit"; }
    cmp -s "$w/ref.x/model.safetensors" "$w/x$trials/model.safetensors" || fail "trial $trials: the weights exported from its last commit differ from the uninterrupted run's"
    rm -rf "$w/x$trials"
  else
    [ -e "$r/manifest.json" ] || fail "trial $trials never finished"
    for f in "${files[@]}"; do
      cmp -s "$w/ref/$f" "$r/$f" || fail "trial $trials: $f differs from the uninterrupted run's"
    done
  fi
  got=$(sed -n 's/^{"step": \([0-9]*\),.*/\1/p' "$r/metrics.jsonl" | tr '\n' ' ')
  [ "$got" = "$(seq -s ' ' 1 $steps) " ] || fail "trial $trials: metrics.jsonl holds steps '$got'"
  # a kill after the end-of-run commit may catch the final rewrite of run.json/report.html
  # (core/report.c writes NAME.tmp.PID, then renames): the run is done, its next start (even a
  # refused --resume) removes them (test_offload_lifecycle.sh); any other temporary is a leftover
  if [ $clean = 0 ]; then left=$(ls "$r" | grep -v '^run\.json\.tmp\.[0-9]*$\|^report\.html\.tmp\.[0-9]*$'); else left=$(ls "$r"); fi
  echo "$left" | grep -q "tmp" && fail "trial $trials: leftovers in the run directory: $(ls "$r")"
  [ $clean = 0 ] || ended_by_commit "$r" || [ -z "$(ls "$nv")" ] || fail "trial $trials: the --nvme directory still holds $(ls "$nv")"
  rm -rf "$r" "$nv"
done
echo "ok $kills kills -9 in $trials runs ($runs processes; kill moments drawn within ${dur} ms at the end; $in_save during a full save, $in_commit during a commit; $from_commit starts resumed from a commit; $end_commit runs ended with a commit (--end-commit: compared through export); the killed run's placement: nvme ${by_place[nvme]:-0}, host ${by_place[host]:-0}, device ${by_place[device]:-0}; every resume under a placement drawn again): final weights, m and v byte-identical to the uninterrupted run (the weights only, exported from the commit, for the runs that ended with one)"
