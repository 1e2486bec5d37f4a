#!/usr/bin/env bash
# SW_OP_PROFILE=1 (core/op_profile.h): the per-op table at exit. Its call counts are the
# schedule's, worked out by hand for L = 4 layers, M = 4 micro-batches, S = 2 steps, one backward
# pass (--clip 0) and every layer recomputed (--keep none): attention forward 2·L·M·S (forward
# and recompute), backward L·M·S; the down projection's forward L·M·S (the recompute skips it,
# docs/planner.md), the other six layer GEMMs' forwards twice that. The times are the CPU
# backend's (synchronous ops), so their sum is within the run's wall time; the losses and norms
# are the same bits as without the profile; a bad SW_OP_PROFILE value profiles nothing.
set -u
bin=${SW_BIN:-build/spillway}
w=$(mktemp -d /tmp/sw-opprof.XXXXXX)
trap 'rm -rf "$w"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$bin" init --arch llama --dim 128 --layers 4 --heads 4 --ffn 384 --vocab 258 --seed 3 --out "$w/m" >/dev/null || fail init
"$bin" data --text tests/data/corpus.txt --out "$w/d.tok" >/dev/null || fail data
common=(--model "$w/m" --data "$w/d.tok" --steps 2 --seq-len 64 --batch-tokens 256 --backend cpu
        --threads 2 --gpu-mem 5MiB --cpu-mem 64MiB --lr 1e-3 --clip 0 --keep none --no-save)
"$bin" train "${common[@]}" >"$w/plain" 2>"$w/plain.err" || { cat "$w/plain.err"; fail "train"; }
t0=$(date +%s.%N)
SW_OP_PROFILE=1 "$bin" train "${common[@]}" >"$w/prof" 2>"$w/prof.err" || { cat "$w/prof.err"; fail "train with SW_OP_PROFILE=1"; }
t1=$(date +%s.%N)
diff <(grep -o "loss [0-9.]* .* grad norm [0-9.]*" "$w/plain") <(grep -o "loss [0-9.]* .* grad norm [0-9.]*" "$w/prof") >/dev/null \
  || fail "the profile changed the losses or norms: $(grep '^step' "$w/plain" "$w/prof")"
[ "$(grep -c '^step [0-9]' "$w/prof")" = 2 ] || fail "expected 2 step lines: $(cat "$w/prof")"
python3 - "$w/prof.err" "$t0" "$t1" <<'PY' || fail "the op table: $(cat "$w/prof.err")"
import re, sys
t = open(sys.argv[1]).read()
wall_ms = (float(sys.argv[3]) - float(sys.argv[2])) * 1e3
head = re.search(r"^op profile \(SW_OP_PROFILE=1\): (\d+) ops timed on their streams, ([\d.]+) ms in all$", t, re.M)
assert head, "no header"
rows = {}
for m in re.finditer(r"^  (\S.*?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%$", t, re.M):
    rows[m.group(1)] = (int(m.group(2)), float(m.group(3)), float(m.group(5)))
L, M, S = 4, 4, 2
want = {"attention_fwd T64 h4/4 d32": 2 * L * M * S, "attention_bwd T64 h4/4 d32": L * M * S,
        "matmul_fwd N64 C384 OC128": L * M * S,             # down projection: forward only
        "matmul_fwd N64 C128 OC384": 2 * 2 * L * M * S,     # gate, up: forward and recompute
        "matmul_fwd N64 C128 OC128": 4 * 2 * L * M * S}     # q, k, v, o: forward and recompute
for k, n in want.items():
    assert k in rows, "no row %r" % k
    assert rows[k][0] == n, "%s: %d calls, want %d" % (k, rows[k][0], n)
total = sum(r[1] for r in rows.values())
assert int(head.group(1)) == sum(r[0] for r in rows.values()), "calls do not add up"
assert abs(total - float(head.group(2))) < 0.01 * len(rows) + 0.05, (total, head.group(2))
assert 0 < total <= wall_ms, "op time %.1f ms against a wall time of %.1f ms" % (total, wall_ms)
assert abs(sum(r[2] for r in rows.values()) - 100) < 0.1 * len(rows), "shares"
print("ok %d ops in %d rows, %.1f ms of %.1f ms wall; schedule counts as worked out" % (
    int(head.group(1)), len(rows), total, wall_ms))
PY
# a pool of 16 event pairs: resolved every 16 ops during the run, the same counts and bits
SW_OP_PROFILE=1 SW_OP_PROFILE_PAIRS=16 "$bin" train "${common[@]}" >"$w/p16" 2>"$w/p16.err" || { cat "$w/p16.err"; fail "train with 16 pairs"; }
diff <(grep -o "loss [0-9.]* .* grad norm [0-9.]*" "$w/plain") <(grep -o "loss [0-9.]* .* grad norm [0-9.]*" "$w/p16") >/dev/null \
  || fail "16 pairs changed the losses or norms"
! grep -q "not timed" "$w/p16.err" || fail "16 pairs dropped ops: $(grep 'op profile' "$w/p16.err")"
diff <(sed -n 's/^  \(.*[^ ]\) \+\([0-9]\+\) \+[0-9.]\+ \+[0-9.]\+ \+[0-9.]\+%$/\1 \2/p' "$w/prof.err" | sort) \
     <(sed -n 's/^  \(.*[^ ]\) \+\([0-9]\+\) \+[0-9.]\+ \+[0-9.]\+ \+[0-9.]\+%$/\1 \2/p' "$w/p16.err" | sort) \
  || fail "16 pairs gave other call counts"
echo "ok 16 event pairs (resolved during the run): the same call counts and bits"
SW_OP_PROFILE=1 SW_OP_PROFILE_PAIRS=8 "$bin" train "${common[@]}" >"$w/o" 2>"$w/e" && fail "SW_OP_PROFILE_PAIRS=8 accepted"
[ "$(wc -l <"$w/e")" = 1 ] && grep -q "SW_OP_PROFILE_PAIRS '8' is not a number of event pairs in 16..4194304" "$w/e" \
  || fail "bad pairs: $(cat "$w/e")"
echo "ok SW_OP_PROFILE_PAIRS=8: one line, non-zero exit"
SW_OP_PROFILE=yes "$bin" train "${common[@]}" >"$w/o" 2>"$w/e" || fail "train with SW_OP_PROFILE=yes"
! grep -q "op profile" "$w/e" || fail "SW_OP_PROFILE=yes profiled"
echo "ok SW_OP_PROFILE other than 1: no profile"
