#!/usr/bin/env bash
# bench/vs-llama.sh [MODEL.gguf ...] — wim beside llama.cpp on the same files,
# the same machine and the same thread count, in one run; prints one table:
# test, threads, wim t/s, llama.cpp t/s, ratio, wim's kernels, CPU; then, per
# decode row, the roofline (weights streamed per second against the memory read
# rate `wim bench --bandwidth` measures, and against read passes run beside each of
# its repetitions) and, for several THREADS, per-thread scaling of decode and of the
# memory reads themselves (the most a decode bound by memory can scale).
#
# Builds the peer (../shared/peers, llama.cpp c392e50) into build/peers once
# (about 8 minutes on 2 cores). llama-bench runs with -fa 0 and -fa 1 and the
# faster of the two counts. Without arguments it makes and runs the bench shapes
# (random weights, gpt-2 vocabulary): Qwen2.5-0.5B in Q8_0 and in Q4_K_M (whose
# 896-wide rows fall back to Q5_0, as llama-quantize does), and Llama-3.2-1B in
# Q4_K_M (all of it Q4_K / Q6_K).
#
#   THREADS=2 PROMPTS=512 GEN=64 REPS=3 bash bench/vs-llama.sh   (THREADS=1,2: both)
#   PROMPTS=4096,16384 GEN=0 REPS=1 FA=1 ...   long prompts: -fa 0 at 16k tokens takes
#                           many minutes per run and is the slower of the two there
#   DEPTHS=4096,8192 ...    decode also after a prompt of that many tokens (tgN@dD), as
#                           margins and answers are: llama-bench cannot, so the peer's
#                           rate is llama-batched-bench's S_TG (built beside it once)
#   WIM_ISA=avx2 ...        wim's AVX2 kernels (build the peer with AVX2 only
#                           to compare like with like: PEER_FLAGS below)
#   PEER_DIR=build/peers-avx2 PEER_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
set -eu
cd "$(dirname "$0")/.."
build=${BUILD:-build}
wim=$build/wim
shared=${WIM_SHARED:-../shared}
threads=${THREADS:-2} prompts=${PROMPTS:-512} gen=${GEN:-64} reps=${REPS:-3} fa=${FA:-0,1}
depths=${DEPTHS:-}
peer_dir=${PEER_DIR:-$build/peers}
[ -x "$wim" ] || make --no-print-directory "$wim" >/dev/null

# the peer, built once (a custom PEER_FLAGS build is configured by hand here)
peer_src=$peer_dir/llama.cpp-c392e50
if [ ! -x "$peer_src/build/bin/llama-bench" ]; then
    echo "building llama.cpp into $peer_dir (once; about 8 minutes on 2 cores)" >&2
    if [ -n "${PEER_FLAGS:-}" ]; then
        mkdir -p "$peer_dir"
        [ -f "$peer_src/CMakeLists.txt" ] || tar -xJf "$shared/peers/llama.cpp-c392e50-src.tar.xz" -C "$peer_dir"
        # shellcheck disable=SC2086
        cmake -S "$peer_src" -B "$peer_src/build" -DCMAKE_BUILD_TYPE=Release $PEER_FLAGS \
            -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
        cmake --build "$peer_src/build" -j"$(nproc)" --target llama-bench llama-quantize >/dev/null
    else
        sh "$shared/peers/build-llama.sh" "$peer_dir" >/dev/null
    fi
fi
peer=$peer_src/build/bin
if [ -n "$depths" ] && [ ! -x "$peer/llama-batched-bench" ]; then
    cmake --build "$peer_src/build" -j"$(nproc)" --target llama-batched-bench >/dev/null
fi

models=("$@")
if [ ${#models[@]} -eq 0 ]; then
    mkdir -p bench/models
    vocab=$shared/vocab/ggml-vocab-gpt-2.gguf
    qwen="--arch qwen2 --dim 896 --layers 24 --heads 14 --kv-heads 2 --ff 4864 --ctx 32768 --tied --seed 1"
    llama="--arch llama --dim 2048 --layers 16 --heads 32 --kv-heads 8 --ff 8192 --ctx 32768 --seed 1"
    for spec in "qwen2.5-0.5b-shape-q8_0:q8_0:$qwen" "qwen2.5-0.5b-shape-q4_k_m:q4_k_m:$qwen" \
        "llama3.2-1b-shape-q4_k_m:q4_k_m:$llama"; do
        name=${spec%%:*} rest=${spec#*:}
        type=${rest%%:*} args=${rest#*:}
        m=bench/models/$name.gguf
        if [ ! -f "$m" ]; then
            echo "making $m (random weights)" >&2
            # shellcheck disable=SC2086
            "$wim" mkmodel --vocab-from "$vocab" -o "$m" --type "$type" $args
        fi
        models+=("$m")
    done
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '# %s, threads %s, wim %s, llama.cpp c392e50 (best of -fa %s)\n' "$cpu" "$threads" \
    "$("$wim" info --cpu | awk '/^kernels/ {print $2}')" "$fa"
printf '%-34s %-11s %3s %10s %10s %7s  %s\n' model test thr "wim t/s" "llama t/s" ratio types
for m in "${models[@]}"; do
    : >"$out/wim.jsonl"
    : >"$out/depth.jsonl"
    for t in ${threads//,/ }; do
        "$wim" bench -m "$m" -p "$prompts" -n "$gen" -d "0${depths:+,$depths}" -r "$reps" -t "$t" \
            --bandwidth --json >>"$out/wim.jsonl"
        for d in ${depths//,/ }; do
            for f in ${fa//,/ }; do # one run of d + gen tokens each; its S_TG is the decode rate
                flag=() && [ "$f" = 1 ] && flag=(-fa)
                "$peer/llama-batched-bench" -m "$m" -c $((d + gen)) -b 2048 -ub 512 -npp "$d" \
                    -ntg "$gen" -npl 1 -t "$t" "${flag[@]}" --output-format jsonl 2>"$out/llama.err" |
                    grep '^{' >>"$out/depth.jsonl" || { cat "$out/llama.err" >&2; exit 1; }
            done
        done
    done
    "$peer/llama-bench" -m "$m" -t "$threads" -p "$prompts" -n "$gen" -r "$reps" -fa "$fa" -o json \
        >"$out/llama.json" 2>"$out/llama.err" || { cat "$out/llama.err" >&2; exit 1; }
    types=$("$wim" info -m "$m" --no-tensors | sed -n 's/^tensors *[0-9]* (\(.*\))/\1/p')
    /usr/bin/python3 - "$out/wim.jsonl" "$out/llama.json" "$(basename "$m" .gguf)" "$types" \
        "$out/depth.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
wim = {(r["test"], r["threads"]): r for r in rows if "tok_s" in r}
read = {r["threads"]: r["gb_s"] for r in rows if r["test"] == "read"}
best = {}
for r in json.load(open(sys.argv[2])):
    test = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
    key = (test, r["n_threads"])
    best[key] = max(best.get(key, 0), r["avg_ts"])
for line in open(sys.argv[5]):  # llama-batched-bench: decode after a prompt of pp tokens
    r = json.loads(line)
    key = (f"tg{r['tg']}@d{r['pp']}", r["n_threads"])
    best[key] = max(best.get(key, 0), r["speed_tg"])
name, notes = sys.argv[3], []
for (test, t), r in wim.items():
    peer = best.get((test, t))
    ratio = f"{r['tok_s'] / peer:6.2f}x" if peer else "     -"
    print(f"{name:<34} {test:<11} {t:3d} {r['tok_s']:10.1f} {peer or 0:10.1f} {ratio}  {sys.argv[4]}")
    if "weights_gb_s" in r and t in read and "@" not in test:  # the roofline: every weight per token
        gb = r["weights_gb_s"] / r["tok_s"]
        peer_gbs = f", llama.cpp {peer * gb:.1f} GB/s = {peer * gb / read[t]:.0%}" if peer else ""
        notes.append(f"#   {test} {t} thr: {gb * 1e3:.0f} MB of weights per token; memory reads "
                     f"{read[t]:.1f} GB/s; wim streams {r['weights_gb_s']:.1f} GB/s = "
                     f"{r['weights_gb_s'] / read[t]:.0%} ({r['of_read']:.0%} of the read passes "
                     f"beside its repetitions){peer_gbs}")
    one = wim.get((test, 1))
    if t > 1 and one:  # scaling: tokens/s per thread against one thread
        notes.append(f"#   {test} per thread at {t} threads: {r['tok_s'] / t / one['tok_s']:.0%} "
                     f"of 1 thread's rate")
for t in sorted(read):  # what memory itself gives a thread, the ceiling of decode's scaling
    if t > 1 and 1 in read:
        notes.append(f"#   memory reads per thread at {t} threads: {read[t] / t / read[1]:.0%} "
                     f"of 1 thread's ({read[1]:.1f} GB/s at 1, {read[t]:.1f} at {t})")
print("\n".join(notes))
EOF
done
