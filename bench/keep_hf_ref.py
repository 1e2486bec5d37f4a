#!/usr/bin/env python3
"""PyTorch reference for bench/keep_step.sh (issue 16, Done when 2): HF LlamaForCausalLM with the
1.1B shape (hidden 2048, 22 layers, 32/4 heads, ffn 5632, vocab 32000; random init), bf16
autocast over fp32 parameters, SDPA attention, fused AdamW, no gradient checkpointing, no
clipping (spillway's --clip 0), 8 rows of 2048 tokens a step (spillway's --batch-tokens 16384
--seq-len 2048) in micro-batches of ROWS rows (default 8: the whole batch in one forward and one
backward, as the issue's reference; 1: eight passes of one row, spillway's default micro-batch).
The median step after two warm-up steps; one JSON line.
Usage: python3 bench/keep_hf_ref.py [steps] [rows]"""
import json
import sys

from transformers import LlamaConfig

from torch_step import median_step   # bench/torch_step.py: the same timed step


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    if rows not in (1, 2, 4, 8):
        sys.exit("keep_hf_ref.py: rows per micro-batch must be 1, 2, 4 or 8 (8 rows a step)")
    M, T = 8 // rows, 2048
    cfg = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                      num_attention_heads=32, num_key_value_heads=4, head_dim=64, vocab_size=32000,
                      max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=False,
                      attn_implementation="sdpa")
    sec, loss, peak = median_step(cfg, M, rows, T, steps, clip=0, betas=(0.9, 0.999),
                                  weight_decay=0.0)
    ntok = M * rows * T
    print(json.dumps({"what": "step", "impl": "hf", "rows_per_pass": rows, "tokens": ntok, "ms": round(sec * 1e3, 1),
                      "tokens_per_s": round(ntok / sec), "steps": steps,
                      "peak_gib": round(peak, 2),
                      "loss": round(loss, 4)}), flush=True)


if __name__ == "__main__":
    main()
