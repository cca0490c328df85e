#!/usr/bin/env bash
# tests/fuzz/make-seeds.sh WIM — writes the seed corpora (tests/fuzz/corpus/NAME/) and the
# regression inputs of past findings (tests/fuzz/crashes/NAME/) that are committed. Run once
# after a format change; each seed is small (a few KiB) and made here, from the project's own
# files and tiny random models, never copied from ../shared.
set -eu
W=$(realpath "${1:-build/wim}")
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
c=$here/corpus
x=$here/crashes
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$c"
mkdir -p "$c"/{fuzz_gguf,fuzz_model,fuzz_tokenizer,fuzz_segment,fuzz_prompts,fuzz_kvfile,fuzz_repro_load,fuzz_serve_request} "$x"/{fuzz_segment,fuzz_model,fuzz_kvfile}

# A three-token byte-level BPE vocabulary (a, b, ab), the smallest a model can carry.
/usr/bin/python3 - "$tmp/vocab.gguf" <<'EOF'
import struct, sys
def s(x): b = x.encode(); return struct.pack("<Q", len(b)) + b
kv = [("general.architecture", 8, s("llama")), ("tokenizer.ggml.model", 8, s("gpt2")),
      ("tokenizer.ggml.pre", 8, s("gpt-2")),
      ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 3) + s("a") + s("b") + s("ab")),
      ("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, 1) + s("a b"))]
out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
for k, t, v in kv:
    out += s(k) + struct.pack("<I", t) + v
open(sys.argv[1], "wb").write(out)
EOF
cp "$tmp/vocab.gguf" "$c/fuzz_gguf/vocab-bpe3.gguf"

# Tiny random models of each architecture and a few weight types.
mk() { "$W" mkmodel --vocab-from "$tmp/vocab.gguf" -o "$c/fuzz_model/$1.gguf" "${@:2}" >/dev/null; }
mk llama-f32 --dim 8 --layers 1 --heads 2 --kv-heads 1 --ff 16 --type f32
mk qwen2-f16-bias --arch qwen2 --dim 8 --layers 2 --heads 2 --kv-heads 2 --ff 16 --type f16 --qkv-bias
mk phi3-fused --arch phi3 --dim 8 --layers 1 --heads 2 --kv-heads 2 --ff 16 --type f32 --fused
mk gemma2-softcap --arch gemma2 --dim 8 --layers 2 --heads 2 --kv-heads 1 --ff 16 --type bf16 \
    --softcap 50,30 --sliding-window 4
mk llama-q8_0 --dim 32 --layers 1 --heads 4 --kv-heads 2 --ff 32 --type q8_0 --tied
cp "$c/fuzz_model/llama-f32.gguf" "$c/fuzz_gguf/model-llama-f32.gguf"
# past finding: a block count the tensor table cannot hold (was a 74 GiB calloc)
/usr/bin/python3 "$root/tests/gguf_patch.py" "$c/fuzz_model/llama-f32.gguf" \
    "$x/fuzz_model/block-count-268435458.gguf" --u32 llama.block_count 268435458
# past finding: weights that drive activations to NaN (was undefined behaviour in quantizing)
/usr/bin/python3 "$root/tests/gguf_patch.py" "$c/fuzz_model/llama-f32.gguf" \
    "$x/fuzz_model/nan-weight.gguf" --f32 blk.0.attn_norm.weight 0 nan

# Text for the tokenizers (first byte: vocabulary) and the segmenter (first byte: vocabulary,
# token limit).
texts=("Hello, world! It's 3.14 o'clock." "Ünïcödé: Жизнь 中文 ខ្មែរ 😀👍🏽 done."
       $'  spaces\tand\nnew lines\r\n' "<|im_start|>user <s></s> [INST] tags" "1234567890 12,345.67")
i=0
for t in "${texts[@]}"; do
    for v in 0 2 6 7; do printf "\\x$(printf %02x $v)%s" "$t" >"$c/fuzz_tokenizer/t$i-v$v"; done
    printf "\\x$(printf %02x $((i * 6)))%s" "$t" >"$c/fuzz_segment/t$i"
    i=$((i + 1))
done
head -c 1500 "$root/data/demo/document.txt" | { printf '\x0e'; cat; } >"$c/fuzz_segment/demo"
# past finding: a read one byte before the text (floor_boundary), SPM, limit 1
printf '\x00\xa8!' >"$x/fuzz_segment/floor-boundary"

# The project's prompt templates (first byte: kind), and a few broken ones.
k=0
for f in system_message extractive_summary classification final_answer; do
    { printf "\\x$(printf %02x $k)"; cat "$root/data/prompts/$f.txt"; } >"$c/fuzz_prompts/$f"
    k=$((k + 1))
done
printf '\x02{answer} {query} {nope} {{ } {' >"$c/fuzz_prompts/broken"

# Saved documents of the tiny llama (its three tokens spell every text here): as written
# (first byte even), and unsealed (odd: the header, then the raw payload the harness
# compresses and seals with a correct CRC).
mkdir -p "$tmp/prompts"
printf 'ab' >"$tmp/prompts/system_message.txt"
printf 'b' >"$tmp/prompts/extractive_summary.txt"
printf '{answer}' >"$tmp/prompts/classification.txt"
printf '{margins}{query}' >"$tmp/prompts/final_answer.txt"
printf 'abbaababbbaab' >"$tmp/doc.txt"
for p in llm wim; do
    "$W" run -m "$c/fuzz_model/llama-f32.gguf" -d "$tmp/doc.txt" -q ab --prompts "$tmp/prompts" \
        --chat raw --pattern $p --segment-tokens 3 --answer-tokens 1 --margin-tokens 2 \
        --save-kv "$tmp/$p.kv" >/dev/null
    { printf '\x00'; cat "$tmp/$p.kv"; } >"$c/fuzz_kvfile/$p"
    /usr/bin/python3 - "$tmp/$p.kv" "$c/fuzz_kvfile/$p-unsealed" <<'EOF'
import sys, zlib
b = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(b"\x01" + b[:80] + zlib.decompress(b[80:]))
EOF
done
# past finding: a header claiming 16M cells (was reserved before the payload was checked)
/usr/bin/python3 - "$tmp/llm.kv" "$x/fuzz_kvfile/capacity-16M" <<'EOF'
import struct, sys, zlib
b = bytearray(open(sys.argv[1], "rb").read())
struct.pack_into("<i", b, 32, 1 << 24)  # capacity
open(sys.argv[2], "wb").write(b"\x01" + bytes(b[:80]) + zlib.decompress(bytes(b[80:])))
EOF

# Dataset files in each loader's format (first byte: hotpotqa, squad, multihop-rag, babilong).
printf '\x00[{"_id":"a1","question":"Who?","answer":"Ann","supporting_facts":[["T",0]],"context":[["T",["Ann was here."," Bo too."]],["U",["Nothing."]]]}]' >"$c/fuzz_repro_load/hotpotqa"
printf '\x00{"_id":"a2","question":"Q?","answer":"x","supporting_facts":[],"context":[]}\n' >"$c/fuzz_repro_load/hotpotqa-jsonl"
printf '\x01{"version":"v2.0","data":[{"title":"T","paragraphs":[{"context":"Ann sat.","qas":[{"id":"q","question":"Who sat?","answers":[{"text":"Ann","answer_start":0}],"is_impossible":false}]}]}]}' >"$c/fuzz_repro_load/squad"
printf '\x02[{"query":"Who?","answer":"Ann","question_type":"inference_query","evidence_list":[{"title":"T","fact":"Ann won.","source":"S"}]}]' >"$c/fuzz_repro_load/multihop"
printf '\x03[{"context":"Mary went home. John left.","query":"Where is Mary?","target":"home"}]' >"$c/fuzz_repro_load/babilong"

# Server requests (first byte: the endpoint).
printf '\x00{"text":"A document.","stream":true}' >"$c/fuzz_serve_request/document"
printf '\x01{"document":"d1","question":"When?","pattern":"rag","top_k":2,"temp":0.5,"stream":true,"run_id":"x-1"}' >"$c/fuzz_serve_request/wim"
printf '\x01{"text":"Doc","question":"Q","classify":"logit","retriever":"bm25","seed":7,"lenient_classifier":true}' >"$c/fuzz_serve_request/wim-text"
printf '\x02{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]},{"role":"assistant","content":"Hello"},{"role":"user","content":"Bye"}],"max_tokens":4,"stop":["a","b"],"temperature":0.7,"stream":true}' >"$c/fuzz_serve_request/chat"
echo "seeds: $(find "$c" -type f | wc -l) files, $(du -sk "$c" | cut -f1) KiB; regressions: $(find "$x" -type f | wc -l)"
