#!/usr/bin/env python3
"""The PyTorch reference for LoRA training (tests/test_offload_lora_golden.c).

Plain PyTorch + HF transformers, fp32 (and float64): the base model and the 3 steps' tokens of
a golden file of tests/ref/make_golden.py, every targeted nn.Linear of every decoder layer
wrapped as PEFT's LoraLayer computes it (dropout 0):
    y = base(x) + lora_B(lora_A(x)) * (alpha / r)
the base frozen (requires_grad False), the adapters starting from spillway's initial adapters
(tests/ref/lora_init_NAME.safetensors: PEFT's initialisation drawn by spillway's RNG from
--seed 0; PEFT itself would draw A from torch's RNG), torch.optim.AdamW over the adapters (all
of them decay) and torch.nn.utils.clip_grad_norm_, loss F.cross_entropy(ignore_index=-100).

Writes tests/ref/lora_golden_NAME.bin (the format of make_golden.py): losses, grad_norms, and
after3:<PEFT name> / after3_f64:<PEFT name> for every adapter tensor (fp32 and float64 runs),
and after3_fp32_spread:<PEFT name>: the largest relative error against the float64 run among
fp32 runs that differ only in the order of their sums: how many threads the CPU's GEMMs split
them over (1-4), the batch's sequences forward or reversed (small GEMMs may not split), and the
batch whole or 1 or 2 sequences at a time with the gradients accumulated, as micro-batches do.
(tests/ref/lora_spread.py measures the same spread without transformers, from a plain-PyTorch
model checked against this one, and keeps the larger of its and this file's.)
That is how far valid fp32 results fall from the exact one: where an element's AdamW update
hangs on a near-cancelling first moment, rounding alone moves it (one element of llama3_odd's
layer-1 down_proj lora_A: spillway's error there is 2.8e-5 with OpenBLAS's Haswell kernels and
4.3e-5 with its AVX-512 ones, this script's fp32 run's 1.4e-5, and fp32 runs summing one
sequence at a time reach 8.5e-5), and one fp32 run's error, alone, is a single draw of that
spread.

Usage: python3 tests/ref/lora_ref.py [OUTDIR]   (needs torch, transformers, safetensors)
"""
import json
import struct
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import load_file

from lora_common import CASES, MODULES, ORDER, backward, fp32_spread, peft_name, read_golden, rel_err

LTRAIN = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=0.05, steps=3)


class LoraLinear(torch.nn.Module):
    def __init__(self, base, A, B, scale):
        super().__init__()
        self.base = base
        self.lora_A = torch.nn.Parameter(A)
        self.lora_B = torch.nn.Parameter(B)
        self.scale = scale

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale


def train(name, hdr, g, init, dtype, flip=False, micro=0):
    c = hdr["config"]
    rank, alpha, targets = CASES[name]
    cfg = transformers.AutoConfig.for_model(
        c["model_type"], **{k: v for k, v in c.items() if k != "model_type"})
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    model = model.to(dtype).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(g["param:" + n].to(dtype))
            p.requires_grad_(False)
    params, names = [], []
    for l, layer in enumerate(model.model.layers):
        for t in ORDER:
            if t not in targets.split(","):
                continue
            parent_name, attr = MODULES[t].split(".")
            parent = getattr(layer, parent_name)
            A = init[peft_name(l, t, "A")].to(dtype).clone()
            B = init[peft_name(l, t, "B")].to(dtype).clone()
            w = LoraLinear(getattr(parent, attr), A, B, alpha / rank)
            setattr(parent, attr, w)
            params += [w.lora_A, w.lora_B]
            names += [peft_name(l, t, "A"), peft_name(l, t, "B")]
    opt = torch.optim.AdamW(params, lr=LTRAIN["lr"], betas=(LTRAIN["beta1"], LTRAIN["beta2"]),
                            eps=LTRAIN["eps"], weight_decay=LTRAIN["weight_decay"],
                            foreach=False, fused=False)
    V = c["vocab_size"]
    losses, norms = [], []
    for step in range(1, LTRAIN["steps"] + 1):
        losses.append(backward(lambda ids: model(input_ids=ids).logits,
                               g[f"step{step}:inputs"].long(), g[f"step{step}:targets"].long(),
                               V, flip, micro))
        norms.append(torch.nn.utils.clip_grad_norm_(params, LTRAIN["clip"]).item())
        opt.step()
        opt.zero_grad(set_to_none=True)
    print(f"{name} {dtype}: losses {losses} grad norms {norms} (clip {LTRAIN['clip']})")
    return losses, norms, {n: p.detach().float().clone() for n, p in zip(names, params)}


def write(path, name, hdr, arrays):
    meta, blobs, off = [], [], 0
    for n, t in arrays:
        b = t.contiguous().numpy().astype(np.float32).tobytes()
        meta.append(dict(name=n, dtype="f32", shape=list(t.shape), offset=off))
        blobs.append(b)
        off += len(b)
    rank, alpha, targets = CASES[name]
    header = dict(name=name, base=f"golden_{name}.bin", lora=dict(rank=rank, alpha=alpha,
                  targets=targets), train=LTRAIN, torch=torch.__version__,
                  transformers=transformers.__version__, arrays=meta)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(b"SWGOLD\0\0" + struct.pack("<II", 1, len(h)) + h)
        for b in blobs:
            f.write(b)


def main(refdir, outdir):
    torch.use_deterministic_algorithms(True)
    for name in CASES:
        _, hdr, g = read_golden(f"{refdir}/golden_{name}.bin")
        init = load_file(f"{refdir}/lora_init_{name}.safetensors")
        losses, norms, p32 = train(name, hdr, g, init, torch.float32)
        _, _, p64 = train(name, hdr, g, init, torch.float64)
        spread = fp32_spread(lambda flip, micro: train(name, hdr, g, init, torch.float32, flip,
                                                       micro)[2], p64, {})
        arrays = [("losses", torch.tensor(losses)), ("grad_norms", torch.tensor(norms))]
        arrays += [("after3:" + n, t) for n, t in p32.items()]
        arrays += [("after3_f64:" + n, t) for n, t in p64.items()]
        arrays += [("after3_fp32_spread:" + n, torch.tensor([max(w, rel_err(p32[n], p64[n]))]))
                   for n, w in spread.items()]
        write(f"{outdir}/lora_golden_{name}.bin", name, hdr, arrays)


if __name__ == "__main__":
    main("tests/ref", sys.argv[1] if len(sys.argv) > 1 else "tests/ref")
