#!/usr/bin/env bash
# wimtiny.sh — the bundled model (data/wim-tiny/): the training tokenizer is the engine's;
# `wim run`'s greedy margins, verdicts and answers on 20 held-out generated questions are
# identical on every kernel set and with 1 or 2 threads; and it answers enough of them.
# (Its accuracy by length and pattern is measured by bench/wim-tiny-eval.py.)
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

# 20 fixed held-out questions (seeds "test-0".."test-19", kinds cycling lookup, two-hop,
# tally, lookup; documents longer than the window, so the KV cache streams).
N=20
$PY "$HERE/wimtiny.py" questions "$T" $N

# One greedy run of question $1 on kernel set $2 with $3 threads (and option $4, if any):
# its answer (stdout) in ans-$1-$2-$3$4, its margins, verdicts and answer as text in
# txt-$1-$2-$3$4.
run_question() {
    local r="$1-$2-$3${4:-}"
    if ! WIM_ISA=$2 $W run -m "$M" -d "$T/$1.doc" -q "$(cat "$T/$1.query")" "${FLAGS[@]}" -t $3 \
        ${4:-} --events "$T/ev-$r.jsonl" >"$T/ans-$r" 2>"$T/e-$r.txt"; then
        echo "failed: $(tail -1 "$T/e-$r.txt")" | tee -a "$T/ev-$r.jsonl" >"$T/ans-$r"
    fi
    $PY "$HERE/wimtiny.py" texts "$T/ev-$r.jsonl" >"$T/txt-$r" 2>&1
}

# Runs go WIM_TEST_JOBS at a time (default 1: with 2 cores, a 2-thread run needs both).
jobs_max=${WIM_TEST_JOBS:-1}
throttle() {
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
}

# Every kernel set this machine runs, and 1 vs 2 threads, on every question (the first
# only under WIM_TEST_QUICK, the sanitizer run).
qs=$(seq 0 $((N - 1)))
[ -n "${WIM_TEST_QUICK:-}" ] && qs=0
isas="scalar $($W info --cpu | awk '/^cpu/ {print}' | grep -o 'avx2\|avxvnni\|avx512vnni\|amx\|neon' | sort -u | tr '\n' ' ')"
for i in $qs; do
    for isa in $isas; do
        for th in 1 2; do
            run_question $i $isa $th &
            throttle
        done
    done
done
wait
for isa in $isas; do
    for th in 1 2; do
        [ $isa.$th = scalar.1 ] && continue # the reference itself
        t=wimtiny_greedy_identical_${isa}_t$th
        same=1
        for i in $qs; do
            cmp -s "$T/txt-$i-$isa-$th" "$T/txt-$i-scalar-1" || same=0
        done
        if [ $same = 1 ] && grep -q '^answer' "$T/txt-0-scalar-1"; then pass "$t (margins, verdicts and answers of $(echo $qs | wc -w) of the $N questions)"
        else fail $t "differs from scalar -t 1: $(diff "$T/txt-0-$isa-$th" "$T/txt-0-scalar-1" | head -c 300)"; fi
    done
done

# Accuracy, greedy, with the model's own flags, from the scalar single-thread runs (every
# other kernel set and thread count gives the same text: the tests above; under
# WIM_TEST_QUICK the questions they skipped run on the fastest kernels). The issue's
# bar is 18 of 20; the shipped model with its flags (extractive margins) answers 19
# (data/wim-tiny/README.md).
MIN_RIGHT=18
fastest=$(echo $isas | awk '{print $NF}')
t=wimtiny_answers_${MIN_RIGHT}_of_$N
for i in $(seq 0 $((N - 1))); do
    r=scalar-1
    if [ ! -f "$T/ans-$i-$r" ]; then # not run above (WIM_TEST_QUICK): the fastest kernels
        r="$fastest-2"                # give the same text (the plain run's identity tests)
        run_question $i $fastest 2
    fi
    cp "$T/ans-$i-$r" "$T/$i.answer"
done
$PY "$HERE/wimtiny.py" score "$T" $N >"$T/score.txt" 2>&1
right=$(tail -1 "$T/score.txt" | cut -d/ -f1)
if [ "${right:-0}" -ge $MIN_RIGHT ] 2>/dev/null; then pass "$t ($(tail -1 "$T/score.txt"))"
else fail $t "$(tail -1 "$T/score.txt"): $(head -3 "$T/score.txt" | tr '\n' ' ')"; fi

# The quote search (the default prunes every line that cannot beat the best so far)
# against --quote-exhaustive, which scores every sentence in full: the same margins,
# verdicts and answers on all 20 questions, for fewer tokens evaluated.
t=wimtiny_pruned_quotes_match_exhaustive
same=1
for i in $(seq 0 $((N - 1))); do
    run_question $i $fastest 2 --quote-exhaustive &
    throttle
done
wait
for i in $(seq 0 $((N - 1))); do
    cmp -s "$T/txt-$i-$fastest-2--quote-exhaustive" "$T/txt-$i-$fastest-2" || same=0
done
pruned=$($PY "$HERE/wimtiny.py" scored $(seq -f "$T/ev-%g-$fastest-2.jsonl" 0 $((N - 1))))
full=$($PY "$HERE/wimtiny.py" scored $(seq -f "$T/ev-%g-$fastest-2--quote-exhaustive.jsonl" 0 $((N - 1))))
if [ $same = 1 ] && [ "${pruned:-0}" -gt 0 ] && [ "$pruned" -lt "${full:-0}" ]; then
    pass "$t ($pruned tokens evaluated against $full)"
else
    fail $t "same text: $same; tokens evaluated $pruned against $full: $(diff "$T/txt-0-$fastest-2--quote-exhaustive" "$T/txt-0-$fastest-2" | head -c 300)"
fi

# Margins as branches (the default without --stream and the sequential-only options)
# against the paper's loop (--sequential-margins): the same greedy margins, verdicts and
# answers on all 20 questions, with the whole document in the cache (no window; positions
# past the model's 512 are fine for an identity check), with 1 and 2 threads.
t=wimtiny_branches_match_sequential
plain="--kv-capacity 8192 --segment-tokens 256 --margin-tokens 64 --answer-tokens 16"
same=1 msg=""
for i in $(seq 0 $((N - 1))); do
    for th in 1 2; do
        for mode in batched sequential; do
            extra=""
            [ $mode = sequential ] && extra=--sequential-margins
            $W run -m "$M" -d "$T/$i.doc" -q "$(cat "$T/$i.query")" $plain -t $th $extra \
                --events "$T/br-$i-$mode-$th.jsonl" >/dev/null 2>"$T/br.err" || { same=0; msg=$(head -c 200 "$T/br.err"); }
        done
        $PY "$HERE/check_events.py" --same-outputs "$T/br-$i-batched-$th.jsonl" "$T/br-$i-sequential-1.jsonl" \
            >"$T/chk" 2>&1 || { same=0; msg="question $i, $th threads: $(tail -1 "$T/chk" | head -c 300)"; }
    done
done
margins=$(cat "$T"/br-*-batched-1.jsonl | grep -c '"event":"margin"')
[ $same = 1 ] && [ "$margins" -gt 20 ] && pass "$t ($margins margins on $N questions)" || fail $t "$msg"
