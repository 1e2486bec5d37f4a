#!/usr/bin/env bash
# The op tests again with the attention kernels forced to the 16-row-per-warp layout with 4 warps
# (64-row tiles, 1 stage), the variant that consumer GPUs (99 KB of shared memory per block) run;
# the H100 runs the FlashAttention-2-layout kernels (and the 8-warp 16-row ones for some dK/dV).
# Each also with the backward's fused dQ (fixed-point atomics in the dK/dV kernel) forced, which
# by default runs only with the 4 x 2 dK/dV kernel on large grids (and the Hopper backward).
set -u
bin=${BUILD:-build}/tests/gpu/test_cuda_ops
[ -x "$bin" ] || { echo "missing $bin (run make test-gpu)"; exit 1; }
SW_CUDA_ATTN_WARPS=4 SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_WARPS=4 SW_CUDA_ATTN_DQ=fused SW_TEST_QUICK=1 "$bin" || exit 1
# The rest with the sm_80 kernels (SW_CUDA_ATTN_SM90=0: on an H100 the Hopper kernels would run).
# The 8-warp dK/dV kernel, which the large-smem path only picks for long sequences / many
# blocks (the op tests' shapes would otherwise run the 4-warp, 2-stage one).
export SW_CUDA_ATTN_SM90=0
SW_CUDA_ATTN_DKDV_WARPS=8 SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_DKDV_WARPS=8 SW_CUDA_ATTN_DQ=fused SW_TEST_QUICK=1 "$bin" || exit 1
# The fused dQ with the default kernels (4-warp 2-stage dK/dV; 4 x 2 where the test forces it),
# with the int64 accumulator, and split into one (batch row, KV head) per launch.
SW_CUDA_ATTN_DQ=fused SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_DQ=fused SW_CUDA_ATTN_DQ_BITS=64 SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_DQ=fused SW_CUDA_ATTN_DQ_UNITS=1 SW_TEST_QUICK=1 "$bin" || exit 1
# Hopper (sm_90a) only, else the same runs again: the default (warp-specialised) forward with the
# sm_80 backward, the earlier forwards (unpipelined with two or three K/V stages, pipelined; two
# warpgroups at head dim 64, with the backward's grid units-first, and KV-tiles-first), the
# wgmma backward one unit per launch, and each warp-specialised variant.
unset SW_CUDA_ATTN_SM90
SW_CUDA_ATTN_SM90=fwd SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_FWD=wg1 SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_FWD=wg3 SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_FWD=wgp SW_TEST_QUICK=1 "$bin" || exit 1
# The warp-specialised forward (TMA producer, mbarrier ring) for every attention case, each
# variant: two stages with turn-taking, three stages, no turn-taking, persistent grid (also
# with two blocks: many tiles per block).
SW_CUDA_ATTN_FWD=ws SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_FWD=ws3 SW_TEST_ATTN_ONLY=1 SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_FWD=wsn SW_TEST_ATTN_ONLY=1 SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_FWD=wsp SW_TEST_ATTN_ONLY=1 SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_FWD=wsp SW_CUDA_ATTN_WS_BLOCKS=2 SW_TEST_ATTN_ONLY=1 SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_WG=2 SW_CUDA_ATTN_BWD_ORDER=unit SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_BWD_ORDER=kv SW_TEST_QUICK=1 "$bin" || exit 1
# The Hopper backward's head split: the op tests' grids are small, so by default every GQA case
# splits its group into one head a block; here without the split, and with two slices (where two
# divides the group: several heads a block, the slices' partials summed).
SW_CUDA_ATTN_BWD_HSPLIT=1 SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_BWD_HSPLIT=2 SW_TEST_ATTN_ONLY=1 SW_TEST_QUICK=1 "$bin" || exit 1
# Split, in launches of three units (B=2, 2 KV heads: a launch of 3, then 1; the partials'
# slices are laid out by the launch's unit count).
SW_CUDA_ATTN_DQ_UNITS=3 SW_TEST_ATTN_ONLY=1 SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_DQ_UNITS=1 SW_TEST_QUICK=1 "$bin" || exit 1
# The Hopper backward's two kernels: the block-barrier one (SW_CUDA_ATTN_BWD=wg) for every case;
# then the warp-specialised one (the default; TMA producer, mbarrier ring) with each attention
# case's second run on the other kernel, which must give the same bits (SW_TEST_BWD_WS_FLIP=1),
# and by name with the default head split (one head a block on the tests' grids), none (several
# heads a block), two slices, and launches of three units. Where ws cannot run, the library says
# so on stderr and the block-barrier kernel runs: that fails these runs (ws_run), so that they
# cannot pass without the kernel they test.
SW_CUDA_ATTN_BWD=wg SW_TEST_QUICK=1 "$bin" || exit 1
err=$(mktemp)
trap 'rm -f "$err"' EXIT
ws_run() {
  env "$@" SW_TEST_ATTN_ONLY=1 SW_TEST_QUICK=1 "$bin" 2> "$err"
  local r=$?
  cat "$err" >&2
  [ $r = 0 ] || exit 1
  if grep -q "SW_CUDA_ATTN_BWD=ws:" "$err"; then echo "FAIL: the warp-specialised backward did not run ($*)"; exit 1; fi
}
ws_run SW_TEST_BWD_WS_FLIP=1
ws_run SW_CUDA_ATTN_BWD=ws
ws_run SW_CUDA_ATTN_BWD=ws SW_CUDA_ATTN_BWD_HSPLIT=1
ws_run SW_CUDA_ATTN_BWD=ws SW_CUDA_ATTN_BWD_HSPLIT=2
ws_run SW_CUDA_ATTN_BWD=ws SW_CUDA_ATTN_DQ_UNITS=3
# The fused dQ's K/V maxima and D in their scalar forms (SW_CUDA_ATTN_AUX=scalar; the vector
# forms are the default at head dims 64 and 128), on the Hopper backward and on the sm_80 fused
# path.
SW_CUDA_ATTN_AUX=scalar SW_TEST_ATTN_ONLY=1 SW_TEST_QUICK=1 "$bin" || exit 1
SW_CUDA_ATTN_AUX=scalar SW_CUDA_ATTN_SM90=0 SW_CUDA_ATTN_DQ=fused SW_TEST_ATTN_ONLY=1 SW_TEST_QUICK=1 "$bin"
