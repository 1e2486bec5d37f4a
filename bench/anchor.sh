#!/usr/bin/env bash
# Issue 17: spillway against the offloading system a user would pick instead (PyTorch FSDP2 with
# CPU offload, bench/fsdp2_ref.py) on the same workload, and against the planner's bound computed
# from rates measured in the same run. One command; the stages run in the order given, each under
# `timeout`, and each one that fails leaves the others running (the table shows what was measured).
#
#   bash bench/anchor.sh DIR STAGE...
#
# DIR: scratch space on the disk under test (the model files, the token file, the --nvme
# directory; regime 1 needs ~7 GB, regime 3 ~45 GB, regime 2 ~60 GB). On the device machine put
# it outside the copy of the working tree: each call re-sends the tree and drops what is not in
# it, and a model made once is reused only where DIR survives. Stages:
#   io       the disk's sequential write/read rates on DIR: dd with O_DIRECT (as the ZeRO-Infinity
#            anchor of the issue was measured), fio (io_uring, direct, 1 MiB, qd 32) when it is
#            installed, and `spillway bench-io` (1 MiB, qd 32, 2 threads: train's I/O settings)
#   io-after `spillway bench-io` again, as in io: the disk's rates after the runs before it (a
#            virtual disk's rates can move by 2x within minutes: the table then gives each NVMe
#            run's bound at the rates from before and after it)
#   rates    CPU AdamW (`spillway bench-adam` at all cores, train's default thread count) and the
#            GPU's rates (bench/anchor_rates.py: bf16 GEMM at the model's shapes, pinned PCIe;
#            build/bench/cuda_layer at the 2.8B layer's shape: the rate our own layer kernels
#            reach, GEMMs, attention and elementwise together, at the planner's FLOP accounting)
#   r1       2.8B, state in host memory: --gpu-mem 10GiB --cpu-mem 100GiB
#   r1-fsdp  FSDP2 on the 2.8B shape
#   r1-gb2   regime 1 again with --grad-buffers 2 (two GPU gradient buffers: the copies to the
#            host overlap the next group's backward)
#   r1-q2    regime 1 again with the optimizer queue as it was (SW_HOST_GRADS=2: two pinned
#            gradient buffers; SW_OPT_ORDER=fifo: updates in arrival order)
#   r1-ck0   regime 1 again with SW_CKPT_STREAMS=0: the host checkpoints' copies on the compute
#            stream, as before they moved to the copy streams
#   r1-thr   regime 1 again with --threads R1_THREADS (default: the cores less one, so that the
#            thread issuing the GPU work and the CUDA runtime keep a core beside CPU AdamW)
#   r3       2.8B, optimizer state and streamed weights on NVMe: --gpu-mem 10GiB --cpu-mem 20GiB --nvme
#   r3-8     the same with --cpu-mem 8GiB (nearly all optimizer state on the disk)
#   r3-8-u0  r3-8 again with SW_CKPT_URGENT=0: the forward's NVMe checkpoint writes queued with
#            the optimizer's writes, as before they became urgent requests (the forward's P16
#            reads from NVMe then wait behind no checkpoint write; run it beside r3-8)
#   r3-thr   r3 again with --threads R3_THREADS (default: the cores less two, so that the I/O
#            threads keep cores beside CPU AdamW's bursts: their submissions and checksums)
#   r3-nwb   r3 again with SW_OPT_WRITE_BEHIND=0: each NVMe group's writes land before the next
#            group's reads start, so reads and writes never share the disk (on a disk whose mixed
#            rate is below its alternating read/write rates this can be the faster schedule)
#   r2       6.7B, --gpu-mem 10GiB --cpu-mem 64GiB, NVMe for the rest
#   r2-fsdp  FSDP2 on the 6.7B shape
#   table    the summary table (always printed last as well, unless the stages list ends with it)
# Every spillway run: 8 x 2048 tokens per step, bf16, AdamW (weight decay 0.01), --clip 0, the
# measured rates of `io` and `rates` passed to train (--gemm-tflops, --h2d-gbs, --d2h-gbs,
# --adam-gparams, --nvme-read-gbs, --nvme-write-gbs) so that its bound is the bound at this
# machine's rates; a rate not measured in this run is left at the planner's default, and the
# table says so. The compute rate passed is the layer kernels' (ANCHOR_RATE=gemm: the cuBLAS GEMM
# rate alone, a bound no step reaches since attention and the elementwise kernels run slower).
# Env: SW_BIN (build/spillway); LOGS (logs, default DIR/logs); STEPS (spillway steps, default 5:
# the first is left out of the medians), NVME_STEPS (default 3); FSDP_WARMUP (2), FSDP_STEPS (3);
# T_IO, T_RATES, T_INIT, T_R1, T_FSDP, T_R3, T_R2 (per-stage timeouts, seconds); DEADLINE (seconds
# after the start by which every stage has ended: a later stage runs shorter or is skipped, so
# that one device call can hold several regimes and still print the table); BIO_SIZE (bench-io
# size, 16GiB), BIO_SUSTAIN (bench-io --sustain seconds: the mix rate passed to train and used
# in the table is then the sustained one; T_IO's default grows by twice it), DD_MIB (2048);
# SHAPE28 / SHAPE67 (model flags, for a quick try on a small shape), SEQ (2048), BATCH (16384),
# R1 / R3 / R3_8 / R2 (budget flags of each regime), R1_THREADS, R3_THREADS;
# LAYER_WARM_S (3: seconds of the layer's work before its rate is timed, so the rate is the one
# the GPU sustains).
set -uo pipefail
[ $# -ge 2 ] || { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
dir=$1
shift
bin=${SW_BIN:-build/spillway}
logs=${LOGS:-$dir/logs}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir" "$logs" || exit 1
steps=${STEPS:-5}
nvme_steps=${NVME_STEPS:-3}
seq=${SEQ:-2048}
batch=${BATCH:-16384}
shape28=${SHAPE28:---dim 3072 --layers 26 --heads 24 --kv-heads 8 --ffn 8192 --vocab 32000}
shape67=${SHAPE67:---dim 4096 --layers 32 --heads 32 --kv-heads 32 --ffn 11008 --vocab 32000}
r1=${R1:---gpu-mem 10GiB --cpu-mem 100GiB}
r3=${R3:---gpu-mem 10GiB --cpu-mem 20GiB}
r3_8=${R3_8:---gpu-mem 10GiB --cpu-mem 8GiB}
r2=${R2:---gpu-mem 10GiB --cpu-mem 64GiB}
rc=0

say() { echo "anchor: $*"; }
fail() { echo "anchor: $*" >&2; rc=1; }
# stage NAME TIMEOUT CMD...: runs CMD under timeout, stdout+stderr to LOGS/NAME.log and here
stage() {
  local name=$1 t=$2
  shift 2
  if [ -n "${DEADLINE:-}" ]; then   # the whole script ends by DEADLINE seconds
    local left=$(( DEADLINE - SECONDS ))
    if [ "$left" -lt 20 ]; then
      fail "$name skipped: ${left} s left before DEADLINE=$DEADLINE"
      return 124
    fi
    [ "$left" -lt "$t" ] && t=$left
  fi
  say "--- $name (timeout ${t} s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$t" "$@" 2>&1 | tee "$logs/$name.log"
  local r=${PIPESTATUS[0]}
  say "$name: exit $r after $(( SECONDS - t0 )) s"
  [ "$r" = 0 ] || fail "$name failed (exit $r$([ "$r" = 124 ] && echo ': timed out'))"
  return "$r"
}

# shellcheck disable=SC2317  # io_dd and io_fio run through `bash -c` under timeout
io_dd() {  # dd with O_DIRECT: DD_MIB MiB written then read back
  local f="$dir/anchor-dd.data" n=${DD_MIB:-2048}
  dd if=/dev/zero of="$f" bs=1M count="$n" oflag=direct conv=fsync 2>&1 | tail -1 | sed 's/^/dd write: /'
  dd if="$f" of=/dev/null bs=1M iflag=direct 2>&1 | tail -1 | sed 's/^/dd read: /'
  rm -f "$f"
}
# shellcheck disable=SC2317
io_fio() {
  local f="$dir/anchor-fio.data" rw
  for rw in write read; do
    fio --name="seq$rw" --filename="$f" --rw="$rw" --bs=1M --iodepth=32 --ioengine=io_uring \
      --direct=1 --size=4G --output-format=json --output="$logs/fio_$rw.json" || return 1
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; d=j[sys.argv[2]]; print("fio %s: %.3f GB/s" % (sys.argv[2], d["bw_bytes"]/1e9))' "$logs/fio_$rw.json" "$rw"
  done
  rm -f "$f"
}
export -f io_dd io_fio
export dir logs
# bench_io NAME: spillway bench-io at train's I/O settings on DIR, logged as NAME. 16 GiB, about
# what a regime-3 step moves each way (15.7 GB): the rate the step can get, not a short test's
# burst (on the H100 machine's virtual disk the two differ by 2-5 %: writes 4.48 GB/s at 2 GiB,
# 4.24-4.35 at 16 GiB; docs/perf.md).
bench_io() {
  mkdir -p "$dir/bio"
  # shellcheck disable=SC2086
  stage "$1" "${T_IO:-$(( 120 + 2 * ${BIO_SUSTAIN:-0} ))}" "$bin" bench-io --nvme "$dir/bio" --size "${BIO_SIZE:-16GiB}" \
    --bs 1MiB --qd 32 --threads 2 ${BIO_SUSTAIN:+--sustain $BIO_SUSTAIN}
  rm -rf "$dir/bio"
}
stage_io() {
  stage io_dd "${T_IO:-120}" bash -c io_dd
  if command -v fio >/dev/null; then stage io_fio "${T_IO:-120}" bash -c io_fio
  else say "fio: not installed here; the disk is measured with dd and spillway bench-io"; fi
  bench_io io_bench
}

stage_rates() {
  stage adam "${T_RATES:-120}" "$bin" bench-adam --params 256M --threads "$(nproc)" --reps 3
  # shellcheck disable=SC2046
  stage gpu_rates "${T_RATES:-120}" env PYTHONUNBUFFERED=1 python3 "$here/anchor_rates.py" \
    $(shape_args "$shape28" --dim --heads --kv-heads --ffn --vocab) --tokens "$seq"
  # the rate our own layer kernels reach at this shape (GEMMs, attention and the elementwise
  # kernels of one decoder layer, forward and backward, one row of SEQ tokens)
  local lb
  lb=$(dirname "$bin")/bench/cuda_layer
  if [ -x "$lb" ]; then
    # the flags' values by name (shape_args keeps the model's order, not the order asked)
    local C F nh nkv
    # shellcheck disable=SC2046
    set -- $(shape_args "$shape28" --dim --ffn --heads --kv-heads)
    while [ $# -ge 2 ]; do
      case $1 in --dim) C=$2 ;; --ffn) F=$2 ;; --heads) nh=$2 ;; --kv-heads) nkv=$2 ;; esac
      shift 2
    done
    # after LAYER_WARM_S (3) seconds of the same layer's work: the timed iterations then run at
    # the clocks the GPU holds under a training step's sustained load, not at the boost clock
    # a few milliseconds of work from idle can see (the bound is the rate the step can hold)
    stage layer_rate "${T_RATES:-120}" env SW_BENCH_SHAPE="$C,$F,$nh,$nkv,$(( C / nh ))" SW_BENCH_SEQ="$seq" \
      SW_BENCH_WARM_S="${LAYER_WARM_S:-3}" "$lb" 5
  else
    say "layer_rate: $lb not built (make bench): the bound uses the GEMM rate alone"
  fi
}

# shape_args "FLAGS" --a --b ...: the named flags (with their values) out of a model's flags
shape_args() {
  local flags=$1
  shift
  # shellcheck disable=SC2086
  set -- "$@" -- $flags
  local want=() out=()
  while [ "$1" != -- ]; do want+=("$1"); shift; done
  shift
  while [ $# -gt 1 ]; do
    for w in "${want[@]}"; do [ "$1" = "$w" ] && out+=("$1" "$2"); done
    shift 2
  done
  echo "${out[@]}"
}

# the measured rates as train flags, from the logs of `io` and `rates` (what is missing is left out)
rate_flags() {
  python3 - "$logs" "$here" <<'PY'
import json, os, re, sys
L = sys.argv[1]
sys.path.insert(0, sys.argv[2])
import nvme_bound   # bench/nvme_bound.py: bench-io's rates as train's flags
def text(n):
    p = os.path.join(L, n)
    return open(p).read() if os.path.exists(p) else ""
out = []
layer = mem = None
for line in text("layer_rate.log").splitlines():
    if line.startswith("{") and '"layer"' in line:
        layer = json.loads(line)
    if line.startswith("{") and '"membound"' in line:
        mem = json.loads(line)
if mem:   # the GPU's memory-bound work between the layers: the expected step
    out += ["--gpu-bw-gbs", str(mem["gbs"])]
for line in text("gpu_rates.log").splitlines():
    if line.startswith("{"):
        r = json.loads(line)
        rate = r["gemm_tflops_model_mix"]
        if layer and os.environ.get("ANCHOR_RATE", "layer") == "layer":
            rate = layer["planner_tflops"]
        out += ["--gemm-tflops", str(rate), "--h2d-gbs", str(r["h2d_gbs"]),
                "--d2h-gbs", str(r["d2h_gbs"])]
ad = text("adam.log")
m = re.findall(r"^\s*(\d+)\s+([\d.]+)\s", ad, re.M)
if m:
    out += ["--adam-gparams", m[-1][1]]
io = nvme_bound.bench_io_rates(text("io_bench.log"))
if io:
    out += nvme_bound.train_flags(io)
print(" ".join(out))
PY
}

# model NAME "FLAGS": a bf16 model directory DIR/NAME (made once; a half-made one is remade)
model() {
  local name=$1 flags=$2
  if [ ! -e "$dir/$name/.anchor-done" ]; then
    rm -rf "${dir:?}/$name"
    # shellcheck disable=SC2086
    stage "init_$name" "${T_INIT:-300}" "$bin" init --arch llama $flags --dtype bf16 --out "$dir/$name" \
      && touch "$dir/$name/.anchor-done"
  fi
  if [ ! -s "$dir/d.tok" ]; then
    stage data "${T_INIT:-300}" "$bin" data --text "$here/../tests/data/corpus.txt" --out "$dir/d.tok.part" \
      && mv "$dir/d.tok.part" "$dir/d.tok"
  fi
  [ -e "$dir/$name/.anchor-done" ] && [ -s "$dir/d.tok" ]
}

# train NAME MODEL STEPS TIMEOUT BUDGET... : spillway train at the issue's settings, with a trace
train() {
  local name=$1 m=$2 n=$3 t=$4
  shift 4
  local rf
  rf=$(rate_flags)
  say "$name: measured rates passed to train: ${rf:-none (planner defaults)}"
  echo "$rf" >"$logs/$name.rates"
  # shellcheck disable=SC2086
  stage "$name" "$t" env SW_LOG_EVERY=1 "$bin" train --model "$dir/$m" --data "$dir/d.tok" --steps "$n" \
    --seq-len "$seq" --batch-tokens "$batch" --lr 1e-4 --weight-decay 0.01 --clip 0 --no-save \
    $rf "$@" --trace "$logs/$name.trace.json"
  if [ -s "$logs/$name.trace.json" ]; then
    # from the end of the first step on (the spans start with step 1; its time is in the step line)
    local s1
    s1=$(sed -n 's/^step 1\/[0-9]* |.*| \([0-9.]*\) s | busy:.*/\1/p' "$logs/$name.log" | head -1)
    python3 "$here/../offload/trace_summary.py" "$logs/$name.trace.json" --skip-s "${s1:-0}" --gaps --gap-ms 2 \
      >"$logs/$name.trace.txt" 2>&1
    gzip -f "$logs/$name.trace.json"
  fi
  rm -rf "$dir/nv"
}

fsdp() {
  local name=$1 flags=$2 t=$3
  # shellcheck disable=SC2086
  stage "$name" "$t" env PYTHONUNBUFFERED=1 python3 "$here/fsdp2_ref.py" $flags --seq-len "$seq" \
    --rows $(( batch / seq )) --warmup "${FSDP_WARMUP:-2}" --steps "${FSDP_STEPS:-3}"
}

nvme_dir() { rm -rf "$dir/nv"; mkdir -p "$dir/nv"; echo "$dir/nv"; }

table() {
  # the model's shape flags that anchor_model.py takes (--layers is its own)
  ANCHOR_HERE=$here ANCHOR_THR=${R1_THREADS:-$(( $(nproc) - 1 ))} ANCHOR_THR3=${R3_THREADS:-$(( $(nproc) - 2 ))} ANCHOR_SHAPE28="$(shape_args "$shape28" --layers --dim --heads --kv-heads --ffn --vocab) --seq $seq --tokens $batch" \
  python3 - "$logs" "$batch" "$r1" "$r3" "$r3_8" "$r2" <<'PY'
import functools, json, os, re, statistics, sys
sys.path.insert(0, os.environ["ANCHOR_HERE"])
import nvme_bound   # bench/nvme_bound.py: bench-io's rates, the planner's terms and bytes in a log
L, batch = sys.argv[1], int(sys.argv[2])
B = sys.argv[3:7]
def text(n):
    p = os.path.join(L, n)
    return open(p, errors="replace").read() if os.path.exists(p) else ""
def jline(n):
    for l in text(n).splitlines():
        if l.startswith("{"):
            return json.loads(l)
    return None

# rates measured in this run
print("\n## rates measured in this run")
g = jline("gpu_rates.log")
if g:
    print("GPU %s: bf16 GEMM %.1f TFLOP/s at the model's shapes (8192^3: %.1f); PCIe pinned H2D %.2f, "
          "D2H %.2f, both at once %.2f GB/s" % (g["gpu"], g["gemm_tflops_model_mix"],
          g["gemm_tflops_8192"], g["h2d_gbs"], g["d2h_gbs"], g["duplex_h2d_plus_d2h_gbs"]))
def last_json(name, what):
    """the last JSON line of log `name` whose "what" is `what`"""
    v = None
    for l in text(name).splitlines():
        if l.startswith("{") and '"what":"%s"' % what in l.replace(" ", ""):
            v = json.loads(l)
    return v
lr = last_json("layer_rate.log", "layer")
if lr:
    print("our layer kernels at the 2.8B layer's shape, one row of %d tokens (bench/cuda_layer): forward %.3f ms, "
          "backward %.3f ms; %.1f TFLOP/s at the planner's accounting (two forwards and a backward: "
          "passed as --gemm-tflops%s)" % (lr["T"], lr["fwd_ms"], lr["bwd_ms"], lr["planner_tflops"],
          "" if os.environ.get("ANCHOR_RATE", "layer") == "layer" else ": not, ANCHOR_RATE=gemm"))
lf = last_json("layer_rate.log", "linear_fwd")
if lf and g and g.get("linear_fwd_tflops"):
    print("the layer's forward GEMMs (T x in x out), TFLOP/s, ours (bench/cuda_layer) / PyTorch's "
          "F.linear: " + ", ".join("%s %.0f / %.0f" % (k, v, g["linear_fwd_tflops"].get(k, 0))
                                  for k, v in lf["shapes"].items()))
mb = last_json("layer_rate.log", "membound")
if mb:
    print("the GPU's memory-bound work between the layers (bench/cuda_layer, %d M parameters): "
          "sum of squares %.0f GB/s, AdamW %.0f GB/s; together %.0f GB/s (passed as --gpu-bw-gbs: "
          "the expected step)" % (mb["params"] >> 20, mb["sumsq_gbs"], mb["adamw_gbs"], mb["gbs"]))
m = re.findall(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)", text("adam.log"), re.M)
if m:
    print("CPU AdamW (spillway bench-adam, %s threads): %s Gparam/s (%s GB/s)" % m[-1])
dd = {}
for l in text("io_dd.log").splitlines():
    mm = re.match(r"dd (write|read): (\d+) bytes .* copied, ([\d.]+) s", l)
    if mm:
        dd[mm.group(1)] = int(mm.group(2)) / float(mm.group(3)) / 1e9
if dd:
    print("disk, dd 1 MiB O_DIRECT: write %.3f GB/s, read %.3f GB/s" % (dd.get("write", 0), dd.get("read", 0)))
f = re.findall(r"fio (write|read): ([\d.]+) GB/s", text("io_fio.log"))
if f:
    print("disk, fio io_uring 1 MiB qd 32: " + ", ".join("%s %s GB/s" % x for x in f))
io0, io1 = nvme_bound.bench_io_rates(text("io_bench.log")), nvme_bound.bench_io_rates(text("io_after.log"))
for what, r, log in (("", io0, "io_bench.log"), (", after the runs (io-after)", io1, "io_after.log")):
    if r:
        sus = " (sustained)" if "\nsustained mix " in text(log) else ""
        print("disk, spillway bench-io 1 MiB qd 32 2 threads%s: write %.3f, read %.3f, mix%s %.3f GB/s" % (what, r[0], r[1], sus, r[2]))

@functools.lru_cache(maxsize=None)   # the table reads each run's log in several places
def spill(name):
    t = text(name + ".log")
    if not t:
        return None
    st = []
    for l in t.splitlines():
        mm = re.search(r"^step (\d+)/(\d+) \|.*\| ([\d.]+) tok/s \|.*\| ([\d.]+) s \| busy: compute ([\d.]+) h2d ([\d.]+) "
                       r"d2h ([\d.]+) nvme r ([\d.]+) w ([\d.]+) adam ([\d.]+) s", l)
        if mm:
            v = [float(x) for x in mm.groups()]
            # the step time from tokens/s (printed with more digits than the seconds)
            st.append(v[:2] + [batch / v[2] if v[2] > 0 else v[3]] + v[4:])
    pred = re.search(r"predicted step: ([\d.e+-]+) s, bound by ([^;]+);", t)
    # the planner's expectation: with the disk at the mixed rate (given), else the bound plus
    # the step boundary's idle time, else the bound
    ex = (re.search(r"^expected step: ([\d.e+-]+) s", t, re.M) or
          re.search(r"^step boundary: .*: ([\d.e+-]+) s per step", t, re.M) or pred)
    res = nvme_bound.planner_terms(t)
    rss = re.search(r"host peak RSS ([\d.]+) MiB \(([\d.]+) MiB of it before loading", t)
    gpu = re.search(r"GPU memory measured \(cudaMemGetInfo\): peak ([\d.]+) MiB", t)
    rates = text(name + ".rates").strip()
    if not st:
        return {"failed": True, "pred": pred, "expect": ex, "res": res}
    use = st[1:] if len(st) > 1 else st   # the first step warms up
    med = lambda i: statistics.median(r[i] for r in use)
    return {"failed": False, "n": len(st), "step_s": med(2), "steps": [r[2] for r in st],
            "busy": [med(i) for i in range(3, 9)], "pred": pred, "expect": ex, "res": res,
            "rss": float(rss.group(1)) if rss else None, "rss0": float(rss.group(2)) if rss else None,
            "gpu": float(gpu.group(1)) if gpu else None, "rates": rates}

def fs(name):
    r = jline(name + ".log")
    return r

rows = [("1: 2.8B, host memory (`%s`)" % B[0], "r1", "r1-fsdp"),
        ("1: 2.8B, host memory (`%s --grad-buffers 2`)" % B[0], "r1-gb2", "r1-fsdp"),
        ("1: 2.8B, host memory (`%s`), host checkpoints copied on the compute stream (`SW_CKPT_STREAMS=0`)" % B[0], "r1-ck0", "r1-fsdp"),
        ("1: 2.8B, host memory (`%s --threads %s`)" % (B[0], os.environ.get("ANCHOR_THR", "")), "r1-thr", "r1-fsdp"),
        ("1: 2.8B, host memory (`%s`), optimizer queue as before (`SW_HOST_GRADS=2 SW_OPT_ORDER=fifo`)" % B[0], "r1-q2", "r1-fsdp"),
        ("3: 2.8B, NVMe (`%s --nvme`)" % B[1], "r3", None),
        ("3: 2.8B, NVMe (`%s --nvme --threads %s`)" % (B[1], os.environ.get("ANCHOR_THR3", "")), "r3-thr", None),
        ("3: 2.8B, NVMe (`%s --nvme`), no write-behind (`SW_OPT_WRITE_BEHIND=0`)" % B[1], "r3-nwb", None),
        ("3: 2.8B, NVMe (`%s --nvme`)" % B[2], "r3-8", None),
        ("3: 2.8B, NVMe (`%s --nvme`), checkpoint writes not urgent (`SW_CKPT_URGENT=0`)" % B[2], "r3-8-u0", None),
        ("2: 6.7B (`%s --nvme`)" % B[3], "r2", "r2-fsdp")]
print("\n## step times (median of the steps after the first; FSDP2: median of its timed steps)")
print("| regime | system | s/step | tokens/s | host peak | GPU peak | tokens/s vs FSDP2 | planner's step (bound) | bound/measured | planner's expected step (vs measured) | busy s: compute h2d d2h nvme-r nvme-w adam |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
shown = set()
for title, sn, fn in rows:
    s, fr = spill(sn), fs(fn) if fn else None
    if s is None and (fr is None or fn in shown):
        continue
    if fr and fn not in shown:
        shown.add(fn)
        print("| %s | FSDP2 CPU offload | %.3f | %.0f | %.1f GiB | %.1f GiB | 1.00x | - | - | - | fwd+bwd %.2f, optimizer %.2f |" % (
            title, fr["step_s"], fr["tokens_per_s"], fr["host_vmhwm_mib"] / 1024,
            fr["gpu_used_peak_mib"] / 1024, fr["fwd_bwd_s"], fr["optimizer_s"]))
    if s and not s["failed"]:
        tps = batch / s["step_s"]
        vs = "%.2fx" % (tps / fr["tokens_per_s"]) if fr else "-"
        p = s["pred"]
        pred = "%.3f s (%s)" % (float(p.group(1)), p.group(2)) if p else "-"
        bm = "%.2f" % (float(p.group(1)) / s["step_s"]) if p else "-"
        e = s["expect"]
        exs = "%.3f s (%+.1f %%)" % (float(e.group(1)), 100 * (float(e.group(1)) / s["step_s"] - 1)) if e else "-"
        host = "%.1f GiB (%.1f at start)" % (s["rss"] / 1024, s["rss0"] / 1024) if s["rss"] else "-"
        gpu = "%.1f GiB" % (s["gpu"] / 1024) if s["gpu"] else "-"
        print("| %s | spillway | %.3f | %.0f | %s | %s | **%s** | %s | **%s** | %s | %s |" % (
            title, s["step_s"], tps, host, gpu, vs, pred, bm, exs, " ".join("%.2f" % x for x in s["busy"])))
    elif s:
        print("| %s | spillway | failed (see %s.log) | | | | | | | | |" % (title, sn))
if io1:   # each NVMe run's bound again at the disk's rates from after the runs
    print("\nNVMe runs at the disk's rates from io-after (write %.3f, read %.3f, mix %.3f GB/s):" % tuple(io1))
    for title, sn, fn in rows:
        s = spill(sn)
        t = text(sn + ".log")
        if not s or s["failed"] or not nvme_bound.nvme_bytes(t):
            continue
        bound, nvme, mixed = nvme_bound.at_rates(t, io1)
        print("  %s: bound %.3f s (NVMe %.3f s), bound/measured %.2f; at the mixed rate %.3f s (%+.1f %% vs "
              "the measured %.3f s)" % (sn, bound, nvme, bound / s["step_s"], mixed,
                                        100 * (mixed / s["step_s"] - 1), s["step_s"]))
print("\nplanner's per-resource prediction (s) and the rates it used:")
for title, sn, fn in rows:
    s = spill(sn)
    if s:
        r = s["res"]
        print("  %s: compute %s, PCIe %s, NVMe %s, CPU AdamW %s; steps %s; rates: %s" % (
            sn, r["compute"], r["pcie"], r["nvme"], r["adam"],
            " ".join("%.2f" % x for x in s.get("steps", [])), s.get("rates") or "planner defaults"))
for title, sn, fn in rows:
    t = text(sn + ".trace.txt")
    if t:
        print("\ntrace of %s (offload/trace_summary.py, after step 1):\n%s" % (sn, t.rstrip()))
# regime 1: the executor's dependency model calibrated with the run's busy times (bench/anchor_model.py)
s = spill("r1")
if s and not s["failed"]:
    import subprocess
    t = text("r1.log")
    res = re.search(r"^\s*layers 0-(\d+)\s+[\d.]+ [KMB]\s+GPU", t, re.M)
    resident = int(res.group(1)) + 1 if res else 0
    cmd = [sys.executable, os.path.join(os.environ["ANCHOR_HERE"], "anchor_model.py"),
           "--resident", str(resident), "--compute-s", "%.4f" % s["busy"][0],
           "--adam-s", "%.4f" % s["busy"][5], "--d2h-s", "%.4f" % s["busy"][2],
           "--h2d-gbs", str((g or {}).get("h2d_gbs", 40)), "--measured-s", "%.4f" % s["step_s"]]
    if m:
        cmd += ["--bench-adam-gparams", m[-1][1]]
    cmd += os.environ.get("ANCHOR_SHAPE28", "").split()
    print("\nregime 1, dependency model of the step (%s):" % " ".join(cmd[1:]))
    try:
        print(subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.rstrip())
    except Exception as e:  # noqa: BLE001
        print("  model failed: %s" % e)
print("\nanchors of issue 17, not measured in this run (H100 machine, same shape and batch):")
print("  FSDP2 CPU offload 2.8B 5.374 s/step (53 GB host); 6.7B 12.07 s/step (120 GB host)")
print("  DeepSpeed 0.14.5 ZeRO-Offload 2.8B 6.35 s/step (70 GB host); ZeRO-Infinity (NVMe) 49.35 s/step "
      "(25 GB host; dd on its disk: 1.6 GB/s write, 2.0 GB/s read)")
PY
}

last=
# the budget flags split into words on purpose
# shellcheck disable=SC2086
for s in "$@"; do
  last=$s
  case $s in
    io) stage_io ;;
    io-after) bench_io io_after ;;
    rates) stage_rates ;;
    r1) model m28 "$shape28" && train r1 m28 "$steps" "${T_R1:-300}" $r1 ;;
    r1-fsdp) fsdp r1-fsdp "$shape28" "${T_FSDP:-400}" ;;
    r1-gb2) model m28 "$shape28" && train r1-gb2 m28 "$steps" "${T_R1:-300}" $r1 --grad-buffers 2 ;;
    r1-q2) model m28 "$shape28" && SW_HOST_GRADS=2 SW_OPT_ORDER=fifo train r1-q2 m28 "$steps" "${T_R1:-300}" $r1 ;;
    r1-ck0) model m28 "$shape28" && SW_CKPT_STREAMS=0 train r1-ck0 m28 "$steps" "${T_R1:-300}" $r1 ;;
    r1-thr) model m28 "$shape28" && train r1-thr m28 "$steps" "${T_R1:-300}" $r1 --threads "${R1_THREADS:-$(( $(nproc) - 1 ))}" ;;
    r3) model m28 "$shape28" && train r3 m28 "$nvme_steps" "${T_R3:-420}" $r3 --nvme "$(nvme_dir)" --checkpoint-only ;;
    r3-thr) model m28 "$shape28" && train r3-thr m28 "$nvme_steps" "${T_R3:-420}" $r3 --nvme "$(nvme_dir)" --checkpoint-only --threads "${R3_THREADS:-$(( $(nproc) - 2 ))}" ;;
    r3-nwb) model m28 "$shape28" && SW_OPT_WRITE_BEHIND=0 train r3-nwb m28 "$nvme_steps" "${T_R3:-420}" $r3 --nvme "$(nvme_dir)" --checkpoint-only ;;
    r3-8) model m28 "$shape28" && train r3-8 m28 "$nvme_steps" "${T_R3:-420}" $r3_8 --nvme "$(nvme_dir)" --checkpoint-only ;;
    r3-8-u0) model m28 "$shape28" && SW_CKPT_URGENT=0 train r3-8-u0 m28 "$nvme_steps" "${T_R3:-420}" $r3_8 --nvme "$(nvme_dir)" --checkpoint-only ;;
    r2) model m67 "$shape67" && train r2 m67 "$nvme_steps" "${T_R2:-540}" $r2 --nvme "$(nvme_dir)" --checkpoint-only ;;
    r2-fsdp) fsdp r2-fsdp "$shape67" "${T_FSDP:-540}" ;;
    table) table ;;
    *) fail "unknown stage '$s' (io io-after rates r1 r1-gb2 r1-ck0 r1-fsdp r1-thr r1-q2 r3 r3-thr r3-nwb r3-8 r3-8-u0 r2 r2-fsdp table)" ;;
  esac
done
[ "$last" = table ] || table
exit $rc
