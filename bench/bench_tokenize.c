/*
 * bench_tokenize.c — tokenizer throughput (MB/s, single thread) per vocabulary.
 *
 * Owns: nothing but the measurement. The text is 1 MiB of English taken from
 * the shared datasets (see english_text); -f FILE uses another text. Each
 * vocabulary is timed over the best of REPEATS (3) runs of one wim_tokenize
 * call (the size query and the fill are one call each in real use).
 *
 *   build/bench/bench_tokenize [-f FILE] [-n BYTES] [-r REPEATS] [VOCAB.gguf ...]
 * Without vocabularies it runs every tokenizer fixture in $WIM_SHARED/vocab.
 */
#include "gguf.h"
#include "tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *shared_dir(void) {
    const char *s = getenv("WIM_SHARED");
    return s && *s ? s : "../shared";
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n + 65536 > cap) {
            cap = (n + 65536) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return buf;
}

/* Decodes the JSON string starting at p (just after its opening quote) into
 * out; returns the bytes written. \n, \t, \", \\ and \uXXXX outside the
 * surrogate range are unescaped. */
static size_t json_string(const char *p, char *out, size_t cap) {
    size_t n = 0;
    for (; *p && *p != '"' && n + 4 < cap; p++) {
        if (*p != '\\') {
            out[n++] = *p;
            continue;
        }
        p++;
        if (*p == 'n')
            out[n++] = '\n';
        else if (*p == 't')
            out[n++] = '\t';
        else if (*p == 'u') {
            unsigned v = 0;
            if (sscanf(p + 1, "%4x", &v) != 1) break;
            p += 4;
            if (v < 0x80)
                out[n++] = (char)v;
            else if (v < 0x800)
                out[n++] = (char)(0xC0 | v >> 6), out[n++] = (char)(0x80 | (v & 63));
            else if (v < 0xD800 || v > 0xDFFF) {
                out[n++] = (char)(0xE0 | v >> 12);
                out[n++] = (char)(0x80 | ((v >> 6) & 63));
                out[n++] = (char)(0x80 | (v & 63));
            }
        } else if (*p)
            out[n++] = *p;
        else
            break;
    }
    return n;
}

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h;
}

/* Appends every distinct string value of "key" in json to out, each
 * followed by a blank line. */
static size_t json_values(const char *json, const char *key, char *out, size_t n, size_t cap,
                          uint64_t *seen, size_t *n_seen, size_t max_seen) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    for (const char *p = json; (p = strstr(p, pat)) != NULL;) {
        p += strlen(pat);
        while (*p == ' ' || *p == ':' || *p == '\n')
            p++;
        if (*p != '"') continue;
        size_t k = json_string(p + 1, out + n, cap - n - 2);
        uint64_t h = fnv(out + n, k);
        size_t i;
        for (i = 0; i < *n_seen && seen[i] != h; i++) {
        }
        if (i < *n_seen || *n_seen == max_seen) continue;
        seen[(*n_seen)++] = h;
        n += k;
        out[n++] = '\n';
        out[n++] = '\n';
    }
    return n;
}

/* 1 MiB of English: book prose (BABILong), Wikipedia paragraphs (SQuAD 2.0)
 * and news sentences (MultiHop-RAG), each distinct string once; the ~0.9 MB
 * they give is repeated up to `want` bytes and cut at a character boundary. */
static char *english_text(size_t want, size_t *len) {
    static const struct {
        const char *file, *key;
    } src[] = {
        {"babilong/babilong_64k.json", "context"}, {"babilong/babilong_32k.json", "context"},
        {"babilong/babilong_16k.json", "context"}, {"babilong/babilong_8k.json", "context"},
        {"squad2/queries.json", "context"},        {"multihop-rag/ground_truth.json", "fact"}};
    size_t cap = 4 << 20, n = 0, n_seen = 0;
    char *all = malloc(cap);
    uint64_t *seen = malloc(8192 * sizeof *seen);
    for (size_t i = 0; all && seen && i < sizeof src / sizeof src[0]; i++) {
        char path[1024];
        size_t jl;
        snprintf(path, sizeof path, "%s/data/%s", shared_dir(), src[i].file);
        char *json = read_file(path, &jl);
        if (!json) continue;
        char *j = realloc(json, jl + 1);
        if (j) {
            j[jl] = 0;
            n = json_values(j, src[i].key, all, n, cap, seen, &n_seen, 8192);
        }
        free(j ? j : json);
    }
    free(seen);
    if (!all || n == 0) {
        free(all);
        return NULL;
    }
    char *text = malloc(want + 1);
    for (size_t i = 0; text && i < want; i++)
        text[i] = all[i % n];
    size_t end = want;
    while (text && end > 0 && ((unsigned char)text[end] & 0xC0) == 0x80)
        end--; /* whole characters */
    if (text) text[end] = 0;
    fprintf(stderr, "bench_tokenize: %zu distinct bytes of English, repeated to %zu\n", n, end);
    free(all);
    *len = end;
    return text;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench_one(const char *path, const char *text, size_t len, int32_t *ids, int cap,
                     int reps) {
    char err[512];
    gguf_file *f;
    wim_tokenizer *t;
    double t0 = now();
    if (gguf_open(path, &f, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc = wim_tokenizer_load(f, &t, err, sizeof err);
    gguf_close(f);
    if (rc) {
        printf("%-40s skipped: %s\n", path, err);
        return 0;
    }
    double load = now() - t0, best = 1e30;
    int n = 0;
    for (int rep = 0; rep < reps; rep++) {
        double t1 = now();
        n = wim_tokenize(t, text, len, 0, 0, ids, cap, err, sizeof err);
        double dt = now() - t1;
        if (dt < best) best = dt;
    }
    const char *base = strrchr(path, '/');
    printf("%-34s %-3s %8d tokens %7.2f MB/s  (load %.2f s)\n", base ? base + 1 : path,
           wim_tokenizer_kind(t) == WIM_TOK_SPM ? "spm" : "bpe", n, (double)len / best / 1e6, load);
    wim_tokenizer_free(t);
    return n < 0;
}

int main(int argc, char **argv) {
    const char *file = NULL;
    size_t want = 1 << 20;
    int reps = 3;
    int first = 1;
    for (; first < argc && argv[first][0] == '-'; first++) {
        if (strcmp(argv[first], "-f") == 0 && first + 1 < argc)
            file = argv[++first];
        else if (strcmp(argv[first], "-r") == 0 && first + 1 < argc)
            reps = atoi(argv[++first]) > 0 ? atoi(argv[first]) : 1;
        else if (strcmp(argv[first], "-n") == 0 && first + 1 < argc)
            want = strtoul(argv[++first], 0, 10);
        else {
            fprintf(stderr, "usage: %s [-f FILE] [-n BYTES] [-r REPEATS] [VOCAB.gguf ...]\n",
                    argv[0]);
            return 2;
        }
    }
    size_t len = 0;
    char *text = file ? read_file(file, &len) : english_text(want, &len);
    if (!text) {
        fprintf(stderr, "bench_tokenize: no text (%s)\n",
                file ? file : "WIM_SHARED/data/babilong missing");
        return 2;
    }
    printf("text: %zu bytes (%s)\n", len, file ? file : "English from $WIM_SHARED/data");
    int cap = (int)len + 16;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    int rc = 0;
    if (first < argc) {
        for (int i = first; i < argc; i++)
            rc |= bench_one(argv[i], text, len, ids, cap, reps);
    } else {
        static const char *const names[] = {"llama-spm",      "phi-3",  "gpt-2",    "starcoder",
                                            "refact",         "falcon", "mpt",      "deepseek-llm",
                                            "deepseek-coder", "qwen2",  "llama-bpe"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", shared_dir(), names[i]);
            rc |= bench_one(path, text, len, ids, cap, reps);
        }
    }
    free(ids);
    free(text);
    return rc;
}
