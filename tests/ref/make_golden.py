#!/usr/bin/env python3
"""Writes the PyTorch golden files the CPU/GPU backends are checked against.

For each config: a small model (HF transformers, fp32, eager attention) and torch.optim.AdamW
with global gradient-norm clipping run 3 optimizer steps on random tokens with some targets
masked (ignore_index=-100). The file holds the initial parameters, each step's inputs and
targets, step 1's logits, loss and every parameter gradient, each step's loss and gradient norm,
the RoPE inverse frequencies the model used, and the parameters after 3 steps.

Format (little-endian): b"SWGOLD\\0\\0", u32 version (1), u32 header length, header (JSON), then
the arrays; header["arrays"] lists {name, dtype: f32|i32, shape, offset} with offsets in bytes
from the start of the data (the byte after the header). header["config"] is a Hugging Face
config.json object; header["train"] the optimizer settings.

Usage: python3 tests/ref/make_golden.py OUTDIR   (needs torch and transformers; any device)
"""
import json
import math
import struct
import sys

import torch
import torch.nn.functional as F
import transformers

CONFIGS = {
    # GQA, loss mask
    "llama_gqa": dict(
        config=dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=64,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=128, vocab_size=96, max_position_embeddings=64,
                    rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                    attention_bias=False, torch_dtype="float32"),
        B=4, T=16, mask_frac=0.25),
    # qwen2: q/k/v biases, tied embeddings
    "qwen2_tied": dict(
        config=dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], hidden_size=64,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                    intermediate_size=96, vocab_size=80, max_position_embeddings=64,
                    rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                    use_sliding_window=False, torch_dtype="float32"),
        B=4, T=12, mask_frac=0.0),
    # Llama 3 rope scaling (all three frequency bands), sizes not powers of two
    "llama3_odd": dict(
        config=dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=72,
                    num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2,
                    intermediate_size=200, vocab_size=101, max_position_embeddings=256,
                    rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                    attention_bias=False, torch_dtype="float32",
                    rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                      high_freq_factor=4.0,
                                      original_max_position_embeddings=64)),
        B=2, T=13, mask_frac=0.1),
}

TRAIN = dict(lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=0.5, steps=3)


def llama3_inv_freq(c):
    """The Llama 3 frequency rule, written from Meta's reference (not from transformers)."""
    hd = c["hidden_size"] // c["num_attention_heads"]
    base = [1.0 / (c["rope_theta"] ** (i / hd)) for i in range(0, hd, 2)]
    rs = c.get("rope_scaling")
    if not rs:
        return base
    lo_wl = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
    hi_wl = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
    out = []
    for f in base:
        wl = 2 * math.pi / f
        if wl < hi_wl:
            out.append(f)
        elif wl > lo_wl:
            out.append(f / rs["factor"])
        else:
            s = (rs["original_max_position_embeddings"] / wl - rs["low_freq_factor"]) / (
                rs["high_freq_factor"] - rs["low_freq_factor"])
            out.append((1 - s) * f / rs["factor"] + s * f)
    return out


def build(name, spec):
    c = spec["config"]
    cfg = transformers.AutoConfig.for_model(
        c["model_type"], **{k: v for k, v in c.items() if k != "model_type"})
    cfg._attn_implementation = "eager"
    torch.manual_seed(1234)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    model = model.float().eval()  # eval: no dropout (there is none); train/eval same math
    inv = model.model.rotary_emb.inv_freq.detach().double().tolist()
    ref = llama3_inv_freq(c)
    assert max(abs(a - b) / b for a, b in zip(inv, ref)) < 1e-6, (name, inv, ref)
    assert getattr(model.model.rotary_emb, "attention_scaling", 1.0) == 1.0
    return model, inv


def main(outdir):
    torch.use_deterministic_algorithms(True)
    for name, spec in CONFIGS.items():
        arrays = train(name, spec, torch.float32)
        # The same 3 steps in float64: the exact-arithmetic reference. Adam divides each
        # gradient element by its own RMS, so elements with tiny gradients amplify any fp32
        # rounding; the C test compares its error against float64 with torch-fp32's own.
        ref64 = train(name, spec, torch.float64)
        arrays += [(n.replace("after3:", "after3_f64:"), t) for n, t in ref64
                   if n.startswith("after3:")]
        write(f"{outdir}/golden_{name}.bin", name, spec, arrays)


def train(name, spec, dtype):
    model, inv = build(name, spec)
    model = model.to(dtype)
    c, B, T = spec["config"], spec["B"], spec["T"]
    V = c["vocab_size"]
    params = list(model.named_parameters())
    arrays = []  # (name, tensor)
    for n, p in params:
        arrays.append(("param:" + n, p.detach().float().clone()))
    arrays.append(("inv_freq", torch.tensor(inv, dtype=torch.float32)))
    decay = [p for n, p in params if p.ndim == 2]
    nodecay = [p for n, p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": TRAIN["weight_decay"]},
         {"params": nodecay, "weight_decay": 0.0}],
        lr=TRAIN["lr"], betas=(TRAIN["beta1"], TRAIN["beta2"]), eps=TRAIN["eps"],
        foreach=False, fused=False)
    g = torch.Generator().manual_seed(99)
    losses, norms = [], []
    for step in range(1, TRAIN["steps"] + 1):
        inp = torch.randint(0, V, (B, T), generator=g, dtype=torch.int64)
        tgt = torch.randint(0, V, (B, T), generator=g, dtype=torch.int64)
        if spec["mask_frac"] > 0:
            m = torch.rand((B, T), generator=g) < spec["mask_frac"]
            tgt[m] = -100
        arrays.append((f"step{step}:inputs", inp.to(torch.int32)))
        arrays.append((f"step{step}:targets", tgt.to(torch.int32)))
        logits = model(input_ids=inp).logits
        loss = F.cross_entropy(logits.view(-1, V), tgt.view(-1), ignore_index=-100)
        loss.backward()
        if step == 1:
            arrays.append(("logits", logits.detach().float().clone()))
            for n, p in params:
                arrays.append(("grad:" + n, p.grad.detach().float().clone()))
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in params], TRAIN["clip"])
        losses.append(loss.item())
        norms.append(norm.item())
        opt.step()
        opt.zero_grad(set_to_none=True)
    arrays.append(("losses", torch.tensor(losses, dtype=torch.float32)))
    arrays.append(("grad_norms", torch.tensor(norms, dtype=torch.float32)))
    for n, p in params:
        arrays.append(("after3:" + n, p.detach().float().clone()))
    print(f"{name} {dtype}: losses {losses} grad norms {norms} (clip {TRAIN['clip']})")
    return arrays


def write(path, name, spec, arrays):
    meta, blobs, off = [], [], 0
    for n, t in arrays:
        t = t.contiguous()
        dt = {torch.float32: "f32", torch.int32: "i32"}[t.dtype]
        b = t.numpy().tobytes()
        meta.append(dict(name=n, dtype=dt, shape=list(t.shape), offset=off))
        blobs.append(b)
        off += len(b)
    header = dict(name=name, config=spec["config"], B=spec["B"], T=spec["T"], train=TRAIN,
                  torch=torch.__version__, transformers=transformers.__version__, arrays=meta)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(b"SWGOLD\0\0" + struct.pack("<II", 1, len(h)) + h)
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/ref")
