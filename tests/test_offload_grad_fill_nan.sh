#!/usr/bin/env bash
# A decoder layer's gradient buffer is never zeroed: its first micro-batch writes every element
# (SW_BWD_DW_SET, docs/architecture.md "Gradient buffers"). With SW_TEST_GRAD_FILL_NAN=1 every
# layer gradient buffer is filled with NaN when taken (executor and in-memory trainer), so an
# element the first micro-batch left unwritten would make the norm NaN and skip the step:
#  * the executor's golden, invariance, keep and clipping tests pass with it;
#  * `train` prints the same losses and gradient norms with it as without (several micro-batches,
#    one-pass clipping rolling a step back, two gradient buffers, layers streamed and resident);
#  * the control (SW_TEST_GRAD_FILL_NAN=control: the same fill, but the first micro-batch adds
#    to the buffer instead of writing it) sees the NaN: every step skipped.
set -u
bin=${SW_BIN:-build/spillway}
b=$(dirname "$bin")/tests
w=$(mktemp -d /tmp/sw-fillnan.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
for t in test_offload_exec_golden test_offload_exec_invariance test_offload_keep test_offload_exec_clip; do
  [ -x "$b/$t" ] || fail "missing $b/$t (make test builds it)"
  SW_TEST_GRAD_FILL_NAN=1 "$b/$t" > "$w/$t.log" 2>&1 || { tail -5 "$w/$t.log"; fail "$t with SW_TEST_GRAD_FILL_NAN=1"; }
  echo "  ok $t with every layer gradient buffer NaN when taken"
done
"$bin" init --arch llama --dim 64 --layers 3 --heads 4 --kv-heads 2 --ffn 128 --vocab 320 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
steps() { grep -E "^step [0-9]+/" "$1" | sed -E 's/^(step [0-9]+\/[0-9]+ \| loss [^|]*\| lr [^|]*\| grad norm [^|]*)\|.*/\1/'; }
for budget in "--gpu-mem 1MiB --cpu-mem 64MiB" "--gpu-mem 1MiB --cpu-mem 64MiB --grad-buffers 2" "--gpu-mem 64MiB --cpu-mem 64MiB"; do
  # shellcheck disable=SC2086
  run() { "$bin" train --model "$w/m" --data "$w/d.tok" --steps 3 --seq-len 32 --batch-tokens 128 --lr 1e-3 \
            --clip 1.0 --no-save $budget > "$w/$1" 2>&1; }
  run plain || { tail -3 "$w/plain"; fail "train $budget"; }
  SW_TEST_GRAD_FILL_NAN=1 run filled || { tail -3 "$w/filled"; fail "train $budget with SW_TEST_GRAD_FILL_NAN=1"; }
  [ "$(steps "$w/plain" | wc -l)" = 3 ] || fail "train $budget: no step lines"
  grep -q "nan" "$w/plain" && fail "train $budget: a NaN without the hook"
  [ "$(steps "$w/plain")" = "$(steps "$w/filled")" ] || { diff <(steps "$w/plain") <(steps "$w/filled"); fail "train $budget: the fill changed the steps"; }
  SW_TEST_GRAD_FILL_NAN=control run control
  [ "$(grep -c '^step .*grad norm -\{0,1\}nan (skipped: non-finite gradient)' "$w/control")" = 3 ] \
    || { cat "$w/control"; fail "train $budget: the control did not see the NaN"; }
  echo "  ok train $budget: the same losses and norms with the fill; the control skips every step (NaN norm)"
done
