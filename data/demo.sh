#!/usr/bin/env bash
# data/demo.sh WIM — what `make demo` runs: Writing in the Margins with the bundled model
# (data/wim-tiny/, trained by the project on a synthetic world) over data/demo/document.txt,
# a held-out document ten times longer than the model's 512-token window. The progress bar
# and each margin stream to stderr; the answer is printed beside the expected one.
# WIM_DEMO_MODEL, WIM_DEMO_DOC and WIM_DEMO_QUERY override the model, document and question.
set -u
wim=$1
here=$(cd "$(dirname "$0")" && pwd)
model=${WIM_DEMO_MODEL:-$here/wim-tiny/wim-tiny.gguf}
doc=${WIM_DEMO_DOC:-$here/demo/document.txt}
query=${WIM_DEMO_QUERY:-$(cat "$here/demo/query.txt")}
if [ ! -f "$model" ]; then
    echo "demo: $model not found (it is committed with the repository; 'make model' retrains it)" >&2
    exit 2
fi
read -r -a flags <"$here/wim-tiny/wim-run.flags"
echo "== wim demo: Writing in the Margins with $(basename "$model") =="
echo "   document: ${doc#"$(dirname "$here")/"} ($(wc -l <"$doc") lines, $("$wim" tokenize -m "$model" -f "$doc" | wc -w) tokens; the model's window is 512)"
echo "   question: $query"
echo "   flags:    ${flags[*]}"
if [ -z "${WIM_DEMO_MODEL:-}" ]; then
    echo "   The bundled model quotes its margins (--extractive-margins): each line is the"
    echo "   sentence of the segment it finds likeliest, kept only if it meant that sentence;"
    echo "   a segment with nothing it was sure of gets a blank margin (README: the bundled model)."
fi
echo
answer=$("$wim" run -m "$model" -d "$doc" -q "$query" "${flags[@]}" --show-margins) || exit
echo
echo "== answer ==   $answer"
if [ -z "${WIM_DEMO_QUERY:-}" ]; then echo "== expected == $(cat "$here/demo/expected.txt")"; fi
