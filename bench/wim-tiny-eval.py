#!/usr/bin/env python3
"""wim-tiny-eval.py — accuracy of the bundled model on held-out generated documents.

    python3 bench/wim-tiny-eval.py [--n 200] [--lengths 1000,4000,16000,32000]
        [--kinds lookup,twohop,tally] [--patterns llm,rag,wim] [--jobs 2]
        [--model data/wim-tiny/wim-tiny.gguf] [--out bench/wim-tiny-eval.jsonl]

For each document length (in model tokens), question kind and question index i, a fresh
world from the seed "eval-L-kind-i" (training draws from "train-..." only) is written to
a temporary file and `wim run` answers its question with each pattern, streaming through
a 512-cell KV window (data/wim-tiny/wim-run.flags). An answer is correct when, lower-cased
and stripped of surrounding punctuation and space, it equals the expected answer.

Results append to --out as JSON lines (one per run), so an interrupted evaluation resumes
where it stopped; the accuracy table (Markdown) is printed at the end from everything in
--out that matches the requested cells (--table-only prints it without running anything,
e.g. while an evaluation is still going).
"""
import argparse
import concurrent.futures as cf
import json
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "data", "wim-tiny"))
import world as W  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402


def document(tok, length, kind, i):
    """A document of about `length` tokens (within 2 %) and its question."""
    lines = max(4, length // 8)
    for _ in range(4):
        doc, q = W.make_document(random.Random(f"eval-{length}-{kind}-{i}"), lines, kind)
        n = len(tok.encode(doc))
        if abs(n - length) <= length * 0.02:
            break
        lines = max(4, round(lines * length / n))
    return doc, q, n


WIM_ONLY = {"--answer-from-margins"}  # options of wim-run.flags that `wim run` refuses
# with --pattern llm or rag (the others only concern margins, which those patterns skip)


def run_one(args, flags, key, doc, q, pattern):
    if pattern != "wim":
        flags = [f for f in flags if f not in WIM_ONLY]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(doc)
        path = f.name
    t0 = time.time()
    try:
        p = subprocess.run([args.wim, "run", "-m", args.model, "-d", path, "-q", q.text,
                            "--pattern", pattern, "-t", "1"] + flags,
                           capture_output=True, text=True)
    except OSError as e:  # the binary missing or being rebuilt: a failed run, not a crash
        p = subprocess.CompletedProcess([], -1, "", f"{args.wim}: {e}")
    finally:
        os.unlink(path)
    answer = p.stdout.strip()
    rec = dict(key, pattern=pattern, question=q.text, expected=q.answer, answer=answer,
               correct=p.returncode == 0 and W.same_answer(answer, q.answer),
               rc=p.returncode, seconds=round(time.time() - t0, 2))
    if p.returncode:
        rec["error"] = p.stderr.strip().splitlines()[-1:]
    return rec


def cell(runs, n):
    """A pattern's accuracy, with its count where the row has more runs elsewhere."""
    if not runs:
        return "–"
    pct = f"{100 * sum(r['correct'] for r in runs) / len(runs):.0f} %"
    return pct + (f" (n = {len(runs)})" if len(runs) < n else "")


def table(results, lengths, kinds, patterns):
    out = ["| length | kind | " + " | ".join(patterns) + " | n |",
           "|---|---|" + "---|" * len(patterns) + "---|"]
    for L in lengths:
        for k in kinds:
            runs = [[r for r in results if (r["length"], r["kind"], r["pattern"]) == (L, k, p)]
                    for p in patterns]
            n = max(map(len, runs))
            out.append(f"| {L} | {k} | " + " | ".join(cell(rs, n) for rs in runs) + f" | {n} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--lengths", default="1000,4000,16000,32000")
    ap.add_argument("--kinds", default="lookup,twohop,tally")
    ap.add_argument("--patterns", default="llm,rag,wim")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--model", default=os.path.join(ROOT, "data", "wim-tiny", "wim-tiny.gguf"))
    ap.add_argument("--wim", default=os.path.join(ROOT, "build", "wim"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "wim-tiny-eval.jsonl"))
    ap.add_argument("--table-only", action="store_true", help="print the table of --out; run nothing")
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    kinds, patterns = args.kinds.split(","), args.patterns.split(",")
    with open(os.path.join(ROOT, "data", "wim-tiny", "wim-run.flags")) as f:
        flags = f.read().split()
    tok = Tokenizer.load(os.path.join(ROOT, "data", "wim-tiny", "vocab.json"))
    done = []
    if os.path.exists(args.out):
        with open(args.out) as f:
            done = [json.loads(l) for l in f if l.strip()]
    have = {(r["length"], r["kind"], r["i"], r["pattern"]) for r in done}
    jobs = []
    if args.table_only:
        print(table([r for r in done if r["i"] < args.n], lengths, kinds, patterns))
        return
    with cf.ThreadPoolExecutor(args.jobs) as pool, open(args.out, "a") as out:
        for L in lengths:
            for k in kinds:
                for i in range(args.n):
                    todo = [p for p in patterns if (L, k, i, p) not in have]
                    if not todo:
                        continue
                    doc, q, n = document(tok, L, k, i)
                    key = {"length": L, "kind": k, "i": i, "tokens": n}
                    jobs += [pool.submit(run_one, args, flags, key, doc, q, p) for p in todo]
        for fut in cf.as_completed(jobs):
            r = fut.result()
            done.append(r)
            out.write(json.dumps(r) + "\n")
            out.flush()
    sel = [r for r in done if r["length"] in lengths and r["kind"] in kinds
           and r["pattern"] in patterns and r["i"] < args.n]
    print(table(sel, lengths, kinds, patterns))


if __name__ == "__main__":
    main()
