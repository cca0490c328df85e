"""check_logits.py — the C engine computes what PyTorch trained.

    /usr/bin/python3 data/wim-tiny/check_logits.py MODEL.gguf [--wim build/wim] [--n 4]
        [--tol 1e-3] [--vocab data/wim-tiny/vocab.json]

Loads the GGUF's own (dequantized) weights into the PyTorch model, so the comparison
isolates the engine's arithmetic from export rounding, and runs held-out examples
("check-" seeds) both ways: a short one in a plain cache, and a long one (over 700
tokens) streaming through the 512-cell window with the system prompt pinned, which
checks the training mask and positions against the engine's ring buffer, token by token
(--chunk 1) and in the default chunks (streaming prefill is chunk-invariant: every query
sees exactly its window). Reports the largest top-16 logit difference relative to the
position's largest |logit|, and the share of positions whose argmax agrees; exits 1
above --tol.
"""
import argparse
import json
import os
import random
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import model as M  # noqa: E402
import samples as S  # noqa: E402
import world as W  # noqa: E402
from reference_forward import load_gguf  # noqa: E402
from tokenizer import BOS, Tokenizer  # noqa: E402


def torch_model(path, n_vocab):
    meta, t = load_gguf(path)
    m = M.Model(n_vocab, M.config_from_gguf(meta))
    sd = {k: t[g][0] for k, g in M.gguf_names(m.c["n_layers"]).items()}
    m.load_state_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in sd.items()})
    return m.eval()


def long_sequence(tok, rng):
    """BOS + system prompt + ~700 document tokens + an extraction prompt."""
    e = S.prefix(tok)
    world, q = S.draw_question(rng)
    lines = []
    while sum(len(tok.encode(l + "\n")) for l in lines) < 700:
        lines += S.filler(world, q, rng)
    ids = e.ids + [t for l in lines for t in tok.encode(l + "\n")]
    ids = ids[:e.pin + 700] + tok.encode(W.render("extract", query=q.text), special=True)
    return ids, e.pin


def compare(m, wim, path, ids, pin, cells, chunk=512):
    T = len(ids)
    pos = torch.arange(T)[None]
    mask = M.branch_mask(pos, torch.zeros_like(pos), torch.tensor([pin]), torch.tensor([T]), cells)
    with torch.no_grad():
        ref = m(torch.tensor([ids]), pos, mask)[0].numpy()
    cmd = [wim, "logits", "-m", path, "--tokens", ",".join(map(str, ids)), "--top", "16",
           "--kv-type", "f32", "--kv-capacity", str(cells), "--kv-pin", str(pin), "-t", "1",
           "--chunk", str(chunk)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    worst, agree = 0.0, 0
    for line in out[1:]:
        r = json.loads(line)
        p = r["pos"]
        scale = max(1.0, np.abs(ref[p]).max())
        for i, v in r["top"]:
            worst = max(worst, abs(v - ref[p][i]) / scale)
        agree += r["top"][0][0] == int(ref[p].argmax())
    return worst, agree / T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--wim", default=os.path.join(ROOT, "build", "wim"))
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--vocab", default=os.path.join(HERE, "vocab.json"), help="the model's vocab.json")
    a = ap.parse_args()
    tok = Tokenizer.load(a.vocab)
    m = torch_model(a.model, len(tok))
    worst_all, ok = 0.0, True
    for i in range(a.n):
        rng = random.Random(f"check-{i}")
        e = S.KINDS[list(S.KINDS)[i % len(S.KINDS)]](tok, rng)
        short = [t for t, b in zip(e.ids, e.branch) if b in (0, 1)]  # the trunk and one prompt
        w1, g1 = compare(m, a.wim, a.model, short, len(short), len(short) + 1)
        ids, pin = long_sequence(tok, rng)
        w2, g2 = compare(m, a.wim, a.model, ids, pin, S.KV_CELLS, chunk=1)
        w3, g3 = compare(m, a.wim, a.model, ids, pin, S.KV_CELLS)
        print(f"example {i}: {len(short)} tokens: max rel diff {w1:.2e}, argmax agree {g1:.1%}; "
              f"{len(ids)} tokens streaming (pin {pin}, 512 cells, chunk 1): {w2:.2e}, {g2:.1%}; "
              f"chunk 512: {w3:.2e}, {g3:.1%}")
        worst_all = max(worst_all, w1, w2, w3)
    print(f"largest relative difference {worst_all:.2e} (tolerance {a.tol:g})")
    sys.exit(0 if worst_all <= a.tol else 1)


if __name__ == "__main__":
    main()
