#!/usr/bin/env bash
# bench/wim-overhead.sh [MODEL] — what Writing in the Margins costs on top of reading the
# document (`make bench-wim-overhead`). For each case (a BABILong context length and a
# segment size K) it runs, on the same document and question:
#   llm         the long-context baseline: the whole document, then the question
#   wim         margins as branches (the default): every segment, then all margins at once
#   wim-seq     the paper's loop (--sequential-margins), one margin after each segment
#   wim-again   another question on the document saved by the wim run (--load-kv)
# and prints one table: seconds in total, prefill, margins, classify and answer (from the
# run's `done` event), the total against llm's (wim-again: against wim's) and peak RSS. The
# wim run also saves the document for wim-again; that time (column save) is left out of its
# total and ratio.
# MODEL defaults to the bench shape (Qwen2.5-0.5B, Q8_0, random weights: its margins run to
# the full length, the worst case). Environment: THREADS (2), CASES ("8k:2048 16k:4096
# 16k:1024"), MARGIN (100 tokens), RUNS (the runs above, in that order), BUILD (build).
set -eu
build=${BUILD:-build}
wim=$build/wim
shared=${WIM_SHARED:-../shared}
threads=${THREADS:-2}
cases=${CASES:-8k:2048 16k:4096 16k:1024}
margin=${MARGIN:-100}
runs=${RUNS:-llm wim wim-seq wim-again}
model=${1:-bench/models/qwen2.5-0.5b-shape-q8_0.gguf}
if [ ! -f "$model" ] && [ $# -eq 0 ]; then
    mkdir -p bench/models
    echo "making $model (random weights; about 0.5 GB)" >&2
    "$wim" mkmodel --vocab-from "$shared/vocab/ggml-vocab-gpt-2.gguf" -o "$model" --arch qwen2 \
        --type q8_0 --dim 896 --layers 24 --heads 14 --kv-heads 2 --ff 4864 --ctx 32768 --tied --seed 1
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
printf '# %s, %s threads, kernels %s, %s, %s-token margins\n' "$cpu" "$threads" \
    "$("$wim" info --cpu | awk '/^kernels/ {print $2}')" "$(basename "$model")" "$margin"
printf '%-9s %-10s %8s %8s %8s %8s %8s %6s %7s %9s\n' case run total prefill margins classify \
    answer save ratio "RSS MiB"
for c in $cases; do
    len=${c%%:*} K=${c#*:}
    data=$shared/data/babilong/babilong_$len.json
    /usr/bin/python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
open(sys.argv[2], "w").write(d["context"])
open(sys.argv[3], "w").write(d["query"])' "$data" "$out/doc.txt" "$out/query.txt"
    common=(-m "$model" -q "$(cat "$out/query.txt")" --segment-tokens "$K" --margin-tokens "$margin"
        -t "$threads" --kv-capacity 32768)
    for r in $runs; do
        case $r in
        llm) args=(-d "$out/doc.txt" --pattern llm) ;;
        wim) args=(-d "$out/doc.txt" --save-kv "$out/doc.kv") ;;
        wim-seq) args=(-d "$out/doc.txt" --sequential-margins) ;;
        wim-again) args=(--load-kv "$out/doc.kv" -q "Which room did the first person go to?") ;;
        esac
        "$wim" run "${common[@]}" "${args[@]}" --events "$out/$r.jsonl" >/dev/null 2>"$out/err" ||
            { echo "$c $r failed: $(tail -1 "$out/err")" >&2; continue; }
        /usr/bin/python3 - "$out" "$c" "$r" <<'EOF'
import json, os, sys
out, case, run = sys.argv[1:4]
def done(r):
    p = os.path.join(out, r + ".jsonl")
    return [e for e in map(json.loads, open(p)) if e["event"] == "done"][0] if os.path.exists(p) else None
d = done(run)
def work(d):  # the run's own time: saving the document for wim-again is not WiM's cost
    return d["ms"]["total"] - d["ms"]["save"]
ms = dict(d["ms"], total=work(d))
base = done("wim" if run == "wim-again" else "llm")
ratio = f'{work(d) / work(base):.2f}x' if base and run != "llm" else ""
print(f'{case:<9} {run:<10} ' + " ".join(f'{ms[k] / 1e3:8.1f}' for k in
      ("total", "prefill", "margins", "classify", "answer")) +
      f' {ms["save"] / 1e3:6.1f} {ratio:>7} {d["memory"]["rss_peak_bytes"] / 2**20:9.0f}')
EOF
    done
    rm -f "$out"/*.jsonl "$out/doc.kv"
done
