#!/usr/bin/env bash
# fuzz.sh — every libFuzzer harness (tests/fuzz/) replayed over its committed seed corpus and
# the inputs of past findings, built without libFuzzer (tests/fuzz/replay.c): a broken
# property aborts, an input the library refuses is a pass. `make fuzz` runs the harnesses for
# real (clang, libFuzzer).
set -u
B=${WIM_BUILD:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/.."
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    bin=$B/tests/fuzz/$name
    if [ ! -x "$bin" ]; then
        echo "FAIL ${name}_replay: $bin not built"
        continue
    fi
    case $name in
    fuzz_tokenizer | fuzz_segment)
        if [ ! -d "$WIM_SHARED/vocab" ]; then
            echo "SKIP ${name}_replay: no vocabularies under $WIM_SHARED/vocab"
            continue
        fi
        ;;
    esac
    if out=$("$bin" "tests/fuzz/corpus/$name" "tests/fuzz/crashes/$name" 2>&1); then
        echo "PASS ${name}_replay ($(echo "$out" | tail -1))"
    else
        echo "FAIL ${name}_replay: $(echo "$out" | grep -m1 'fuzz:\|ERROR\|runtime error' || echo "$out" | tail -1)"
    fi
done
