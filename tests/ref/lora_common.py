"""What tests/ref/lora_ref.py (HF transformers) and tests/ref/lora_spread.py (plain PyTorch)
share: the LoRA cases of tests/test_offload_lora_golden.c, the golden file reader, the test's
error measure, one step's backward over the batch's sums in a chosen order, and the fp32 spread
over those orders. Needs torch and numpy only."""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

# name: (rank, alpha, targets), as tests/test_offload_lora_golden.c
CASES = {
    "llama_gqa": (4, 8.0, "q,k,v,o,gate,up,down"),
    "qwen2_tied": (8, 4.0, "q,k,v,o,gate,up,down"),
    "llama3_odd": (5, 7.5, "q,v,o,down"),
}
MODULES = dict(q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj",
               o="self_attn.o_proj", gate="mlp.gate_proj", up="mlp.up_proj", down="mlp.down_proj")
ORDER = ["q", "k", "v", "o", "gate", "up", "down"]
# the fp32 runs of the spread: the CPU's GEMMs on 1-4 threads, and per step the batch's
# sequences forward or reversed (flip), whole or `micro` sequences at a time (micro-batches)
THREADS = (1, 2, 3, 4)
VARIANTS = [(flip, micro) for flip in (False, True) for micro in (0, 1, 2)]


def peft_name(l, t, ab):
    return f"base_model.model.model.layers.{l}.{MODULES[t]}.lora_{ab}.weight"


def read_golden(path):
    """(version, header, {name: tensor}) of a golden file of tests/ref/make_golden.py."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"SWGOLD\0\0":
        sys.exit(f"{path}: not a golden file (tests/ref/make_golden.py writes them)")
    ver, hlen = struct.unpack("<II", data[8:16])
    hdr = json.loads(data[16:16 + hlen])
    base, arrays = 16 + hlen, {}
    for a in hdr["arrays"]:
        dt = {"f32": np.float32, "i32": np.int32}[a["dtype"]]
        n = int(np.prod(a["shape"])) if a["shape"] else 1
        arr = np.frombuffer(data, dtype=dt, count=n, offset=base + a["offset"])
        arrays[a["name"]] = torch.from_numpy(arr.copy().reshape(a["shape"]))
    return ver, hdr, arrays


def rel_err(a, ref):
    # the test's measure (tests/check.h check_rel_err_f32): |a - ref| / |ref| over the tensor
    a, ref = a.double(), ref.double()
    den = float(ref.norm())
    return float((a - ref).norm()) / den if den > 0 else float((a - ref).norm())


def backward(forward, inp, tgt, V, flip=False, micro=0):
    """One step's loss (mean over the tokens not -100) and its backward, forward(ids) giving the
    logits: the batch's sequences in reverse with flip; with micro, that many sequences at a
    time, the gradients accumulated (each adds its tokens' sum over the batch's count), as an
    engine with micro-batches sums them. Returns the loss."""
    if flip:
        inp, tgt = inp.flip(0), tgt.flip(0)
    if not micro:
        loss = F.cross_entropy(forward(inp).reshape(-1, V), tgt.reshape(-1), ignore_index=-100)
        loss.backward()
        return float(loss)
    count, loss = int((tgt != -100).sum()), 0.0
    for r in range(0, inp.shape[0], micro):
        part = F.cross_entropy(forward(inp[r:r + micro]).reshape(-1, V),
                               tgt[r:r + micro].reshape(-1), ignore_index=-100,
                               reduction="sum") / count
        part.backward()
        loss += float(part)
    return loss


def fp32_spread(run, ref, worst):
    """The worst error against ref ({name: float64 tensor}) of run(flip, micro)'s adapters over
    THREADS x VARIANTS, folded into worst ({name: error so far})."""
    kept = torch.get_num_threads()
    for t in THREADS:
        torch.set_num_threads(t)
        for flip, micro in VARIANTS:
            for n, x in run(flip, micro).items():
                worst[n] = max(worst.get(n, 0.0), rel_err(x, ref[n]))
    torch.set_num_threads(kept)
    return worst
