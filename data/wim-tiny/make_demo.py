"""make_demo.py — writes the demo document and question of `make demo` (data/demo/).

    /usr/bin/python3 data/wim-tiny/make_demo.py [--seed demo] [--lines 600] [--kind twohop]

A fresh world from the "demo" seed namespace (never used in training): about 600 fact
lines (~5,400 tokens, ten times the model's 512-token window) with the question's facts
far apart, so the answer needs what the window has forgotten.
"""
import argparse
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import world as W  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", default="demo")
    ap.add_argument("--lines", type=int, default=600)
    ap.add_argument("--kind", default="twohop", choices=["lookup", "twohop", "tally"])
    ap.add_argument("--out", default=os.path.join(HERE, "..", "demo"))
    a = ap.parse_args()
    doc, q = W.make_document(random.Random(a.seed), a.lines, a.kind)
    os.makedirs(a.out, exist_ok=True)
    for name, text in (("document.txt", doc), ("query.txt", q.text + "\n"),
                       ("expected.txt", q.answer + "\n")):
        with open(os.path.join(a.out, name), "w", encoding="utf-8") as f:
            f.write(text)
    lines = doc.splitlines()
    where = ", ".join(str(lines.index(s) + 1) for s in q.needed)
    print(f"{q.kind}: {q.text} -> {q.answer} (facts on lines {where} of {len(lines)})")


if __name__ == "__main__":
    main()
