#!/usr/bin/env python3
"""Writes a small hand-made Hugging Face tokenizer for tests: DIR/tokenizer.json and
DIR/tokenizer_config.json.  usage: byte_tokenizer.py DIR CHAT_TEMPLATE|"" [BIG_ID]

Byte-level BPE without merges, so every byte is one token and the ids of a text follow from its
bytes: ids 0..255 are the bytes (GPT-2's byte-to-unicode vocabulary), then the special tokens
<|im_start|> 256, <|im_end|> 257 (eos_token), <|endoftext|> 258, and <|big|> BIG_ID if given."""
import json
import sys

d, tmpl = sys.argv[1], sys.argv[2]
big = sys.argv[3] if len(sys.argv) > 3 else ""
bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b)
        cs.append(256 + n)
        n += 1
vocab = {chr(c): b for b, c in zip(bs, cs)}
added = [{"id": 256 + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
          "normalized": False, "special": True}
         for i, s in enumerate(["<|im_start|>", "<|im_end|>", "<|endoftext|>"])]
if big:
    added.append(dict(added[0], id=int(big), content="<|big|>"))
bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True}
tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
       "pre_tokenizer": bl, "post_processor": None, "decoder": bl,
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                 "vocab": vocab, "merges": []}}
json.dump(tok, open(d + "/tokenizer.json", "w"))
cfg = {"eos_token": "<|im_end|>", "bos_token": None, "pad_token": "<|endoftext|>"}
if tmpl:
    cfg["chat_template"] = tmpl
json.dump(cfg, open(d + "/tokenizer_config.json", "w"))
