#!/usr/bin/env bash
# data/wim-tiny/make-model.sh WIM — what `make model` runs: retrains wim-tiny from scratch
# and replaces the committed model, vocabulary and training log.
#   1. PyTorch from Debian (python3-torch; installed when run as root, else requested);
#   2. train.py in build/wim-tiny/ (seeded; resumes from its checkpoint if interrupted;
#      its default 4,700 steps of ~16,600 tokens (78M) take minutes on a GPU, where one
#      H100 made the shipped model in 5.5, and 7–11 hours on one Zen 3 core in fp32;
#      extra arguments go to train.py, e.g. --minutes 5.5 or --device cpu);
#   3. check_logits.py: the engine's logits against PyTorch's on held-out inputs;
#   4. the Q8_0 GGUF, vocab.json and train-log.jsonl copied into data/wim-tiny/.
# Never part of `make test` or CI.
set -eu
wim=$1
here=$(cd "$(dirname "$0")" && pwd)
out=${WIM_MODEL_OUT:-$here/../../build/wim-tiny}
py=${PYTHON:-/usr/bin/python3} # PYTHON=… for a PyTorch with CUDA
if ! $py -c 'import torch' 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y python3-torch libopenblas0-pthread
    else
        echo "make model: PyTorch is missing; run: sudo apt-get install python3-torch libopenblas0-pthread" >&2
        exit 2
    fi
fi
mkdir -p "$out"
workers=$(($(nproc) > 2 ? $(nproc) - 1 : 1)) # processes that make batches ahead
$py "$here/train.py" --out "$out" --workers $workers "${@:2}"
$py "$here/check_logits.py" "$out/wim-tiny-f16.gguf" --wim "$wim" --vocab "$out/vocab.json" --tol 1e-3
# Q8_0 is the shipped form, checked loosely: the F16 check above is the exactness test, and
# a row of 128 is four Q8_0 blocks (run 6: 5.4e-2; run 15, 3 layers: 1.01e-1, argmax 97.5-99.6 %).
$py "$here/check_logits.py" "$out/wim-tiny-q8_0.gguf" --wim "$wim" --vocab "$out/vocab.json" --tol 1.5e-1
cp "$out/wim-tiny-q8_0.gguf" "$here/wim-tiny.gguf"
cp "$out/vocab.json" "$out/train-log.jsonl" "$here/"
echo "make model: data/wim-tiny/wim-tiny.gguf replaced; run 'make test' and bench/wim-tiny-eval.py"
