#!/usr/bin/env bash
# data/demo.sh WIM SHARED — what `make demo` runs.
# Until the WiM pipeline and the bundled margin model land, the demo shows the
# engine itself: the real (tiny) stories260K model continuing a story.
set -u
wim=$1 shared=$2
model=$shared/models/stories260K.gguf
if [ ! -f "$model" ]; then
    echo "demo: $model not found; run: $wim generate -m YOUR_MODEL.gguf -p \"Once upon a time\"" >&2
    exit 2
fi
echo "== wim demo: stories260K (a 260K-parameter Llama trained on TinyStories) =="
echo "   It can only continue children's stories; it cannot follow instructions."
echo
"$wim" info -m "$model" --no-tensors
echo
echo "== greedy continuation of \"Once upon a time, there was a dragon\" =="
"$wim" generate -m "$model" -p "Once upon a time, there was a dragon" -n 120
echo
