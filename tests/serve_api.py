#!/usr/bin/env python3
"""serve_api.py WIM REPO — `wim serve` over a real socket on 127.0.0.1 with the bundled model.

Starts servers (--port 0) and checks the HTTP API of the README: health, the page, documents
(read once, listed, deleted, evicted by the LRU budget), questions streamed and not (the
stream's events are exactly `wim run --events`' for the same text; a question on a document
read before answers as `wim run` does without reading it again), stopping a run (by id, by
closing its stream, and while it waits in the queue), chat completions (stream and not agree; max_tokens and stop strings cut
where they should), and each refusal (400, 401, 403, 404, 405, 409, 413, 415, 503). Prints one
PASS/FAIL line per check.
"""
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time

WIM, ROOT = sys.argv[1], sys.argv[2]
MODEL = os.path.join(ROOT, "data/wim-tiny/wim-tiny.gguf")
FLAGS = open(os.path.join(ROOT, "data/wim-tiny/wim-run.flags")).read().split()
DOC = open(os.path.join(ROOT, "data/demo/document.txt")).read()
QUERY = open(os.path.join(ROOT, "data/demo/query.txt")).read().strip()
EXPECTED = open(os.path.join(ROOT, "data/demo/expected.txt")).read().strip()
big_doc = "\n\n".join([DOC] * 6)  # a run long enough to stop or to wait behind
failures = 0


def check(name, ok, detail=""):
    global failures
    if ok:
        print(f"PASS serve_{name}")
    else:
        failures += 1
        print(f"FAIL serve_{name}: {detail}"[:600])
    sys.stdout.flush()


class Server:
    def __init__(self, *args):
        self.log = open(f"/tmp/wim-serve-{os.getpid()}-{id(self)}.log", "w+")
        self.p = subprocess.Popen([WIM, "serve", "-m", MODEL, "--port", "0", *args],
                                  stderr=self.log, stdout=subprocess.DEVNULL)
        for _ in range(300):
            self.log.seek(0)
            m = re.search(r"on http://127\.0\.0\.1:(\d+)/", self.log.read())
            if m:
                self.port = int(m.group(1))
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        self.log.seek(0)
        raise RuntimeError("server did not start: " + self.log.read()[-400:])

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def request(self, method, path, body=None, headers=None, raw=None):
        c = self.conn()
        h = {"Content-Type": "application/json"} if body is not None or raw is not None else {}
        h.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        c.close()
        try:
            j = json.loads(payload)
        except ValueError:
            j = None
        return r.status, j, r, payload

    def stream(self, path, body, headers=None, on_event=None):
        """POSTs and reads the SSE stream; returns (status, events, response)."""
        c = self.conn()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c.request("POST", path, body=json.dumps(body).encode(), headers=h)
        r = c.getresponse()
        events = []
        if r.status != 200:
            r.read()
            return r.status, events, r
        while True:
            line = r.readline()
            if not line:
                break
            line = line.decode().rstrip("\n")
            if line.startswith("data: "):
                payload = line[6:]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
                if on_event and on_event(events[-1], r, c) is False:
                    break
        c.close()
        return r.status, events, r

    def log_text(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        self.p.terminate()
        try:
            rc = self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = -9
        os.unlink(self.log.name)
        return rc


def strip(e):
    """An event without what varies from run to run (times, memory)."""
    return {k: v for k, v in e.items() if k not in ("ms", "memory")}


def cli_events(doc_path):
    out = f"/tmp/wim-serve-cli-{os.getpid()}.jsonl"
    subprocess.run([WIM, "run", "-m", MODEL, "-d", doc_path, "-q", QUERY, *FLAGS, "--events", out],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = [json.loads(l) for l in open(out)]
    os.unlink(out)
    return events


s = Server(*FLAGS)
try:
    st, j, r, _ = s.request("GET", "/health")
    check("health", st == 200 and j["status"] == "ok" and j["model"] == "wim-tiny.gguf", j)
    st, _, r, page = s.request("GET", "/")
    check("page", st == 200 and b"<html" in page.lower() and r.getheader("Content-Type").startswith(
        "text/html") and "default-src" in (r.getheader("Content-Security-Policy") or ""), st)

    # a document read once, streamed: start, one segment event each, then the document
    st, events, r = s.stream("/v1/documents", {"text": DOC, "stream": True})
    kinds = [e["event"] for e in events]
    doc = events[-1] if events else {}
    ok = (st == 200 and kinds[0] == "start" and kinds[-1] == "document" and
          kinds.count("segment") == events[0]["segments"] == doc["segments"])
    check("document_stream", ok, kinds[:5])
    d1 = doc.get("id")
    st, j, _, _ = s.request("GET", f"/v1/documents/{d1}")
    check("document_get", st == 200 and len(j["segment_texts"]) == doc["segments"] and
          "".join(j["segment_texts"]).split() == DOC.split() and j["tokens"] == doc["tokens"],
          (st, j and j.get("tokens")))

    # the stream of a question on a text is `wim run --events`, event for event
    cli = cli_events(os.path.join(ROOT, "data/demo/document.txt"))
    st, events, r = s.stream("/v1/wim", {"text": DOC, "question": QUERY, "stream": True})
    same = len(events) == len(cli) and all(strip(a) == strip(b) for a, b in zip(events, cli))
    check("wim_text_stream_is_wim_run_events", st == 200 and same,
          f"{len(events)} events vs {len(cli)}; run header {r.getheader('X-Wim-Run')}")
    # on the document read before: the same margins, verdicts and answer, and no segment read
    # again (its segment events mark progress): it prefills what `wim run` did, less the
    # document's cells
    st, events, r = s.stream("/v1/wim", {"document": d1, "question": QUERY, "stream": True})
    keep = ("start", "margin", "verdict", "answer")
    mine = [strip(e) for e in events if e["event"] in keep]
    theirs = [strip(e) for e in cli if e["event"] in keep]
    done = [e for e in events if e["event"] == "done"]
    prompts = done[0]["tokens_prefilled"] if done else -1
    check("wim_document_stream_reads_nothing_again", st == 200 and mine == theirs and
          prompts == cli[-1]["tokens_prefilled"] - doc["cache_tokens"],
          f"{len(mine)} vs {len(theirs)} events; {prompts} tokens prefilled")
    answer = [e for e in events if e["event"] == "answer"]
    check("wim_demo_answer", answer and answer[0]["text"].strip() == EXPECTED,
          answer and answer[0]["text"])
    # not streamed: one object with the answer, the margins and the timings
    st, j, _, _ = s.request("POST", "/v1/wim", {"document": d1, "question": QUERY})
    check("wim_document_json", st == 200 and j["answer"] == EXPECTED and not j["interrupted"] and
          len(j["margins"]) == doc["segments"] and any(m["relevant"] for m in j["margins"]) and
          j["timings"]["ms"]["total"] > 0, j)
    for pattern in ("llm", "rag"):
        st, j, _, _ = s.request("POST", "/v1/wim",
                                {"document": d1, "question": QUERY, "pattern": pattern})
        check(f"wim_document_{pattern}", st == 200 and isinstance(j["answer"], str) and
              j["segments"] == doc["segments"], (st, j))

    # stop: by id after the first margin; the answer comes from the margins so far
    stopped = {}

    def stop_at_first_margin(e, r, c):
        if e.get("event") == "margin" and not stopped:
            stopped["rc"] = s.request("POST", "/v1/runs/stop-me/stop", {})[0]

    st, events, r = s.stream("/v1/wim", {"text": DOC, "question": QUERY, "stream": True,
                                         "run_id": "stop-me"}, on_event=stop_at_first_margin)
    ans = [e for e in events if e["event"] == "answer"]
    n_seg = sum(e["event"] == "segment" for e in events)
    check("stop_by_id", stopped.get("rc") == 200 and ans and ans[0]["interrupted"] and
          0 < n_seg < doc["segments"] and events[-1]["event"] == "done",
          (stopped, n_seg, ans))
    check("stop_unknown_run_404", s.request("POST", "/v1/runs/stop-me/stop", {})[0] == 404)

    # stopped while it waits behind another run: a document read before answers from itself,
    # no margin written; a text not read yet has nothing to answer from
    waited = {}

    def wait_behind(e, r, c):
        if waited:
            return True
        for run_id, body in (("wait-doc", {"document": d1}), ("wait-text", {"text": DOC})):
            t = threading.Thread(target=lambda k=run_id, b=body: waited.__setitem__(k, s.stream(
                "/v1/wim", {**b, "question": QUERY, "stream": True, "run_id": k})[1]))
            t.start()
            for _ in range(200):  # stopped once queued (a stop of an unknown run is 404)
                if s.request("POST", f"/v1/runs/{run_id}/stop", {})[0] == 200:
                    break
                time.sleep(0.01)
            waited[run_id + "-thread"] = t
        return False  # closing the holding stream stops it

    s.stream("/v1/wim", {"text": big_doc, "question": QUERY, "stream": True},
             on_event=wait_behind)
    for k in ("wait-doc", "wait-text"):
        waited[k + "-thread"].join(120)
    wd, wt = waited.get("wait-doc") or [], waited.get("wait-text") or []
    check("stop_while_waiting_answers_from_the_document",
          [e["event"] for e in wd] == ["start", "answer", "done"] and wd[1]["interrupted"] and
          wd[1]["text"].strip() and wd[2]["segments"] == 0, wd)
    check("stop_while_waiting_on_a_text_says_so",
          [e["event"] for e in wt] == ["start", "error"] and "before any segment" in wt[1]["message"],
          wt)

    # closing the stream stops the run: the server says so once the run ends
    def close_at_first_segment(e, r, c):
        return e.get("event") != "segment"

    s.stream("/v1/wim", {"text": big_doc, "question": QUERY, "stream": True, "run_id": "left"},
             on_event=close_at_first_segment)
    for _ in range(200):
        if re.search(r"left wim \d+ in \d+ ms", s.log_text()):
            break
        time.sleep(0.05)
    check("closing_the_stream_stops_the_run",
          re.search(r"left wim 200 in \d+ ms \(stopped early\)", s.log_text()),
          s.log_text()[-300:])

    # chat completions: streamed deltas add up to the plain answer; max_tokens and stop cut
    msgs = {"messages": [{"role": "system", "content": "Answer briefly."},
                         {"role": "user", "content": "Where does Mila Mason work?"}],
            "max_tokens": 24}
    st, j, _, _ = s.request("POST", "/v1/chat/completions", msgs)
    text = j["choices"][0]["message"]["content"] if st == 200 else ""
    check("chat_completion", st == 200 and j["object"] == "chat.completion" and
          j["usage"]["completion_tokens"] <= 24 and j["usage"]["prompt_tokens"] > 5 and text, j)
    st, events, _ = s.stream("/v1/chat/completions", dict(msgs, stream=True))
    deltas = "".join(e["choices"][0]["delta"].get("content", "") for e in events
                     if e != "[DONE]")
    finish = [e["choices"][0]["finish_reason"] for e in events if e != "[DONE]"]
    check("chat_stream_matches", st == 200 and deltas == text and events[-1] == "[DONE]" and
          finish[-1] == j["choices"][0]["finish_reason"], (deltas, text))
    st, j3, _, _ = s.request("POST", "/v1/chat/completions", dict(msgs, max_tokens=3))
    check("chat_max_tokens", st == 200 and j3["usage"]["completion_tokens"] <= 3 and
          j3["choices"][0]["finish_reason"] in ("length", "stop"), j3)
    if len(text) >= 6:
        cut = text[len(text) // 2:len(text) // 2 + 3]
        st, j4, _, _ = s.request("POST", "/v1/chat/completions", dict(msgs, stop=[cut]))
        st2, ev4, _ = s.stream("/v1/chat/completions", dict(msgs, stop=cut, stream=True))
        sdelta = "".join(e["choices"][0]["delta"].get("content", "") for e in ev4 if e != "[DONE]")
        check("chat_stop_string", st == 200 and
              j4["choices"][0]["message"]["content"] == text[:text.index(cut)] == sdelta and
              j4["choices"][0]["finish_reason"] == "stop", (cut, j4, sdelta))
    st, j, _, _ = s.request("GET", "/v1/models")
    check("models", st == 200 and j["data"][0]["id"] == "wim-tiny.gguf", j)

    # refusals, each with one line in the OpenAI API's error shape
    def refused(name, want, st, j, needle):
        msg = (j or {}).get("error", {}).get("message", "")
        check(name, st == want and needle in msg and "\n" not in msg, (st, j))

    st, j, _, _ = s.request("POST", "/v1/wim", raw=b'{"question": ')
    refused("malformed_json_400", 400, st, j, "malformed JSON")
    st, j, _, _ = s.request("POST", "/v1/wim", raw=b'{"text": "a\xff", "question": "q"}')
    refused("invalid_utf8_400", 400, st, j, "UTF-8")
    st, j, _, _ = s.request("POST", "/v1/wim", {"document": d1, "question": QUERY, "colour": 1})
    refused("unknown_field_400", 400, st, j, "colour")
    st, j, _, _ = s.request("POST", "/v1/wim", {"document": d1, "question": QUERY, "top_k": -2})
    refused("bad_value_400", 400, st, j, "top_k")
    st, j, _, _ = s.request("POST", "/v1/wim", {"text": "   ", "question": QUERY})
    refused("blank_document_400", 400, st, j, "empty")
    st, j, _, _ = s.request("POST", "/v1/wim", {"document": "d999", "question": QUERY})
    refused("unknown_document_404", 404, st, j, "d999")
    st, j, _, _ = s.request("GET", "/v1/nothing")
    refused("unknown_path_404", 404, st, j, "/v1/nothing")
    st, j, _, _ = s.request("PUT", "/v1/wim", {})
    refused("wrong_method_405", 405, st, j, "POST")
    st, j, _, _ = s.request("POST", "/v1/wim", raw=b"{}", headers={"Content-Type": "text/plain"})
    refused("not_json_415", 415, st, j, "application/json")
    st, j, _, _ = s.request("GET", "/health", headers={"Host": "evil.example:80"})
    refused("foreign_host_403", 403, st, j, "loopback")
    st, j, _, _ = s.request("DELETE", f"/v1/documents/{d1}")
    check("document_delete", st == 200 and j["deleted"], j)
    st, j, _, _ = s.request("GET", f"/v1/documents/{d1}")
    refused("deleted_document_404", 404, st, j, d1)
finally:
    rc = s.stop()
check("sigterm_exits_cleanly", rc == 0, rc)

# a second server: an API key, one request at a time, small limits
s = Server(*FLAGS, "--api-key", "sesame", "--queue", "0", "--max-body-mb", "1",
           "--cache-mb", "80", "--max-doc-tokens", "20000")
key = {"Authorization": "Bearer sesame"}
try:
    st, j, r, _ = s.request("POST", "/v1/documents", {"text": DOC})
    check("api_key_missing_401", st == 401 and r.getheader("WWW-Authenticate") == "Bearer", st)
    st, j, _, _ = s.request("POST", "/v1/documents", {"text": DOC},
                            headers={"Authorization": "Bearer sesamf"})
    check("api_key_wrong_401", st == 401, st)
    # announced too large: refused before the body is sent
    import socket
    with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/wim HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                     b"sesame\r\nContent-Type: application/json\r\nContent-Length: 2097152"
                     b"\r\n\r\n")
        head = sock.recv(4096).decode(errors="replace")
    check("body_announced_too_large_413", head.startswith("HTTP/1.1 413") and
          "max-body-mb" in head, head[:200])
    # too large without a length (chunked): refused once it passes the limit
    c = s.conn()
    c.request("POST", "/v1/wim", body=iter([b" " * 65536] * 32), encode_chunked=True,
              headers=dict(key, **{"Content-Type": "application/json"}))
    r = c.getresponse()
    j = json.loads(r.read())
    c.close()
    check("body_too_large_413", r.status == 413 and "max-body-mb" in j["error"]["message"],
          (r.status, j))
    st, j, _, _ = s.request("POST", "/v1/documents", {"text": " ".join([DOC] * 5)}, headers=key)
    check("document_too_long_413", st == 413 and "max-doc-tokens" in j["error"]["message"],
          (st, j))
    # the LRU: each document takes ~38 MB of the 80: the third evicts the first
    ids = []
    for _ in range(3):
        st, j, _, _ = s.request("POST", "/v1/documents", {"text": DOC}, headers=key)
        ids.append(j.get("id") if st == 201 else None)
    st, h, _, _ = s.request("GET", "/health")
    st1 = s.request("GET", f"/v1/documents/{ids[0]}", headers=key)[0]
    st3 = s.request("GET", f"/v1/documents/{ids[2]}", headers=key)[0]
    check("lru_evicts_within_budget", None not in ids and st1 == 404 and st3 == 200 and
          h["documents"] == 2 and h["cache_bytes"] <= h["cache_limit_bytes"], (ids, st1, h))
    # --queue 0: while one request runs, the next is refused with Retry-After
    busy = {}

    def second_request(e, r, c):
        if e.get("event") == "segment" and not busy:
            st, j, resp, _ = s.request("POST", "/v1/wim", {"document": ids[2], "question": QUERY},
                                       headers=key)
            busy.update(st=st, retry=resp.getheader("Retry-After"))
            st409 = s.request("POST", "/v1/wim", {"text": DOC, "question": QUERY,
                                                  "run_id": "busy"}, headers=key)[0]
            busy["dup"] = st409
            s.request("POST", "/v1/runs/busy/stop", {}, headers=key)

    s.stream("/v1/wim", {"text": DOC, "question": QUERY, "stream": True, "run_id": "busy"},
             headers=key, on_event=second_request)
    check("queue_full_503", busy.get("st") == 503 and (busy.get("retry") or "").isdigit(), busy)
    check("run_id_in_use_409", busy.get("dup") == 409, busy)
finally:
    s.stop()

# a foreign address needs a key; a port in use is one clear line
p = subprocess.run([WIM, "serve", "-m", MODEL, "--host", "0.0.0.0", "--port", "0"],
                   capture_output=True, text=True, timeout=60)
check("public_host_needs_key", p.returncode == 2 and "--api-key" in p.stderr and
      len(p.stderr.strip().splitlines()) == 1, p.stderr)
sys.exit(1 if failures else 0)
