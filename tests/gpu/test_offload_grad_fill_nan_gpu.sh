#!/usr/bin/env bash
# tests/test_offload_grad_fill_nan.sh on the CUDA backend: every layer gradient buffer filled
# with NaN when taken (SW_TEST_GRAD_FILL_NAN=1), so an element the first micro-batch's beta = 0
# GEMMs and kernels left unwritten would show: the placement-invariance, keep and clipping tests
# pass with it, `train` prints the same losses and norms with it as without (layers resident and
# streamed, one and two GPU gradient buffers, clipping that rolls steps back), and the control
# (the first micro-batch adds instead of writing) skips every step.
set -u
dir=$(dirname "$0")/../..
cd "$dir" || exit 1
bin=${SW_BIN:-${BUILD:-build}/spillway}
tb=${BUILD:-build}/tests   # make test-gpu builds the executor tests below
inv=$tb/test_offload_exec_invariance
w=$(mktemp -d /tmp/sw-fillnan-gpu.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
for t in "$inv" "$tb/test_offload_keep" "$tb/test_offload_exec_clip"; do
  [ -x "$t" ] || fail "missing $t (make test-gpu builds it)"
  n=$(basename "$t")
  SW_TEST_BACKEND=cuda SW_TEST_GRAD_FILL_NAN=1 "$t" > "$w/$n.log" 2>&1 || { tail -5 "$w/$n.log"; fail "$n with the fill"; }
  echo "  ok $n (cuda) with every layer gradient buffer NaN when taken"
done
"$bin" init --arch llama --dim 256 --layers 4 --heads 8 --kv-heads 4 --ffn 704 --vocab 1024 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
steps() { grep -E "^step [0-9]+/" "$1" | sed -E 's/^(step [0-9]+\/[0-9]+ \| loss [^|]*\| lr [^|]*\| grad norm [^|]*)\|.*/\1/'; }
# 1 GiB: every layer resident on the GPU; then a budget that leaves the backend an arena of
# 24 MiB (8 of them its reserve, offload/train_budget.c), 16 MiB for the plan: on the GPU,
# --gpu-mem also covers the CUDA context, the kernels and the mapping of pinned memory, which the
# 1 GiB run's "GPU budget" line gives as 1 GiB less its arena. There layers must stream from the
# host (CPU AdamW; checked below), with one and two GPU gradient buffers.
small=
for budget in "--gpu-mem 1GiB --cpu-mem 1GiB" "--gpu-mem 1GiB --cpu-mem 1GiB --grad-buffers 1" \
              "SMALL --cpu-mem 1GiB --grad-buffers 1" "SMALL --cpu-mem 1GiB --grad-buffers 2"; do
  if [ "${budget%% *}" = SMALL ]; then
    [ -n "$small" ] || fail "no GPU budget line in the 1 GiB run"
    budget="--gpu-mem ${small}MiB ${budget#SMALL }"
  fi
  # shellcheck disable=SC2086
  run() { "$bin" train --model "$w/m" --data "$w/d.tok" --steps 3 --seq-len 128 --batch-tokens 1024 --lr 1e-3 \
            --backend cuda --clip 1.0 --no-save $budget > "$w/$1" 2>&1; }
  run plain || { tail -3 "$w/plain"; fail "train $budget"; }
  SW_TEST_GRAD_FILL_NAN=1 run filled || { tail -3 "$w/filled"; fail "train $budget with the fill"; }
  [ "$(steps "$w/plain" | wc -l)" = 3 ] || fail "train $budget: no step lines"
  arena=$(sed -nE 's/^GPU budget: .* backend arena ([0-9]+) MiB .*/\1/p' "$w/plain")
  [ -n "$small" ] || { [ -n "$arena" ] && small=$(( 1024 - arena + 24 )); }
  case "$budget" in *"--gpu-mem 1GiB"*) ;; *)
    grep -Eq '^  layers? [0-9-]+ +[0-9.]+ M? *host +host' "$w/plain" \
      || { sed -n '/^placement/,/^$/p' "$w/plain"; fail "train $budget: no layer streamed from the host"; } ;;
  esac
  [ "$(steps "$w/plain")" = "$(steps "$w/filled")" ] || { diff <(steps "$w/plain") <(steps "$w/filled"); fail "train $budget: the fill changed the steps"; }
  SW_TEST_GRAD_FILL_NAN=control run control
  [ "$(grep -c '^step .*grad norm -\{0,1\}nan (skipped: non-finite gradient)' "$w/control")" = 3 ] \
    || { tail -5 "$w/control"; fail "train $budget: the control did not see the NaN"; }
  echo "  ok train (cuda) $budget: the same losses and norms with the fill; the control skips every step"
done
