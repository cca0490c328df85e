#!/usr/bin/env bash
# wimtiny.sh — the bundled model (data/wim-tiny/): the training tokenizer is the engine's,
# and `wim run`'s greedy margins, verdicts and answers on held-out generated questions are
# identical on every kernel set and with 1 or 2 threads. (Its accuracy is measured by
# bench/wim-tiny-eval.py; the model does not yet reach the bar a test would hold it to.)
set -u
W=${WIM_BIN:-build/wim}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
M=$HERE/../data/wim-tiny/wim-tiny.gguf
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
read -r -a FLAGS <"$HERE/../data/wim-tiny/wim-run.flags"

t=wimtiny_tokenizer_matches_engine
$PY "$HERE/wimtiny.py" tokenizer "$W" "$M" >"$T/tok.txt" 2>&1 && pass "$t ($(tail -1 "$T/tok.txt"))" ||
    fail $t "$(head -c 400 "$T/tok.txt")"

$PY "$HERE/wimtiny.py" questions "$T" 3

# Every kernel set this machine runs, and 1 vs 2 threads, on one question of each kind
# (the first only under WIM_TEST_QUICK, the sanitizer run).
qs="0 1 2"
[ -n "${WIM_TEST_QUICK:-}" ] && qs=0
isas="scalar $($W info --cpu | awk '/^cpu/ {print}' | grep -o 'avx2\|avxvnni\|avx512vnni\|amx\|neon' | sort -u | tr '\n' ' ')"
for i in $qs; do
    for isa in $isas; do
        for th in 1 2; do
            WIM_ISA=$isa $W run -m "$M" -d "$T/$i.doc" -q "$(cat "$T/$i.query")" "${FLAGS[@]}" -t $th \
                --events "$T/ev-$i-$isa-$th.jsonl" >/dev/null 2>"$T/e.txt" || echo "failed: $(tail -1 "$T/e.txt")" >>"$T/ev-$i-$isa-$th.jsonl"
            $PY "$HERE/wimtiny.py" texts "$T/ev-$i-$isa-$th.jsonl" >"$T/txt-$i-$isa-$th" 2>&1
        done
    done
done
for isa in $isas; do
    for th in 1 2; do
        [ $isa.$th = scalar.1 ] && continue # the reference itself
        t=wimtiny_greedy_identical_${isa}_t$th
        same=1
        for i in $qs; do
            cmp -s "$T/txt-$i-$isa-$th" "$T/txt-$i-scalar-1" || same=0
        done
        if [ $same = 1 ] && grep -q '^answer' "$T/txt-0-scalar-1"; then pass "$t (margins, verdicts, answers of questions $qs)"
        else fail $t "differs from scalar -t 1: $(diff "$T/txt-0-$isa-$th" "$T/txt-0-scalar-1" | head -c 300)"; fi
    done
done
