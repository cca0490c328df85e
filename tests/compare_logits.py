#!/usr/bin/env python3
"""Compares `wim logits` JSON Lines outputs, for the engine tests.

  compare_logits.py A.jsonl B.jsonl TOL        two engine runs
  compare_logits.py A.jsonl --ref REF.txt TOL  an engine run against reference_forward.py

Every logit A reports in its top-K must match the other side within
TOL * max(1, largest |logit| at that position), and the top-1 ids must agree
unless the other side's top two are closer than that tolerance (a true tie).
Exit 0 and prints the largest relative difference seen, or exit 1 with why.
"""
import json
import sys


def read_engine(path):
    with open(path) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    return lines[0], [dict((i, v) for i, v in l["top"]) for l in lines[1:]], [l["top"] for l in lines[1:]]


def main():
    a_head, a_maps, a_tops = read_engine(sys.argv[1])
    if sys.argv[2] == "--ref":
        rows = [[float(x) for x in l.split()] for l in open(sys.argv[3]) if l.strip()]
        tol = float(sys.argv[4])
        b_full = rows
    else:
        _, b_maps, b_tops = read_engine(sys.argv[2])
        tol = float(sys.argv[3])
        b_full = None
    worst = 0.0
    for pos, (amap, atop) in enumerate(zip(a_maps, a_tops)):
        if b_full is not None:
            row = b_full[pos]
            get = lambda i: row[i]
            order = sorted(range(len(row)), key=lambda i: -row[i])[:2]
            scale = max(1.0, max(abs(v) for v in row))
        else:
            bmap = b_maps[pos]
            get = lambda i: bmap.get(i)
            order = [i for i, _ in b_tops[pos][:2]]
            scale = max(1.0, max(abs(v) for v in amap.values()))
        for i, v in amap.items():
            other = get(i)
            if other is None:
                # absent from the other top-K: only fine if it is at the K boundary
                if v < atop[-1][1] + tol * scale:
                    continue
                print(f"pos {pos}: id {i} ({v}) missing on the other side")
                return 1
            d = abs(v - other) / scale
            worst = max(worst, d)
            if d > tol:
                print(f"pos {pos}: id {i}: {v} vs {other} (relative {d:.3g} > {tol})")
                return 1
        if atop[0][0] != order[0]:
            gap = abs(get(order[0]) - get(order[1])) / scale if len(order) > 1 else 1
            if gap > tol:
                print(f"pos {pos}: top-1 {atop[0][0]} vs {order[0]}")
                return 1
    print(f"max relative difference {worst:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
