#!/usr/bin/env bash
# tests/tokenize.sh — `wim tokenize`: output format, flags, errors and exit codes.
# Needs $WIM_BIN (tests/run.sh sets it) and the vocab fixtures in $WIM_SHARED.
set -u
bin=${WIM_BIN:-build/wim}
vocab=${WIM_SHARED:-../shared}/vocab
spm=$vocab/ggml-vocab-llama-spm.gguf
qwen=$vocab/ggml-vocab-qwen2.gguf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check() { # name, expected stdout, command...
    local name=$1 want=$2; shift 2
    local got
    got=$("$@" 2>"$tmp/err")
    local rc=$?
    if [ "$rc" -ne 0 ]; then echo "FAIL $name: exit $rc: $(head -c 200 "$tmp/err")"
    elif [ "$got" != "$want" ]; then echo "FAIL $name: got '$got', expected '$want'"
    else echo "PASS $name"; fi
}

fails() { # name, expected exit status, command...: one line on stderr, nothing on stdout
    local name=$1 want=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ "$rc" -ne "$want" ]; then echo "FAIL $name: exit $rc, expected $want"
    elif [ "$(wc -l <"$tmp/err")" -ne 1 ] || [ -s "$tmp/out" ]; then
        echo "FAIL $name: expected one line on stderr and nothing on stdout"
    else echo "PASS $name"; fi
}

if [ ! -x "$bin" ]; then echo "SKIP tokenize_cli: $bin not built"; exit 0; fi
if [ ! -f "$spm" ] || [ ! -f "$qwen" ]; then echo "SKIP tokenize_cli: vocab fixtures not found in $vocab"; exit 0; fi

check tokenize_ids "15043 3186" "$bin" tokenize -m "$spm" -p "Hello world"
check tokenize_add_bos "1 15043 3186" "$bin" tokenize -m "$spm" -p "Hello world" --add-bos
check tokenize_pieces "▁Hello ▁world" "$bin" tokenize -m "$spm" -p "Hello world" --pieces
check tokenize_empty "" "$bin" tokenize -m "$spm" -p ""
printf 'Hello world' >"$tmp/in.txt"
check tokenize_file "15043 3186" "$bin" tokenize -m "$spm" -f "$tmp/in.txt"
check tokenize_invalid_utf8 "29871 258 10994" "$bin" tokenize -m "$spm" -p $'\xffHello'
check tokenize_special_off "27 91 318 4906 91 29" "$bin" tokenize -m "$qwen" -p "<|im_start|>"
check tokenize_special_on "151644" "$bin" tokenize -m "$qwen" -p "<|im_start|>" --parse-special
check tokenize_pieces_escaped "Hello Ċ \\x5C" "$bin" tokenize -m "$qwen" -p "Hello
\\" --pieces

"$bin" tokenize --help >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 0 ] && grep -q '^usage: wim tokenize' "$tmp/out" && [ ! -s "$tmp/err" ]; then echo "PASS tokenize_help"
else echo "FAIL tokenize_help: expected usage on stdout and exit 0"; fi

fails tokenize_bad_flag 2 "$bin" tokenize -m "$spm" -p x --bogus
fails tokenize_no_model 2 "$bin" tokenize -p x
fails tokenize_no_text 2 "$bin" tokenize -m "$spm"
fails tokenize_two_texts 2 "$bin" tokenize -m "$spm" -p x -f "$tmp/in.txt"
fails tokenize_missing_model 2 "$bin" tokenize -m "$tmp/none.gguf" -p x
fails tokenize_missing_file 2 "$bin" tokenize -m "$spm" -f "$tmp/none.txt"
if [ -f "$vocab/ggml-vocab-bert-bge.gguf" ]; then
    fails tokenize_unsupported_vocab 2 "$bin" tokenize -m "$vocab/ggml-vocab-bert-bge.gguf" -p x
fi
exit 0
