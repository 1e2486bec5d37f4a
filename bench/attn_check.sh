#!/usr/bin/env bash
# One call on the GPU machine for the attention kernels: build what they need, the op tests
# against the fp64 CPU reference (every head dim, odd lengths, bit-identical reruns), the 4-warp
# variant, then (STAGES) compute-sanitizer, the 20-step determinism test, the attention
# comparison table and the per-layer rows of bench/cuda_compare.sh. Logs go to $OUT.
# Usage: OUT=/tmp/o STAGES="san bench layer" bash bench/attn_check.sh [iters]
# (BUILD_MORE="" builds only what the op tests and benches need; SKIP_TESTS="ops attn4" skips those.)
set -u
iters=${1:-10}
OUT=${OUT:-/tmp/attn_check}
STAGES=${STAGES:-bench}
mkdir -p "$OUT"
rc=0
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader
t0=$(date +%s)
make -j16 CUDA_ARCHS=-gencode=arch=compute_90a,code=sm_90a build/tests/gpu/test_cuda_ops \
  build/bench/attn_bench build/bench/cuda_layer ${BUILD_MORE-build/tests/gpu/test_cuda_golden} \
  >"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
echo "build $(( $(date +%s) - t0 )) s"
run() {  # name cmd...: log to tests.log, one status line
  local name=$1; shift
  local s=$(date +%s)
  echo "== $name" >>"$OUT/tests.log"
  "$@" >>"$OUT/tests.log" 2>&1
  local r=$?
  echo "$name: exit $r ($(( $(date +%s) - s )) s)"
  [ $r = 0 ] || rc=1
}
case " ${SKIP_TESTS:-} " in *" ops "*) ;; *) run ops build/tests/gpu/test_cuda_ops;; esac
case " ${SKIP_TESTS:-} " in *" attn4 "*) ;; *) run attn4 bash tests/gpu/test_cuda_attn4.sh;; esac
grep -iE 'fail|different bits|error:' "$OUT/tests.log" | head -20
case " $STAGES " in *" san "*)
  run sanitize bash tests/gpu/test_cuda_sanitize.sh
  for t in memcheck racecheck synccheck; do echo "-- $t"; tail -n 3 /tmp/sw_san_$t.log; done >"$OUT/san.log" 2>&1
  cat "$OUT/san.log";;
esac
case " $STAGES " in *" golden "*) run golden build/tests/gpu/test_cuda_golden;; esac
case " $STAGES " in *" bench "*)
  s=$(date +%s)
  bash bench/attn_compare.sh "$iters" "$OUT" >"$OUT/compare.log" 2>&1 || rc=1
  echo "compare $(( $(date +%s) - s )) s"
  sed -n '/^TFLOP/,$p' "$OUT/compare.log"
  grep '^#' "$OUT/compare.log" | sort | uniq -c | head -12;;
esac
case " $STAGES " in *" layer "*)
  # the per-layer rows of bench/cuda_compare.sh (SW_BENCH_ONLY=70B narrows them), cut off after
  # LAYER_S seconds (default 150: the 70B runs T = 8192 too) so the call ends inside its budget
  s=$(date +%s)
  SW_SKIP_STEP=1 timeout "${LAYER_S:-150}" bash bench/cuda_compare.sh 5 /tmp/cc >"$OUT/layer.log" 2>&1 || rc=1
  echo "layer $(( $(date +%s) - s )) s"
  sed -n '/^| layer/,$p' "$OUT/layer.log";;
esac
exit $rc
