#!/usr/bin/env python3
"""quote-search.py — what the pruned quote search saves, on the bundled model.

    python3 bench/quote-search.py [--n 6] [--lengths 1000,4000,16000,32000]
        [--wim build/wim] [--threads 1]

For each length, n held-out evaluation documents (the seeds of bench/wim-tiny-eval.py,
kinds cycling lookup, two-hop, tally) are answered by `wim run` with the model's flags
(data/wim-tiny/wim-run.flags), once with the default search and once with
--quote-exhaustive, one after the other, in alternating order. Prints per length the
median run time and margin time of each (the `done` event), their ratio, the tokens the
searches evaluated, and whether every margin, verdict and answer was the same.
Reads only the model and the flags; writes only temporary files.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location(
    "wim_tiny_eval", os.path.join(ROOT, "bench", "wim-tiny-eval.py"))
E = importlib.util.module_from_spec(spec)
spec.loader.exec_module(E)
KINDS = ("lookup", "twohop", "tally")


def run(args, flags, path, query, extra):
    """The events of one run: (the texts, the done event, tokens scored)."""
    p = subprocess.run([args.wim, "run", "-m", args.model, "-d", path, "-q", query,
                        "-t", str(args.threads), "--events", "-"] + flags + extra,
                       capture_output=True, text=True, check=True)
    events = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    texts = [(e["event"], e.get("text"), e.get("relevant")) for e in events
             if e["event"] in ("margin", "verdict", "answer")]
    scored = sum(e.get("scored", 0) for e in events)
    return texts, events[-1], scored


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--lengths", default="1000,4000,16000,32000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=os.path.join(ROOT, "data", "wim-tiny", "wim-tiny.gguf"))
    ap.add_argument("--wim", default=os.path.join(ROOT, "build", "wim"))
    args = ap.parse_args()
    with open(os.path.join(ROOT, "data", "wim-tiny", "wim-run.flags")) as f:
        flags = f.read().split()
    tok = E.Tokenizer.load(os.path.join(ROOT, "data", "wim-tiny", "vocab.json"))
    modes = {"pruned": [], "exhaustive": ["--quote-exhaustive"]}
    print("| length | runs | run ms, pruned | exhaustive | ratio | margin ms, pruned | "
          "exhaustive | ratio | tokens scored, pruned | exhaustive | same text |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for L in map(int, args.lengths.split(",")):
        ms = {m: {"total": [], "margins": []} for m in modes}
        scored = {m: 0 for m in modes}
        same = True
        for i in range(args.n):
            doc, q, _ = E.document(tok, L, KINDS[i % 3], i)
            with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
                f.write(doc)
            try:
                order = list(modes) if i % 2 == 0 else list(reversed(modes))
                got = {m: run(args, flags, f.name, q.text, modes[m]) for m in order}
            finally:
                os.unlink(f.name)
            same &= got["pruned"][0] == got["exhaustive"][0]
            for m, (_, done, n) in got.items():
                ms[m]["total"].append(done["ms"]["total"])
                ms[m]["margins"].append(done["ms"]["margins"])
                scored[m] += n
        med = {m: {k: statistics.median(v) for k, v in ms[m].items()} for m in modes}
        row = [L, args.n]
        for k in ("total", "margins"):
            a, b = med["pruned"][k], med["exhaustive"][k]
            row += [f"{a:.0f}", f"{b:.0f}", f"×{b / a:.2f}"]
        row += [scored["pruned"], scored["exhaustive"], "yes" if same else "NO"]
        print("| " + " | ".join(map(str, row)) + " |", flush=True)


if __name__ == "__main__":
    main()
