#!/usr/bin/env python3
"""Done when 3 of issue 18 (tests/ref/lora_peft_check.sh prepares WORK): spillway's PEFT export
loads with peft.PeftModel.from_pretrained on the base model, and its logits equal those of
spillway's merged export (`export --merge`); the merged weights equal W + (alpha / r) B A computed
here from the adapter file. Without peft, the adapter is applied by hand in transformers."""
import json
import sys

import torch
import transformers
from safetensors.torch import load_file

w = sys.argv[1]
torch.manual_seed(0)
cfg = json.load(open(f"{w}/peft/adapter_config.json"))
scale = cfg["lora_alpha"] / cfg["r"]
base = transformers.AutoModelForCausalLM.from_pretrained(f"{w}/m", torch_dtype=torch.float32).eval()
merged = transformers.AutoModelForCausalLM.from_pretrained(f"{w}/merged", torch_dtype=torch.float32).eval()
ad = load_file(f"{w}/peft/adapter_model.safetensors")
ids = torch.randint(0, base.config.vocab_size, (2, 32))
with torch.no_grad():
    l_base = base(input_ids=ids).logits
    l_merged = merged(input_ids=ids).logits
    # merged weights against W + scale * B A, every targeted linear
    bsd, msd, worst = base.state_dict(), merged.state_dict(), 0.0
    for n, a in ad.items():
        if ".lora_A." not in n:
            continue
        b = ad[n.replace("lora_A", "lora_B")]
        key = n.replace("base_model.model.", "").replace(".lora_A", "")
        want = bsd[key] + (b @ a) * scale
        worst = max(worst, ((msd[key] - want).abs().max() / want.abs().max()).item())
    print(f"ok   merged weights == W + (alpha/r) B A for {len(ad) // 2} linears: worst rel {worst:.2e}")
    assert worst < 1e-6
    try:
        import peft
        pm = peft.PeftModel.from_pretrained(base, f"{w}/peft").eval()
        how = f"peft {peft.__version__} PeftModel.from_pretrained"
        l_ad = pm(input_ids=ids).logits
    except ImportError:
        how = "by hand (no peft)"
        for n, a in ad.items():
            if ".lora_A." in n:
                key = n.replace("base_model.model.", "").replace(".lora_A", "")
                base.state_dict()[key].add_((ad[n.replace("lora_A", "lora_B")] @ a) * scale)
        l_ad = base(input_ids=ids).logits
rel = ((l_ad - l_merged).abs().max() / l_merged.abs().max()).item()
moved = ((l_ad - l_base).abs().max() / l_base.abs().max()).item()
print(f"ok   adapter via {how}: logits vs spillway's merged export, max rel diff {rel:.2e} "
      f"(bf16 tolerance 7.8e-3); the adapter moves the base's logits by {moved:.2e}")
assert rel < 2 ** -7 and moved > 100 * rel
print(f"torch {torch.__version__}, transformers {transformers.__version__}")
