#!/usr/bin/env bash
# bench/run.sh BUILD — the project's benchmarks (what `make bench` runs).
# Makes the benchmark model once (random weights, Qwen2.5-0.5B shape, Q8_0, the
# gpt-2 vocabulary from ../shared), then prints the throughput tables for the
# detected kernels and for AVX2, the kernel and tokenizer microbenchmarks, and the
# bundled model's quote search, pruned against exhaustive (bench/quote-search.py).
set -eu
build=${1:-build}
wim=$build/wim
shared=${WIM_SHARED:-../shared}
models=bench/models
mkdir -p "$models"
model=$models/qwen2.5-0.5b-shape-q8_0.gguf
if [ ! -f "$model" ]; then
    echo "making $model (random weights; about 0.5 GB)" >&2
    "$wim" mkmodel --vocab-from "$shared/vocab/ggml-vocab-gpt-2.gguf" -o "$model" --arch qwen2 \
        --type q8_0 --dim 896 --layers 24 --heads 14 --kv-heads 2 --ff 4864 --ctx 32768 --tied --seed 1
fi
threads=${THREADS:-2}
echo "== wim bench, $threads threads, kernels chosen at run time =="
"$wim" bench -m "$model" -p "${PROMPTS:-512,4096}" -n 128 -r "${REPEATS:-3}" -t "$threads"
if [ "$("$wim" info --cpu | awk '/^kernels/ {print $2}')" != avx2 ] && grep -q avx2 /proc/cpuinfo; then
    echo "== the same with WIM_ISA=avx2 =="
    WIM_ISA=avx2 "$wim" bench -m "$model" -p "${PROMPTS:-512,4096}" -n 128 -r "${REPEATS:-3}" -t "$threads"
fi
for b in "$build"/bench/*; do
    [ -x "$b" ] || continue
    echo "== $(basename "$b") =="
    "$b"
done
echo "== the quote search, pruned against exhaustive (bundled model, 1 thread) =="
/usr/bin/python3 bench/quote-search.py --wim "$wim"
