#!/usr/bin/env bash
# kvcache.sh — KV cache persistence through the CLI: save, then load in a fresh
# process, reproduces the next logits bit for bit; damaged files and files from
# another model are rejected with one line and exit 2, the cache untouched.
# Streaming (--kv-pin): prefill gives the same logits for every --chunk, and a
# streamed cache saved with one --chunk loads and continues with another.
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
# the header is under the CRC too: a capacity of 16M cells written into it is refused
# (and, the cache never having streamed, not reserved first)
cp "$T/a.kv" "$T/cap.kv"
printf '\x00\x00\x00\x01' | dd of="$T/cap.kv" bs=1 seek=32 conv=notrunc 2>/dev/null
expect_reject kv_reject_header_capacity "$T/cap.kv"
expect_reject kv_reject_not_a_cache "$M"
if [ -f "$S/vocab/ggml-vocab-llama-spm.gguf" ]; then
    $W mkmodel --vocab-from "$S/vocab/ggml-vocab-llama-spm.gguf" -o "$T/other.gguf" --dim 64 --heads 8 \
        --kv-heads 4 --layers 5 --ff 172 --seed 3 && expect_reject kv_reject_other_model "$T/a.kv" "$T/other.gguf"
fi

# ---- streaming through a 128-cell window, 8 pinned: 400 tokens lap it thrice ----
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
L="1,$ids,$(echo "$ids" | cut -d, -f1-199)" # 400 tokens
P=$(echo "$L" | cut -d, -f1-300)
Q=$(echo "$L" | cut -d, -f301-340)
stream="--kv-capacity 128 --kv-pin 8 --kv-type f32 --top 16"

t=kv_stream_prefill_chunk_invariant
if [ -x "$PY" ]; then
    ok=1 msg=
    for k in 1 7 127 128 400; do
        $W logits -m "$M" --tokens "$L" $stream --chunk $k >"$T/s$k.jsonl" 2>"$T/e" ||
            { ok=0; msg="chunk $k: $(head -c 200 "$T/e")"; }
    done
    for k in 7 127 128 400; do
        [ $ok = 1 ] || break
        $PY "$HERE/compare_logits.py" "$T/s$k.jsonl" "$T/s1.jsonl" 1e-4 >"$T/cmp.txt" ||
            { ok=0; msg="chunk $k vs 1: $(cat "$T/cmp.txt")"; }
    done
    [ $ok = 1 ] && pass "$t ($(cat "$T/cmp.txt"))" || fail $t "$msg"
else echo "SKIP $t: needs $PY"; fi

t=kv_stream_save_load_bit_exact
$W logits -m "$M" --tokens "$P" $stream --chunk 100 --save-kv "$T/s.kv" >/dev/null 2>"$T/e" &&
    $W logits -m "$M" --tokens "$Q" $stream --chunk 100 --load-kv "$T/s.kv" | tail -n +2 >"$T/sl.jsonl" &&
    $W logits -m "$M" --tokens "$P,$Q" $stream --chunk 100 | tail -n 40 >"$T/sd.jsonl"
if [ -s "$T/sl.jsonl" ] && cmp -s "$T/sl.jsonl" "$T/sd.jsonl" &&
    head -1 "$T/sl.jsonl" | grep -q '"pos":300,'; then
    pass $t
else fail $t "logits after loading differ from one uninterrupted run: $(head -c 300 "$T/e")"; fi

t=kv_stream_load_with_other_chunk
if [ -x "$PY" ] && [ -s "$T/sd.jsonl" ]; then
    # the file holds the window, not the physical ring: it loads whatever --chunk says
    { echo '{}'; cat "$T/sd.jsonl"; } >"$T/sd1.jsonl"
    if $W logits -m "$M" --tokens "$Q" $stream --chunk 1 --load-kv "$T/s.kv" >"$T/so.jsonl" 2>"$T/e" &&
        $PY "$HERE/compare_logits.py" "$T/so.jsonl" "$T/sd1.jsonl" 1e-4 >"$T/cmp.txt"; then
        pass "$t ($(cat "$T/cmp.txt"))"
    else fail $t "$(head -c 200 "$T/e") $(cat "$T/cmp.txt" 2>/dev/null)"; fi
else echo "SKIP $t: needs $PY and the previous test's output"; fi
