"""train.py — trains wim-tiny from scratch (seeded, resumable) and exports it to GGUF.

    /usr/bin/python3 data/wim-tiny/train.py [--steps N] [--out DIR]

Owns: the vocabulary build (first run only), the training loop over freshly sampled
worlds, the log (train-log.jsonl: loss per format and held-out exact-match accuracy over
time) and the checkpoint (ckpt.pt, rewritten atomically so an interrupted run resumes).

Invariants: the batch at step s depends only on (seed, s), so a resumed run sees the
same data as an uninterrupted one; validation examples come from the "val-" seed
namespace, the evaluation's from "eval-", training's from "train-".
"""
import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model as M  # noqa: E402
import samples as S  # noqa: E402
import world as W  # noqa: E402
from tokenizer import Tokenizer, train as train_tokenizer  # noqa: E402

VOCAB = 3072
# The curriculum: which kinds of example each phase draws (one kind per step).
PHASES = {
    "repeat": {"repeat": 1.0},  # grow induction heads on random tokens
    "copy": {"copy": 0.4, "read": 0.5, "classify": 0.1},  # short windows only
    "full": {"read": 0.55, "classify": 0.15, "records": 0.25, "repeat": 0.05},
}
DRAW = {"classify": S.classification, "copy": S.copying, "repeat": S.repeat,
        "records": S.records}  # every kind but "read", which also draws a window length
SHORT_SHARE = 0.5  # reading examples with a short window (30-150 tokens, few distractors)


def vocab_corpus(rng, n_docs=3000):
    """Text that covers the world's words, the prompts and the replies."""
    fixed = [W.render(k, query="Q", answer="A", margins="M") for k in W.TEMPLATES]
    fixed += [W.NOTHING, W.YES_REPLY, W.NO_REPLY, W.NOTES_HEADER]
    texts = fixed * 200  # every example carries them: whole-word pieces pay off
    for i in range(n_docs):
        kind = ["lookup", "twohop", "tally"][i % 3]
        doc, q = W.make_document(rng, 30, kind)
        texts += [doc, q.text, q.answer]
    return texts


def build_tokenizer(path):
    if os.path.exists(path):
        return Tokenizer.load(path)
    tok = train_tokenizer(vocab_corpus(random.Random("vocab")), VOCAB)
    tok.save(path)
    return tok


def collate(examples):
    T = max(len(e.ids) for e in examples)
    B = len(examples)
    ids = torch.zeros(B, T, dtype=torch.long)
    pos = torch.zeros(B, T, dtype=torch.long)
    w = torch.zeros(B, T)
    mask = torch.zeros(B, T, T, dtype=torch.bool)
    for b, e in enumerate(examples):
        n = len(e.ids)
        ids[b, :n] = torch.tensor(e.ids)
        pos[b, :n] = torch.tensor(e.pos)
        pos[b, n:] = torch.arange(e.pos[-1] + 1, e.pos[-1] + 1 + T - n)
        w[b, :n] = torch.tensor(e.w)
        mask[b, :n, :n] = M.branch_mask(e.pos, e.branch, e.pin, S.KV_CELLS - e.pin)
        mask[b, n:, :] = True  # padding: never a target, keep its softmax finite
    return ids, pos, w, mask


def batch(tok, seed, step, tokens_per_step, phase):
    rng = random.Random(f"train-{seed}-{step}")
    mix = PHASES[phase]
    kind = rng.choices(list(mix), list(mix.values()))[0]
    out, n = [], 0
    while n < tokens_per_step:
        ex_rng = random.Random(f"train-{seed}-{step}-{len(out)}")
        if kind == "read":
            e = S.reading(tok, ex_rng, short=phase == "copy" or ex_rng.random() < SHORT_SHARE)
        else:
            e = DRAW[kind](tok, ex_rng)
        out.append(e)
        n += len(e.ids)
    return kind, out


def loss_of(model, examples):
    ids, pos, w, mask = collate(examples)
    logits = model(ids, pos, mask)
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                         reduction="none")
    wt = w[:, 1:].reshape(-1)
    return (ce * wt).sum() / wt.sum()


@torch.no_grad()
def exact_match(model, examples):
    """Per format, whether each target's every token is the argmax given the ones before:
    exactly the targets greedy decoding would reproduce."""
    ids, pos, w, mask = collate(examples)
    hit = (model(ids, pos, mask).argmax(-1)[:, :-1] == ids[:, 1:]) | (w[:, 1:] < 1)
    score = {}
    for b, e in enumerate(examples):
        for br, kind in e.kinds.items():
            sel = [i - 1 for i in range(1, len(e.ids)) if e.branch[i] == br and e.w[i] == 1.0]
            score.setdefault(kind, []).append(bool(hit[b, sel].all()))
    return score


@torch.no_grad()
def repeat_accuracy(model, examples):
    """Share of repeated tokens (after each repeat's first) predicted by argmax: near 0
    before copying heads exist, near 1 after."""
    ids, pos, w, mask = collate(examples)
    hit = model(ids, pos, mask).argmax(-1)[:, :-1] == ids[:, 1:]
    sel = w[:, 1:] == 1
    sel &= torch.roll(sel, 1, 1)  # drop the first token of each repeat: unpredictable
    return (hit & sel).sum().item() / sel.sum().item()


def pick_autocast(model, tok, seed):
    """bf16 autocast when it is clearly faster here (oneDNN on AMX or AVX512-BF16 CPUs),
    else fp32: a timed forward+backward of one real batch each way."""
    import contextlib
    _, ex = batch(tok, seed, -1, 512, "full")
    times = {}
    for name, ctx in (("fp32", contextlib.nullcontext),
                      ("bf16", lambda: torch.autocast("cpu", dtype=torch.bfloat16))):
        for _ in range(2):  # the first run warms up; the second is timed
            t = time.time()
            with ctx():
                loss = loss_of(model, ex)
            loss.backward()
            times[name] = time.time() - t
            if name == "bf16" and times[name] > 3 * times["fp32"]:
                break  # no bf16 hardware: no need to wait for a second run
    model.zero_grad(set_to_none=True)
    use = times["bf16"] * 1.5 < times["fp32"]
    print(f"fp32 {times['fp32']:.2f} s, bf16 autocast {times['bf16']:.2f} s per test batch: "
          f"training in {'bf16 autocast' if use else 'fp32'}", flush=True)
    return (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if use else contextlib.nullcontext


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=9000)
    ap.add_argument("--tokens-per-step", type=int, default=1024,
                    help="small steps: many updates matter more than big batches here")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--warm-steps", type=int, default=100, help="linear learning-rate warm-up")
    ap.add_argument("--repeat-until", type=float, default=0.9,
                    help="phase 1 (random-token repetition) lasts until the held-out repeat "
                         "accuracy reaches this: the copying heads exist")
    ap.add_argument("--repeat-max-steps", type=int, default=3000, help="or this many steps")
    ap.add_argument("--copy-steps", type=int, default=1000,
                    help="phase 2: copying and short windows only, this many steps")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--layers", type=int, default=M.CONFIG["n_layers"],
                    help="transformer blocks (the rest of model.CONFIG is fixed)")
    ap.add_argument("--threads", type=int, default=1,
                    help="the model is small: on 2 Zen 3 cores 1 thread trains as fast as 2")
    ap.add_argument("--out", default=HERE)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    tok = build_tokenizer(os.path.join(a.out, "vocab.json"))
    config = dict(M.CONFIG, n_layers=a.layers)
    model = M.Model(len(tok), config)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.05)
    ckpt, log_path = os.path.join(a.out, "ckpt.pt"), os.path.join(a.out, "train-log.jsonl")
    step, tokens, elapsed, repeat_end = 0, 0, 0.0, None
    if os.path.exists(ckpt):
        st = torch.load(ckpt)
        if st.get("config", M.CONFIG) != config:
            sys.exit(f"train.py: {ckpt} holds a model with {st.get('config')}, not {config}")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, tokens, elapsed = st["step"], st["tokens"], st["elapsed"]
        repeat_end = st.get("repeat_end")
        print(f"resumed at step {step}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"vocab {len(tok)}, {n_params / 1e6:.2f}M parameters, {a.threads} threads", flush=True)
    autocast = pick_autocast(model, tok, a.seed)
    val = [f(tok, random.Random(f"val-{k}-{i}")) for k, f in S.KINDS.items() for i in range(24)]
    val_repeat = [S.repeat(tok, random.Random(f"val-repeat-{i}")) for i in range(16)]
    warm = a.warm_steps
    t0 = time.time() - elapsed
    running = {}
    while step < a.steps:
        lr = a.lr * (step + 1) / warm if step < warm else \
            a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / (a.steps - warm))))
        for g in opt.param_groups:
            g["lr"] = lr
        if repeat_end is None and step >= a.repeat_max_steps:
            repeat_end = step
        phase = "repeat" if repeat_end is None else \
            "copy" if step < repeat_end + a.copy_steps else "full"
        kind, ex = batch(tok, a.seed, step, a.tokens_per_step, phase)
        model.train()
        with autocast():
            loss = loss_of(model, ex)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += sum(len(e.ids) for e in ex)
        running[kind] = 0.9 * running.get(kind, loss.item()) + 0.1 * loss.item()
        rec = None
        if step % 25 == 0 or step == a.steps:
            rec = {"step": step, "tokens": tokens, "seconds": round(time.time() - t0, 1),
                   "lr": round(lr, 6), "phase": phase,
                   "loss": {k: round(v, 4) for k, v in running.items()}}
            if repeat_end is None:
                model.eval()
                rec["repeat_accuracy"] = round(repeat_accuracy(model, val_repeat), 3)
                if rec["repeat_accuracy"] >= a.repeat_until:
                    repeat_end = step
        if step % a.eval_every == 0 or step == a.steps:
            model.eval()
            rec["exact_match"] = {}
            for i in range(0, len(val), 8):  # in small batches: branched examples are long
                for k, v in exact_match(model, val[i:i + 8]).items():
                    rec["exact_match"].setdefault(k, []).extend(v)
            rec["exact_match"] = {k: round(sum(v) / len(v), 3) for k, v in rec["exact_match"].items()}
            st = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                  "tokens": tokens, "elapsed": time.time() - t0, "repeat_end": repeat_end, "config": config}
            torch.save(st, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
        if rec:
            print(json.dumps(rec), flush=True)
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
    model.eval()
    for wtype in ("q8_0", "f16"):
        M.write_gguf(os.path.join(a.out, f"wim-tiny-{wtype}.gguf"), model, tok, wtype)
    print("exported", flush=True)


if __name__ == "__main__":
    main()
