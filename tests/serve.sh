#!/usr/bin/env bash
# serve.sh — `wim serve`: the HTTP API over a real socket (tests/serve_api.py), then the page
# in a real browser (Debian's chromium driven by playwright-core, tests/browser/).
set -u
W=${WIM_BIN:-build/wim}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
/usr/bin/python3 "$HERE/serve_api.py" "$W" "$ROOT"
api=$?

t=serve_page_in_chromium
if ! command -v chromium >/dev/null; then
    echo "SKIP $t: chromium is not installed (apt-get install chromium)"
elif [ ! -d "$HERE/browser/node_modules/playwright-core" ]; then
    echo "SKIP $t: playwright-core is not installed (npm ci --prefix tests/browser)"
else
    log=$(mktemp)
    "$W" serve -m "$ROOT/data/wim-tiny/wim-tiny.gguf" --port 0 --quiet \
        $(cat "$ROOT/data/wim-tiny/wim-run.flags") 2>"$log" &
    pid=$!
    url=
    for _ in $(seq 100); do
        url=$(grep -o 'http://127.0.0.1:[0-9]*/' "$log" | head -1)
        [ -n "$url" ] && break
        sleep 0.1
    done
    if [ -z "$url" ]; then
        echo "FAIL $t: the server did not start: $(tail -1 "$log")"
    elif out=$(cd "$HERE/browser" && timeout 300 node serve.spec.mjs "$url" "$ROOT" 2>&1); then
        echo "PASS $t ($(echo "$out" | grep -c '^ok') steps; screenshot build/serve-page.png)"
    else
        echo "FAIL $t: $(echo "$out" | grep -v '^ok' | head -3 | tr '\n' ' ')"
    fi
    kill $pid 2>/dev/null
    wait $pid 2>/dev/null
    rm -f "$log"
fi
exit $api
