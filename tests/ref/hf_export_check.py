#!/usr/bin/env python3
"""Second half of tests/ref/hf_export_check.sh (run there): in transformers,
(a) AutoTokenizer on the exported directory gives, line by line, the ids spillway wrote for
    WORK/ref.jsonl: apply_chat_template(messages, tokenize=True) for conversations,
    tokenizer(text) for text, tokenizer(prompt + completion) for prompt/completion, each + EOS;
(b) AutoModelForCausalLM loads the export with no missing or unexpected keys, and its mean loss
    over the training data's target tokens (rows of 64 as spillway trains) is close to spillway's
    final training loss and far below the initial model's (so the trained weights are the ones
    that loaded); the initial model (spillway init) loads too.
Prints one line per check; exit status 1 on any failure."""
import json
import re
import struct
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

w = sys.argv[1]
fails = 0


def check(ok, what):
    global fails
    print(("ok   " if ok else "FAIL ") + what)
    fails += not ok


def read_tok(path):
    b = open(path, "rb").read()
    magic, ver, tb, n, flags, vocab, nt, fp = struct.unpack_from("<8sIIQIIQQ", b, 0)
    ids = list(struct.unpack_from("<%d%s" % (n, "H" if tb == 2 else "I"), b, 64))
    m = b[64 + n * tb:]
    mask = [(m[i // 8] >> (i % 8)) & 1 for i in range(n)] if flags & 1 else [1] * n
    return ids, mask


def ids_of(x):
    if isinstance(x, dict) or hasattr(x, "keys"):
        x = x["input_ids"]
    if hasattr(x, "tolist"):
        x = x.tolist()
    if x and isinstance(x[0], list):
        x = x[0]
    return list(x)


tok = AutoTokenizer.from_pretrained(f"{w}/hf")
eos = tok.convert_tokens_to_ids(tok.eos_token)
want = []
for line in open(f"{w}/ref.jsonl", encoding="utf-8"):
    o = json.loads(line)
    if "messages" in o:
        want += ids_of(tok.apply_chat_template(o["messages"], tokenize=True))
    elif "prompt" in o:
        want += ids_of(tok(o["prompt"] + o["completion"]))
    else:
        want += ids_of(tok(o["text"]))
    want.append(eos)
got, _ = read_tok(f"{w}/ref.tok")
first = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), None)
check(got == want, f"AutoTokenizer ({type(tok).__name__}) ids == spillway's on {sum(1 for _ in open(f'{w}/ref.jsonl'))} "
      f"lines, {len(want)} tokens" + ("" if got == want else f"; first difference at {first}: "
                                      f"{want[max(0, (first or 0) - 3):(first or 0) + 3]} vs {got[max(0, (first or 0) - 3):(first or 0) + 3]}"))

ids, mask = read_tok(f"{w}/train.tok")
T = 64
rows = (len(ids) - 1) // T
x = torch.tensor([ids[r * T:r * T + T] for r in range(rows)])
y = torch.tensor([[ids[r * T + t + 1] if mask[r * T + t + 1] else -100 for t in range(T)] for r in range(rows)])


def mean_loss(path):
    model, info = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    check(not bad, f"{path}: loads as {type(model).__name__} with no missing/unexpected/mismatched keys {bad or ''}")
    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, rows, 16):
            logits = model(x[i:i + 16]).logits.float()
            l = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i:i + 16].reshape(-1),
                                                  ignore_index=-100, reduction="sum")
            tot += l.item()
            n += int((y[i:i + 16] != -100).sum())
    return tot / n


init = mean_loss(f"{w}/model")
trained = mean_loss(f"{w}/hf")
last = [float(re.search(r'"loss": ([^,]*)', l).group(1)) for l in open(f"{w}/run/metrics.jsonl")][-5:]
sw = sum(last) / len(last)
print(f"     transformers' mean loss on the training targets: initial model {init:.4f}, exported {trained:.4f}; "
      f"spillway's last 5 steps {sw:.4f}")
check(trained < init - 2, "the exported weights are the trained ones (loss far below the initial model's)")
check(abs(trained - sw) < 0.5, "transformers' loss of the export is within 0.5 of spillway's final training loss")
sys.exit(1 if fails else 0)
