/*
 * fuzz_tokenizer.c — every tokenizer family on arbitrary bytes: encoding never
 * fails on text (invalid UTF-8 included), is deterministic, and decodes back to
 * the text when the text is valid UTF-8 (SPM: after BOS, as the engine does),
 * except that a character a byte-level vocabulary cannot spell (it lacks one of
 * its byte symbols) comes back as U+FFFD, never as nothing; a text holding a
 * special token's text (split out as llama.cpp does) is exempt. The first
 * byte picks the vocabulary and whether control tokens are parsed.
 */
#include "fuzz.h"
#include "gguf.h"
#include "tokenizer.h"
#include "unicode.h"

static const char *const names[] = {
    "llama-spm", "phi-3",     "gpt-2",  "starcoder", "deepseek-llm", "deepseek-coder",
    "qwen2",     "llama-bpe", "falcon", "mpt",       "refact"};
#define N_VOCABS (sizeof names / sizeof *names)
static wim_tokenizer *toks[N_VOCABS];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    for (size_t i = 0; i < N_VOCABS; i++) {
        char path[512], err[256];
        snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", fuzz_shared(), names[i]);
        gguf_file *f;
        if (gguf_open(path, &f, err, sizeof err)) continue;
        if (wim_tokenizer_load(f, &toks[i], err, sizeof err)) toks[i] = NULL;
        gguf_close(f);
    }
    return 0;
}

static int valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = wim_utf8_next(s + i, n - i, &cp);
        if (k <= 0 || cp == 0x2581) return 0; /* SPM reads U+2581 as a space by design */
        i += (size_t)k;
    }
    return 1;
}

/* Whether a byte-level vocabulary spells the character c[0, n) (every byte has its
 * symbol): encoded alone, it decodes back to itself. */
static int spelled(const wim_tokenizer *t, const char *c, size_t n) {
    char err[64], back[64];
    int32_t ids[16];
    int k = wim_tokenize(t, c, n, 0, 0, ids, 16, err, sizeof err), len = 0;
    if (k < 0 || k > 16) return 0;
    wim_detok d;
    wim_detok_init(&d, t, -1, 0);
    for (int i = 0; i < k && len < 48; i++)
        len += wim_detok_push(&d, ids[i], back + len, (int)sizeof back - 16 - len);
    len += wim_detok_flush(&d, back + len, (int)sizeof back - len);
    return (size_t)len == n && !memcmp(back, c, n);
}

/* The text as the tokenizer gives it back: each character a BPE vocabulary cannot spell
 * replaced by U+FFFD (malloc'd, length in *n). */
static char *expected(const wim_tokenizer *t, const char *text, size_t len, size_t *n) {
    char *out = malloc(3 * len + 1);
    *n = 0;
    for (size_t i = 0; out && i < len;) {
        uint32_t cp;
        size_t k = (size_t)wim_utf8_next((const uint8_t *)text + i, len - i, &cp);
        if (wim_tokenizer_kind(t) == WIM_TOK_SPM || spelled(t, text + i, k))
            memcpy(out + *n, text + i, k), *n += k;
        else
            memcpy(out + *n, "\xef\xbf\xbd", 3), *n += 3;
        i += k;
    }
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    const wim_tokenizer *t = toks[data[0] % N_VOCABS];
    if (!t) return 0;
    const int special = (data[0] / N_VOCABS) & 1;
    const char *text = (const char *)data + 1;
    const size_t len = size - 1;
    const int bos = wim_tokenizer_kind(t) == WIM_TOK_SPM;
    char err[256];
    int32_t *a, *b;
    int na = wim_tokenize_alloc(t, text, len, bos, special, &a, err, sizeof err);
    FUZZ_ASSERT(na >= 0, "encoding failed: %s", err);
    int nb = wim_tokenize_alloc(t, text, len, bos, special, &b, err, sizeof err);
    FUZZ_ASSERT(na == nb && !memcmp(a, b, (size_t)na * sizeof *a), "encoding not deterministic");
    free(b);
    for (int i = 0; i < na; i++)
        FUZZ_ASSERT(a[i] >= 0 && a[i] < wim_tokenizer_n_vocab(t), "id %d out of range", a[i]);
    /* A special token's text is split out even without parse_special, as llama.cpp does
     * (and Phi-3's eat the white space after them): such a text does not round-trip. */
    int has_special = 0;
    for (int i = 0; i < na && !has_special; i++) {
        char b0[64], b1[64];
        int n0 = wim_token_bytes(t, a[i], 0, b0, sizeof b0);
        int n1 = wim_token_bytes(t, a[i], 1, b1, sizeof b1);
        has_special = n0 != n1 || memcmp(b0, b1, n0 < 64 ? (size_t)n0 : 64);
    }
    if (!special && !has_special && valid_utf8((const uint8_t *)text, len)) {
        size_t cap = 4 * len + 64, n = 0;
        char *back = malloc(cap);
        wim_detok d;
        wim_detok_init(&d, t, -1, 0);
        for (int i = 0; i < na; i++) {
            char piece[256];
            int k = wim_detok_push(&d, a[i], piece, sizeof piece);
            FUZZ_ASSERT(n + (size_t)k < cap, "decoded text too long");
            memcpy(back + n, piece, (size_t)k), n += (size_t)k;
        }
        n += (size_t)wim_detok_flush(&d, back + n, (int)(cap - n));
        size_t want_n;
        char *want = expected(t, text, len, &want_n);
        FUZZ_ASSERT(want && n == want_n && !memcmp(back, want, n),
                    "%s: %zu bytes came back as %zu bytes (expected %zu)",
                    names[data[0] % N_VOCABS], len, n, want_n);
        free(want);
        free(back);
    }
    free(a);
    return 0;
}
