#!/usr/bin/env bash
# data/demo.sh WIM SHARED — what `make demo` runs: Writing in the Margins over
# data/demo/document.txt with the best model the project has.
# Until a bundled margin-writing model exists, that is ../shared's stories260K:
# a real 260K-parameter Llama trained on children's stories. It cannot follow
# instructions, so its margins and answer are story text, not extraction; the
# demo shows the pipeline working end to end (segments, margins, verdicts,
# the KV cache restored after every margin, the answer), not model quality.
set -u
wim=$1 shared=$2
here=$(cd "$(dirname "$0")" && pwd)
model=${WIM_DEMO_MODEL:-$shared/models/stories260K.gguf}
if [ ! -f "$model" ]; then
    echo "demo: $model not found; run: $wim run -m YOUR_MODEL.gguf -d $here/demo/document.txt -q \"$(cat "$here/demo/query.txt")\"" >&2
    exit 2
fi
echo "== wim demo: Writing in the Margins on $(basename "$model") =="
echo "   NOTE: stories260K is a tiny story model; it cannot follow instructions, so expect"
echo "   story-like margins and answer. The pipeline itself is what this shows."
echo "   document: data/demo/document.txt   query: $(cat "$here/demo/query.txt")"
echo
answer=$("$wim" run -m "$model" -d "$here/demo/document.txt" -q "$(cat "$here/demo/query.txt")" \
    --segment-tokens 160 --margin-tokens 40 --answer-tokens 40 --show-margins --lenient-classifier) || exit
echo
echo "== answer =="
printf '%s\n' "$answer" | sed '/^[[:space:]]*$/d'
echo
echo "== expected answer =="
cat "$here/demo/expected.txt"
