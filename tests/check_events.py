#!/usr/bin/env python3
"""Validates a `wim run --events` file against the schema in the README.

  check_events.py FILE PATTERN [interrupted]   schema, order, counts
  check_events.py --same A B                   same events ignoring timings
  check_events.py --same-outputs A B           same margins, verdicts and answer by
                                               segment, whatever the order (a batched run
                                               against a --sequential-margins one)
  check_events.py --prompts FILE DOC           the prompt events (--show-prompts) against
                                               the others and the document DOC
  check_events.py --without-prompts A B        A with its prompt events dropped is B
                                               (ignoring timings)
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
    "prompt": {"kind": str, "position": int, "tokens": int, "bos": bool, "text": str},
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
    ev = [e for e in load(path) if e["event"] != "prompt"]  # checked by --prompts
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


def check_prompts(path, doc_path):
    """Each prompt is what the model reads: a margin's starts with its segment, and the
    segments follow the system prompt in the cache one after another (the margins leave no
    trace); a classify prompt holds the margin it judges, the answer prompt every margin
    kept; the classifier's prompts open a context of their own."""
    ev = load(path)
    doc = open(doc_path, "rb").read()
    by = lambda kind: [e for e in ev if e["event"] == "prompt" and e["kind"] == kind]
    segs = {e["index"]: e for e in ev if e["event"] == "segment"}
    margins = {e["index"]: e["text"] for e in ev if e["event"] == "margin"}
    verdicts = {e["index"]: e for e in ev if e["event"] == "verdict"}
    system, answer = by("system"), by("answer")
    assert system and len(answer) == 1, "no system prompt, or not one answer prompt"
    assert all(e["position"] == 0 for e in system), system
    at = system[0]["position"] + system[0]["tokens"]  # the first segment starts here
    for e in by("margin"):
        i = e["index"]
        s = segs[i]
        seg = doc[s["offset"]:s["offset"] + s["bytes"]].decode()
        assert e["text"].startswith(seg), f"margin {i}: the prompt does not start with its segment"
        assert e["segment_tokens"] == s["tokens"] < e["tokens"], f"margin {i}: {e['segment_tokens']}"
        assert e["position"] == sum(segs[j]["tokens"] for j in range(i)) + at, \
            f"margin {i}: at {e['position']}"
        assert not e["bos"]
    for e in by("classify"):
        assert e["position"] == 0, e
        if e["index"] in margins:
            assert margins[e["index"]] in e["text"], f"classify {e['index']}: not its margin"
    for i, m in margins.items():
        if verdicts[i]["relevant"] and m.strip():
            assert m.strip() in answer[0]["text"], f"margin {i} kept but not in the answer prompt"
    return len(by("margin")), len(by("classify"))


def main():
    if sys.argv[1] == "--same-outputs":
        a, b = (outputs(load(p)) for p in sys.argv[2:4])
        for k in a:
            assert a[k] == b[k], f"{k} differ: {a[k]} against {b[k]}"
    elif sys.argv[1] == "--prompts":
        print("margin and classify prompts: %d, %d" % check_prompts(sys.argv[2], sys.argv[3]))
    elif sys.argv[1] == "--without-prompts":
        a, b = load(sys.argv[2]), load(sys.argv[3])
        assert [strip(e) for e in a if e["event"] != "prompt"] == [strip(e) for e in b], \
            "the events differ once the prompts are dropped"
    elif sys.argv[1] == "--same":
        a, b = load(sys.argv[2]), load(sys.argv[3])
        assert [strip(e) for e in a] == [strip(e) for e in b], "outputs differ"
    else:
        check(sys.argv[1], sys.argv[2], len(sys.argv) > 3)
    print("ok")


if __name__ == "__main__":
    main()
