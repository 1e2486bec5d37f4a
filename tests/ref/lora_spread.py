#!/usr/bin/env python3
"""The fp32 spread of the LoRA reference, from a second PyTorch implementation of the same model.

tests/ref/lora_ref.py writes tests/ref/lora_golden_NAME.bin with HF transformers; it needs
transformers, which only a machine with PyTorch from pip has. This script needs PyTorch alone
(Debian's python3-torch will do) and writes one thing into those files: the arrays
after3_fp32_spread:<PEFT name>, the largest relative error against the float64 reference among
valid fp32 runs of the same 3 LoRA steps. It leaves every other array as lora_ref.py wrote it.

The runs are a plain-PyTorch Llama/Qwen2 (below) as HF's eager code computes it, fp32 with the
CPU's GEMMs on 1-4 threads, the batch's sequences forward or reversed, and the batch whole or 1
or 2 sequences at a time with the gradients accumulated, so the same sums are added in other
orders; and lora_ref.py's own HF fp32 run (after3:<name>). First the model must give HF's fp32
logits, losses and gradient norms to within fp32 rounding: if it were not HF's model, the spread
it measured would mean nothing, so it refuses.
Where the file already has a spread (lora_ref.py's, over HF's fp32 runs), the larger is kept.

Why the test needs the spread: where an element's AdamW update hangs on a near-cancelling first
moment, rounding alone moves it by far more than fp32's epsilon, and one fp32 run's error is a
single draw of how far valid fp32 results fall from the exact one.

Usage: python3 tests/ref/lora_spread.py [DIR]   (DIR defaults to tests/ref)
"""
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

from lora_common import CASES, MODULES, ORDER, THREADS, backward, fp32_spread, read_golden, rel_err

# this file's model is HF's if it gives HF's fp32 numbers to within fp32 rounding (relative)
SAME_LOGITS, SAME_LOSS, SAME_NORM = 1e-6, 1e-6, 1e-5


def write(path, ver, hdr, arrays):
    meta, blobs, off = [], [], 0
    for n, t in arrays.items():
        dt = "i32" if t.dtype == torch.int32 else "f32"
        b = t.contiguous().numpy().astype(np.int32 if dt == "i32" else np.float32).tobytes()
        meta.append(dict(name=n, dtype=dt, shape=list(t.shape), offset=off))
        blobs.append(b)
        off += len(b)
    hdr = dict(hdr, arrays=meta)
    h = json.dumps(hdr).encode()
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"SWGOLD\0\0" + struct.pack("<II", ver, len(h)) + h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (hlen,) = struct.unpack("<Q", data[:8])
    hdr = json.loads(data[8:8 + hlen])
    out = {}
    for n, t in hdr.items():
        if n == "__metadata__":
            continue
        if t["dtype"] != "F32":
            sys.exit(f"{path}: {n} is {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        arr = np.frombuffer(data, dtype=np.float32, count=(b - a) // 4, offset=8 + hlen + a)
        out[n] = torch.from_numpy(arr.copy().reshape(t["shape"]))
    return out


def rms_norm(x, w, eps):
    # HF's LlamaRMSNorm / Qwen2RMSNorm: in fp32 whatever the model's dtype, then the weight
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Model:
    """A decoder-only Llama/Qwen2 as HF's eager code computes it: RMSNorm, RoPE's cos/sin and
    softmax in fp32 whatever the model's dtype, as HF does."""

    def __init__(self, hdr, g, init, dtype):
        c = hdr["config"]
        self.c, self.dtype = c, dtype
        self.p = {n[6:]: t.to(dtype) for n, t in g.items() if n.startswith("param:")}
        if c.get("tie_word_embeddings"):
            self.p["lm_head.weight"] = self.p["model.embed_tokens.weight"]
        self.inv_freq = g["inv_freq"].float()  # HF's own (rope scaling applied), fp32
        rank, alpha, targets = CASES[hdr["name"]]
        self.scale = alpha / rank
        self.targets = targets.split(",")
        self.lora, self.names = {}, []
        for l in range(c["num_hidden_layers"]):
            for t in ORDER:
                if t not in self.targets:
                    continue
                for ab in "AB":
                    n = f"base_model.model.model.layers.{l}.{MODULES[t]}.lora_{ab}.weight"
                    self.lora[n] = init[n].to(dtype).clone().requires_grad_(True)
                    self.names.append(n)

    def linear(self, x, l, t):
        pre = f"model.layers.{l}.{MODULES[t]}"
        y = x @ self.p[pre + ".weight"].t()
        if pre + ".bias" in self.p:
            y = y + self.p[pre + ".bias"]
        if t in self.targets:
            A = self.lora[f"base_model.model.{pre}.lora_A.weight"]
            B = self.lora[f"base_model.model.{pre}.lora_B.weight"]
            y = y + (x @ A.t() @ B.t()) * self.scale
        return y

    def forward(self, ids):
        c, p = self.c, self.p
        Bn, T = ids.shape
        H, KV = c["num_attention_heads"], c["num_key_value_heads"]
        hd = c["hidden_size"] // H
        eps = c["rms_norm_eps"]
        pos = torch.arange(T, dtype=torch.float32)
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(self.dtype), emb.sin().to(self.dtype)
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = p["model.embed_tokens.weight"][ids]
        for l in range(c["num_hidden_layers"]):
            pre = f"model.layers.{l}."
            h = rms_norm(x, p[pre + "input_layernorm.weight"], eps)
            q = self.linear(h, l, "q").view(Bn, T, H, hd).transpose(1, 2)
            k = self.linear(h, l, "k").view(Bn, T, KV, hd).transpose(1, 2)
            v = self.linear(h, l, "v").view(Bn, T, KV, hd).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = k.repeat_interleave(H // KV, dim=1)
            v = v.repeat_interleave(H // KV, dim=1)
            s = (q @ k.transpose(2, 3)) * hd ** -0.5 + mask.to(self.dtype)
            a = F.softmax(s, dim=-1, dtype=torch.float32).to(self.dtype)
            o = (a @ v).transpose(1, 2).reshape(Bn, T, H * hd)
            x = x + self.linear(o, l, "o")
            h = rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps)
            x = x + self.linear(F.silu(self.linear(h, l, "gate")) * self.linear(h, l, "up"), l,
                                "down")
        x = rms_norm(x, p["model.norm.weight"], eps)
        return x @ p["lm_head.weight"].t()


def train(hdr, g, init, lt, dtype, flip=False, micro=0):
    """3 LoRA steps, each step's sums in the order flip and micro give (lora_common.backward)."""
    m = Model(hdr, g, init, dtype)
    params = [m.lora[n] for n in m.names]
    opt = torch.optim.AdamW(params, lr=lt["lr"], betas=(lt["beta1"], lt["beta2"]), eps=lt["eps"],
                            weight_decay=lt["weight_decay"], foreach=False)
    V = hdr["config"]["vocab_size"]
    losses, norms = [], []
    for step in range(1, lt["steps"] + 1):
        losses.append(backward(m.forward, g[f"step{step}:inputs"].long(),
                               g[f"step{step}:targets"].long(), V, flip, micro))
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, lt["clip"])))
        opt.step()
        opt.zero_grad(set_to_none=True)
    return losses, norms, {n: m.lora[n].detach().double() for n in m.names}


def same_model(name, hdr, g, init, lg, lt):
    """Refuses unless this file's model is HF's: its fp32 logits (the adapters start at B = 0,
    so they add nothing) against make_golden.py's, and its 3 LoRA steps' losses and gradient
    norms against lora_ref.py's, to within fp32 rounding; a wrong model misses by far more."""
    m = Model(hdr, g, init, torch.float32)
    with torch.no_grad():
        e = rel_err(m.forward(g["step1:inputs"].long()), g["logits"])
    losses, norms, _ = train(hdr, g, init, lt, torch.float32)
    el = max(abs(a - b) / abs(b) for a, b in zip(losses, lg["losses"].tolist()))
    en = max(abs(a - b) / abs(b) for a, b in zip(norms, lg["grad_norms"].tolist()))
    print(f"{name}: this model against HF's (fp32): logits {e:.1e}, losses {el:.1e}, "
          f"gradient norms {en:.1e}")
    if not (e < SAME_LOGITS and el < SAME_LOSS and en < SAME_NORM):
        sys.exit(f"{name}: this file's model is not HF's (bars: logits {SAME_LOGITS:g}, losses "
                 f"{SAME_LOSS:g}, norms {SAME_NORM:g}); nothing written")


def main(d):
    torch.use_deterministic_algorithms(True)
    for name in CASES:
        _, hdr, g = read_golden(f"{d}/golden_{name}.bin")
        path = f"{d}/lora_golden_{name}.bin"
        ver, lhdr, lg = read_golden(path)
        init = read_safetensors(f"{d}/lora_init_{name}.safetensors")
        lt = lhdr["train"]
        same_model(name, hdr, g, init, lg, lt)
        ref = {n[len("after3_f64:"):]: t for n, t in lg.items() if n.startswith("after3_f64:")}
        worst = {n: max(rel_err(lg["after3:" + n], ref[n]),
                        float(lg.get("after3_fp32_spread:" + n, torch.zeros(1))[0])) for n in ref}
        fp32_spread(lambda flip, micro: train(hdr, g, init, lt, torch.float32, flip, micro)[2],
                    ref, worst)
        out = {k: v for k, v in lg.items() if not k.startswith("after3_fp32_spread:")}
        for n in ref:
            out["after3_fp32_spread:" + n] = torch.tensor([worst[n]], dtype=torch.float32)
        lhdr = dict(lhdr, fp32_spread=dict(script="tests/ref/lora_spread.py",
                                           torch=torch.__version__, threads=list(THREADS)))
        write(path, ver, lhdr, out)
        top = max(worst, key=worst.get)
        print(f"{name}: fp32 spread written for {len(worst)} tensors; widest {worst[top]:.2e} "
              f"({top})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/ref")
