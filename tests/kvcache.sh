#!/usr/bin/env bash
# kvcache.sh — KV cache persistence through the CLI: save, then load in a fresh
# process, reproduces the next logits bit for bit; damaged files and files from
# another model are rejected with one line and exit 2, the cache untouched.
set -u
W=${WIM_BIN:-build/wim}
S=${WIM_SHARED:-../shared}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
M=$S/models/stories260K.gguf
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
if [ ! -f "$M" ]; then
    echo "SKIP kv_persistence: $M not found"
    exit 0
fi
ids=$(tr ' ' ',' <"$S/models/stories260K.expected-ids.txt")
A="1,$(echo "$ids" | cut -d, -f1-149)"    # 150 tokens
B=$(echo "$ids" | cut -d, -f150-189)      # 40 more
common="--kv-capacity 512 --chunk 150 --top 8"

t=kv_save_load_bit_exact
$W logits -m "$M" --tokens "$A" $common --save-kv "$T/a.kv" >/dev/null 2>"$T/e" &&
    $W logits -m "$M" --tokens "$B" $common --load-kv "$T/a.kv" | tail -n +2 >"$T/loaded.jsonl" &&
    $W logits -m "$M" --tokens "$A,$B" $common | tail -n 40 >"$T/direct.jsonl"
if [ -s "$T/loaded.jsonl" ] && cmp -s "$T/loaded.jsonl" "$T/direct.jsonl" &&
    [ "$(wc -l <"$T/loaded.jsonl")" -eq 40 ] && head -1 "$T/loaded.jsonl" | grep -q '"pos":150,'; then
    pass $t
else fail $t "logits after loading differ from one uninterrupted run: $(head -c 300 "$T/e")"; fi

t=kv_save_is_atomic
ls "$T" | grep -q 'tmp' && fail $t "temporary file left behind" || pass $t

expect_reject() { # name, kv file
    $W logits -m "${3:-$M}" --tokens "$B" $common --load-kv "$2" >/dev/null 2>"$T/e"
    local rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l <"$T/e")" -eq 1 ]; then pass "$1 ($(cut -c1-90 "$T/e"))"
    else fail "$1" "exit $rc: $(head -c 300 "$T/e")"; fi
}
size=$(stat -c %s "$T/a.kv")
cp "$T/a.kv" "$T/flip.kv"
printf '\x55' | dd of="$T/flip.kv" bs=1 seek=$((size - 100)) conv=notrunc 2>/dev/null
cmp -s "$T/a.kv" "$T/flip.kv" && printf '\xaa' | dd of="$T/flip.kv" bs=1 seek=$((size - 100)) conv=notrunc 2>/dev/null
expect_reject kv_reject_flipped_byte "$T/flip.kv"
head -c $((size - 7)) "$T/a.kv" >"$T/trunc.kv"
expect_reject kv_reject_truncated "$T/trunc.kv"
head -c 20 "$T/a.kv" >"$T/stub.kv"
expect_reject kv_reject_header_only "$T/stub.kv"
expect_reject kv_reject_not_a_cache "$M"
if [ -f "$S/vocab/ggml-vocab-llama-spm.gguf" ]; then
    $W mkmodel --vocab-from "$S/vocab/ggml-vocab-llama-spm.gguf" -o "$T/other.gguf" --dim 64 --heads 8 \
        --kv-heads 4 --layers 5 --ff 172 --seed 3 && expect_reject kv_reject_other_model "$T/a.kv" "$T/other.gguf"
fi
