#!/usr/bin/env bash
# compute-sanitizer over the CUDA op tests: memcheck (out-of-bounds and misaligned accesses,
# errors of any CUDA call), racecheck (shared-memory hazards in the attention kernels and the
# block reductions) and synccheck. SW_TEST_QUICK=1 drops the large head_loss cases, which
# would take minutes under the sanitizer and exercise no kernel the small cases miss;
# SW_TEST_ATTN_ONLY=1 (passed through) limits it to the attention tests.
# Two sets, so that each fits a device call of ten minutes beside other work (make test-gpu
# PART=2 and PART=3): this file runs the default kernels under the three tools;
# test_cuda_sanitize_attn.sh runs this file with SW_SAN_SET=variants, the attention tests under
# the other backward forms. Each run prints its seconds, so a run cut short shows where the
# time went. Skips (77) when compute-sanitizer is not installed.
set -u
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -z "$san" ]; then echo "skip: compute-sanitizer not found"; exit 77; fi
bin=${BUILD:-build}/tests/gpu/test_cuda_ops
[ -x "$bin" ] || { echo "missing $bin (run make test-gpu)"; exit 1; }
rc=0
# sanitize TOOL LABEL [VAR=VALUE...]: the op tests under one tool, with the variables given
sanitize() {
  local tool=$1 label=$2 log=/tmp/sw_san_$1_$$.log t0=$SECONDS
  shift 2
  echo "== compute-sanitizer --tool $tool$label"
  env "$@" SW_TEST_QUICK=1 "$san" --tool "$tool" --error-exitcode 1 "$bin" >"$log" 2>&1
  local r=$?
  tail -n 3 "$log"
  echo "   ($(( SECONDS - t0 )) s)"
  if [ $r != 0 ]; then echo "FAIL: $tool$label (exit $r; its log: $log)"; grep -m 20 -E "=========" "$log"; rc=1; fi
  # the library's one line where the warp-specialised backward could not run (the driver made
  # no TMA maps): the block-barrier kernel ran instead, and the default's kernel went untested
  if [ -z "$label" ] && grep -q "SW_CUDA_ATTN_BWD=ws:" "$log"; then
    echo "FAIL: $tool: the warp-specialised backward did not run"; rc=1
  fi
  [ $r != 0 ] || rm -f "$log"   # a failed run's log stays, to read
}
case ${SW_SAN_SET:-default} in default|variants) ;; *) echo "SW_SAN_SET=$SW_SAN_SET: use default or variants"; exit 2 ;; esac
if [ "${SW_SAN_SET:-default}" = default ]; then
  for tool in memcheck racecheck synccheck; do sanitize $tool ""; done
else
  # The attention tests again with the other backward forms (the default runs the
  # warp-specialised kernel): the block-barrier kernel, and the fused dQ's preparation in
  # scalar form (memcheck, racecheck).
  for v in SW_CUDA_ATTN_BWD=wg SW_CUDA_ATTN_AUX=scalar; do
    for tool in memcheck racecheck; do sanitize $tool ", $v" "$v" SW_TEST_ATTN_ONLY=1; done
  done
fi
exit $rc
