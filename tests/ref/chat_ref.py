#!/usr/bin/env python3
"""Reference for spillway's chat rendering and loss mask (tests/test_core_chat_ref.sh).

render MODEL_DIR CONV.jsonl HEADER EOT TEXTS.json META.json
    Renders every {"messages": [...]} line with the model's own chat_template from
    MODEL_DIR/tokenizer_config.json, in a sandboxed Jinja environment set up as transformers'
    apply_chat_template does (trim_blocks, lstrip_blocks, loopcontrols, raise_exception, tojson,
    the special tokens of tokenizer_config.json, add_generation_prompt False).  The loss spans are
    defined here, independently of spillway: each assistant turn's body, from the end of each
    occurrence of HEADER (the assistant role header) through the first EOT (end-of-turn text)
    after it.  TEXTS.json gets, per conversation, the rendered text R and the prefixes R[:begin],
    R[:end] of every span, for the reference tokenizer.
compare META.json IDS.json X.tok EOS_ID
    IDS.json: the reference tokenizer's ids for TEXTS.json.  The expected stream is every
    conversation's ids followed by EOS_ID; a token is a target when it lies in
    [lcp(ids(R[:begin]), ids(R)), len(ids(R[:end]))) of one of its spans, i.e. it holds at least
    one byte of the span (ids(R[:end]) must be a prefix of ids(R): checked).  X.tok (spillway's token file, docs/formats.md) must hold
    exactly these ids and this mask.
"""
import json
import struct
import sys

from jinja2.ext import loopcontrols
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment


def special(cfg, key):
    v = cfg.get(key)
    return v.get("content") if isinstance(v, dict) else v


def render(model_dir, conv_path, header, eot, texts_path, meta_path):
    cfg = json.load(open(f"{model_dir}/tokenizer_config.json", encoding="utf-8"))

    def raise_exception(msg):
        raise TemplateError(msg)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    tmpl = env.from_string(cfg["chat_template"])
    toks = {k: special(cfg, k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    toks = {k: v for k, v in toks.items() if v is not None}
    texts, meta = [], []
    for line in open(conv_path, encoding="utf-8"):
        if not line.strip():
            continue
        msgs = json.loads(line)["messages"]
        r = tmpl.render(messages=msgs, add_generation_prompt=False,
                        additional_special_tokens=cfg.get("additional_special_tokens", []), **toks)
        spans, at = [], 0
        while True:
            h = r.find(header, at)
            if h < 0:
                break
            b = h + len(header)
            e = r.find(eot, b)
            if e < 0:          # a trailing generation header (no turn after it)
                break
            e += len(eot)
            spans.append((b, e))
            at = e
        n_assist = sum(m["role"] == "assistant" for m in msgs)
        if len(spans) != n_assist:
            sys.exit(f"chat_ref: {len(spans)} spans for {n_assist} assistant turns in {r!r}")
        meta.append({"first": len(texts), "nspans": len(spans), "text": r})
        texts.append(r)
        for b, e in spans:
            texts += [r[:b], r[:e]]
    json.dump(texts, open(texts_path, "w"))
    json.dump(meta, open(meta_path, "w"))


def read_tok(path):
    buf = open(path, "rb").read()
    magic, version, tb, count, flags, vocab, ntarg = struct.unpack_from("<8sIIQIIQ", buf, 0)
    assert magic == b"SWTOKENS" and tb in (2, 4), (magic, tb)
    ids = list(struct.unpack_from("<%d%s" % (count, "H" if tb == 2 else "I"), buf, 64))
    mask = [1] * count
    if flags & 1:
        mb = buf[64 + count * tb:]
        mask = [(mb[i // 8] >> (i % 8)) & 1 for i in range(count)]
    return ids, mask


def compare(meta_path, ids_path, tok_path, eos):
    meta = json.load(open(meta_path))
    ids = json.load(open(ids_path))
    want_ids, want_mask = [], []
    for c in meta:
        full = ids[c["first"]]
        mask = [0] * len(full)
        for s in range(c["nspans"]):
            pb, pe = ids[c["first"] + 1 + 2 * s], ids[c["first"] + 2 + 2 * s]
            if full[:len(pe)] != pe:
                sys.exit(f"chat_ref: the end-of-turn text does not end a token in {c['text']!r}")
            # the first token that is not entirely before the span: where ids(R[:begin]) and ids(R)
            # part (a token holding the last header byte and the first body byte is a target, as
            # with transformers' char_to_token masks)
            lcp = 0
            while lcp < len(pb) and full[lcp] == pb[lcp]:
                lcp += 1
            for i in range(lcp, len(pe)):
                mask[i] = 1
        want_ids += full + [eos]
        want_mask += mask + [0]
    got_ids, got_mask = read_tok(tok_path)
    if got_ids != want_ids or got_mask != want_mask:
        # locate the first conversation that differs
        at = 0
        for c in meta:
            n = len(ids[c["first"]]) + 1
            if got_ids[at:at + n] != want_ids[at:at + n] or got_mask[at:at + n] != want_mask[at:at + n]:
                print(f"MISMATCH in conversation rendered as {c['text']!r}")
                print(f"  reference ids  {want_ids[at:at + n]}")
                print(f"  spillway ids   {got_ids[at:at + n]}")
                print(f"  reference mask {''.join(map(str, want_mask[at:at + n]))}")
                print(f"  spillway mask  {''.join(map(str, got_mask[at:at + n]))}")
                break
            at += n
        else:
            print(f"MISMATCH: lengths {len(got_ids)} (spillway) vs {len(want_ids)} (reference)")
        sys.exit(1)
    print(f"ok: {len(meta)} conversations, {len(want_ids)} tokens, {sum(want_mask)} targets identical")


if __name__ == "__main__":
    if sys.argv[1] == "render":
        render(*sys.argv[2:8])
    else:
        compare(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
