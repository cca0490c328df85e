#!/usr/bin/env bash
# wim.sh — the pipeline through `wim run`: schema-valid events in the right
# order for each pattern, Ctrl-C still answering, identical outputs with 1 and
# 2 threads on stories260K and on a random-weight ChatML model.
set -u
W=${WIM_BIN:-build/wim}
S=${WIM_SHARED:-../shared}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
STORIES=$S/models/stories260K.gguf
if [ ! -f "$STORIES" ] || [ ! -f "$S/data/babilong/babilong_8k.json" ]; then
    echo "SKIP wim_pipeline: needs $STORIES and $S/data/babilong/babilong_8k.json"
    exit 0
fi
$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); open(sys.argv[2],"w").write(d["context"][:2000]); open(sys.argv[3],"w").write(d["query"])' \
    "$S/data/babilong/babilong_8k.json" "$T/doc.txt" "$T/query.txt"
Q=$(cat "$T/query.txt")
common="--segment-tokens 200 --margin-tokens 24 --answer-tokens 16 --classify-tokens 6 --chunk 64 --verify-kv"

for pat in wim llm rag; do
    t=events_schema_and_order_$pat
    if $W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" --pattern $pat $common --events "$T/$pat.jsonl" \
        >"$T/$pat.out" 2>"$T/$pat.err"; then
        if $PY "$HERE/check_events.py" "$T/$pat.jsonl" $pat >"$T/chk" 2>&1; then echo "PASS $t"
        else echo "FAIL $t: $(head -c 300 "$T/chk")"; fi
    else echo "FAIL $t: $(head -c 300 "$T/$pat.err")"; fi
done
t=rag_bm25_runs
$W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" --pattern rag --retriever bm25 --top-k 2 $common \
    --events "$T/bm25.jsonl" >/dev/null 2>"$T/e" && $PY "$HERE/check_events.py" "$T/bm25.jsonl" rag-bm25 >"$T/chk" 2>&1 &&
    echo "PASS $t" || echo "FAIL $t: $(cat "$T/e" "$T/chk" | head -c 300)"

# Ctrl-C: the first SIGINT stops after the current step and still answers.
t=sigint_still_answers
yes "$(cat "$T/doc.txt")" | head -c 60000 >"$T/long.txt"
$W run -m "$STORIES" -d "$T/long.txt" -q "$Q" $common --margin-tokens 100 --stream --kv-capacity 1024 --events "$T/int.jsonl" \
    >"$T/int.out" 2>"$T/int.err" &
pid=$!
for _ in $(seq 1 200); do grep -q '"event":"margin"' "$T/int.jsonl" 2>/dev/null && break; sleep 0.05; done
kill -INT $pid
wait $pid
rc=$?
if [ $rc -eq 0 ] && $PY "$HERE/check_events.py" "$T/int.jsonl" wim interrupted >"$T/chk" 2>&1 &&
    grep -q '^wim: interrupted: the answer comes from the first' "$T/int.err"; then echo "PASS $t"
else echo "FAIL $t: exit $rc $(cat "$T/chk" "$T/int.err" | head -c 300)"; fi

# Identical outputs with 1 and 2 threads, every pattern, two models.
same_outputs() { # name model extra-args...
    local name=$1 model=$2
    shift 2
    local ok=1
    for pat in wim llm rag; do
        for th in 1 2; do
            $W run -m "$model" -d "$T/doc.txt" -q "$Q" --pattern $pat $common -t $th "$@" \
                --events "$T/$name-$pat-$th.jsonl" >/dev/null 2>"$T/e" || { ok=0; msg=$(head -c 200 "$T/e"); }
        done
        $PY "$HERE/check_events.py" --same "$T/$name-$pat-1.jsonl" "$T/$name-$pat-2.jsonl" >"$T/chk" 2>&1 ||
            { ok=0; msg="$pat: $(head -c 200 "$T/chk")"; }
    done
    [ $ok = 1 ] && echo "PASS threads_identical_$name" || echo "FAIL threads_identical_$name: $msg"
}
same_outputs stories260K "$STORIES"
if [ -f "$S/vocab/ggml-vocab-qwen2.gguf" ]; then
    $W mkmodel --vocab-from "$S/vocab/ggml-vocab-qwen2.gguf" -o "$T/chatml.gguf" --arch qwen2 --type f16 \
        --dim 64 --heads 4 --kv-heads 2 --ff 128 --layers 2 --tied --seed 5 --ctx 4096
    $W run -m "$T/chatml.gguf" -d "$T/doc.txt" -q "$Q" $common --max-segments 1 --events "$T/chat.jsonl" >/dev/null 2>&1
    grep -q '"chat":"chatml"' "$T/chat.jsonl" && echo "PASS chatml_template_detected" || echo "FAIL chatml_template_detected: $(head -c 200 "$T/chat.jsonl")"
    same_outputs random_chatml "$T/chatml.gguf" --max-segments 4
    t=classify_logit_reports_margins
    $W run -m "$T/chatml.gguf" -d "$T/doc.txt" -q "$Q" $common --max-segments 3 --classify logit \
        --events "$T/logit.jsonl" >/dev/null 2>"$T/e" &&
        $PY -c '
import json, sys
v = [e for e in map(json.loads, open(sys.argv[1])) if e["event"] == "verdict"]
assert len(v) == 3 and all(isinstance(e["logit_margin"], float) and e["relevant"] == (e["logit_margin"] > 0) for e in v), v
' "$T/logit.jsonl" && echo "PASS $t" || echo "FAIL $t: $(cat "$T/e" | head -c 200)"
else echo "SKIP threads_identical_random_chatml: $S/vocab/ggml-vocab-qwen2.gguf not found"; fi

# Margins as branches (the default) against the paper's loop (--sequential-margins): the
# same margins, verdicts and answer, with 1 and 2 threads, f16 and f32 KV, on stories260K
# (F32 weights: its greedy text) and random Q8_0 and F16 models (bit for bit:
# test_branches.c); the batched events keep the schema, margins saying their step.
branches_match() { # name model extra-args...
    local name=$1 model=$2 ok=1 msg=""
    shift 2
    for kv in f16 f32; do
        for th in 1 2; do
            for mode in batched sequential; do
                local extra=""
                [ $mode = sequential ] && extra=--sequential-margins
                $W run -m "$model" -d "$T/doc.txt" -q "$Q" $common --kv-type $kv -t $th $extra "$@" \
                    --events "$T/$name-$mode-$kv-$th.jsonl" >/dev/null 2>"$T/e" || { ok=0; msg=$(head -c 200 "$T/e"); }
            done
            $PY "$HERE/check_events.py" --same-outputs "$T/$name-batched-$kv-$th.jsonl" "$T/$name-sequential-$kv-1.jsonl" >"$T/chk" 2>&1 &&
                $PY "$HERE/check_events.py" "$T/$name-batched-$kv-$th.jsonl" wim >>"$T/chk" 2>&1 &&
                grep -q '"step":' "$T/$name-batched-$kv-$th.jsonl" || { ok=0; msg="$kv -t $th: $(tail -1 "$T/chk" | head -c 300)"; }
        done
    done
    [ $ok = 1 ] && echo "PASS branches_match_sequential_$name" || echo "FAIL branches_match_sequential_$name: $msg"
}
branches_match stories260K "$STORIES"
for ty in q8_0 f16; do
    if [ -f "$S/vocab/ggml-vocab-llama-spm.gguf" ]; then
        $W mkmodel --vocab-from "$S/vocab/ggml-vocab-llama-spm.gguf" -o "$T/r-$ty.gguf" --type $ty \
            --dim 64 --heads 4 --kv-heads 2 --ff 128 --layers 3 --seed 9 --ctx 4096 >/dev/null
        branches_match random_$ty "$T/r-$ty.gguf" --chat raw --max-segments 5
    else echo "SKIP branches_match_sequential_random_$ty: $S/vocab/ggml-vocab-llama-spm.gguf not found"; fi
done

# A document read once serves other questions: --save-kv from any pattern, then --load-kv
# with every pattern answers exactly as a fresh run of that pattern does (the file holds the
# document's cells and its segments, the same whichever pattern saved it).
for pat in wim llm rag; do
    $W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" --pattern $pat $common --save-kv "$T/doc-$pat.kv" \
        --events "$T/fresh-$pat.jsonl" >"$T/fresh-$pat.txt" 2>"$T/e-$pat"
done
for pat in wim llm rag; do
    t=run_load_kv_same_outputs_$pat
    ok=1 msg=""
    for src in wim llm rag; do
        $W run -m "$STORIES" --load-kv "$T/doc-$src.kv" -q "$Q" --pattern $pat $common \
            --events "$T/loaded-$src-$pat.jsonl" >"$T/loaded-$src-$pat.txt" 2>"$T/e" &&
            [ -s "$T/fresh-$pat.txt" ] && cmp -s "$T/fresh-$pat.txt" "$T/loaded-$src-$pat.txt" &&
            $PY "$HERE/check_events.py" --same-outputs "$T/fresh-$pat.jsonl" "$T/loaded-$src-$pat.jsonl" >"$T/chk" 2>&1 ||
            { ok=0; msg="saved by $src: $(cat "$T/e-$src" "$T/e" "$T/chk" | grep -v '^wim: note' | head -c 300)"; }
    done
    [ $ok = 1 ] && echo "PASS $t" || echo "FAIL $t: $msg"
done
t=run_load_kv_skips_the_document
prefilled() { $PY -c 'import json,sys; print([e for e in map(json.loads, open(sys.argv[1])) if e["event"] == "done"][0]["tokens_prefilled"])' "$1"; }
a=$(prefilled "$T/fresh-wim.jsonl") b=$(prefilled "$T/loaded-llm-wim.jsonl")
doc_tokens=$($PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["tokens"])' "$T/fresh-wim.jsonl")
[ "$((a - b))" -ge "$doc_tokens" ] && echo "PASS $t (prefilled $b tokens against $a)" || echo "FAIL $t: prefilled $b against $a"

# Input checks: one line, exit 2.
check_err() {
    local name=$1
    shift
    "$@" >/dev/null 2>"$T/e"
    local rc=$?
    [ $rc -eq 2 ] && [ "$(wc -l <"$T/e")" -eq 1 ] && echo "PASS $name" || echo "FAIL $name: exit $rc $(head -c 200 "$T/e")"
}
: >"$T/empty.txt"
check_err run_empty_document $W run -m "$STORIES" -d "$T/empty.txt" -q "$Q"
check_err run_empty_query $W run -m "$STORIES" -d "$T/doc.txt" -q ""
check_err run_document_too_long $W run -m "$STORIES" -d "$T/long.txt" -q "$Q" --kv-capacity 1024
mkdir -p "$T/badprompts"
cp "$S/data/wim-templates/"*.txt "$T/badprompts/" 2>/dev/null
echo 'Tell me about {nonsense}.' >"$T/badprompts/final_answer.txt"
check_err run_unknown_placeholder $W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" --prompts "$T/badprompts"
cp "$T/doc-wim.kv" "$T/flip.kv"
printf '\x5a' | dd of="$T/flip.kv" bs=1 seek=$(($(stat -c %s "$T/flip.kv") - 50)) conv=notrunc 2>/dev/null
check_err run_load_kv_corrupt $W run -m "$STORIES" --load-kv "$T/flip.kv" -q "$Q"
if [ -f "$T/r-q8_0.gguf" ]; then
    check_err run_load_kv_other_model $W run -m "$T/r-q8_0.gguf" --load-kv "$T/doc-wim.kv" -q "$Q"
fi
$W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" $common --stream --kv-capacity 600 --pattern llm \
    --save-kv "$T/window.kv" >/dev/null 2>&1
check_err run_load_kv_window_wim $W run -m "$STORIES" --load-kv "$T/window.kv" -q "$Q" --pattern wim
check_err run_bad_pattern $W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" --pattern nope
# Output paths are checked before any work (the run would otherwise be lost at the end).
check_err run_save_kv_missing_folder $W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" --save-kv "$T/no-such-dir/kv.bin"
check_err run_save_kv_is_folder $W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" --save-kv "$T"
check_err run_events_missing_folder $W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" --events "$T/no-such-dir/e.jsonl"
check_err generate_save_kv_missing_folder $W generate -m "$STORIES" -p "Once" --save-kv "$T/no-such-dir/kv.bin"
check_err run_doc_and_load_kv $W run -m "$STORIES" -d "$T/doc.txt" --load-kv "$T/doc-wim.kv" -q "$Q"
# A CLI that never surprises: blank input refused, enum errors list the values, write
# errors are errors, the answer line carries no stray spaces, --version and wim help.
printf '  \n\t ' >"$T/blank.txt"
check_err run_whitespace_document $W run -m "$STORIES" -d "$T/blank.txt" -q "$Q"
check_err run_whitespace_query $W run -m "$STORIES" -d "$T/doc.txt" -q "   "
t=run_enum_error_lists_values
$W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" --kv-type f8 2>"$T/e" >/dev/null
grep -q "one of: f16, f32" "$T/e" && echo "PASS $t" || echo "FAIL $t: $(cat "$T/e")"
small="--segment-tokens 200 --margin-tokens 8 --answer-tokens 8 --max-segments 2"
t=run_events_write_error
$W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" $small --events /dev/full >/dev/null 2>"$T/e"
rc=$?
[ $rc -ne 0 ] && grep -q "cannot write events" "$T/e" && echo "PASS $t" || echo "FAIL $t: exit $rc $(head -c 200 "$T/e")"
t=run_stdout_write_error
$W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" $small >/dev/full 2>"$T/e"
rc=$?
[ $rc -ne 0 ] && grep -q "cannot write the output" "$T/e" && echo "PASS $t" || echo "FAIL $t: exit $rc $(head -c 200 "$T/e")"
t=run_answer_line_trimmed
args=()
for m in "$STORIES" "$T/chatml.gguf" "$T/r-q8_0.gguf" "$T/r-f16.gguf"; do
    [ -f "$m" ] || continue
    n=$(basename "$m" .gguf)
    $W run -m "$m" -d "$T/doc.txt" -q "$Q" $small --chat raw --events "$T/trim-$n.jsonl" \
        >"$T/trim-$n.txt" 2>/dev/null
    args+=("$T/trim-$n.jsonl" "$T/trim-$n.txt")
done
$PY -c '
import json, sys
spaced = 0
for ev, txt in zip(sys.argv[1::2], sys.argv[2::2]):
    a = [e for e in map(json.loads, open(ev)) if e["event"] == "answer"][0]["text"]
    out = open(txt).read()
    assert out == a.strip() + "\n", (out, a)
    spaced += a != a.strip()
assert spaced, "vacuous: no raw answer had surrounding white space"
' "${args[@]}" && echo "PASS $t" || echo "FAIL $t"
t=version_and_help
$W --version | grep -qE '^wim [0-9]+\.[0-9]+\.[0-9]+ \(kernels: ' && [ "$($W help run)" = "$($W run --help)" ] &&
    $W help | grep -q "^  run " && echo "PASS $t" || echo "FAIL $t: $($W --version)"
t=run_refused_keeps_events_file
echo keep >"$T/kept.jsonl"
$W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" --prompts "$T/badprompts" --events "$T/kept.jsonl" >/dev/null 2>"$T/e"
rc=$?
[ $rc -eq 2 ] && [ "$(cat "$T/kept.jsonl")" = keep ] && echo "PASS $t" || echo "FAIL $t: exit $rc, file: $(head -c 100 "$T/kept.jsonl")"

# --show-prompts: a view of the run, not a change to it. Without it nothing differs; with it
# every prompt is printed on stderr as its prompt event says, each event is what the model
# reads (check_events.py --prompts: a margin's prompt starts with its segment, the segments
# follow the system prompt, the classifier sees the margin, the answer the kept ones), and
# its token count is what `wim tokenize` counts for the printed text.
show_prompts() { # name model extra-args...
    local name=$1 model=$2 r="$T/sp-$1"
    shift 2
    $W run -m "$model" -d "$T/doc.txt" -q "$Q" $common "$@" --events "$r-off.jsonl" >"$r-off.txt" 2>"$r-off.err" &&
        $W run -m "$model" -d "$T/doc.txt" -q "$Q" $common "$@" --show-prompts --events "$r-on.jsonl" \
            >"$r-on.txt" 2>"$r-on.err" || { echo "FAIL show_prompts_$name: $(tail -1 "$r-off.err" "$r-on.err")"; return; }
    local why=""
    cmp -s "$r-off.txt" "$r-on.txt" || why="the answer changed"
    grep -q -- '--- prompt:' "$r-off.err" && why="prompts printed without the flag"
    $PY "$HERE/check_events.py" --without-prompts "$r-on.jsonl" "$r-off.jsonl" >"$T/chk" 2>&1 &&
        $PY "$HERE/check_events.py" --prompts "$r-on.jsonl" "$T/doc.txt" >>"$T/chk" 2>&1 || why=$(tail -1 "$T/chk")
    # the stderr view against the events; each prompt's text to a file for `wim tokenize`
    $PY - "$r-on.jsonl" "$r-on.err" "$T/doc.txt" "$r-text" >"$r-counts" 2>"$T/chk" <<'PYEOF' || why="view: $(tail -1 "$T/chk")"
import json, re, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
doc = open(sys.argv[3], "rb").read()
segs = {e["index"]: e for e in ev if e["event"] == "segment"}
prompts = [e for e in ev if e["event"] == "prompt"]
view = open(sys.argv[2]).read()
head = re.compile(r"^--- prompt: (\w+)(?: \(segment (\d+)\))? \u00b7 (\d+) tokens.* ---$", re.M)
heads = list(head.finditer(view))
assert len(heads) == len(prompts), f"{len(heads)} headers for {len(prompts)} prompt events"
seen = set()
for k, (h, e) in enumerate(zip(heads, prompts)):
    assert (h[1], int(h[2] or 0) - 1, int(h[3])) == (e["kind"], e.get("index", -1), e["tokens"]), h[0]
    end = heads[k + 1].start() if k + 1 < len(heads) else len(view)
    body = view[h.end() + 1:end]
    shown = "text not shown" not in h[0]
    assert shown or e["kind"] in seen, f"{h[0]}: the first of its kind not shown"
    if e["kind"] in seen and e["kind"] != "margin":  # margins: again when their notes change
        assert not shown and body == "", f"{h[0]}: shown again"
    if shown:
        text = e["text"] + ("" if e["text"].endswith("\n") else "\n")
        assert body.startswith(text), f"{h[0]}: the text printed is not the event's"
    seen.add(e["kind"])
    # what `wim tokenize --parse-special` must count: a margin's tokens after its segment
    text, n = e["text"], e["tokens"]
    if e["kind"] == "margin":
        s = segs[e["index"]]
        text, n = text[len(doc[s["offset"]:s["offset"] + s["bytes"]].decode()):], n - e["segment_tokens"]
    open(f"{sys.argv[4]}-{k}", "w").write(text)
    print(k, n, "--add-bos" if e["bos"] else "")
PYEOF
    while read -r k n bos; do
        got=$($W tokenize -m "$model" -f "$r-text-$k" --parse-special $bos | wc -w)
        [ "$got" = "$n" ] || why="prompt $((k + 1)): $n tokens reported, wim tokenize counts $got"
    done <"$r-counts"
    [ -z "$why" ] && echo "PASS show_prompts_$name ($(wc -l <"$r-counts") prompts)" || echo "FAIL show_prompts_$name: $why"
}
show_prompts wim_branches "$STORIES" --max-segments 4
show_prompts wim_loop "$STORIES" --max-segments 4 --sequential-margins
show_prompts rag "$STORIES" --pattern rag --save-kv "$T/sp.kv"
show_prompts llm "$STORIES" --pattern llm
if [ -f "$T/chatml.gguf" ]; then
    show_prompts chatml "$T/chatml.gguf" --max-segments 3 --classify-tokens 4
else echo "SKIP show_prompts_chatml: $S/vocab/ggml-vocab-qwen2.gguf not found"; fi
t=show_prompts_all
$W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" $common --max-segments 4 --show-prompts=all >/dev/null 2>"$T/e"
n=$(grep -c -- '^--- prompt: margin' "$T/e")
[ "$n" = 4 ] && ! grep -q 'text not shown' "$T/e" && [ "$(grep -c '^Question:' "$T/e")" -ge 9 ] &&
    echo "PASS $t" || echo "FAIL $t: $n margin prompts; $(grep -m1 'not shown' "$T/e")"
check_err run_show_prompts_bad_value $W run -m "$STORIES" -d "$T/doc.txt" -q "$Q" --show-prompts=every
