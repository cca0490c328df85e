"""selection.py — how run options and checkpoints were chosen: selection questions.

Owns: the selection documents (seeds `PREFIX-i`, a namespace no training, test or
evaluation seed uses; kinds cycling lookup, two-hop, tally), one `wim run` per question
with `wim-run.flags` plus --extra, and a summary per kind: answers right, and the lines
the kept margins hold — needed ones, and the wrong kinds that cost answers on long
documents (a person with the subject's first name, another company's second hop, the
rest).

    python3 data/wim-tiny/selection.py --lines 80 --n 180                 # sel-0..179
    python3 data/wim-tiny/selection.py --prefix selmid --lines 500 --n 90
    python3 data/wim-tiny/selection.py --prefix sellong --lines 1000 --n 90 --without=--quote-notes

Invariant: reads nothing but its arguments and the files named; writes only temporary
files, removed after each run.
"""
import argparse
import concurrent.futures as cf
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import world as W  # noqa: E402

LINE_KINDS = ("needed", "same_first_name", "other_second_hop", "other")


def line_kind(q, line):
    """What a kept margin line is to question q."""
    if line in q.needed or (q.kind == "tally" and " voted for " in line):
        return "needed"
    if q.kind == "twohop" and (" is based in " in line or " was founded in " in line):
        return "other_second_hop"
    if q.subject and line.startswith(W.BULLET + q.subject.split()[0] + " "):
        return "same_first_name"
    return "other"


def run_one(args, flags, kinds, i):
    doc, q = W.make_document(random.Random(f"{args.prefix}-{i}"), args.lines, kinds[i % len(kinds)])
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(doc)
    try:
        p = subprocess.run([args.wim, "run", "-m", args.model, "-d", f.name, "-q", q.text,
                            "-t", "1", "--events", "-"] + flags, capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    margins, kept, answer = {}, [], ""
    for l in p.stdout.splitlines():
        e = json.loads(l) if l.startswith("{") else {}
        if e.get("event") == "margin":
            margins[e["index"]] = e["text"]
        elif e.get("event") == "verdict" and e["relevant"]:
            kept += [x for x in margins[e["index"]].split("\n") if x]
        elif e.get("event") == "answer":
            answer = e["text"]
    rec = {"kind": q.kind, "right": p.returncode == 0 and W.same_answer(answer, q.answer),
           "n_needed": len(q.needed), "failed": p.returncode != 0}
    for k in LINE_KINDS:
        rec[k] = sum(line_kind(q, x) == k for x in kept)
    return rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefix", default="sel")
    ap.add_argument("--lines", type=int, default=80)
    ap.add_argument("--n", type=int, default=180)
    ap.add_argument("--kinds", default="lookup,twohop,tally")
    ap.add_argument("--extra", default="", help="options added to wim-run.flags")
    ap.add_argument("--without", action="append", default=[],
                    help="an option of wim-run.flags to leave out, with its value (repeatable)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--model", default=os.path.join(HERE, "wim-tiny.gguf"))
    ap.add_argument("--wim", default=os.path.join(ROOT, "build", "wim"))
    args = ap.parse_args()
    if args.prefix in ("train", "val", "eval", "test", "demo"):
        sys.exit(f"selection.py: seeds {args.prefix}-… belong to another set")
    with open(os.path.join(HERE, "wim-run.flags")) as f:
        flags = f.read().split()
    for opt in args.without:
        if opt not in flags:
            sys.exit(f"selection.py: {opt} is not in wim-run.flags")
        i = flags.index(opt)
        del flags[i : i + (2 if i + 1 < len(flags) and not flags[i + 1].startswith("--") else 1)]
    flags += args.extra.split()
    kinds = args.kinds.split(",")
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        recs = list(pool.map(lambda i: run_one(args, flags, kinds, i), range(args.n)))
    for k in kinds:
        rs = [r for r in recs if r["kind"] == k]
        lines = ", ".join(f"{x} {sum(r[x] for r in rs)}" for x in LINE_KINDS)
        print(f"{k}: {sum(r['right'] for r in rs)}/{len(rs)} right; kept lines: {lines} "
              f"(needed in all: {sum(r['n_needed'] for r in rs)})")
    failed = sum(r["failed"] for r in recs)
    print(f"total: {sum(r['right'] for r in recs)}/{len(recs)} right"
          + (f", {failed} runs failed" if failed else ""))


if __name__ == "__main__":
    main()
