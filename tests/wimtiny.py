#!/usr/bin/env python3
"""wimtiny.py — helpers for tests/wimtiny.sh (the bundled model's tests).

  wimtiny.py questions DIR N      writes DIR/i.doc, i.query, i.expected for the fixed
                                  test questions (seeds "test-i"; training never draws them)
  wimtiny.py tokenizer WIM MODEL  the training tokenizer (data/wim-tiny/tokenizer.py)
                                  against `wim tokenize` on prompts, documents and replies
  wimtiny.py texts EVENTS...      the margins, verdicts and answer of each events file,
                                  one block per file (to compare runs)
  wimtiny.py scored EVENTS...     the tokens the margins' quote searches evaluated, summed
  wimtiny.py score DIR N          how many of DIR/i.answer (wim run's stdout) state
                                  DIR/i.expected; prints "k/N correct" and each miss
"""
import json
import os
import random
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "data", "wim-tiny"))
import world as W  # noqa: E402

KINDS = ["lookup", "twohop", "tally", "lookup"]
LINES = 80  # longer than the 512-cell window, so the document streams


def questions(d, n):
    for i in range(n):
        doc, q = W.make_document(random.Random(f"test-{i}"), LINES, KINDS[i % len(KINDS)])
        for ext, text in (("doc", doc), ("query", q.text), ("expected", q.answer)):
            with open(os.path.join(d, f"{i}.{ext}"), "w") as f:
                f.write(text)


def tokenizer(wim, model):
    from tokenizer import Tokenizer
    tok = Tokenizer.load(os.path.join(ROOT, "data", "wim-tiny", "vocab.json"))
    texts = [W.render(k, query="Where does Ana Silva live?", answer="Ana Silva lives in Oslo.",
                      margins="Ana Silva lives in Oslo.\n") for k in W.TEMPLATES]
    for i in range(12):
        doc, q = W.make_document(random.Random(f"tok-{i}"), 20, KINDS[i % 3])
        texts += [doc, q.text, q.answer, doc[i:]]  # mid-word starts too
    texts += ["Zoë's naïve café, 2024 — ünïcode ✓ and\ttabs", "<|im_start|>x<|im_end|>"]
    bad = 0
    for t in texts:
        want = tok.encode(t, special=True)
        got = subprocess.run([wim, "tokenize", "-m", model, "-p", t, "--parse-special"],
                             capture_output=True, text=True, check=True).stdout.split()
        if [int(x) for x in got] != want:
            bad += 1
            print(f"differs on {t[:60]!r}: python {want[:12]} engine {got[:12]}")
    print(f"{len(texts) - bad}/{len(texts)} texts tokenize identically")
    return bad == 0


def texts(paths):
    for p in paths:
        with open(p) as f:
            for line in f:
                ev = json.loads(line)
                if ev["event"] in ("margin", "answer"):
                    print(ev["event"], ev.get("index", ""), ev["text"])
                elif ev["event"] == "verdict":
                    print("verdict", ev["index"], ev["relevant"], ev.get("raw", ""))
        print("--")


def scored(paths):
    total = 0
    for p in paths:
        with open(p) as f:
            total += sum(json.loads(line).get("scored", 0) for line in f)
    print(total)


def score(d, n):
    def read(i, ext):
        with open(os.path.join(d, f"{i}.{ext}")) as f:
            return f.read()
    right = 0
    for i in range(n):
        got, want = read(i, "answer"), read(i, "expected")
        if W.same_answer(got, want):
            right += 1
        else:
            print(f"question {i} ({KINDS[i % len(KINDS)]}): {read(i, 'query')!r} -> "
                  f"{got.strip()!r}, expected {want!r}")
    print(f"{right}/{n} correct")
    return right


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "questions":
        questions(sys.argv[2], int(sys.argv[3]))
    elif cmd == "tokenizer":
        sys.exit(0 if tokenizer(sys.argv[2], sys.argv[3]) else 1)
    elif cmd == "texts":
        texts(sys.argv[2:])
    elif cmd == "scored":
        scored(sys.argv[2:])
    elif cmd == "score":
        score(sys.argv[2], int(sys.argv[3]))
