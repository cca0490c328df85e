#!/usr/bin/env bash
# bench/serve-load.sh — `wim serve` under load (make bench-serve-load).
#
# One server with the bundled model and its flags; four documents read once (the demo
# document and three with its lines in other orders); then 20 concurrent clients each ask 5
# questions on them (wim pattern, not streamed), 100 in all. Reports throughput, latency
# p50/p99, errors (must be 0) and the server's RSS before any document, after reading them
# and after the load (the growth must stay within --cache-mb). Then the same load against a
# server with --queue 4: the 503s it asks for are counted apart (each client waits out its
# Retry-After and asks again, so every question is still answered), anything else is an error.
# Bounded: every request has a 120 s timeout and the script stops itself after 600 s.
# Env: BUILD (build), CLIENTS (20), QUESTIONS (5), CACHE_MB (256).
set -u
cd "$(dirname "$0")/.."
W=${BUILD:-build}/wim
CLIENTS=${CLIENTS:-20} QUESTIONS=${QUESTIONS:-5} CACHE_MB=${CACHE_MB:-256}
[ -x "$W" ] || { echo "serve-load: $W not built (make)" >&2; exit 2; }
read -r -a FLAGS <data/wim-tiny/wim-run.flags
log=$(mktemp)
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT

load() { # queue: starts a server, runs the clients, prints one report
    "$W" serve -m data/wim-tiny/wim-tiny.gguf --port 0 --quiet --cache-mb "$CACHE_MB" \
        --queue "$1" "${FLAGS[@]}" 2>"$log" &
    pid=$!
    local url=
    for _ in $(seq 100); do
        url=$(grep -o 'http://127.0.0.1:[0-9]*/' "$log" | head -1)
        [ -n "$url" ] && break
        sleep 0.1
    done
    [ -n "$url" ] || { echo "serve-load: the server did not start: $(cat "$log")" >&2; exit 1; }
    timeout 600 /usr/bin/python3 - "$url" "$pid" "$1" "$CLIENTS" "$QUESTIONS" "$CACHE_MB" <<'EOF'
import http.client, json, random, statistics, sys, threading, time, urllib.parse

url, pid, queue, clients, questions, cache_mb = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
host = urllib.parse.urlparse(url)

def rss_mib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def post(path, body):
    c = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data, r.getheader("Retry-After")

lines = open("data/demo/document.txt").read().splitlines()
rss0 = rss_mib()
docs = []
for seed in range(4):
    order = lines[:] if seed == 0 else random.Random(seed).sample(lines, len(lines))
    st, data, _ = post("/v1/documents", {"text": "\n".join(order)})
    assert st == 201, (st, data)
    docs.append(json.loads(data)["id"])
rss_docs = rss_mib()
names = sorted({l.split(" works for ")[0].lstrip("- ") for l in lines if " works for " in l})
qs = [open("data/demo/query.txt").read().strip()] + [f"Where does {n} work?" for n in names[:9]]
lat, codes, lock = [], {}, threading.Lock()

def client(i):
    rnd = random.Random(i)
    for k in range(questions):
        body = {"document": rnd.choice(docs), "question": rnd.choice(qs)}
        t0 = time.time()
        for attempt in range(60):  # a 503 is retried after its Retry-After
            try:
                st, _, retry = post("/v1/wim", body)
            except Exception as e:  # a refused or broken connection is an error like any other
                st, retry = type(e).__name__, None
            with lock:
                codes[st] = codes.get(st, 0) + 1
                if st == 200:
                    lat.append(time.time() - t0)
            if st != 503:
                break
            time.sleep(int(retry) + rnd.random())

t0 = time.time()
threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
wall = time.time() - t0
rss_end = rss_mib()
asked = codes.get(503, 0) if queue < clients else 0
errors = sum(n for c, n in codes.items() if c != 200) - asked
q = sorted(lat)
p = lambda f: q[min(len(q) - 1, int(f * len(q)))] * 1e3 if q else float("nan")
print(f"--queue {queue:<3} {clients} clients x {questions}: {len(lat)} answered in {wall:.1f} s "
      f"({len(lat) / wall:.1f} questions/s); latency p50 {p(0.50):.0f} ms, p99 {p(0.99):.0f} ms; "
      f"503 asked for {asked}; errors {errors} {dict(codes)}")
print(f"   RSS MiB: {rss0:.0f} at start, {rss_docs:.0f} with {len(docs)} documents, "
      f"{rss_end:.0f} after the load (growth {rss_end - rss0:.0f} MiB; --cache-mb {cache_mb})")
ok = errors == 0 and len(lat) == clients * questions and rss_end - rss0 <= cache_mb + 64 and (
    queue < clients or asked == 0)
print("   " + ("ok" if ok else "NOT OK"))
sys.exit(0 if ok else 1)
EOF
    local rc=$?
    kill $pid
    wait $pid 2>/dev/null
    return $rc
}

echo "== wim serve under load: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores =="
load 64
a=$?
load 4
exit $((a | $?))
