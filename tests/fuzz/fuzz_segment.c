/*
 * fuzz_segment.c — the segmenter on arbitrary text: segments tile the text in
 * order, each within the token limit by its own count (or one clear error),
 * on an SPM and a BPE vocabulary. The first byte picks the vocabulary and the
 * limit (1..64 tokens).
 */
#include "fuzz.h"
#include "gguf.h"
#include "segment.h"
#include "tokenizer.h"

static wim_tokenizer *toks[2];

static wim_tokenizer *load_vocab(const char *name) {
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", fuzz_shared(), name);
    gguf_file *f;
    wim_tokenizer *t = NULL;
    if (gguf_open(path, &f, err, sizeof err)) return NULL;
    if (wim_tokenizer_load(f, &t, err, sizeof err)) t = NULL;
    gguf_close(f);
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    toks[0] = load_vocab("llama-spm");
    toks[1] = load_vocab("gpt-2");
    if (!toks[0] || !toks[1])
        fprintf(stderr, "fuzz_segment: vocabularies not found under %s\n", fuzz_shared());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 1024) return 0; /* segmenting is quadratic in a sentence's length */
    const wim_tokenizer *t = toks[data[0] & 1];
    if (!t) return 0;
    const int max = 1 + (data[0] >> 1) % 64;
    const char *text = (const char *)data + 1;
    const size_t len = size - 1;
    wim_segment *segs;
    char err[256];
    int n = wim_segment_text(t, text, len, max, &segs, err, sizeof err);
    if (n < 0) {
        FUZZ_ASSERT(err[0] && !strchr(err, '\n'), "an error is one line: '%s'", err);
        return 0;
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        FUZZ_ASSERT(segs[i].start == at && segs[i].len > 0, "segment %d does not follow", i);
        int count = wim_tokenize(t, text + at, segs[i].len, 0, 0, NULL, 0, err, sizeof err);
        FUZZ_ASSERT(count == segs[i].n_tokens && count <= max,
                    "segment %d: %d tokens counted, %d recorded, limit %d", i, count,
                    segs[i].n_tokens, max);
        at += segs[i].len;
    }
    FUZZ_ASSERT(at == len, "segments cover %zu of %zu bytes", at, len);
    free(segs);
    size_t *ends;
    int k = wim_sentence_ends(text, len, &ends);
    FUZZ_ASSERT(k >= 0 && (len == 0 || ends[k - 1] == len), "sentences do not tile the text");
    for (int i = 1; i < k; i++)
        FUZZ_ASSERT(ends[i] > ends[i - 1], "sentence ends out of order");
    free(ends);
    return 0;
}
