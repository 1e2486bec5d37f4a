#!/usr/bin/env bash
# compute-sanitizer over the CUDA op tests: memcheck (out-of-bounds and misaligned accesses,
# errors of any CUDA call), racecheck (shared-memory hazards in the attention kernels and the
# block reductions) and synccheck. SW_TEST_QUICK=1 drops the large head_loss cases, which
# would take minutes under the sanitizer and exercise no kernel the small cases miss;
# SW_TEST_ATTN_ONLY=1 (passed through) limits it to the attention tests.
# Skips (77) when compute-sanitizer is not installed.
set -u
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -z "$san" ]; then echo "skip: compute-sanitizer not found"; exit 77; fi
bin=${BUILD:-build}/tests/gpu/test_cuda_ops
[ -x "$bin" ] || { echo "missing $bin (run make test-gpu)"; exit 1; }
rc=0
for tool in memcheck racecheck synccheck; do
  echo "== compute-sanitizer --tool $tool"
  SW_TEST_QUICK=1 "$san" --tool $tool --error-exitcode 1 "$bin" > /tmp/sw_san_$tool.log 2>&1
  r=$?
  tail -n 3 /tmp/sw_san_$tool.log
  if [ $r != 0 ]; then echo "FAIL: $tool (exit $r)"; grep -m 20 -E "=========" /tmp/sw_san_$tool.log; rc=1; fi
  # the library's one line where the warp-specialised backward could not run (the driver made
  # no TMA maps): the block-barrier kernel ran instead, and the default's kernel went untested
  if grep -q "SW_CUDA_ATTN_BWD=ws:" /tmp/sw_san_$tool.log; then echo "FAIL: $tool: the warp-specialised backward did not run"; rc=1; fi
done
# The attention tests again with the other backward forms (the default runs the warp-specialised
# kernel, above): the block-barrier kernel, and the fused dQ's preparation in scalar form
# (memcheck, racecheck).
for v in "SW_CUDA_ATTN_BWD=wg" "SW_CUDA_ATTN_AUX=scalar"; do
  for tool in memcheck racecheck; do
    echo "== compute-sanitizer --tool $tool, $v"
    # shellcheck disable=SC2086  # the variant's assignments split into words on purpose
    env $v SW_TEST_ATTN_ONLY=1 SW_TEST_QUICK=1 "$san" --tool $tool --error-exitcode 1 "$bin" \
      > /tmp/sw_san_v_$tool.log 2>&1
    r=$?
    tail -n 3 /tmp/sw_san_v_$tool.log
    if [ $r != 0 ]; then echo "FAIL: $tool with $v (exit $r)"; grep -m 20 -E "=========" /tmp/sw_san_v_$tool.log; rc=1; fi
  done
done
exit $rc
