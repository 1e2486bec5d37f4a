#!/usr/bin/env bash
# Training progress as a person sees it. In a log (stdout not a terminal): the full step line of
# the first step, every SW_LOG_EVERY-th and the last, each but the last with an ETA. On a
# terminal (a tmux pane): the full lines of the first and the last step and one bar redrawn in
# place ("\r", erase line) with step, loss, tok/s and ETA: three step lines for 30 steps, the
# bar ending at 100 %.
# Skips the terminal half (77) only when tmux is not installed.
set -u
bin=$(realpath "${SW_BIN:-build/spillway}")
w=$(mktemp -d /tmp/sw-progress.XXXXXX)
sess=sw-progress-$$
trap 'tmux kill-session -t "$sess" 2>/dev/null; rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 32 --layers 2 --heads 2 --ffn 64 --vocab 258 --seed 5 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
cat >"$w/train.sh" <<EOF
exec "$bin" train --model "$w/m" --data "$w/d.tok" --backend cpu --steps 30 --lr 3e-3 --seq-len 32 \
  --batch-tokens 64 --quiet --no-save
EOF

SW_LOG_EVERY=10 bash "$w/train.sh" >"$w/log" 2>&1 || { cat "$w/log"; fail "train"; }
got=$(grep -o '^step [0-9]*/30' "$w/log" | tr '\n' ' ')
[ "$got" = "step 1/30 step 10/30 step 20/30 step 30/30 " ] || fail "logged steps: '$got'"
[ "$(grep '^step' "$w/log" | grep -c '| ETA [0-9]')" = 3 ] || fail "the logged lines before the last should end with an ETA"
grep -q $'\r' "$w/log" && fail "carriage returns in a log"
echo "ok log: $got"

if ! command -v tmux >/dev/null; then
  echo "skip: tmux is not installed ('make deps' installs it); the log half passed"
  exit 77
fi
tmux new-session -d -s "$sess" -x 132 -y 40 || fail "tmux new-session"
tmux pipe-pane -t "$sess" -o "cat >>'$w/raw'"
tmux send-keys -t "$sess" "env -u CI -u SW_LOG_EVERY TERM=screen bash '$w/train.sh'; touch '$w/done'" Enter
for _ in $(seq 1 600); do [ -e "$w/done" ] && break; sleep 0.1; done
[ -e "$w/done" ] || fail "the run under tmux did not finish"
sleep 0.3
tmux capture-pane -t "$sess" -p >"$w/pane"
echo "--- tmux capture-pane:"; grep -v '^$' "$w/pane"; echo "---"
grep -q 'step 30/30 \[#*\] 100% | loss [0-9.]* | [0-9]* tok/s' "$w/pane" || fail "no final bar in the pane"
n=$(grep -c '^step ' "$w/pane")
[ "$n" = 3 ] || fail "$n step lines in the pane, expected the first, the last and the bar: the bar is not redrawn in place"
grep -q '^step 1/30 | loss' "$w/pane" && grep -q '^step 30/30 | loss' "$w/pane" || fail "the first or last full step line is missing"
grep -aq $'\r\033\[Kstep 5/30 \[#*\.*\]  *[0-9]*% | loss [0-9.]* | [0-9]* tok/s | [0-9]*s, ETA [0-9]' "$w/raw" \
  || fail "no redrawn bar with ETA for step 5 in the terminal's stream"
echo "ok terminal: $n step lines in the pane for 30 steps, bar redrawn with ETA"
