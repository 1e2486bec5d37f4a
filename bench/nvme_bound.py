#!/usr/bin/env python3
"""A spillway train log's step bound at the disk rates `spillway bench-io` measured.

    python3 bench/nvme_bound.py TRAIN_LOG NAME=BENCH_IO_LOG [NAME=BENCH_IO_LOG ...]
    python3 bench/nvme_bound.py --flags BENCH_IO_LOG     # its rates as train's flags

For each bench-io log (e.g. before=io_before.log after=io_after.log): the bytes a step reads and
writes on NVMe, as the planner counts them in the log's step-time table, at that log's read and
write rates (the bound's NVMe term) and at its mixed rate (reads and writes sharing the disk; the
sustained mix where bench-io ran with --sustain),
each beside the planner's other resources (GPU compute, PCIe, CPU AdamW: the bound is the
longest); then every step's measured time against each. A virtual disk's rates can move by 2x
within minutes, so a run is read against the rates from both sides of it.

bench/anchor.sh's table reads its logs through the same functions.
"""
import re
import sys

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def bench_io_rates(text):
    """bench-io's best (write, read, mix) rates in GB/s, or None where one is missing; the mix
    is the sustained one where bench-io ran --sustain (the rate a long run gets)"""
    found = [re.search(r"^best %s\s+([\d.]+) GB/s" % k, text, re.M) for k in ("write", "read", "mix")]
    found[2] = re.search(r"^sustained mix ([\d.]+) GB/s", text, re.M) or found[2]
    return tuple(float(m.group(1)) for m in found) if all(found) else None


def train_flags(rates):
    """bench-io's (write, read, mix) rates as train's (and plan's) flags"""
    return ["--nvme-read-gbs", "%g" % rates[1], "--nvme-write-gbs", "%g" % rates[0], "--nvme-mix-gbs", "%g" % rates[2]]


def planner_terms(text):
    """the planner's per-resource step times in the log (s; None where absent)"""
    out = {}
    for k, pat in (("compute", r"(?:GPU|device) compute\s+([\d.e+-]+) s"), ("pcie", r"PCIe\s+([\d.e+-]+) s"),
                   ("nvme", r"NVMe\s+([\d.e+-]+) s"), ("adam", r"CPU AdamW\s+([\d.e+-]+) s")):
        m = re.search(pat, text)
        out[k] = float(m.group(1)) if m else None
    return out


def nvme_bytes(text):
    """the (read, write) bytes of a step on NVMe in the step-time table, or None"""
    m = re.search(r"NVMe\s+[\d.e+-]+ s\s+\(read ([\d.]+) (B|KiB|MiB|GiB|TiB) at .* \+ "
                  r"write ([\d.]+) (B|KiB|MiB|GiB|TiB) at", text)
    if not m:
        return None
    size = lambda x, u: float(x) * 1024.0 ** UNITS.index(u)
    return size(m.group(1), m.group(2)), size(m.group(3), m.group(4))


def at_rates(text, rates):
    """(bound, NVMe term, step at the mixed rate) in s at bench-io's (write, read, mix) rates"""
    rb, wb = nvme_bytes(text)
    other = max([v for k, v in planner_terms(text).items() if k != "nvme" and v] + [0])
    nvme = rb / 1e9 / rates[1] + wb / 1e9 / rates[0]
    mixed = (rb + wb) / 1e9 / rates[2]
    return max(nvme, other), nvme, max(mixed, other)


def step_times(text):
    """[(step, seconds)] of the log's step lines: the step's tokens over its tokens/s (printed
    with more digits than its seconds) where the log names the tokens a step, else the seconds"""
    tok = re.search(r"^step: (\d+) tokens", text, re.M)
    out = []
    for m in re.finditer(r"^step (\d+)/\d+ \|.*\| ([\d.]+) tok/s \|.*\| ([\d.]+) s \| busy:", text, re.M):
        tps = float(m.group(2))
        out.append((int(m.group(1)), int(tok.group(1)) / tps if tok and tps > 0 else float(m.group(3))))
    return out


def read(path):
    try:
        return open(path, errors="replace").read()
    except OSError as e:
        sys.exit("nvme_bound: %s: %s" % (path, e.strerror))


def io_rates(path):
    rates = bench_io_rates(read(path))
    if not rates:
        sys.exit("nvme_bound: %s has no bench-io 'best write/read/mix' lines" % path)
    return rates


def main(argv):
    if len(argv) == 3 and argv[1] == "--flags":
        print(" ".join(train_flags(io_rates(argv[2]))))
        return
    if len(argv) < 3 or any("=" not in a for a in argv[2:]):
        sys.exit("usage: " + __doc__.strip().splitlines()[2].strip())
    text = read(argv[1])
    nb = nvme_bytes(text)
    if not nb:
        sys.exit("nvme_bound: %s has no NVMe line in its step-time table (a run with --nvme?)" % argv[1])
    rb, wb = nb
    print("NVMe a step (the planner's bytes): read %.2f GiB, write %.2f GiB" % (rb / 2**30, wb / 2**30))
    at = []
    for arg in argv[2:]:
        name, path = arg.split("=", 1)
        rates = io_rates(path)
        bound, nvme, mixed = at_rates(text, rates)
        at.append((name, bound, mixed))
        print("%s: disk write %.3f, read %.3f, mix %.3f GB/s: bound %.4g s (NVMe %.4g s); at the mixed rate %.4g s"
              % (name, rates[0], rates[1], rates[2], bound, nvme, mixed))
    print("step | measured s | the planner's NVMe bytes / measured s, GB/s | " +
          " | ".join("%s: bound / measured, mixed-rate step / measured" % a[0] for a in at))
    for n, s in step_times(text):
        print("%d | %.4g | %.2f | %s" % (n, s, (rb + wb) / 1e9 / s,
                                          " | ".join("%.2f, %.2f" % (b / s, x / s) for _, b, x in at)))


if __name__ == "__main__":
    main(sys.argv)
