#!/usr/bin/env python3
"""Checks the text `wim logits --trace` prints, used only by the tests.

usage: check_trace.py TRACE.txt LAYERS [--window W] [--ref REF.txt]

Reads the view as a student would (fixed columns) and checks what it promises:
  - both residual tables have a row per stage, in order (the embedding, then each
    layer's attention and ffn: 1 + 2 * LAYERS rows), and the L2 norms of the last
    position agree between them;
  - the attention matrix has a row per shown position; a row shows no key past its
    query (the causal mask), every key the mask lets it see (with a sliding window of
    W: the keys (q - W, q]) and no other, and its printed weights sum to 1 within
    their rounding (the column of earlier keys included);
  - with REF (reference_forward.py --trace for the same tokens, layer and head), the
    printed norms and weights are the reference's within the printing's rounding and
    float noise, and a hidden key is one the reference gives weight 0.
Prints a one-line summary; exits 1 with the first broken promise.
"""
import sys

LABEL = 17  # "  %4d " and a 10-character piece
ATTN_W, NORM_W = 6, 8


def fail(msg):
    print(msg)
    sys.exit(1)


def cells(text, width):
    """Fixed-width cells: a float, or None where blank."""
    out = []
    for i in range(0, len(text), width):
        c = text[i:i + width].strip()
        out.append(float(c) if c else None)
    return out


def sections(lines):
    """The residual rows of the last position, the positions table, and the attention
    matrix (with the first shown key and the shown query positions)."""
    first = lines[0]
    if not first.startswith("Trace of the forward pass:"):
        fail(f"no trace header: {first!r}")
    i = next(k for k, l in enumerate(lines) if l.startswith("  after "))
    last = []
    for l in lines[i + 1:]:
        if not l.strip():
            break
        last.append((l[:16].strip(), cells(l[16:], NORM_W + 2)))
    i = next(k for k, l in enumerate(lines) if l.startswith("The L2 norm of x at every position"))
    positions = [int(v) for v in lines[i + 1].split()]
    table = []
    for l in lines[i + 3:]:
        if not l.strip():
            break
        table.append((l[:16].strip(), cells(l[16:], NORM_W)))
    i = next(k for k, l in enumerate(lines) if l.startswith("Attention weights of layer"))
    i += 3
    earlier = lines[i].startswith("Keys 0..")
    if earlier:
        i += 1
    heads = lines[i].split()
    k0 = int(heads[1]) if earlier else int(heads[0])
    rows = []
    for l in lines[i + 2:]:
        if not l.strip():
            break
        rows.append((int(l[:6]), cells(l[LABEL:], ATTN_W)))
    return last, positions, table, k0, earlier, rows


def main():
    text = open(sys.argv[1], encoding="utf-8").read()
    layers = int(sys.argv[2])
    args = sys.argv[3:]
    window = int(args[args.index("--window") + 1]) if "--window" in args else 0
    ref = args[args.index("--ref") + 1] if "--ref" in args else None
    lines = [l for l in text.split("\n") if not l.startswith("{")]
    last, positions, table, k0, earlier, rows = sections(lines)

    stages = ["embedding"] + [f"layer {l} {b}" for l in range(layers) for b in ("attn", "ffn")]
    for name, got in (("last-position", last), ("positions", table)):
        if [s for s, _ in got] != stages:
            fail(f"{name} table rows {[s for s, _ in got]} are not {stages}")
    for (s, a), (_, b) in zip(last, table):
        if len(b) != len(positions) or abs(a[0] - b[-1]) > 1e-9:
            fail(f"{s}: the last position's L2 norm {a[0]} is {b[-1]} in the positions table")
        if not a[0] >= a[2] >= a[1] * 0.999 or a[1] <= 0:
            fail(f"{s}: L2 {a[0]}, RMS {a[1]}, max |x| {a[2]} cannot be one vector's")

    if [q for q, _ in rows] != positions:
        fail(f"attention rows {[q for q, _ in rows]} are not the positions {positions}")
    worst = 0.0
    for q, row in rows:
        shown = row[1:] if earlier else row
        if len(shown) > q - k0 + 1:
            fail(f"query {q} shows {len(shown)} keys from {k0}: past the causal mask")
        for j, w in enumerate(shown + [None] * (q - k0 + 1 - len(shown))):
            k = k0 + j
            seen = not window or k > q - window
            if seen != (w is not None):
                fail(f"query {q}, key {k}: {'blank' if w is None else w} (window {window})")
        printed = [w for w in row if w is not None]
        if abs(sum(printed) - 1) > 0.0005 * len(printed) + 1e-9:
            fail(f"query {q}: the weights {printed} sum to {sum(printed)}")
        worst = max(worst, abs(sum(printed) - 1))
    summary = f"{len(rows)} rows from key {k0}, sums within {worst:.4f} of 1"

    if ref:
        resid, attn = {}, {}
        for l in open(ref):
            kind, i, *vals = l.split()
            (resid if kind == "resid" else attn)[int(i)] = [float(v) for v in vals]
        worst_n = worst_w = 0.0
        for s, (_, got) in enumerate(table):
            for p, v in zip(positions, got):
                want = resid[s][p]
                if abs(v - want) > 0.001 + 1e-3 * want:
                    fail(f"{stages[s]}, position {p}: L2 norm {v}, the reference {want}")
                worst_n = max(worst_n, abs(v - want) / want)
        for q, row in rows:
            want = attn[q]
            if earlier:
                if abs((row[0] or 0) - sum(want[:k0])) > 0.0006 + 1e-4:
                    fail(f"query {q}: earlier keys {row[0]}, the reference {sum(want[:k0])}")
                row = row[1:]
            for j, w in enumerate(row):
                if w is None:
                    if want[k0 + j] != 0:
                        fail(f"query {q}, key {k0 + j}: hidden, the reference {want[k0 + j]}")
                    continue
                if abs(w - want[k0 + j]) > 0.0006 + 1e-4:
                    fail(f"query {q}, key {k0 + j}: weight {w}, the reference {want[k0 + j]}")
                worst_w = max(worst_w, abs(w - want[k0 + j]))
        summary += f"; the reference's norms within {worst_n:.1e} (relative), weights {worst_w:.1e}"
    print(summary)


if __name__ == "__main__":
    main()
