#!/usr/bin/env python3
"""Validates a `wim run --events` file against the schema in the README.

  check_events.py FILE PATTERN [interrupted]   schema, order, counts
  check_events.py --same A B                   same events ignoring timings
  check_events.py --same-outputs A B           same margins, verdicts and answer by
                                               segment, whatever the order (a batched run
                                               against a --sequential-margins one)
"""
import json
import sys

FIELDS = {
    "start": {"model": str, "pattern": str, "chat": str, "segments": int, "tokens": int},
    "segment": {"index": int, "tokens": int, "prefilled": int, "ms": (int, float), "offset": int,
                "bytes": int, "first": str},
    "margin": {"index": int, "text": str, "tokens": int, "ms": (int, float)},
    "verdict": {"index": int, "relevant": bool, "raw": str},
    "answer": {"text": str, "interrupted": bool},
    "done": {"interrupted": bool, "segments": int, "relevant": int, "ms": dict,
             "tokens_prefilled": int, "tokens_decoded": int, "memory": dict},
}
TIMING = {"ms", "memory", "prefilled"}


def load(path):
    events = []
    for n, line in enumerate(open(path), 1):
        e = json.loads(line)  # raises on invalid JSON
        kind = e.get("event")
        assert kind in FIELDS, f"line {n}: unknown event {kind}"
        for k, t in FIELDS[kind].items():
            assert isinstance(e.get(k), t), f"line {n}: {kind}.{k} missing or not {t}"
        events.append(e)
    return events


def check(path, pattern, interrupted=False):
    ev = load(path)
    kinds = [e["event"] for e in ev]
    assert kinds[0] == "start" and kinds[-2:] == ["answer", "done"], kinds
    n = ev[0]["segments"]
    segs = sorted((e for e in ev if e["event"] == "segment"), key=lambda e: e["index"])
    at = 0
    for e in segs:  # byte ranges that tile the document, in order
        assert e["offset"] == at and e["bytes"] > 0, f"segment {e['index']}: offset {e['offset']}"
        assert len(e["first"].encode()) <= 48 and "\n" not in e["first"], e["first"]
        at += e["bytes"]
    body = kinds[1:-2]
    per = {"wim": ["segment", "margin", "verdict"], "llm": ["segment"],
           "rag": ["segment", "verdict"], "rag-bm25": ["segment"]}[pattern]
    done = body.count("segment")
    indices = [e["index"] for e in ev[1:-2]]
    if body == per * done:  # the paper's loop: each segment, its margin, its verdict
        assert indices == [i for i in range(done) for _ in per], indices
    else:  # batched: every segment, then the margins as they finish, then the verdicts
        phases = [per.index(k) for k in body]
        assert phases == sorted(phases), f"order: {body[:12]}"
        by = {k: [e for e in ev[1:-2] if e["event"] == k] for k in per}
        assert [e["index"] for e in by["segment"]] == list(range(done)), indices
        steps = [e["step"] for e in by.get("margin", [])]
        assert steps == sorted(steps), f"margins out of step order: {steps}"
        assert len({e["index"] for e in by.get("margin", [])}) == len(steps)
        v = [e["index"] for e in by.get("verdict", [])]
        assert v == sorted(v) and set(v) <= set(range(done)), v
        if not interrupted:
            for k in per:
                assert len(by[k]) == done, f"{len(by[k])} {k} events for {done} segments"
    for e in ev:
        if e["event"] == "margin":
            assert "kv_crc_before" in e, "run with --verify-kv: no kv_crc fields"
            assert e["kv_crc_before"] == e["kv_crc_after"], "a margin changed the KV cache"
    if interrupted:
        assert ev[-1]["interrupted"] and ev[-2]["interrupted"], "not marked interrupted"
        assert done < n, f"all {n} segments ran despite the interrupt"
    else:
        assert done == n and not ev[-1]["interrupted"], f"{done} of {n} segments"
    assert ev[-1]["segments"] == done


def strip(e):
    return {k: v for k, v in e.items() if k not in TIMING}


def outputs(ev):
    return {"margins": {e["index"]: e["text"] for e in ev if e["event"] == "margin"},
            "verdicts": {e["index"]: (e["relevant"], e["raw"]) for e in ev if e["event"] == "verdict"},
            "answer": [e["text"] for e in ev if e["event"] == "answer"]}


def main():
    if sys.argv[1] == "--same-outputs":
        a, b = (outputs(load(p)) for p in sys.argv[2:4])
        for k in a:
            assert a[k] == b[k], f"{k} differ: {a[k]} against {b[k]}"
    elif sys.argv[1] == "--same":
        a, b = load(sys.argv[2]), load(sys.argv[3])
        assert [strip(e) for e in a] == [strip(e) for e in b], "outputs differ"
    else:
        check(sys.argv[1], sys.argv[2], len(sys.argv) > 3)
    print("ok")


if __name__ == "__main__":
    main()
