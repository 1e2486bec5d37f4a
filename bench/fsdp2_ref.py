#!/usr/bin/env python3
"""PyTorch FSDP2 CPU-offload reference for bench/anchor.sh (issue 17): the system a user would run
instead of spillway for a model whose training state does not fit the GPU, written from
PyTorch's public API alone.

HF LlamaForCausalLM (random init from a LlamaConfig of the shape given), SDPA attention, HF
gradient checkpointing (non-reentrant), torch.distributed.fsdp.fully_shard on every decoder layer
and on the root with MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32) and
CPUOffloadPolicy(pin_memory=True), one process (world size 1), torch.optim.AdamW on the CPU
(weight decay 0.01), no gradient clipping. A step is --rows rows of --seq-len random tokens,
--micro-rows rows per forward (gradient accumulation when fewer than --rows).

Prints progress on stderr and one JSON line on stdout: s/step (median of the timed steps, and
each step), tokens/s, the forward+backward and optimizer parts of the step, host peak RSS
(ru_maxrss and VmHWM), GPU peaks (torch.cuda.max_memory_allocated / reserved, and the device's
used memory from cudaMemGetInfo sampled after every part of every step, CUDA context included).

  python3 bench/fsdp2_ref.py --dim 3072 --layers 26 --heads 24 --kv-heads 8 --ffn 8192 \\
      --vocab 32000 --seq-len 2048 --rows 8 --warmup 2 --steps 3
"""
import argparse
import json
import os
import resource
import sys
import time


def log(*a):
    print("fsdp2_ref:", *a, file=sys.stderr, flush=True)


def vm_hwm_bytes():
    """Peak resident set as the kernel counts it (VmHWM), 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=3072)
    p.add_argument("--layers", type=int, default=26)
    p.add_argument("--heads", type=int, default=24)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--ffn", type=int, default=8192)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--tie", action="store_true", help="tie lm_head to the embedding (default untied)")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--rows", type=int, default=8, help="rows of --seq-len tokens per optimizer step")
    p.add_argument("--micro-rows", type=int, default=0,
                   help="rows per forward (default: all --rows in one forward)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed steps")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--adam", default="default", choices=["default", "foreach", "fused"],
                   help="torch.optim.AdamW implementation (default: torch's choice for CPU tensors)")
    p.add_argument("--backend", default="auto", choices=["auto", "nccl", "gloo"],
                   help="process-group backend (auto: nccl, gloo if nccl fails)")
    p.add_argument("--init-device", default="cuda", choices=["cuda", "cpu"],
                   help="where the random init runs before fully_shard moves the shards to "
                        "pinned host memory (cuda: fast; the model's fp32 size must fit the GPU)")
    p.add_argument("--port", type=int, default=29517)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.micro_rows <= 0:
        a.micro_rows = a.rows
    if a.rows % a.micro_rows:
        p.error("--rows %d is not a multiple of --micro-rows %d" % (a.rows, a.micro_rows))
    if a.steps < 1 or a.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return a


def init_dist(a, torch, dist):
    """One process, world size 1: nccl as the user's multi-GPU script would, gloo if nccl fails."""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(a.port))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    tried = ["nccl", "gloo"] if a.backend == "auto" else [a.backend]
    err = None
    for b in tried:
        try:
            if b == "nccl":
                dist.init_process_group(backend="nccl", rank=0, world_size=1,
                                        device_id=torch.device("cuda", 0))
            else:
                dist.init_process_group(backend="gloo", rank=0, world_size=1)
            return b
        except Exception as e:  # noqa: BLE001 - report and fall back
            err = e
            log("backend %s failed: %s" % (b, e))
            if dist.is_initialized():
                dist.destroy_process_group()
    raise SystemExit("fsdp2_ref: no process group could be created (%s)" % err)


def main():
    a = parse_args()
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    if not torch.cuda.is_available():
        raise SystemExit("fsdp2_ref: no CUDA device: this reference needs one GPU")
    torch.cuda.set_device(0)
    free0, total = torch.cuda.mem_get_info()   # creates the context; the baseline
    backend = init_dist(a, torch, dist)
    log("torch %s, transformers %s, backend %s, %d CPU threads, GPU %s" % (
        torch.__version__, transformers.__version__, backend, torch.get_num_threads(),
        torch.cuda.get_device_name(0)))

    cfg = LlamaConfig(hidden_size=a.dim, intermediate_size=a.ffn, num_hidden_layers=a.layers,
                      num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                      vocab_size=a.vocab, max_position_embeddings=max(2048, a.seq_len),
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=a.tie,
                      use_cache=False, attn_implementation="sdpa")
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    with torch.device(a.init_device):
        model = LlamaForCausalLM(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    off = CPUOffloadPolicy(pin_memory=True)
    for layer in model.model.layers:
        fully_shard(layer, mp_policy=mp, offload_policy=off)
    fully_shard(model, mp_policy=mp, offload_policy=off)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()   # the init's fp32 copy on the GPU is gone: start from what FSDP holds
    torch.cuda.reset_peak_memory_stats()
    kw = {"lr": a.lr, "weight_decay": a.weight_decay}
    if a.adam == "foreach":
        kw["foreach"] = True
    elif a.adam == "fused":
        kw["fused"] = True
    opt = torch.optim.AdamW(model.parameters(), **kw)
    dev = next(model.parameters()).device
    log("%d parameters (%.3f B), sharded params on %s, set up in %.1f s" % (
        n_params, n_params / 1e9, dev, time.perf_counter() - t0))

    g = torch.Generator(device="cpu").manual_seed(a.seed + 1)
    n_micro = a.rows // a.micro_rows
    ids = torch.randint(0, a.vocab, (n_micro, a.micro_rows, a.seq_len), generator=g).cuda()
    tokens = a.rows * a.seq_len
    dev_used_peak = [total - free0]

    def sample_gpu():
        free, _ = torch.cuda.mem_get_info()
        dev_used_peak[0] = max(dev_used_peak[0], total - free)

    rows = []
    for s in range(a.warmup + a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss_sum = 0.0
        for m in range(n_micro):
            out = model(input_ids=ids[m], labels=ids[m], use_cache=False)
            (out.loss / n_micro).backward()
            loss_sum += float(out.loss.detach()) / n_micro
        torch.cuda.synchronize()   # FSDP2 waits for the gradients' D2H copies at the end of backward
        t1 = time.perf_counter()
        sample_gpu()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        sample_gpu()
        timed = s >= a.warmup
        log("step %d%s: %.3f s (forward+backward %.3f s, optimizer %.3f s), loss %.4f" % (
            s + 1, "" if timed else " (warm-up)", t2 - t0, t1 - t0, t2 - t1, loss_sum))
        if timed:
            rows.append((t2 - t0, t1 - t0, t2 - t1))

    def median(v):
        v = sorted(v)
        n = len(v)
        return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])

    step_s = median([r[0] for r in rows])
    mib = 1048576.0
    res = {
        "what": "fsdp2_cpu_offload", "params": n_params, "tokens_per_step": tokens,
        "rows": a.rows, "micro_rows": a.micro_rows, "seq_len": a.seq_len,
        "step_s": round(step_s, 4), "steps_s": [round(r[0], 4) for r in rows],
        "tokens_per_s": round(tokens / step_s, 1),
        "fwd_bwd_s": round(median([r[1] for r in rows]), 4),
        "optimizer_s": round(median([r[2] for r in rows]), 4),
        "host_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / mib, 1),
        "host_vmhwm_mib": round(vm_hwm_bytes() / mib, 1),
        "gpu_max_allocated_mib": round(torch.cuda.max_memory_allocated() / mib, 1),
        "gpu_max_reserved_mib": round(torch.cuda.max_memory_reserved() / mib, 1),
        "gpu_used_peak_mib": round(dev_used_peak[0] / mib, 1),
        "gpu_used_before_mib": round((total - free0) / mib, 1),
        "loss": round(loss_sum, 4), "backend": backend, "torch": torch.__version__,
        "transformers": transformers.__version__, "cpu_threads": torch.get_num_threads(),
        "adam": a.adam, "gpu": torch.cuda.get_device_name(0),
    }
    print(json.dumps(res), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
