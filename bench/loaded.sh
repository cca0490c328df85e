#!/usr/bin/env bash
# bench/loaded.sh — wim on a machine another process keeps busy (make bench-loaded).
#
# The demo (the bundled model over data/demo/, many small forward passes) and the prefill
# and decode rates of the bench model (bench/models/qwen2.5-0.5b-shape-q8_0.gguf, made by
# make bench), each on an idle machine and with one busy loop per core but one: with wim's
# default thread count (every core less those other processes keep busy when a context is
# made), with every core forced, and with every core and OpenMP's passive wait policy
# (threads sleep at barriers instead of spinning). Medians of REPS (3) runs. Bounded: the
# busy loops die with the script.
set -u
cd "$(dirname "$0")/.."
W=${BUILD:-build}/wim
REPS=${REPS:-3}
[ -x "$W" ] || { echo "loaded: $W not built (make)" >&2; exit 2; }
read -r -a FLAGS <data/wim-tiny/wim-run.flags
B=bench/models/qwen2.5-0.5b-shape-q8_0.gguf
busy=()
trap 'kill "${busy[@]}" 2>/dev/null' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
demo_s() { # env...: seconds for one demo run
    local t0 t1
    t0=$(date +%s%N)
    env "$@" "$W" run -m data/wim-tiny/wim-tiny.gguf -d data/demo/document.txt \
        -q "$(cat data/demo/query.txt)" "${FLAGS[@]}" $threads >/dev/null 2>&1
    t1=$(date +%s%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f\n", (b - a) / 1e9 }'
}
rates() { # env...: "pp tg" tok/s of the bench model
    env "$@" "$W" bench -m "$B" -p 512 -n 32 -r 1 --json $threads 2>/dev/null |
        /usr/bin/python3 -c 'import json,sys
r = {x["test"]: x["tok_s"] for x in map(json.loads, sys.stdin) if "test" in x}
print("%.1f %.1f" % (r.get("pp512", 0), r.get("tg32", 0)))'
}
row() { # label, env...
    local label=$1 d p t
    shift
    d=$(for _ in $(seq "$REPS"); do demo_s "$@"; done | median)
    if [ -f "$B" ]; then
        read -r p t < <(for _ in $(seq "$REPS"); do rates "$@"; done | sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}')
    else p=-; t=-; fi
    printf '| %s | %s | %s s | %s | %s |\n' "$state" "$label" "$d" "$p" "$t"
}

cores=$(nproc)
echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $cores cores, medians of $REPS =="
echo "| machine | policy | demo | pp512 tok/s | tg32 tok/s |"
echo "|---|---|---:|---:|---:|"
for state in idle loaded; do
    if [ $state = loaded ]; then
        for _ in $(seq $((cores > 1 ? cores - 1 : 1))); do
            timeout 900 sh -c 'while :; do :; done' &
            busy+=($!)
        done
        sleep 0.5
    fi
    threads=
    row "wim's default threads" WIM_BENCH=1
    threads="-t $cores"
    row "-t $cores (every core)" WIM_BENCH=1
    row "-t $cores, OMP_WAIT_POLICY=passive" OMP_WAIT_POLICY=passive
done
