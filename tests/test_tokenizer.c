/*
 * test_tokenizer.c — the tokenizers against llama.cpp's vectors, llama2.c's
 * cases and the stories260K model, plus properties (round trip, invalid
 * UTF-8, streaming decode) and the Unicode tables.
 *
 * Fixtures come from $WIM_SHARED (../shared); tests that need them SKIP
 * with the reason when they are absent. Each vocabulary is loaded once.
 */
#include "test.h"

#include "gguf.h"
#include "tokenizer.h"
#include "unicode.h"

#include <stdint.h>
#include <unistd.h>

/* ---- fixtures ---- */

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap + 1);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

static void vocab_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/vocab/ggml-vocab-%s.gguf", t_shared(), name);
}

static wim_tokenizer *open_tok(const char *path, char *err, size_t errlen) {
    gguf_file *f;
    wim_tokenizer *t = NULL;
    if (gguf_open(path, &f, err, errlen)) return NULL;
    if (wim_tokenizer_load(f, &t, err, errlen)) t = NULL;
    gguf_close(f);
    return t;
}

/* The vocabularies with test vectors, loaded on first use and kept. */
static const char *const vocab_names[] = {"llama-spm",      "phi-3",  "gpt-2",    "starcoder",
                                          "refact",         "falcon", "mpt",      "deepseek-llm",
                                          "deepseek-coder", "qwen2",  "llama-bpe"};
#define N_VOCAB (int)(sizeof vocab_names / sizeof vocab_names[0])
static wim_tokenizer *vocab_cache[N_VOCAB];
static char vocab_err[N_VOCAB][256];

static wim_tokenizer *vocab(const char *name) {
    for (int i = 0; i < N_VOCAB; i++) {
        if (strcmp(vocab_names[i], name) != 0) continue;
        if (!vocab_cache[i] && !vocab_err[i][0]) {
            char path[1024];
            vocab_path(path, sizeof path, name);
            if (!t_file_exists(path))
                snprintf(vocab_err[i], sizeof vocab_err[i], "%.200s not found", path);
            else
                vocab_cache[i] = open_tok(path, vocab_err[i], sizeof vocab_err[i]);
            if (!vocab_cache[i] && !vocab_err[i][0]) snprintf(vocab_err[i], 256, "cannot load");
        }
        return vocab_cache[i];
    }
    return NULL;
}

static const char *vocab_error(const char *name) {
    for (int i = 0; i < N_VOCAB; i++)
        if (!strcmp(vocab_names[i], name)) return vocab_err[i];
    return "unknown vocabulary";
}

/* Encodes into a malloc'd array, exercising the size protocol. */
static int32_t *encode(const wim_tokenizer *t, const char *s, size_t n, int bos, int special,
                       int *count) {
    char err[256];
    int need = wim_tokenize(t, s, n, bos, special, NULL, 0, err, sizeof err);
    if (need < 0) return NULL;
    int32_t *ids = malloc(((size_t)need + 1) * sizeof *ids);
    if (wim_tokenize(t, s, n, bos, special, ids, need, err, sizeof err) != need) {
        free(ids);
        return NULL;
    }
    *count = need;
    return ids;
}

/* Decodes ids through the streaming decoder into a malloc'd string. */
static char *decode(const wim_tokenizer *t, const int32_t *ids, int n, int prev, size_t *len) {
    size_t cap = 64 + (size_t)n * 64, w = 0;
    char *out = malloc(cap + 1);
    wim_detok d;
    wim_detok_init(&d, t, prev, 0);
    for (int i = 0; i < n; i++)
        w += (size_t)wim_detok_push(&d, ids[i], out + w, (int)(cap - w));
    w += (size_t)wim_detok_flush(&d, out + w, (int)(cap - w));
    out[w] = 0;
    *len = w;
    return out;
}

/* ---- Unicode ---- */

static void test_unicode_classes(void) {
    CHECK(wim_uc_cat('a') == WIM_UC_LETTER && wim_uc_cat('Z') == WIM_UC_LETTER);
    CHECK(wim_uc_cat('7') == WIM_UC_NUMBER &&
          wim_uc_cat(0x0660) == WIM_UC_NUMBER); /* Arabic-Indic 0 */
    CHECK(wim_uc_cat(0x00BD) == WIM_UC_NUMBER); /* ½ (No) */
    CHECK(wim_uc_cat('!') == WIM_UC_PUNCT && wim_uc_cat('_') == WIM_UC_PUNCT);
    CHECK(wim_uc_cat('$') == WIM_UC_SYMBOL && wim_uc_cat('+') == WIM_UC_SYMBOL &&
          wim_uc_cat('`') == WIM_UC_SYMBOL);
    CHECK(wim_uc_cat(0x0301) == WIM_UC_MARK);   /* combining acute */
    CHECK(wim_uc_cat(0x4E2D) == WIM_UC_LETTER); /* 中, inside a First/Last range */
    CHECK(wim_uc_cat(0xAC00) == WIM_UC_LETTER); /* Hangul syllable range */
    CHECK(wim_uc_cat(0x1F600) == WIM_UC_SYMBOL);
    CHECK(wim_uc_cat(0xE000) == WIM_UC_CONTROL && wim_uc_cat(0x200D) == WIM_UC_CONTROL);
    CHECK(wim_uc_cat(0x0378) == WIM_UC_UNDEFINED && wim_uc_flags(0x110000) == 0);
    static const uint32_t spaces[] = {9,      10,     11,     12,     13,     32,
                                      0x85,   0xA0,   0x1680, 0x2000, 0x200A, 0x2028,
                                      0x2029, 0x202F, 0x205F, 0x3000};
    for (size_t i = 0; i < sizeof spaces / sizeof spaces[0]; i++)
        CHECKF(wim_uc_is_space(spaces[i]), "U+%04X", spaces[i]);
    CHECK(!wim_uc_is_space(0x200B) && !wim_uc_is_space(0x1C) && !wim_uc_is_space('a'));
    CHECK(wim_uc_cat(0x3000) == WIM_UC_SEPARATOR);
}

static void test_utf8_strict(void) {
    uint32_t cp;
    CHECK(wim_utf8_next((const unsigned char *)"\xe2\x82\xac", 3, &cp) == 3 && cp == 0x20AC);
    CHECK(wim_utf8_next((const unsigned char *)"\xf0\x9f\xa6\x99", 4, &cp) == 4 && cp == 0x1F999);
    CHECK(wim_utf8_next((const unsigned char *)"\xe2\x82", 2, &cp) == 0);  /* incomplete */
    CHECK(wim_utf8_next((const unsigned char *)"\xc0\x80", 2, &cp) == -1); /* overlong */
    CHECK(wim_utf8_next((const unsigned char *)"\xe0\x80\x80", 3, &cp) == -1);
    CHECK(wim_utf8_next((const unsigned char *)"\xed\xa0\x80", 3, &cp) == -1); /* surrogate */
    CHECK(wim_utf8_next((const unsigned char *)"\xf4\x90\x80\x80", 4, &cp) == -1);
    CHECK(wim_utf8_next((const unsigned char *)"\x80", 1, &cp) == -1);
    CHECK(wim_utf8_next((const unsigned char *)"\xe2\x28\xa1", 3, &cp) == -1);
    int bad;
    CHECK(wim_utf8_decode((const unsigned char *)"\xe2\x82", 2, &cp, &bad) == 1 && bad &&
          cp == 0xFFFD);
    char buf[4];
    for (uint32_t c = 0; c < 0x110000; c += 0x101) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        int n = wim_utf8_encode(c, buf);
        CHECKF(wim_utf8_next((unsigned char *)buf, (size_t)n, &cp) == n && cp == c, "U+%04X", c);
    }
    CHECK(wim_utf8_valid("a\xc3\xa9", 3) && !wim_utf8_valid("a\xc3", 2));
}

/* ---- llama.cpp's test vectors ---- */

static void check_vectors(const char *name) {
    char path[1024], ipath[1100], opath[1100];
    vocab_path(path, sizeof path, name);
    snprintf(ipath, sizeof ipath, "%s.inp", path);
    snprintf(opath, sizeof opath, "%s.out", path);
    if (!t_file_exists(path) || !t_file_exists(ipath) || !t_file_exists(opath))
        SKIP("%s or its .inp/.out not found (fixtures absent)", path);
    wim_tokenizer *t = vocab(name);
    CHECKF(t, "%s: %s", name, vocab_error(name));
    size_t ni, no;
    char *inp = read_all(ipath, &ni), *out = read_all(opath, &no);
    CHECK(inp && out);
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *p = inp, *line = out;
    int cases = 0, bad = -1;
    char what[300] = "";
    for (char *q; (q = strstr(p, sep)) != NULL; p = q + strlen(sep), cases++) {
        char *eol = strchr(line, '\n');
        if (!eol) break;
        *eol = 0;
        int n = 0, ok = 1;
        int32_t *ids = encode(t, p, (size_t)(q - p), 0, 0, &n);
        const char *e = line;
        for (int i = 0; ids && i < n && ok; i++) {
            char *end;
            long v = strtol(e, &end, 10);
            ok = end != e && v == ids[i];
            e = end;
        }
        while (*e == ' ')
            e++;
        if ((!ids || !ok || *e) && bad < 0) {
            bad = cases;
            snprintf(what, sizeof what,
                     "case %d (%.40s...): expected '%.60s', got %d ids starting %d", cases, p, line,
                     n, ids && n ? ids[0] : -1);
        }
        free(ids);
        line = eol + 1;
    }
    free(inp);
    free(out);
    CHECKF(bad < 0, "%s: %s", name, what);
    CHECKF(cases == 46, "%s: %d cases, expected 46", name, cases);
}

#define VECTORS(fn, name)                                                                          \
    static void fn(void) {                                                                         \
        check_vectors(name);                                                                       \
    }
VECTORS(test_vectors_llama_spm, "llama-spm")
VECTORS(test_vectors_phi_3, "phi-3")
VECTORS(test_vectors_gpt_2, "gpt-2")
VECTORS(test_vectors_starcoder, "starcoder")
VECTORS(test_vectors_refact, "refact")
VECTORS(test_vectors_falcon, "falcon")
VECTORS(test_vectors_mpt, "mpt")
VECTORS(test_vectors_deepseek_llm, "deepseek-llm")
VECTORS(test_vectors_deepseek_coder, "deepseek-coder")
VECTORS(test_vectors_qwen2, "qwen2")
VECTORS(test_vectors_llama_bpe, "llama-bpe")

static void test_vectors_bert_bge(void) {
    char path[1024], err[256];
    vocab_path(path, sizeof path, "bert-bge");
    if (!t_file_exists(path)) SKIP("%s not found (fixtures absent)", path);
    wim_tokenizer *t = open_tok(path, err, sizeof err);
    CHECK(t == NULL);
    CHECKF(strstr(err, "WordPiece") != NULL, "error was '%s'", err);
    SKIP("bert-bge is WordPiece (tokenizer.ggml.model=bert): out of scope; loading it fails "
         "cleanly");
}

/* ---- llama2.c's five cases (ids include BOS) ---- */

static size_t json_unquote(const char *s, char *out) {
    size_t n = 0;
    for (s++; *s && *s != '"'; s++) {
        if (*s == '\\') {
            s++;
            out[n++] = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
        } else {
            out[n++] = *s;
        }
    }
    return n;
}

static void test_llama2c_cases(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab/llama2-test-c.txt", t_shared());
    size_t len;
    char *txt = read_all(path, &len);
    if (!txt) SKIP("%s not found (fixtures absent)", path);
    wim_tokenizer *t = vocab("llama-spm");
    CHECKF(t, "llama-spm: %.200s", vocab_error("llama-spm"));
    int cases = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        char *ids_s = strchr(line, '\t');
        char *prompt = ids_s ? strchr(ids_s + 1, '\t') : NULL;
        CHECK(prompt);
        char text[1024];
        size_t n = json_unquote(prompt + 1, text);
        int got_n = 0;
        int32_t *got = encode(t, text, n, 1, 0, &got_n);
        CHECK(got);
        char *e = ids_s + 1;
        for (int i = 0; i < got_n; i++) {
            long v = strtol(e, &e, 10);
            CHECKF(v == got[i], "case %d token %d: expected %ld got %d", cases, i, v, got[i]);
        }
        CHECKF(e == prompt, "case %d: fewer ids than expected (%d)", cases, got_n);
        free(got);
        cases++;
    }
    free(txt);
    CHECK(cases == 5);
}

/* ---- stories260K: its tokenizer and the known greedy output ---- */

static wim_tokenizer *stories(void) {
    static wim_tokenizer *t;
    static int tried;
    if (!tried) {
        char path[1024], err[256];
        snprintf(path, sizeof path, "%s/models/stories260K.gguf", t_shared());
        tried = 1;
        if (t_file_exists(path)) t = open_tok(path, err, sizeof err);
    }
    return t;
}

static void test_stories260k_decode(void) {
    char ipath[1024], tpath[1024];
    snprintf(ipath, sizeof ipath, "%s/models/stories260K.expected-ids.txt", t_shared());
    snprintf(tpath, sizeof tpath, "%s/models/stories260K.expected.txt", t_shared());
    size_t il, tl;
    char *ids_s = read_all(ipath, &il), *expected = read_all(tpath, &tl);
    wim_tokenizer *t = stories();
    if (!ids_s || !expected || !t) {
        free(ids_s);
        free(expected);
        SKIP("stories260K fixtures not found in %s/models", t_shared());
    }
    int32_t ids[512];
    int n = 0;
    for (char *e = ids_s, *end; n < 512; e = end) {
        long v = strtol(e, &end, 10);
        if (end == e) break;
        ids[n++] = (int32_t)v;
    }
    size_t len;
    char *got = decode(t, ids, n, wim_tokenizer_bos(t), &len); /* the run started from BOS */
    int same = len == tl && memcmp(got, expected, tl) == 0;
    free(got);
    free(ids_s);
    free(expected);
    CHECK(n == 200);
    CHECK(same);
}

static void test_stories260k_encode(void) {
    wim_tokenizer *t = stories();
    if (!t) SKIP("stories260K.gguf not found in %s/models", t_shared());
    CHECK(wim_tokenizer_n_vocab(t) == 512 && wim_tokenizer_kind(t) == WIM_TOK_SPM);
    CHECK(wim_tokenizer_bos(t) == 1 && wim_tokenizer_eos(t) == 2 && wim_tokenizer_add_bos(t) == 1);
    int n = 0;
    int32_t *ids = encode(t, "Once upon a time", 16, 1, 0, &n);
    static const int32_t want[] = {1, 403, 407, 261, 378}; /* <s> ▁Once ▁upon ▁a ▁time */
    CHECK(ids && n == 5 && memcmp(ids, want, sizeof want) == 0);
    free(ids);
}

/* ---- properties ---- */

/* A random valid UTF-8 string: ASCII words, digits, whitespace runs, Latin,
 * Cyrillic, CJK, Khmer, combining marks, emoji, apostrophes. U+2581 is left
 * out: SentencePiece reads it as a space by design. */
static size_t random_utf8(unsigned long long *rng, char *out, size_t max_chars) {
    static const uint32_t pool[] = {
        ' ',    ' ',    ' ',   '\n',   '\t',   '\r',   '\'',    '.',     ',',     '!',
        '-',    '(',    '<',   '|',    '$',    '~',    0xE9,    0xFC,    0xF5,    0xDF,
        0x301,  0x416,  0x44B, 0x4E2D, 0x6587, 0x1780, 0x17B6,  0x1F999, 0x1F600, 0xA0,
        0x3000, 0x2028, 0x85,  0x660,  0xBD,   0xFF21, 0x10400, 0x200D,  0xFE0F,  0xE000};
    size_t n = 0, chars = (size_t)(t_rand_next(rng) % (max_chars + 1));
    for (size_t i = 0; i < chars; i++) {
        unsigned long long r = t_rand_next(rng);
        uint32_t c;
        switch (r % 4) {
        case 0:
            c = 'a' + (uint32_t)(r >> 8) % 26;
            break;
        case 1:
            c = (r >> 8) % 3 ? 'A' + (uint32_t)(r >> 16) % 26 : '0' + (uint32_t)(r >> 16) % 10;
            break;
        default:
            c = pool[(r >> 8) % (sizeof pool / sizeof pool[0])];
        }
        n += (size_t)wim_utf8_encode(c, out + n);
    }
    out[n] = 0;
    return n;
}

/* The decoder's view of a text: SPM vocabularies add a dummy-prefix space
 * that the first piece after BOS gives back. */
static int roundtrip(const wim_tokenizer *t, const char *s, size_t n, char *why, size_t wlen) {
    int bos = wim_tokenizer_kind(t) == WIM_TOK_SPM, cnt = 0;
    int32_t *ids = encode(t, s, n, bos, 0, &cnt);
    if (!ids) return snprintf(why, wlen, "encode failed"), 0;
    size_t len;
    char *back = decode(t, ids, cnt, -1, &len);
    int ok = len == n && memcmp(back, s, n) == 0;
    if (!ok) snprintf(why, wlen, "'%.60s' came back as '%.60s'", s, back);
    free(back);
    free(ids);
    return ok;
}

static void test_roundtrip_valid_utf8(void) {
    int tested = 0;
    for (int v = 0; v < N_VOCAB; v++) {
        wim_tokenizer *t = vocab(vocab_names[v]);
        if (!t) continue;
        unsigned long long rng = 0x9E3779B97F4A7C15ULL + (unsigned)v;
        char s[512], why[300];
        for (int i = 0; i < 300; i++) {
            size_t n = random_utf8(&rng, s, 80);
            CHECKF(roundtrip(t, s, n, why, sizeof why), "%s: %s", vocab_names[v], why);
        }
        tested++;
    }
    if (!tested) SKIP("no vocabulary fixtures in %s/vocab", t_shared());
}

/* Random bytes, mostly invalid UTF-8: no failure, deterministic, and the
 * raw token bytes give the input back byte for byte. (Bytes some byte-level
 * vocabularies cannot spell are left out here: C0, C1, F1..FF and most C0
 * controls; see test_unspellable_byte.) */
static void test_invalid_utf8(void) {
    int tested = 0;
    for (int v = 0; v < N_VOCAB; v++) {
        wim_tokenizer *t = vocab(vocab_names[v]);
        if (!t) continue;
        int spm = wim_tokenizer_kind(t) == WIM_TOK_SPM;
        unsigned long long rng = 1234567 + (unsigned)v;
        for (int i = 0; i < 200; i++) {
            unsigned char s[96];
            size_t n = (size_t)(t_rand_next(&rng) % sizeof s);
            for (size_t k = 0; k < n; k++) {
                unsigned long long r = t_rand_next(&rng);
                static const unsigned char extra[] = {'\t', '\n', ' ',  0xC2, 0xDF,
                                                      0xE0, 0xED, 0xEF, 0xF0};
                s[k] = (unsigned char)(r % 2   ? 0x80 | ((r >> 8) & 0x3F)
                                       : r % 3 ? 0x20 + (r >> 8) % 0x5F
                                               : extra[(r >> 8) % sizeof extra]);
                if (k >= 2 && s[k - 2] == 0xE2 && s[k - 1] == 0x96 && s[k] == 0x81)
                    s[k] = 'x'; /* no U+2581 */
            }
            int n1 = 0, n2 = 0;
            int32_t *a = encode(t, (char *)s, n, 0, 0, &n1),
                    *b = encode(t, (char *)s, n, 0, 0, &n2);
            CHECKF(a && b && n1 == n2 && memcmp(a, b, (size_t)n1 * sizeof *a) == 0,
                   "%s: not deterministic", vocab_names[v]);
            char back[512];
            int w = 0;
            for (int k = 0; k < n1; k++)
                w += wim_token_bytes(t, a[k], 0, back + w, (int)sizeof back - w);
            const char *got = back;
            if (spm && n > 0 && w > 0 && back[0] == ' ') got++, w--; /* the dummy prefix */
            CHECKF((size_t)w == n && memcmp(got, s, n) == 0, "%s: bytes of case %d not reproduced",
                   vocab_names[v], i);
            free(a);
            free(b);
        }
        tested++;
    }
    if (!tested) SKIP("no vocabulary fixtures in %s/vocab", t_shared());
}

/* An invalid byte a byte-level vocabulary cannot spell becomes U+FFFD. */
static void test_unspellable_byte(void) {
    wim_tokenizer *t = vocab("starcoder");
    if (!t) SKIP("starcoder: %s", vocab_error("starcoder"));
    int n = 0;
    int32_t *ids = encode(t, "a\xff b", 4, 0, 0, &n);
    CHECK(ids);
    char back[64];
    int w = 0;
    for (int k = 0; k < n; k++)
        w += wim_token_bytes(t, ids[k], 0, back + w, (int)sizeof back - w);
    free(ids);
    CHECKF(w == 6 && memcmp(back, "a\xef\xbf\xbd b", 6) == 0, "'%.*s'", w, back);
}

/* Feeding ids one at a time never yields half a character. */
static void test_streaming_decode(void) {
    static const char text[] = "🦙 Führer 你好 ½ 😶‍🌫️ кан тест ✅";
    int tested = 0;
    for (int v = 0; v < N_VOCAB; v++) {
        wim_tokenizer *t = vocab(vocab_names[v]);
        if (!t) continue;
        int spm = wim_tokenizer_kind(t) == WIM_TOK_SPM, n = 0;
        int32_t *ids = encode(t, text, strlen(text), spm, 0, &n);
        CHECK(ids);
        wim_detok d;
        wim_detok_init(&d, t, -1, 0);
        char all[512];
        int w = 0;
        for (int i = 0; i < n; i++) {
            char chunk[256];
            int k = wim_detok_push(&d, ids[i], chunk, sizeof chunk);
            CHECKF(wim_utf8_valid(chunk, (size_t)k), "%s: partial character after id %d",
                   vocab_names[v], i);
            memcpy(all + w, chunk, (size_t)k);
            w += k;
        }
        w += wim_detok_flush(&d, all + w, (int)sizeof all - w);
        CHECKF((size_t)w == strlen(text) && memcmp(all, text, (size_t)w) == 0, "%s: '%.*s'",
               vocab_names[v], w, all);
        free(ids);
        tested++;
    }
    if (!tested) SKIP("no vocabulary fixtures in %s/vocab", t_shared());
}

/* Incomplete or impossible byte sequences become U+FFFD, once each. */
static void test_streaming_replacement(void) {
    wim_tokenizer *t = vocab("llama-spm");
    if (!t) SKIP("llama-spm: %s", vocab_error("llama-spm"));
    int f0 = wim_tokenizer_find(t, "<0xF0>"), ff = wim_tokenizer_find(t, "<0xFF>"),
        a = wim_tokenizer_find(t, "a");
    CHECK(f0 >= 0 && ff >= 0 && a >= 0);
    wim_detok d;
    char out[64];
    wim_detok_init(&d, t, -1, 0);
    CHECK(wim_detok_push(&d, f0, out, sizeof out) == 0); /* a lead byte waits */
    CHECK(wim_detok_flush(&d, out, sizeof out) == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0);
    CHECK(wim_detok_push(&d, ff, out, sizeof out) == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0);
    CHECK(wim_detok_push(&d, f0, out, sizeof out) == 0);
    int k = wim_detok_push(&d, a, out, sizeof out); /* the lead byte cannot complete */
    CHECK(k == 4 && memcmp(out,
                           "\xef\xbf\xbd"
                           "a",
                           4) == 0);
    CHECK(wim_detok_flush(&d, out, sizeof out) == 0);
}

/* ---- special tokens ---- */

static int contains(const int32_t *ids, int n, int id) {
    for (int i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

static void test_parse_special(void) {
    wim_tokenizer *q = vocab("qwen2"), *l3 = vocab("llama-bpe"), *sp = vocab("llama-spm");
    if (!q || !l3 || !sp)
        SKIP("qwen2/llama-bpe/llama-spm vocabularies not found in %s/vocab", t_shared());
    int start = wim_tokenizer_find(q, "<|im_start|>"), n = 0;
    CHECK(start == 151644);
    static const char chat[] = "<|im_start|>user\nHi<|im_end|>";
    int32_t *ids = encode(q, chat, strlen(chat), 0, 0, &n);
    CHECK(ids && !contains(ids, n, start) && !contains(ids, n, 151645)); /* a document stays text */
    free(ids);
    ids = encode(q, chat, strlen(chat), 0, 1, &n);
    CHECK(ids && n >= 3 && ids[0] == start && ids[n - 1] == 151645);
    free(ids);

    static const char bot[] = "<|begin_of_text|>Hello";
    ids = encode(l3, bot, strlen(bot), 0, 0, &n);
    CHECK(ids && !contains(ids, n, 128000));
    free(ids);
    ids = encode(l3, bot, strlen(bot), 0, 1, &n);
    CHECK(ids && n == 2 && ids[0] == 128000 && ids[1] == 9906); /* Hello */
    free(ids);

    /* SPM: a special resets the dummy prefix: "<s>Hello" -> <s> ▁Hello */
    ids = encode(sp, "<s>Hello", 8, 0, 1, &n);
    CHECK(ids && n == 2 && ids[0] == 1 && ids[1] == 15043);
    free(ids);
    ids = encode(sp, "<s>Hello", 8, 0, 0, &n);
    CHECK(ids && !contains(ids, n, 1));
    free(ids);
}

/* Phi-3's specials eat the whitespace after them (llama.cpp keys this on the
 * model name); its user-defined </s> is split out even without parse_special. */
static void test_phi3_rstrip(void) {
    wim_tokenizer *t = vocab("phi-3");
    if (!t) SKIP("phi-3: %s", vocab_error("phi-3"));
    int n = 0;
    int32_t *ids = encode(t, "<|user|>\nHello", 14, 0, 1, &n);
    CHECK(ids && n == 2 && ids[0] == 32010 && ids[1] == 15043); /* <|user|> ▁Hello */
    free(ids);
    ids = encode(t, "Hi</s> there", 12, 0, 0, &n);
    CHECK(ids && n == 3 && ids[0] == 6324 && ids[1] == 2 && ids[2] == 727); /* ▁Hi </s> ▁there */
    free(ids);
}

/* User-defined specials are taken longest first: MPT's runs of spaces. */
static void test_user_defined_order(void) {
    wim_tokenizer *t = vocab("mpt");
    if (!t) SKIP("mpt: %s", vocab_error("mpt"));
    char text[40];
    memset(text, ' ', sizeof text);
    text[0] = 'a';
    text[31] = 'b'; /* a, 30 spaces, b */
    int n = 0, sp24 = -1, sp6 = -1;
    char pat[25];
    memset(pat, ' ', 24);
    pat[24] = 0;
    sp24 = wim_tokenizer_find(t, pat);
    pat[6] = 0;
    sp6 = wim_tokenizer_find(t, pat);
    int32_t *ids = encode(t, text, 32, 0, 0, &n);
    CHECK(sp24 >= 0 && sp6 >= 0 && ids && n == 4);
    CHECK(ids[0] == wim_tokenizer_find(t, "a") && ids[1] == sp24 && ids[2] == sp6 &&
          ids[3] == wim_tokenizer_find(t, "b"));
    free(ids);
}

static void test_vocab_metadata(void) {
    wim_tokenizer *sp = vocab("llama-spm"), *q = vocab("qwen2"), *l3 = vocab("llama-bpe"),
                  *phi = vocab("phi-3");
    if (!sp || !q || !l3 || !phi) SKIP("vocabularies not found in %s/vocab", t_shared());
    CHECK(wim_tokenizer_n_vocab(sp) == 32000 && wim_tokenizer_kind(sp) == WIM_TOK_SPM);
    CHECK(wim_tokenizer_bos(sp) == 1 && wim_tokenizer_eos(sp) == 2 && wim_tokenizer_add_bos(sp));
    CHECK(strcmp(wim_tokenizer_piece(sp, 15043), "\xe2\x96\x81Hello") == 0);
    CHECK(wim_tokenizer_find(sp, "\xe2\x96\x81Hello") == 15043 &&
          wim_tokenizer_find(sp, "no such piece") == -1);
    CHECK(wim_tokenizer_piece(sp, -1) == NULL && wim_tokenizer_piece(sp, 32000) == NULL);
    char buf[16];
    CHECK(wim_token_bytes(sp, 1, 0, buf, sizeof buf) == 0);
    CHECK(wim_token_bytes(sp, 1, 1, buf, sizeof buf) == 3 && memcmp(buf, "<s>", 3) == 0);
    CHECK(wim_token_bytes(sp, 15043, 0, buf, sizeof buf) == 6 && memcmp(buf, " Hello", 6) == 0);
    CHECK(wim_token_bytes(sp, 13, 0, buf, sizeof buf) == 1 && buf[0] == '\n'); /* <0x0A> */

    CHECK(wim_tokenizer_kind(q) == WIM_TOK_BPE && wim_tokenizer_bos(q) == -1 &&
          !wim_tokenizer_add_bos(q));
    CHECK(wim_tokenizer_eos(q) == 151645 && wim_tokenizer_eot(q) == 151645);
    CHECK(wim_tokenizer_is_eog(q, 151643) && wim_tokenizer_is_eog(q, 151645) &&
          !wim_tokenizer_is_eog(q, 151644));
    CHECK(wim_tokenizer_bos(l3) == 128000 && wim_tokenizer_add_bos(l3) &&
          wim_tokenizer_eot(l3) == 128009);
    CHECK(wim_tokenizer_is_eog(l3, 128009) && !wim_tokenizer_is_eog(l3, 128000));
    CHECK(wim_tokenizer_eot(phi) == 32007 && wim_tokenizer_is_eog(phi, 32000) &&
          wim_tokenizer_is_eog(phi, 32007));
    CHECK(wim_token_bytes(l3, 9906, 0, buf, sizeof buf) == 5 && memcmp(buf, "Hello", 5) == 0);
    CHECK(wim_token_bytes(l3, 128000, 0, buf, sizeof buf) == 0);
}

/* The size protocol: the count is returned whatever cap is; only cap ids are written. */
static void test_buffer_protocol(void) {
    wim_tokenizer *t = vocab("gpt-2");
    if (!t) SKIP("gpt-2: %s", vocab_error("gpt-2"));
    char err[128];
    static const char s[] = "Hello world, this is a test";
    int32_t ids[64];
    int n = wim_tokenize(t, s, strlen(s), 0, 0, NULL, 0, err, sizeof err);
    CHECK(n > 3);
    ids[2] = -7;
    CHECK(wim_tokenize(t, s, strlen(s), 0, 0, ids, 2, err, sizeof err) == n && ids[2] == -7);
    int32_t full[64];
    CHECK(wim_tokenize(t, s, strlen(s), 0, 0, full, 64, err, sizeof err) == n);
    CHECK(ids[0] == full[0] && ids[1] == full[1]);
    CHECK(wim_tokenize(t, "", 0, 0, 0, full, 64, err, sizeof err) == 0);
    CHECK(wim_tokenize(t, NULL, 0, 0, 0, full, 64, err, sizeof err) == 0);
}

/* Bad metadata is an error value with a clear message. */
static void test_bad_metadata(void) {
    char path[] = "/tmp/wim-test-tok-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    static const char *const toks[] = {"a", "b", "ab"};
    static const char *const merges[] = {"a b"};
    struct {
        const char *model, *pre, *want;
    } cases[] = {
        {"gpt2", "xyz", "unsupported tokenizer.ggml.pre 'xyz'"},
        {"t5", NULL, "unsupported tokenizer.ggml.model 't5'"},
        {NULL, NULL, "tokenizer.ggml.model is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gguf_writer *w = gguf_writer_new();
        char err[256];
        if (cases[i].model) gguf_writer_set_str(w, "tokenizer.ggml.model", cases[i].model);
        if (cases[i].pre) gguf_writer_set_str(w, "tokenizer.ggml.pre", cases[i].pre);
        gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", toks, 3);
        gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", merges, 1);
        int rc = gguf_writer_write(w, path, err, sizeof err);
        gguf_writer_free(w);
        CHECKF(rc == 0, "%s", err);
        wim_tokenizer *t = open_tok(path, err, sizeof err);
        CHECKF(!t && strstr(err, cases[i].want), "case %zu: '%s'", i, t ? "(loaded)" : err);
    }
    /* and a well-formed tiny one works, merges included */
    gguf_writer *w = gguf_writer_new();
    char err[256];
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2");
    gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", toks, 3);
    gguf_writer_set_str_arr(w, "tokenizer.ggml.merges", merges, 1);
    CHECK(gguf_writer_write(w, path, err, sizeof err) == 0);
    gguf_writer_free(w);
    wim_tokenizer *t = open_tok(path, err, sizeof err);
    unlink(path);
    CHECKF(t, "%s", err);
    int n = 0;
    int32_t *ids = encode(t, "abba", 4, 0, 0, &n);
    CHECK(ids && n == 3 && ids[0] == 2 && ids[1] == 1 && ids[2] == 0); /* ab b a */
    free(ids);
    wim_tokenizer_free(t);
}

int main(void) {
    RUN(test_unicode_classes);
    RUN(test_utf8_strict);
    RUN(test_vectors_llama_spm);
    RUN(test_vectors_phi_3);
    RUN(test_vectors_gpt_2);
    RUN(test_vectors_starcoder);
    RUN(test_vectors_refact);
    RUN(test_vectors_falcon);
    RUN(test_vectors_mpt);
    RUN(test_vectors_deepseek_llm);
    RUN(test_vectors_deepseek_coder);
    RUN(test_vectors_qwen2);
    RUN(test_vectors_llama_bpe);
    RUN(test_vectors_bert_bge);
    RUN(test_llama2c_cases);
    RUN(test_stories260k_encode);
    RUN(test_stories260k_decode);
    RUN(test_roundtrip_valid_utf8);
    RUN(test_invalid_utf8);
    RUN(test_unspellable_byte);
    RUN(test_streaming_decode);
    RUN(test_streaming_replacement);
    RUN(test_parse_special);
    RUN(test_phi3_rstrip);
    RUN(test_user_defined_order);
    RUN(test_vocab_metadata);
    RUN(test_buffer_protocol);
    RUN(test_bad_metadata);
    for (int i = 0; i < N_VOCAB; i++)
        wim_tokenizer_free(vocab_cache[i]);
    wim_tokenizer_free(stories());
    return t_exit();
}
