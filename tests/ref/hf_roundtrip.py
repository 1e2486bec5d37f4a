#!/usr/bin/env python3
"""Hugging Face compatibility of spillway's model I/O (issue 2, "Done when" 2).

Run from the repository root on a machine with torch and transformers:
    python3 tests/ref/hf_roundtrip.py [--keep DIR]

(a) Models made by `spillway init` (llama f32 and bf16, mistral, qwen2 with --tie) load with
    AutoModelForCausalLM.from_pretrained with no missing, unexpected or mismatched keys, as the
    expected class, and every tensor of the model equals the file's, byte for byte.
(b) Checkpoints written by transformers' save_pretrained (llama, mistral, qwen2; bf16, f32, f16;
    single file and sharded with a small max_shard_size) are read by spillway's reader
    (sw_hf_open) and written back by its writer (tests/ref/st_copy.c, single and sharded); every
    tensor of the copy is byte-identical to the model's, the fp32 group reads equal
    tensor.float(), and the copy loads in transformers again.
(c) RoPE inverse frequencies from sw_config_rope_inv_freq equal HF's rotary_emb.inv_freq bit for
    bit (default, linear, llama3 scaling).
Exit status 1 on any mismatch."""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from safetensors.torch import load_file
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "build", "spillway")
TOOL = os.path.join(ROOT, "build", "st_copy")
failures = []


def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)
    return ok


def run(*args):
    r = subprocess.run(list(args), capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout + r.stderr)
    return r


def build():
    r = subprocess.run(["make", "-C", ROOT, "-j8", "CUDA=0", "build/spillway", "build/libspillway.a"],
                       capture_output=True, text=True)
    if r.returncode:
        print(r.stdout[-3000:] + r.stderr[-3000:])
        sys.exit(1)
    r = subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-I", ROOT,
                        os.path.join(ROOT, "tests/ref/st_copy.c"),
                        os.path.join(ROOT, "build/libspillway.a"), "-ljansson", "-lm", "-lpthread",
                        "-o", TOOL], capture_output=True, text=True)
    if r.returncode:
        print(r.stderr)
        sys.exit(1)


def load_dir(d):
    out = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        for k, v in load_file(f).items():
            assert k not in out, k
            out[k] = v
    return out


def same_bytes(a, b):
    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
        return False
    a = a.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    b = b.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
    return torch.equal(a, b)


def model_tensors(model):
    """state_dict without the tied lm_head (HF does not save it either)."""
    sd = dict(model.state_dict())
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return sd


def compare(sd, files, what):
    names_ok = set(sd) == set(files)
    if not names_ok:
        print("  only in model:", sorted(set(sd) - set(files))[:5],
              " only in files:", sorted(set(files) - set(sd))[:5])
    bad = [k for k in sd if k in files and not same_bytes(sd[k], files[k])]
    if bad:
        print("  differing:", bad[:5])
    return check(names_ok and not bad, f"{what}: {len(sd)} tensors byte-identical")


def load_hf(d, dtype, cls_name, what):
    model, info = AutoModelForCausalLM.from_pretrained(d, dtype=dtype, output_loading_info=True)
    clean = all(not info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    if not clean:
        print("  loading info:", {k: v for k, v in info.items() if v})
    check(type(model).__name__ == cls_name and clean,
          f"{what}: from_pretrained gives {type(model).__name__}, no missing/unexpected keys")
    return model


# ---------------------------------------------------------------- (a) spillway init -> HF
def part_a(tmp):
    cases = [
        ("llama", ["--dim", "64", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--ffn", "96",
                   "--vocab", "258"], "f32", torch.float32, "LlamaForCausalLM"),
        ("llama", ["--dim", "64", "--layers", "2", "--heads", "4", "--kv-heads", "4", "--ffn", "96",
                   "--vocab", "300", "--max-shard", "30KB"], "bf16", torch.bfloat16, "LlamaForCausalLM"),
        ("mistral", ["--dim", "64", "--layers", "2", "--heads", "8", "--kv-heads", "2", "--ffn", "128",
                     "--vocab", "258"], "f32", torch.float32, "MistralForCausalLM"),
        ("qwen2", ["--dim", "64", "--layers", "3", "--heads", "4", "--kv-heads", "2", "--ffn", "128",
                   "--vocab", "258", "--tie"], "f32", torch.float32, "Qwen2ForCausalLM"),
        ("qwen2", ["--dim", "64", "--layers", "2", "--heads", "4", "--kv-heads", "1", "--ffn", "128",
                   "--vocab", "320", "--tie"], "bf16", torch.bfloat16, "Qwen2ForCausalLM"),
    ]
    for i, (arch, opts, dt, tdt, cls) in enumerate(cases):
        d = os.path.join(tmp, f"init_{arch}_{dt}_{i}")
        what = f"(a) spillway init --arch {arch} --dtype {dt}" + (" --tie" if "--tie" in opts else "")
        r = run(BIN, "init", "--arch", arch, *opts, "--dtype", dt, "--seed", str(i), "--out", d)
        if not check(r.returncode == 0, what + ": init ran"):
            continue
        model = load_hf(d, tdt, cls, what)
        files = load_dir(d)
        compare(model_tensors(model), files, what)
        if model.config.tie_word_embeddings:
            check(model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(),
                  what + ": lm_head tied to embed_tokens")
        # HF init rule: matrices normal(0, 0.02), norms 1, biases 0
        mats = torch.cat([v.float().reshape(-1) for k, v in files.items() if v.dim() == 2])
        norms = [v for k, v in files.items() if k.endswith("norm.weight")]
        biases = [v for k, v in files.items() if k.endswith(".bias")]
        check(abs(mats.std().item() - 0.02) < 0.0005 and abs(mats.mean().item()) < 0.0005
              and all(bool((v == 1).all()) for v in norms) and all(bool((v == 0).all()) for v in biases),
              f"{what}: std {mats.std().item():.5f}, norms 1, biases 0")
        with torch.no_grad():
            logits = model(torch.randint(0, model.config.vocab_size, (2, 16))).logits
        check(bool(torch.isfinite(logits).all()), what + ": forward pass finite")


# ---------------------------------------------------------------- (b) HF save_pretrained -> spillway
def hf_model(arch, dtype, tie):
    common = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=384, max_position_embeddings=256,
                  tie_word_embeddings=tie, rms_norm_eps=1e-6)
    cfg, cls = {"llama": (LlamaConfig, LlamaForCausalLM), "mistral": (MistralConfig, MistralForCausalLM),
                "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[arch]
    torch.manual_seed(0)
    model = cls(cfg(**common)).to(dtype)
    with torch.no_grad():   # every parameter random, norms and biases included
        for p in model.parameters():
            p.normal_(0, 1)
    return model


def part_b(tmp):
    cases = [("llama", torch.bfloat16, False), ("llama", torch.float32, False),
             ("mistral", torch.bfloat16, False), ("mistral", torch.float16, False),
             ("qwen2", torch.bfloat16, True), ("qwen2", torch.float32, False)]
    for arch, dtype, tie in cases:
        name = f"{arch}_{str(dtype).split('.')[-1]}{'_tied' if tie else ''}"
        model = hf_model(arch, dtype, tie)
        sd = model_tensors(model)
        for sharded in (False, True):
            what = f"(b) {name} save_pretrained{' max_shard_size=20KB' if sharded else ''}"
            src = os.path.join(tmp, f"hf_{name}_{int(sharded)}")
            if sharded:
                model.save_pretrained(src, max_shard_size="20KB")
                check(os.path.exists(os.path.join(src, "model.safetensors.index.json")),
                      what + ": transformers wrote shards")
            else:
                model.save_pretrained(src)
            r = run(BIN, "info", "--model", src)
            check(r.returncode == 0, what + ": spillway info --model validates it")
            for our_shard in (0, 25000):
                dst = os.path.join(tmp, f"copy_{name}_{int(sharded)}_{our_shard}")
                r = run(TOOL, "copy", src, dst, str(our_shard))
                if not check(r.returncode == 0, f"{what} -> st_copy (max shard {our_shard})"):
                    continue
                compare(sd, load_dir(dst), f"{what} -> spillway reader+writer (max shard {our_shard})")
                if our_shard:
                    back = load_hf(dst, dtype, type(model).__name__, f"{what} -> spillway copy")
                    compare(sd, model_tensors(back), f"{what} -> spillway copy -> from_pretrained")
            # fp32 group reads: table order is layer-major, like st_copy's declarations
            binf = os.path.join(tmp, f"f32_{name}_{int(sharded)}.bin")
            r = run(TOOL, "f32", src, binf)
            if check(r.returncode == 0, what + ": sw_hf_read_group fp32 ran"):
                ref = torch.cat([sd[k].float().reshape(-1) for k in table_order(dst_dir(tmp, name, sharded))])
                got = torch.from_numpy(np.fromfile(binf, dtype=np.float32))
                check(same_bytes(got, ref), what + ": fp32 group reads equal tensor.float()")


def dst_dir(tmp, name, sharded):
    return os.path.join(tmp, f"copy_{name}_{int(sharded)}_0")


def table_order(d):
    """Tensor names in data order of spillway's single-file copy (= table order)."""
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return sorted(h, key=lambda k: h[k]["data_offsets"][0])


# ---------------------------------------------------------------- (c) RoPE inverse frequencies
def part_c(tmp):
    cases = [("default theta 1e4 hd 16", dict(hidden_size=64, num_attention_heads=4), None),
             ("default theta 5e5 hd 128", dict(hidden_size=256, num_attention_heads=2, rope_theta=500000.0), None),
             ("linear x4 hd 64", dict(hidden_size=128, num_attention_heads=2),
              {"rope_type": "linear", "factor": 4.0}),
             ("llama3 8/1/4/8192 theta 5e5 hd 128", dict(hidden_size=256, num_attention_heads=2, rope_theta=500000.0),
              {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}),
             ("llama3 32/1/4/8192 hd 64", dict(hidden_size=128, num_attention_heads=2, rope_theta=500000.0),
              {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192})]
    for what, kw, scaling in cases:
        kw = dict(kw, intermediate_size=64, num_hidden_layers=1, vocab_size=32, max_position_embeddings=131072)
        if "rope_theta" not in kw:
            kw["rope_theta"] = 10000.0
        if scaling:
            kw["rope_scaling"] = dict(scaling)
        model = LlamaForCausalLM(LlamaConfig(**kw))
        d = os.path.join(tmp, "rope_" + what.replace(" ", "_").replace("/", "-"))
        model.save_pretrained(d)
        hf = model.model.rotary_emb.inv_freq.float().cpu()
        r = run(TOOL, "inv-freq", d)
        if not check(r.returncode == 0, f"(c) rope {what}: inv-freq ran"):
            continue
        ours = torch.tensor([int(x, 16) for x in r.stdout.split()], dtype=torch.int64).to(torch.int32).view(torch.float32)
        diff = (ours.view(torch.int32).long() - hf.view(torch.int32).long()).abs()
        check(ours.shape == hf.shape and int(diff.max()) == 0,
              f"(c) rope {what}: {hf.numel()} inv_freq values, max difference {int(diff.max()) if ours.shape == hf.shape else '?'} ulp")


def main():
    keep = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--keep" else None
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    build()
    tmp = keep or tempfile.mkdtemp(prefix="sw-hf-")
    os.makedirs(tmp, exist_ok=True)
    try:
        part_a(tmp)
        part_b(tmp)
        part_c(tmp)
        sample = os.path.join(tmp, "hf_llama_bfloat16_0", "config.json")
        if os.path.exists(sample):
            print("config.json written by transformers", transformers.__version__, ":")
            print(open(sample).read())
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'FAILED: ' + str(len(failures)) + ' checks' if failures else 'all checks passed'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
