#!/usr/bin/env bash
# engine.sh — end-to-end tests of the engine through the `wim` CLI:
# the real stories260K model against its known output, chunked-prefill
# exactness, an independent NumPy reference on random models of every
# architecture and weight type, malformed files, thread-count invariance, and
# `wim logits --trace` (its weights and norms against the same reference).
# Prints PASS/FAIL/SKIP lines for tests/run.sh.
set -u
W=${WIM_BIN:-build/wim}
S=${WIM_SHARED:-../shared}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
STORIES=$S/models/stories260K.gguf
GPT2=$S/vocab/ggml-vocab-gpt-2.gguf

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
skip() { echo "SKIP $1: $2"; }
have_stories() { [ -f "$STORIES" ]; }
have_numpy() { $PY -c 'import numpy' 2>/dev/null; }
# Bad input: exit 2 and exactly one line on stderr, starting "wim: ".
expect_error() { # name, command...
    local name=$1
    shift
    "$@" >"$T/o.txt" 2>"$T/e.txt"
    local rc=$? lines
    lines=$(wc -l <"$T/e.txt")
    if [ $rc -eq 2 ] && [ "$lines" -eq 1 ] && grep -q '^wim: ' "$T/e.txt"; then pass "$name"
    else fail "$name" "exit $rc, $lines stderr lines: $(head -c 300 "$T/e.txt")"; fi
}

# 1. The real trained model reproduces llama2.c's greedy output byte for byte.
t=stories260K_expected_output
if have_stories; then
    if $W generate -m "$STORIES" -n 200 --temp 0 >"$T/out.txt" 2>"$T/err.txt" &&
        cmp -s "$T/out.txt" "$S/models/stories260K.expected.txt"; then
        pass $t
    else fail $t "output differs from stories260K.expected.txt: $(head -c 200 "$T/out.txt")"; fi
else skip $t "$STORIES not found (set WIM_SHARED)"; fi

# 2. Chunked prefill is exact: 300 tokens, chunks 1, 7, 64, 300. With an f32
# KV cache the only differences are float reassociation in the products; with
# the default f16 cache, values near an fp16 rounding boundary can round the
# other way, which shows up as ~1e-4 in the logits.
ids=$(tr ' ' ',' <"$S/models/stories260K.expected-ids.txt" 2>/dev/null)
for spec in f32:1e-4 f16:1e-3; do
    kv=${spec%%:*} tol=${spec#*:} t=chunked_prefill_logits_stories260K_kv_${spec%%:*}
    if have_stories && have_numpy; then
        toks="1,$ids,$(echo "$ids" | cut -d, -f1-99)"
        ok=1 msg=
        for k in 1 7 64 300; do
            $W logits -m "$STORIES" --tokens "$toks" --top 10 --chunk $k --kv-type $kv \
                >"$T/c$k.jsonl" || ok=0
        done
        for k in 1 7 64; do
            $PY "$HERE/compare_logits.py" "$T/c$k.jsonl" "$T/c300.jsonl" $tol >"$T/cmp.txt" ||
                { ok=0; msg="chunk $k: $(cat "$T/cmp.txt")"; }
        done
        [ $ok = 1 ] && pass "$t (tolerance $tol)" || fail $t "${msg:-wim logits failed}"
    else skip $t "needs $STORIES and python3-numpy"; fi
done

t=chunked_prefill_greedy_stories260K
if have_stories; then
    # a ~300-token prompt: the known story twice
    { cat "$S/models/stories260K.expected.txt"; echo; head -c 250 "$S/models/stories260K.expected.txt"; } >"$T/prompt.txt"
    ok=1
    for k in 1 7 64 300; do
        $W generate -m "$STORIES" -f "$T/prompt.txt" -n 40 --chunk $k >"$T/g$k.txt" 2>/dev/null || ok=0
    done
    for k in 1 7 64; do cmp -s "$T/g$k.txt" "$T/g300.txt" || ok=0; done
    [ -s "$T/g300.txt" ] || ok=0
    [ $ok = 1 ] && pass $t || fail $t "continuations differ across chunk sizes"
else skip $t "$STORIES not found"; fi

# 3. An independent reference (tests/reference_forward.py) on random models.
if [ -f "$GPT2" ] && have_numpy; then
    run_ref() { # name tol mkmodel-args...   (KV=f32 before it: an f32 KV cache)
        local name=$1 tol=$2 kv=${KV:-f16}
        shift 2
        local m="$T/$name.gguf" toks="464,5044,1110,257,640,11,612,373,257,1310,2576,13,50256"
        if ! $W mkmodel --vocab-from "$GPT2" -o "$m" "$@" 2>"$T/err.txt"; then
            fail "reference_$name" "mkmodel: $(cat "$T/err.txt")"
            return
        fi
        $W logits -m "$m" --tokens "$toks" --top 16 --chunk 5 --kv-type $kv >"$T/$name.jsonl" 2>"$T/err.txt" &&
            $PY "$HERE/reference_forward.py" "$m" "$toks" $kv >"$T/$name.ref" &&
            if $PY "$HERE/compare_logits.py" "$T/$name.jsonl" --ref "$T/$name.ref" "$tol" >"$T/cmp.txt"; then
                pass "reference_$name ($(cat "$T/cmp.txt"))"
            else fail "reference_$name" "$(cat "$T/cmp.txt")"; fi
        rm -f "$m"
    }
    common="--dim 64 --heads 4 --kv-heads 2 --ff 96 --layers 2 --seed 7"
    run_ref llama_f32 1e-4 --arch llama --type f32 $common
    run_ref llama_f16 1e-4 --arch llama --type f16 $common
    run_ref llama_bf16 1e-4 --arch llama --type bf16 $common
    run_ref llama_q8_0 2e-3 --arch llama --type q8_0 $common
    run_ref llama3_rope_freqs_tied 1e-4 --arch llama --type f32 $common --rope-freqs --tied --rope-theta 500000
    run_ref llama_linear_rope_scaling 1e-4 --arch llama --type f32 $common --rope-scale 4
    run_ref llama_mha 1e-4 --arch llama --type f16 --dim 64 --heads 4 --kv-heads 4 --ff 96 --layers 1
    run_ref qwen2_bias_tied_f32 1e-4 --arch qwen2 --type f32 $common --tied
    run_ref qwen2_q8_0 2e-3 --arch qwen2 --type q8_0 $common
    run_ref phi3_fused_f16 1e-4 --arch phi3 --type f16 --dim 64 --heads 4 --kv-heads 4 --ff 96 --layers 2
    run_ref phi3_fused_bf16 1e-4 --arch phi3 --type bf16 --dim 64 --heads 4 --kv-heads 4 --ff 96 --layers 2
    run_ref phi3_q8_0 2e-3 --arch phi3 --type q8_0 --dim 64 --heads 4 --kv-heads 4 --ff 96 --layers 2
    # The other weight types, decoded by the reference's own NumPy decoders, with
    # an f32 KV cache (with f16 K/V, a value within float noise of an fp16 rounding
    # boundary rounds the other way in one of the two and moves these random
    # models' logits by up to 3e-3). Most agree to ~4e-7, but an activation within
    # float noise of an 8-bit rounding midpoint can round the other way in one of
    # the two, and every later position inherits it: 4.1e-3 on the last model
    # here (the K-quants' 256-value activation blocks make each step coarser).
    # Those are the only differences: 5e-3. The 8-bit activations themselves cost
    # ~4e-3 against float ones.
    KV=f32 run_ref llama_q4_0 5e-3 --arch llama --type q4_0 $common
    KV=f32 run_ref llama_q4_1 5e-3 --arch llama --type q4_1 $common
    KV=f32 run_ref qwen2_q5_0 5e-3 --arch qwen2 --type q5_0 $common
    KV=f32 run_ref qwen2_q5_1_tied 5e-3 --arch qwen2 --type q5_1 $common --tied
    kq="--dim 256 --heads 4 --kv-heads 2 --ff 512 --layers 2 --seed 7"
    KV=f32 run_ref llama_q4_k 5e-3 --arch llama --type q4_k $kq
    KV=f32 run_ref llama_q5_k 5e-3 --arch llama --type q5_k $kq
    KV=f32 run_ref llama_q6_k 5e-3 --arch llama --type q6_k $kq
    KV=f32 run_ref llama_q4_k_m 5e-3 --arch llama --type q4_k_m $kq --layers 3
    KV=f32 run_ref qwen2_q5_k_m_bias_tied 5e-3 --arch qwen2 --type q5_k_m $kq --tied
    KV=f32 run_ref phi3_q4_k_m_fused 5e-3 --arch phi3 --type q4_k_m --dim 256 --heads 4 --kv-heads 4 --ff 512 --layers 2
    KV=f32 run_ref gemma2_q4_k_m 5e-3 --arch gemma2 --type q4_k_m $kq --sliding-window 4 --softcap 0.5,10
    KV=f32 run_ref qwen2_q4_k_m_fallback 5e-3 --arch qwen2 --type q4_k_m --dim 128 --heads 4 --kv-heads 2 --ff 256 --layers 2
else skip reference_models "needs $GPT2 and python3-numpy"; fi

# 3a. Long-context RoPE against the reference, at positions below and above the
# original context (16 here): YaRN (llama, NORM pairs) and LongRoPE (phi3, NEOX
# pairs) with its short factors (a KV capacity within the original context) and
# its long ones (beyond it), the attention factor computed or given. Then the
# attention shapes: a model's sliding window (prefill chunks of 5 and of all 41
# tokens), and heads x head size != embedding (Mistral-Nemo style).
if [ -f "$GPT2" ] && have_numpy; then
    shape_ref() { # name tokens capacity mkmodel-args...   (CHUNK=k: prefill chunk)
        local name=$1 toks=$2 cap=$3 m="$T/shape.gguf"
        shift 3
        $W mkmodel --vocab-from "$GPT2" -o "$m" --type f32 --heads 4 --ff 96 --layers 2 --ctx 64 \
            --rope-orig-ctx 16 "$@" 2>"$T/err.txt" &&
            $W logits -m "$m" --tokens "$toks" --top 16 --kv-type f32 --kv-capacity $cap \
                --chunk ${CHUNK:-512} >"$T/shape.jsonl" 2>>"$T/err.txt" &&
            $PY "$HERE/reference_forward.py" "$m" "$toks" f32 $cap >"$T/shape.ref" &&
            if $PY "$HERE/compare_logits.py" "$T/shape.jsonl" --ref "$T/shape.ref" 1e-4 >"$T/cmp.txt"; then
                pass "shape_$name ($(cat "$T/cmp.txt"))"
            else fail "shape_$name" "$(cat "$T/cmp.txt" "$T/err.txt")"; fi
    }
    long=$(seq -s, 100 140) short=$(seq -s, 100 111)
    shape_ref yarn_llama_41_tokens "$long" 41 --arch llama --dim 64 --kv-heads 2 --rope-yarn 4
    shape_ref yarn_qwen2_attn_factor "$long" 64 --arch qwen2 --dim 64 --kv-heads 2 --rope-yarn 8 \
        --rope-attn-factor 0.9
    shape_ref longrope_phi3_short_factors "$short" 16 --arch phi3 --dim 64 --kv-heads 4 --longrope
    shape_ref longrope_phi3_long_factors "$long" 64 --arch phi3 --dim 64 --kv-heads 4 --longrope
    shape_ref longrope_phi3_attn_factor "$long" 48 --arch phi3 --dim 64 --kv-heads 4 --longrope \
        --rope-attn-factor 1.3
    CHUNK=5 shape_ref sliding_window_llama_chunk5 "$long" 41 --arch llama --dim 64 --kv-heads 2 \
        --sliding-window 7
    shape_ref sliding_window_llama_one_chunk "$long" 41 --arch llama --dim 64 --kv-heads 2 \
        --sliding-window 7
    CHUNK=3 shape_ref sliding_window_phi3_longrope "$long" 64 --arch phi3 --dim 64 --kv-heads 4 \
        --sliding-window 5 --longrope
    shape_ref head_dim_24_llama "$long" 41 --arch llama --dim 64 --kv-heads 2 --head-dim 24
    CHUNK=7 shape_ref head_dim_24_qwen2_tied "$long" 41 --arch qwen2 --dim 64 --kv-heads 2 \
        --head-dim 24 --tied
    CHUNK=7 shape_ref head_dim_24_phi3_fused "$long" 41 --arch phi3 --dim 64 --kv-heads 4 \
        --head-dim 24
    # gemma2: embedding x sqrt(d), GeGLU, post-norms, a window on even layers only,
    # soft-capping made small enough to bite on random weights (0.5 moves these
    # logits by ~1e-3, so 1e-4 sees it)
    CHUNK=5 shape_ref gemma2_softcap_window "$long" 41 --arch gemma2 --dim 64 --kv-heads 2 \
        --layers 3 --sliding-window 5 --softcap 0.5,10
    shape_ref gemma2_one_chunk_head_dim_24 "$long" 41 --arch gemma2 --dim 64 --kv-heads 2 \
        --layers 3 --sliding-window 7 --softcap 0.5,10 --head-dim 24
    # a factors tensor of the wrong length, or one without the other, is refused
    $W mkmodel --vocab-from "$GPT2" -o "$T/lr.gguf" --arch phi3 --dim 64 --heads 4 --kv-heads 4 \
        --ff 96 --layers 1 --ctx 64 --rope-orig-ctx 16 --longrope
    $PY - "$T" <<'EOF'
import struct, sys
d = sys.argv[1]
b = bytearray(open(d + "/lr.gguf", "rb").read())
i = b.find(b"rope_factors_long.weight") + len(b"rope_factors_long.weight")
x = bytearray(b); struct.pack_into("<Q", x, i + 4, 7); open(d + "/lr-len.gguf", "wb").write(x)
j = b.find(b"rope_factors_short.weight")
x = bytearray(b); x[j:j + 12] = b"rope_factorX"; open(d + "/lr-one.gguf", "wb").write(x)
EOF
    expect_error longrope_factors_wrong_length $W info -m "$T/lr-len.gguf"
    grep -q "rope_factors_long.weight has 7 values, expected 8" "$T/e.txt" &&
        pass longrope_wrong_length_says_which || fail longrope_wrong_length_says_which "$(cat "$T/e.txt")"
    expect_error longrope_one_factors_tensor $W info -m "$T/lr-one.gguf"
else skip rope_scaling "needs $GPT2 and python3-numpy"; fi

# 3b. Every weight type decodes to the same floats as the reference's NumPy
# decoders, bit for bit (wim info --dump against reference_forward.py --dump).
if [ -f "$GPT2" ] && have_numpy; then
    for type in q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k; do
        t=dequant_matches_numpy_$type m="$T/deq-$type.gguf" ok=1 msg=
        $W mkmodel --vocab-from "$GPT2" -o "$m" --type $type --dim 256 --heads 4 --kv-heads 2 \
            --ff 512 --layers 1 --seed 5 2>"$T/err.txt" || { ok=0; msg="mkmodel: $(cat "$T/err.txt")"; }
        for tensor in token_embd.weight blk.0.ffn_down.weight blk.0.attn_k.weight; do
            [ $ok = 1 ] || break
            $W info -m "$m" --dump $tensor -n 5 >"$T/deq-wim.txt" &&
                $PY "$HERE/reference_forward.py" --dump "$m" $tensor 5 >"$T/deq-ref.txt" &&
                [ "$(wc -l <"$T/deq-wim.txt")" = 5 ] && cmp -s "$T/deq-wim.txt" "$T/deq-ref.txt" ||
                { ok=0; msg="$tensor differs: $(cmp "$T/deq-wim.txt" "$T/deq-ref.txt" 2>&1 | head -1)"; }
        done
        [ $ok = 1 ] && pass "$t (5 rows of 3 tensors)" || fail $t "$msg"
        rm -f "$m"
    done
else skip dequant_matches_numpy "needs $GPT2 and python3-numpy"; fi

# 3c. Files quantized by the peer (llama.cpp's llama-quantize) load and agree
# with the reference too. CI does not build the peer: bench/vs-llama.sh does.
PEER_BIN=$(ls -d "${WIM_BUILD:-build}"/peers/llama.cpp-*/build/bin 2>/dev/null | head -1)
if [ -n "$PEER_BIN" ] && [ -x "$PEER_BIN/llama-quantize" ] && [ -f "$GPT2" ] && have_numpy; then
    src="$T/peer-f32.gguf" toks="464,5044,1110,257,640,11,612,373,257,1310,2576,13,50256"
    $W mkmodel --vocab-from "$GPT2" -o "$src" --arch qwen2 --type f32 --dim 256 --heads 4 \
        --kv-heads 2 --ff 512 --layers 2 --seed 9
    for q in Q4_K_M Q5_K_M Q6_K Q4_0 Q4_1 Q5_0 Q5_1; do
        t=peer_quantized_$q m="$T/peer-$q.gguf"
        if ! "$PEER_BIN/llama-quantize" "$src" "$m" $q >"$T/pq.txt" 2>&1; then
            fail $t "llama-quantize: $(tail -1 "$T/pq.txt")"
            continue
        fi
        $W logits -m "$m" --tokens "$toks" --top 16 --chunk 5 --kv-type f32 >"$T/pq.jsonl" 2>"$T/err.txt" &&
            $PY "$HERE/reference_forward.py" "$m" "$toks" f32 >"$T/pq.ref" &&
            if $PY "$HERE/compare_logits.py" "$T/pq.jsonl" --ref "$T/pq.ref" 5e-3 >"$T/cmp.txt"; then
                pass "$t ($($W info -m "$m" --no-tensors | sed -n 's/^tensors *//p'); $(cat "$T/cmp.txt"))"
            else fail $t "$(cat "$T/cmp.txt" "$T/err.txt")"; fi
        rm -f "$m"
    done
else skip peer_quantized_files "no peer build in ${WIM_BUILD:-build}/peers (bench/vs-llama.sh builds it; CI does not)"; fi

# 4. Malformed files and bad usage: exit 2 and exactly one line on stderr.
if have_stories; then
    cp "$STORIES" "$T/good.gguf"
    head -c 100000 "$T/good.gguf" >"$T/trunc.gguf"
    printf 'GGUX' | cat - <(tail -c +5 "$T/good.gguf") >"$T/magic.gguf"
    $PY - "$T" <<'EOF'
import struct, sys
d = sys.argv[1]
b = bytearray(open(d + "/good.gguf", "rb").read())
def save(name, data): open(f"{d}/{name}.gguf", "wb").write(data)
x = bytearray(b); x[8:16] = struct.pack("<Q", 1 << 59); save("count", x)
i = b.find(b"token_embd.weight") + len("token_embd.weight")
x = bytearray(b); x[i + 4:i + 12] = struct.pack("<Q", 1 << 50); save("hugedim", x)
x = bytearray(b); x[i + 24:i + 32] = struct.pack("<Q", 3); save("misaligned", x)
x = bytearray(b); x[i + 24:i + 32] = struct.pack("<Q", 1 << 33); save("outside", x)
j = b.find(b"output_norm.weight") + len("output_norm.weight")
x = bytearray(b); x[j + 16:j + 24] = struct.pack("<Q", 0); save("overlap", x)
EOF
    for f in trunc magic count hugedim misaligned outside overlap; do
        expect_error "malformed_gguf_$f" $W info -m "$T/$f.gguf"
    done
    # a weight type wim does not read (Q2_K = 10) is named with its tensor
    $PY - "$T" <<'EOF'
import struct, sys
d = sys.argv[1]
b = bytearray(open(d + "/good.gguf", "rb").read())
i = b.find(b"token_embd.weight") + len("token_embd.weight")
nd = struct.unpack_from("<I", b, i)[0]
struct.pack_into("<I", b, i + 4 + 8 * nd, 10)
open(d + "/q2k.gguf", "wb").write(b)
EOF
    expect_error unsupported_type_q2_k $W info -m "$T/q2k.gguf"
    grep -q "token_embd.weight.*Q2_K" "$T/e.txt" && pass unsupported_type_names_tensor_and_type ||
        fail unsupported_type_names_tensor_and_type "$(cat "$T/e.txt")"
    expect_error malformed_gguf_generate $W generate -m "$T/trunc.gguf" -n 1
else skip malformed_gguf "$STORIES not found"; fi
expect_error missing_model_file $W info -m "$T/does-not-exist.gguf"
expect_error not_a_gguf $W info -m "$HERE/engine.sh"
expect_error unknown_flag $W generate --no-such-flag
expect_error bad_number $W generate -m x -n abc
expect_error unknown_command $W frobnicate
expect_error quote_min_prob_alone $W run -m x -d x -q x --quote-min-prob 0.1
expect_error quote_min_prob_range $W run -m x -d x -q x --extractive-margins --quote-min-prob 2
expect_error quote_notes_without_notes $W run -m x -d x -q x --extractive-margins --quote-notes
expect_error quote_exhaustive_alone $W run -m x -d x -q x --quote-exhaustive
expect_error answer_from_margins_llm $W run -m x -d x -q x --pattern llm --answer-from-margins
expect_error mkmodel_unknown_type $W mkmodel --vocab-from "$GPT2" -o "$T/x.gguf" --type q3_k
if have_stories; then
    expect_error dump_unknown_tensor $W info -m "$STORIES" --dump no.such.weight
    expect_error context_too_long $W generate -m "$STORIES" -n 5000
    expect_error token_out_of_range $W logits -m "$STORIES" --tokens 1,512
fi

# 5. Identical greedy output with 1 and 2 threads (F32 real model, Q8_0 and Q4_K_M random models),
#    and identical logits on 3 threads one token per pass (--chunk 1): a decode step's team
#    (FFN 1024 is just enough work to share out) with runs of tiles of unequal length.
t=threads_identical_stories260K
if have_stories; then
    $W generate -m "$STORIES" -f "$S/models/stories260K.expected.txt" -n 60 -t 1 >"$T/t1.txt" 2>/dev/null
    $W generate -m "$STORIES" -f "$S/models/stories260K.expected.txt" -n 60 -t 2 >"$T/t2.txt" 2>/dev/null
    [ -s "$T/t1.txt" ] && cmp -s "$T/t1.txt" "$T/t2.txt" && pass $t || fail $t "outputs differ"
else skip $t "$STORIES not found"; fi
for type in q8_0 q4_k_m; do
    t=threads_identical_$type
    if [ -f "$GPT2" ]; then
        m="$T/thr-$type.gguf"
        $W mkmodel --vocab-from "$GPT2" -o "$m" --type $type --dim 256 --heads 4 --kv-heads 2 --ff 1024 --layers 2 --seed 11
        $W logits -m "$m" --tokens 1,2,3,4,5,6,7,8,9,10 --top 4 -t 1 >"$T/l1.jsonl"
        $W logits -m "$m" --tokens 1,2,3,4,5,6,7,8,9,10 --top 4 -t 2 >"$T/l2.jsonl"
        $W logits -m "$m" --tokens 1,2,3,4,5,6,7,8,9,10 --top 4 -t 3 --chunk 1 >"$T/l3.jsonl"
        $W generate -m "$m" -p "The weather" -n 16 --ignore-eos -t 1 >"$T/g1.txt" 2>/dev/null
        $W generate -m "$m" -p "The weather" -n 16 --ignore-eos -t 2 >"$T/g2.txt" 2>/dev/null
        [ -s "$T/l1.jsonl" ] && cmp -s "$T/l1.jsonl" "$T/l2.jsonl" && cmp -s "$T/l1.jsonl" "$T/l3.jsonl" &&
            [ -s "$T/g1.txt" ] && cmp -s "$T/g1.txt" "$T/g2.txt" && pass $t ||
            fail $t "logits or greedy text differ between 1, 2 and 3 threads"
    else skip $t "$GPT2 not found"; fi
done

# 5b. A decode step on several threads splits attention into spans of 256 positions and
#     merges them in order (attention.h): one token at a time (--chunk 1) on 2 and 3
#     threads, the same bits as the whole prompt in one chunk, over three spans, on a model
#     with one KV head (so the threads share a head and split its spans) and F16 weights
#     (no int8 activations to round a last-bit difference away: merging the spans out of
#     order fails this).
t=decode_split_identical
if [ -f "$GPT2" ]; then
    m="$T/mqa.gguf"
    $W mkmodel --vocab-from "$GPT2" -o "$m" --type f16 --dim 512 --heads 8 --kv-heads 1 \
        --ff 512 --layers 2 --ctx 1024 --tied --seed 5
    toks=$(seq -s, 1 7 4500) # 643 tokens
    $W logits -m "$m" --tokens "$toks" --top 3 --chunk 512 -t 1 >"$T/s0.jsonl"
    same=1
    for th in 2 3; do
        $W logits -m "$m" --tokens "$toks" --top 3 --chunk 1 -t $th >"$T/s$th.jsonl"
        cmp -s "$T/s0.jsonl" "$T/s$th.jsonl" || same=0
    done
    [ "$(wc -l <"$T/s0.jsonl")" = 644 ] && [ $same = 1 ] && pass $t ||
        fail $t "one token at a time on 2 or 3 threads differs from one chunk on 1"
else skip $t "$GPT2 not found"; fi

# 5b. Matrices interleaved at load (interleave.h: every type that has the form, Q8_0 to
#     Q6_K) give the same bits as the file's layout
#     (WIM_INTERLEAVE=0): decode (--chunk 1), a few rows (--chunk 3) and prefill
#     panels, on 2 threads; the tied output's last row (50257 % 8 = 1) stays row-major,
#     and the embedding rows are read back out of the groups.
t=interleaved_weights_identical
if [ -f "$GPT2" ]; then
    toks=$(seq -s, 50200 1 50256),$(seq -s, 3 97 3000) # 88 tokens, the last vocabulary rows too
    same=1 msg=""
    for type in q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k; do
        m="$T/i_$type.gguf"
        $W mkmodel --vocab-from "$GPT2" -o "$m" --type $type --dim 256 --heads 4 --kv-heads 2 \
            --ff 512 --layers 2 --ctx 256 --tied --seed 9
        if ! $W info -m "$m" | grep -q 'interleaved by 8'; then
            msg="this machine's kernels or memory keep the file's layout ($(
                $W info -m "$m" | grep '^memory' | cut -c16-))"
            break
        fi
        for ch in 1 3 512; do
            $W logits -m "$m" --tokens "$toks" --top 4 --chunk $ch -t 2 >"$T/i1.jsonl"
            WIM_INTERLEAVE=0 $W logits -m "$m" --tokens "$toks" --top 4 --chunk $ch -t 2 >"$T/i0.jsonl"
            cmp -s "$T/i0.jsonl" "$T/i1.jsonl" && [ "$(wc -l <"$T/i1.jsonl")" = 89 ] || same=0
        done
        WIM_INTERLEAVE=0 $W info -m "$m" | grep -q 'interleaved' && same=0
        [ $same = 1 ] || { fail $t "$type: interleaved weights differ from the file's layout"; break; }
    done
    if [ -n "$msg" ]; then skip $t "$msg"; elif [ $same = 1 ]; then pass $t; fi
else skip $t "$GPT2 not found"; fi

# 6. `wim bench --json` rows carry the documented fields (a decode row after a prompt,
#    -d, too); a decode row's weight rate is its tokens/s times the bytes of every
#    matrix but the embedding (counted here from the file's tensor table), and
#    --bandwidth adds the memory read rate (and, to a decode row, its share of it).
t=bench_json_format
if have_stories && have_numpy; then
    $W bench -m "$STORIES" -p 16,32 -n 4 -d 0,16 -r 1 --json --bandwidth >"$T/b.jsonl" 2>"$T/e.txt" &&
        $PY -c '
import json, sys
sys.path.insert(0, sys.argv[2])
from reference_forward import gguf_layout
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["test"] for r in rows] == ["pp16", "pp32", "tg4", "tg4@d16", "read"], rows
assert all(r["tok_s"] > 0 and r["isa"] and r["threads"] >= 1 for r in rows[:4]), rows
assert "weights_gb_s" not in rows[0] and rows[4]["gb_s"] > 0, rows
# --bandwidth: a decode row from an empty cache reads only weights, so it gets their
# rate as a share of the read passes beside it; after a prompt it reads the KV too
assert rows[2]["of_read"] > 0 and "of_read" not in rows[3], rows
_, _, infos, _ = gguf_layout(open(sys.argv[3], "rb").read())
assert {ty for _, _, ty, _ in infos} == {0}, "stories260K is all F32"
matrices = sum(4 * ne[0] * ne[1] for name, ne, _, _ in infos
               if len(ne) == 2 and name != "token_embd.weight")
for r in rows[2:4]:
    per_token = r["weights_gb_s"] * 1e9 / r["tok_s"]
    assert abs(per_token / matrices - 1) < 0.01, (per_token, matrices)
' "$T/b.jsonl" "$HERE" "$STORIES" && pass $t || fail $t "$(cat "$T/e.txt" "$T/b.jsonl" | head -c 300)"
else skip $t "needs $STORIES and python3-numpy"; fi

# 7. Every kernel set this machine can run gives the same model: logits within 1e-3
#    of the scalar reference and identical greedy text (random Q8_0, F16, Q4_K_M,
#    Q5_K_M and Q4_1 models).
if [ -f "$GPT2" ] && have_numpy; then
    isas=$($W info --cpu | awk '/^cpu/ {print}' | grep -o 'avx2\|avxvnni\|avx512vnni\|amx' | sort -u)
    for type in q8_0 f16 q4_k_m q5_k_m q4_1; do
        m="$T/isa-$type.gguf" dims="--dim 128 --ff 256"
        case $type in q4_k_m | q5_k_m) dims="--dim 256 --ff 512" ;; esac
        $W mkmodel --vocab-from "$GPT2" -o "$m" --type $type $dims --heads 4 --kv-heads 2 \
            --layers 2 --seed 13 --arch qwen2
        WIM_ISA=scalar $W logits -m "$m" --tokens 1,2,3,4,5,6,7,8,9,10,11,12 --top 10 --chunk 5 >"$T/scalar.jsonl"
        WIM_ISA=scalar $W generate -m "$m" -p "The weather" -n 24 --ignore-eos >"$T/scalar.txt" 2>/dev/null
        for isa in $isas; do
            t=isa_${isa}_matches_scalar_$type
            if ! WIM_ISA=$isa $W logits -m "$m" --tokens 1,2,3,4,5,6,7,8,9,10,11,12 --top 10 --chunk 5 \
                >"$T/$isa.jsonl" 2>"$T/e.txt"; then
                skip $t "$(cat "$T/e.txt")"
                continue
            fi
            WIM_ISA=$isa $W generate -m "$m" -p "The weather" -n 24 --ignore-eos >"$T/$isa.txt" 2>/dev/null
            if $PY "$HERE/compare_logits.py" "$T/$isa.jsonl" "$T/scalar.jsonl" 1e-3 >"$T/cmp.txt" &&
                [ -s "$T/$isa.txt" ] && cmp -s "$T/$isa.txt" "$T/scalar.txt"; then
                pass "$t ($(cat "$T/cmp.txt"))"
            else fail $t "$(cat "$T/cmp.txt") / greedy text differs"; fi
        done
    done
else skip isa_matches_scalar "needs $GPT2 and python3-numpy"; fi

# 8. Damaged models (fuzzer findings): a block count the tensor table cannot hold is one
#    error line before any per-layer memory is reserved; a weight that drives the
#    activations to infinity or NaN is one error line naming the layer, on the scalar
#    kernels too (no undefined float-to-int conversion; make asan checks that).
if [ -f "$GPT2" ] && have_numpy; then
    $W mkmodel --vocab-from "$GPT2" -o "$T/dmg.gguf" --type q8_0 --dim 64 --heads 4 --kv-heads 2 \
        --ff 128 --layers 2 --seed 5
    t=model_block_count_refused
    $PY "$HERE/gguf_patch.py" "$T/dmg.gguf" "$T/bc.gguf" --u32 llama.block_count 268435458 &&
        $W info -m "$T/bc.gguf" >/dev/null 2>"$T/e.txt"
    rc=$?
    [ $rc -eq 2 ] && [ "$(wc -l <"$T/e.txt")" -eq 1 ] && grep -q block_count "$T/e.txt" &&
        pass "$t ($(cat "$T/e.txt"))" || fail $t "exit $rc: $(head -c 300 "$T/e.txt")"
    $PY "$HERE/gguf_patch.py" "$T/dmg.gguf" "$T/inf.gguf" --f32 blk.1.ffn_norm.weight 3 inf
    for isa in scalar default; do
        t=non_finite_activation_reported_$isa
        env $([ $isa = scalar ] && echo WIM_ISA=scalar) $W generate -m "$T/inf.gguf" -p "The weather" \
            -n 4 >"$T/out.txt" 2>"$T/e.txt"
        rc=$?
        [ $rc -ne 0 ] && [ "$(wc -l <"$T/e.txt")" -eq 1 ] && grep -q "layer 1 produced a non-finite" "$T/e.txt" &&
            pass $t || fail $t "exit $rc: $(head -c 300 "$T/e.txt")"
    done
else skip damaged_models "needs $GPT2 and python3-numpy"; fi

# 9. wim info --meta shows the file as it is: every key, and each tensor's type, shape and
# byte offset, which an independent reader of the header (reference_forward.gguf_layout) finds
# at the same places.
t=info_meta_matches_the_header
M9=$HERE/../data/wim-tiny/wim-tiny.gguf
if $W info -m "$M9" --meta >"$T/meta.txt" 2>"$T/e.txt"; then
    (cd "$HERE" && $PY - "$M9" "$T/meta.txt") >"$T/chk.txt" 2>&1 <<'PYEOF'
import sys
from reference_forward import gguf_layout
buf = open(sys.argv[1], "rb").read()
meta, _, infos, data = gguf_layout(buf)
lines = open(sys.argv[2]).read().splitlines()
keys = [l.split()[0] for l in lines[2:2 + len(meta)]]
assert keys == list(meta), f"keys differ: {keys[:3]} vs {list(meta)[:3]}"
rows = {l.split()[0]: l.split() for l in lines[2 + len(meta) + 2:]}
for name, ne, typ, off in infos:
    r = rows[name]
    assert int(r[-2]) == data + off, f"{name}: offset {r[-2]} vs {data + off}"
print(f"{len(meta)} keys, {len(infos)} tensor offsets")
PYEOF
    [ $? -eq 0 ] && pass "$t ($(cat "$T/chk.txt"))" || fail $t "$(tail -2 "$T/chk.txt")"
else fail $t "$(cat "$T/e.txt")"; fi

# 10. wim logits --trace, read as a student would (tests/check_trace.py): a row per stage of
# the residual stream, every attention row summing to 1 with the causal mask as blanks, and
# the numbers those of the independent NumPy pass (the real model; a random gemma2, whose
# sliding window hides keys below the diagonal too). The JSON Lines are the same bytes traced
# or not, and on Q8_0 weights the whole view is the same at any chunk size (the weights are
# the attention tiles' own arithmetic).
trace_check() { # name, model, tokens, layer, head, n_layer, extra options (quoted), check options...
    local t=$1 m=$2 toks=$3 layer=$4 head=$5 nl=$6 opts=$7
    shift 7
    $W logits -m "$m" --tokens "$toks" --kv-type f32 --trace "$layer" --head "$head" $opts \
        >"$T/tr.txt" 2>"$T/e.txt" &&
        $PY "$HERE/reference_forward.py" --trace "$m" "$toks" f32 "$layer" "$head" >"$T/tr.ref" &&
        $PY "$HERE/check_trace.py" "$T/tr.txt" "$nl" --ref "$T/tr.ref" "$@" >"$T/chk.txt" 2>&1 &&
        pass "$t ($(cat "$T/chk.txt"))" || fail $t "$(cat "$T/e.txt" "$T/chk.txt" | head -c 400)"
}
if have_stories && have_numpy; then
    toks="1,$(echo "$ids" | cut -d, -f1-19)"
    trace_check trace_stories260K_last_8_of_20 "$STORIES" "$toks" 2 5 5 "--trace-last 8"
    trace_check trace_stories260K_whole_matrix "$STORIES" "$toks" 4 7 5 "--trace-last 20"
else skip trace_stories260K "needs $STORIES and python3-numpy"; fi
if [ -f "$GPT2" ] && have_numpy; then
    $W mkmodel --vocab-from "$GPT2" -o "$T/g2.gguf" --arch gemma2 --type f32 --dim 64 --heads 4 \
        --kv-heads 2 --ff 96 --layers 2 --seed 7 --sliding-window 4 --softcap 0.5,10
    toks="464,5044,1110,257,640,11,612,373,257,1310,2576,13,50256"
    trace_check trace_gemma2_sliding_window "$T/g2.gguf" "$toks" 0 1 2 "" --window 4
    trace_check trace_gemma2_full_layer "$T/g2.gguf" "$toks" 1 3 2 ""
else skip trace_gemma2 "needs $GPT2 and python3-numpy"; fi

t=trace_leaves_logits_unchanged
ok=1 msg=
M10=$HERE/../data/wim-tiny/wim-tiny.gguf
for spec in "$M10|--chunk 1" "$M10|--chunk 512" "$STORIES|--chunk 3 --kv-type f32"; do
    m=${spec%%|*} opts=${spec#*|}
    [ -f "$m" ] || continue
    $W logits -m "$m" -p "Mila Mason works for Crystal Systems, founded in 1859." --top 8 $opts \
        >"$T/plain.jsonl" &&
        $W logits -m "$m" -p "Mila Mason works for Crystal Systems, founded in 1859." --top 8 $opts \
            --trace 1 --head 2 --trace-last 6 >"$T/traced.txt" || { ok=0; msg="wim logits failed"; }
    grep '^{' "$T/traced.txt" | cmp -s - "$T/plain.jsonl" ||
        { ok=0; msg="$(basename "$m") $opts: the JSON Lines differ with --trace"; }
    [ "$(grep -c '^{' "$T/traced.txt")" -lt "$(wc -l <"$T/traced.txt")" ] ||
        { ok=0; msg="$(basename "$m") $opts: no trace printed"; }
    [ "$m" = "$M10" ] && cp "$T/traced.txt" "$T/traced${opts#--chunk }.txt"
done
cmp -s "$T/traced1.txt" "$T/traced512.txt" || { ok=0; msg=${msg:-"the trace of the Q8_0 model depends on the chunk"}; }
[ $ok = 1 ] && pass $t || fail $t "$msg"

# A layer or head outside the model: one line naming the valid range, exit 2.
trace_refused() { # name, range, options...
    local t=$1 range=$2
    shift 2
    $W logits -m "$M10" -p "Mila Mason" "$@" >"$T/o.txt" 2>"$T/e.txt"
    local rc=$?
    [ $rc -eq 2 ] && [ "$(wc -l <"$T/e.txt")" -eq 1 ] && grep -q "^wim: .*$range" "$T/e.txt" &&
        [ ! -s "$T/o.txt" ] && pass "$t ($(cat "$T/e.txt"))" ||
        fail $t "exit $rc: $(head -c 300 "$T/e.txt")"
}
nl10=$($W info -m "$M10" --no-tensors | awk '$1 == "layers" {print $2}')
nh10=$($W info -m "$M10" --no-tensors | awk '$1 == "heads" {print $2}')
trace_refused trace_layer_past_the_model "0\.\.$((nl10 - 1))" --trace "$nl10"
trace_refused trace_negative_layer "0\.\.$((nl10 - 1))" --trace -1
trace_refused trace_head_past_the_model "0\.\.$((nh10 - 1))" --trace 0 --head "$nh10"
trace_refused trace_head_without_trace "--trace" --head 1
