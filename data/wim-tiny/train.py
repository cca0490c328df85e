"""train.py — trains wim-tiny from scratch (seeded, resumable) and exports it to GGUF.

    python3 data/wim-tiny/train.py [--out DIR] [--device cuda|cpu] [--workers N]
        [--steps N | --minutes M] [--layers N] ...

The defaults are the shipped model's recipe. It was trained on one H100 with
`--workers 7 --minutes 5.5 --steps 100000` (4,683 steps, 77.9M tokens in 5.5 minutes,
while a second run shared the GPU); a time budget makes the schedule decay by elapsed
time, so the log, not the command, says how many steps a run took.

Owns: the vocabulary build (first run only), the training loop over freshly sampled
worlds, the log (train-log.jsonl: loss per format and held-out exact-match accuracy over
time) and the checkpoint (ckpt.pt, rewritten atomically so an interrupted run resumes).

Invariants: the batch at step s depends only on (seed, s, phase), so a resumed run sees the
same data as an uninterrupted one; validation examples come from the "val-" seed
namespace, the evaluation's from "eval-", training's from "train-".
"""
import argparse
import collections
import json
import math
import multiprocessing
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
    """Padded (B, T) tensors of a batch; the masks are built from them where the model
    runs (model.branch_mask). Padding continues each example's positions."""
    T = max(len(e.ids) for e in examples)
    B = len(examples)
    b = {"ids": torch.zeros(B, T, dtype=torch.long), "pos": torch.zeros(B, T, dtype=torch.long),
         "w": torch.zeros(B, T), "branch": torch.zeros(B, T, dtype=torch.long),
         "pin": torch.tensor([e.pin for e in examples]), "n": torch.tensor([len(e.ids) for e in examples])}
    for i, e in enumerate(examples):
        n = len(e.ids)
        b["ids"][i, :n] = torch.tensor(e.ids)
        b["pos"][i, :n] = torch.tensor(e.pos)
        b["pos"][i, n:] = torch.arange(e.pos[-1] + 1, e.pos[-1] + 1 + T - n)
        b["w"][i, :n] = torch.tensor(e.w)
        b["branch"][i, :n] = torch.tensor(e.branch)
    return b


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


_WORKER_TOK = []  # a data worker process's tokenizer, loaded once when it starts


def _init_worker(vocab):
    torch.set_num_threads(1)
    _WORKER_TOK.append(Tokenizer.load(vocab))


def _make_batch(tok, seed, step, tokens_per_step, phase):
    kind, ex = batch(tok, seed, step, tokens_per_step, phase)
    return kind, collate(ex), sum(len(e.ids) for e in ex)


def _make_batch_in_worker(args):
    return _make_batch(_WORKER_TOK[0], *args)


class Feed:
    """The batches of steps s, s+1, ... made ahead by worker processes (a few at a time,
    in step order). A batch depends only on (seed, step, phase), so the batches are the
    same with or without workers; a phase change drops the ones made ahead."""

    def __init__(self, workers, tok, vocab, seed, tokens_per_step):
        self.tok, self.seed, self.tps = tok, seed, tokens_per_step
        self.pool = multiprocessing.get_context("spawn").Pool(
            workers, initializer=_init_worker, initargs=(vocab,)) if workers else None
        self.ahead, self.depth = collections.deque(), 2 * workers
        self.next = self.queued = self.phase = None

    def get(self, step, phase):
        if self.pool is None:
            return _make_batch(self.tok, self.seed, step, self.tps, phase)
        if (step, phase) != (self.next, self.phase):
            self.ahead.clear()
            self.queued, self.phase = step, phase
        while len(self.ahead) < self.depth:
            args = (self.seed, self.queued, self.tps, phase)
            self.ahead.append(self.pool.apply_async(_make_batch_in_worker, (args,)))
            self.queued += 1
        self.next = step + 1
        return self.ahead.popleft().get()


def forward(model, b, device):
    b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
    mask = M.branch_mask(b["pos"], b["branch"], b["pin"], b["n"], S.KV_CELLS)
    return model(b["ids"], b["pos"], mask), b


def loss_of(model, b, device):
    logits, b = forward(model, b, device)
    ids, w = b["ids"], b["w"]
    ce = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                         reduction="none")
    wt = w[:, 1:].reshape(-1)
    return (ce * wt).sum() / wt.sum()


@torch.no_grad()
def exact_match(model, examples, device):
    """Per format, whether each target's every token is the argmax given the ones before:
    exactly the targets greedy decoding would reproduce."""
    logits, b = forward(model, collate(examples), device)
    hit = ((logits.argmax(-1)[:, :-1] == b["ids"][:, 1:]) | (b["w"][:, 1:] < 1)).cpu()
    score = {}
    for i, e in enumerate(examples):
        for br, kind in e.kinds.items():
            sel = [j - 1 for j in range(1, len(e.ids)) if e.branch[j] == br and e.w[j] == 1.0]
            score.setdefault(kind, []).append(bool(hit[i, sel].all()))
    return score


@torch.no_grad()
def repeat_accuracy(model, examples, device):
    """Share of repeated tokens (after each repeat's first) predicted by argmax: near 0
    before copying heads exist, near 1 after."""
    logits, b = forward(model, collate(examples), device)
    hit = logits.argmax(-1)[:, :-1] == b["ids"][:, 1:]
    sel = b["w"][:, 1:] == 1
    sel &= torch.roll(sel, 1, 1)  # drop the first token of each repeat: unpredictable
    return (hit & sel).sum().item() / sel.sum().item()


def pick_autocast(model, tok, seed, device):
    """bf16 autocast on a GPU, and on a CPU where it is clearly faster (oneDNN on AMX or
    AVX512-BF16), else fp32: a timed forward+backward of one real batch each way."""
    import contextlib
    if device.type == "cuda":
        print("training in bf16 autocast on the GPU", flush=True)
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    _, ex = batch(tok, seed, -1, 512, "full")
    b = collate(ex)
    times = {}
    for name, ctx in (("fp32", contextlib.nullcontext),
                      ("bf16", lambda: torch.autocast("cpu", dtype=torch.bfloat16))):
        for _ in range(2):  # the first run warms up; the second is timed
            t = time.time()
            with ctx():
                loss = loss_of(model, b, device)
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
    ap.add_argument("--steps", type=int, default=4700)
    ap.add_argument("--minutes", type=float, default=0,
                    help="a time budget: the schedule decays by elapsed time (whichever of "
                         "steps and time runs out first); the log records the steps taken")
    ap.add_argument("--tokens-per-step", type=int, default=16384)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--warm-steps", type=int, default=100, help="linear learning-rate warm-up")
    ap.add_argument("--repeat-until", type=float, default=0.9,
                    help="phase 1 (random-token repetition) lasts until the held-out repeat "
                         "accuracy reaches this: the copying heads exist")
    ap.add_argument("--repeat-max-steps", type=int, default=1500, help="or this many steps")
    ap.add_argument("--copy-steps", type=int, default=300,
                    help="phase 2: copying and short windows only, this many steps")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--layers", type=int, default=M.CONFIG["n_layers"], help="transformer blocks")
    ap.add_argument("--dim", type=int, default=M.CONFIG["dim"], help="width (heads of 32)")
    ap.add_argument("--ffn", type=int, default=M.CONFIG["ffn"], help="SwiGLU hidden width")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=0,
                    help="processes that make batches ahead (0: the training process does)")
    ap.add_argument("--threads", type=int, default=1,
                    help="the model is small: on 2 Zen 3 cores 1 thread trains as fast as 2")
    ap.add_argument("--out", default=HERE)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    os.makedirs(a.out, exist_ok=True)
    vocab = os.path.join(a.out, "vocab.json")
    tok = build_tokenizer(vocab)
    config = dict(M.CONFIG, n_layers=a.layers, dim=a.dim, ffn=a.ffn,
                  n_heads=a.dim // 32, n_kv_heads=a.dim // 32)
    model = M.Model(len(tok), config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.05,
                            **({"fused": True} if device.type == "cuda" else {}))
    ckpt, log_path = os.path.join(a.out, "ckpt.pt"), os.path.join(a.out, "train-log.jsonl")
    step, tokens, elapsed, repeat_end = 0, 0, 0.0, None
    if os.path.exists(ckpt):
        st = torch.load(ckpt, map_location=device)
        if st.get("config", M.CONFIG) != config:
            sys.exit(f"train.py: {ckpt} holds a model with {st.get('config')}, not {config}")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, tokens, elapsed = st["step"], st["tokens"], st["elapsed"]
        repeat_end = st.get("repeat_end")
        print(f"resumed at step {step}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"vocab {len(tok)}, {n_params / 1e6:.2f}M parameters, {device}, {a.threads} threads, "
          f"{a.workers} data workers", flush=True)
    autocast = pick_autocast(model, tok, a.seed, device)
    feed = Feed(a.workers, tok, vocab, a.seed, a.tokens_per_step)
    val = [f(tok, random.Random(f"val-{k}-{i}")) for k, f in S.KINDS.items() for i in range(24)]
    val_repeat = [S.repeat(tok, random.Random(f"val-repeat-{i}")) for i in range(16)]
    warm, budget = a.warm_steps, a.minutes * 60
    t0 = time.time() - elapsed
    running = {}

    def out_of_time():
        return budget and time.time() - t0 >= budget

    def decayed():  # 0 -> 1 after the warm-up, by steps or by the time budget
        by_steps = (step - warm) / max(1, a.steps - warm)
        return max(by_steps, (time.time() - t0) / budget) if budget else by_steps

    while step < a.steps and not out_of_time():
        lr = a.lr * (step + 1) / warm if step < warm else \
            a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, decayed()))))
        for g in opt.param_groups:
            g["lr"] = lr
        if repeat_end is None and step >= a.repeat_max_steps:
            repeat_end = step
        phase = "repeat" if repeat_end is None else \
            "copy" if step < repeat_end + a.copy_steps else "full"
        kind, b, n_tokens = feed.get(step, phase)
        model.train()
        with autocast():
            loss = loss_of(model, b, device)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += n_tokens
        d = loss.detach()  # averaged on the device: no wait for the GPU at every step
        running[kind] = 0.9 * running.get(kind, d) + 0.1 * d
        last = step == a.steps or out_of_time()
        rec = None
        evaluate = step % a.eval_every == 0 or last
        if step % 25 == 0 or evaluate:
            rec = {"step": step, "tokens": tokens, "seconds": round(time.time() - t0, 1),
                   "lr": round(lr, 6), "phase": phase,
                   "loss": {k: round(v.item(), 4) for k, v in running.items()}}
            if repeat_end is None:
                model.eval()
                rec["repeat_accuracy"] = round(repeat_accuracy(model, val_repeat, device), 3)
                if rec["repeat_accuracy"] >= a.repeat_until:
                    repeat_end = step
        if evaluate:
            model.eval()
            rec["exact_match"] = {}
            for i in range(0, len(val), 8):  # in small batches: branched examples are long
                for k, v in exact_match(model, val[i:i + 8], device).items():
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
    model = model.cpu().eval()
    torch.save(model.state_dict(), os.path.join(a.out, "model.pt"))
    for wtype in ("q8_0", "f16"):
        M.write_gguf(os.path.join(a.out, f"wim-tiny-{wtype}.gguf"), model, tok, wtype)
    print("exported", flush=True)


if __name__ == "__main__":
    main()
