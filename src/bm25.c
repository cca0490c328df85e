/*
 * bm25.c — Okapi BM25 over in-memory documents (see bm25.h).
 *
 * Owns: the term scanner, the stopword list, one open-addressing hash map per
 * call and the top-k selection.
 *
 * How: the map holds the stopwords and the distinct query terms (keys lower-cased);
 * each document is scanned once and every term costs one hash lookup that says
 * "stopword", "query term i" or "other". Only query-term counts are kept, as
 * sparse (term, tf) pairs per document, so memory is O(nonzero pairs), not
 * O(documents x vocabulary), and 1,000 segments of 4k tokens take one pass.
 *
 * Invariants: nothing global is written; the map never exceeds half full, so
 * every probe sequence ends at an empty slot.
 */
#include "bm25.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const stopwords[] = {
    "a",     "an",    "and",   "are",  "as",   "at",    "be",   "been",  "but",   "by",
    "can",   "could", "did",   "do",   "does", "for",   "from", "had",   "has",   "have",
    "he",    "her",   "his",   "how",  "i",    "if",    "in",   "into",  "is",    "it",
    "its",   "me",    "my",    "no",   "not",  "of",    "on",   "or",    "our",   "she",
    "so",    "such",  "than",  "that", "the",  "their", "them", "then",  "there", "these",
    "they",  "this",  "those", "to",   "was",  "we",    "were", "what",  "when",  "where",
    "which", "while", "who",   "whom", "why",  "will",  "with", "would", "you",   "your",
};
#define N_STOPWORDS ((int)(sizeof stopwords / sizeof stopwords[0]))

enum { VAL_STOP = -1 };

typedef struct {
    const char *key; /* lower-cased; NULL: empty slot */
    size_t len;
    uint64_t hash;
    int val; /* VAL_STOP or the query term index */
} slot;

typedef struct {
    slot *slots;
    size_t mask; /* capacity - 1, capacity a power of two */
} term_map;

static int is_word_byte(unsigned char c) {
    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static unsigned char fold(unsigned char c) {
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

/* The next term in s[*pos, n): its start in *start, its length returned (0: no more). */
static size_t next_term(const char *s, size_t n, size_t *pos, size_t *start) {
    size_t i = *pos;
    while (i < n && !is_word_byte((unsigned char)s[i]))
        i++;
    *start = i;
    while (i < n && is_word_byte((unsigned char)s[i]))
        i++;
    *pos = i;
    return i - *start;
}

/* FNV-1a over the lower-cased bytes, so "The" and "the" land in the same slot. */
static uint64_t hash_term(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= fold((unsigned char)s[i]);
        h *= 1099511628211ULL;
    }
    return h;
}

/* key is lower case; s may be any case. */
static int same_term(const char *key, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)key[i] != fold((unsigned char)s[i])) return 0;
    return 1;
}

/* The slot holding s, or the empty slot where it would go. */
static slot *map_find(const term_map *m, const char *s, size_t len, uint64_t h) {
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        slot *e = &m->slots[i];
        if (!e->key || (e->hash == h && e->len == len && same_term(e->key, s, len))) return e;
    }
}

/* Inserts key -> val unless key is there; returns the slot's value either way. */
static int map_put(term_map *m, const char *key, size_t len, int val) {
    uint64_t h = hash_term(key, len);
    slot *e = map_find(m, key, len, h);
    if (!e->key) *e = (slot){key, len, h, val};
    return e->val;
}

int wim_bm25_is_stopword(const char *term, size_t len) {
    for (int i = 0; i < N_STOPWORDS; i++)
        if (strlen(stopwords[i]) == len && same_term(stopwords[i], term, len)) return 1;
    return 0;
}

/* The query's distinct non-stopword terms: keys in the map pointing into `lower` (the query
 * lower-cased), their counts in qf. Returns how many, or -1 on OOM. */
static int build_map(const char *query, char **lower, term_map *m, int **qf) {
    size_t qlen = strlen(query), pos = 0, start, len, nraw = 0;
    while (next_term(query, qlen, &pos, &start))
        nraw++;
    size_t cap = 16;
    while (cap < 2 * (nraw + (size_t)N_STOPWORDS))
        cap *= 2;
    *lower = malloc(qlen + 1);
    m->slots = calloc(cap, sizeof *m->slots);
    *qf = calloc(nraw + 1, sizeof **qf);
    if (!*lower || !m->slots || !*qf) return -1;
    m->mask = cap - 1;
    for (size_t i = 0; i <= qlen; i++)
        (*lower)[i] = (char)fold((unsigned char)query[i]);
    for (int i = 0; i < N_STOPWORDS; i++)
        map_put(m, stopwords[i], strlen(stopwords[i]), VAL_STOP);
    int nq = 0;
    for (pos = 0; (len = next_term(*lower, qlen, &pos, &start));) {
        int v = map_put(m, *lower + start, len, nq);
        if (v == nq) nq++;
        if (v >= 0) (*qf)[v]++;
    }
    return nq;
}

/* Per-document query-term counts, stored sparsely. */
typedef struct {
    int *term, *tf;   /* pairs, document after document */
    size_t *first;    /* first[d] .. first[d+1]: the pairs of document d */
    double *len;      /* |D|: non-stopword terms */
    int *df;          /* per query term */
    size_t used, cap; /* pairs */
} counts;

static int push_pair(counts *c, int term, int tf) {
    if (c->used == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 1024;
        int *t = realloc(c->term, cap * sizeof *t);
        if (!t) return -1;
        c->term = t;
        int *f = realloc(c->tf, cap * sizeof *f);
        if (!f) return -1;
        c->tf = f;
        c->cap = cap;
    }
    c->term[c->used] = term;
    c->tf[c->used] = tf;
    c->used++;
    return 0;
}

/* Scans one document: its length, and a (term, tf) pair for each query term it holds.
 * tf is scratch of nq zeros, left zeroed; seen is scratch for nq indices. */
static int count_doc(const term_map *m, const char *s, size_t n, int d, int *tf, int *seen,
                     counts *c) {
    size_t pos = 0, start, len;
    long terms = 0;
    int nseen = 0;
    c->first[d] = c->used;
    while ((len = next_term(s, n, &pos, &start))) {
        const slot *e = map_find(m, s + start, len, hash_term(s + start, len));
        if (e->key && e->val == VAL_STOP) continue;
        terms++;
        if (!e->key) continue;
        if (tf[e->val]++ == 0) seen[nseen++] = e->val;
    }
    c->len[d] = (double)terms;
    for (int i = 0; i < nseen; i++) {
        int q = seen[i];
        if (push_pair(c, q, tf[q])) return -1;
        c->df[q]++;
        tf[q] = 0;
    }
    return 0;
}

static void free_counts(counts *c) {
    free(c->term);
    free(c->tf);
    free(c->first);
    free(c->len);
    free(c->df);
}

/* BM25 from the counts: each term's weight qf * idf once, then each document's sum. */
static void score_docs(const counts *c, int n, const int *qf, int nq, double *w, double *scores) {
    double total = 0, k1 = WIM_BM25_K1, b = WIM_BM25_B;
    for (int d = 0; d < n; d++)
        total += c->len[d];
    /* A document without query terms keeps score 0, so avgdl = 0 (every document empty) is
     * never divided by. */
    double avgdl = total / n;
    for (int q = 0; q < nq; q++)
        w[q] = qf[q] * log(1.0 + (n - c->df[q] + 0.5) / (c->df[q] + 0.5));
    for (int d = 0; d < n; d++) {
        scores[d] = 0;
        if (c->first[d] == c->first[d + 1]) continue;
        double norm = k1 * (1.0 - b + b * c->len[d] / avgdl), sum = 0;
        for (size_t i = c->first[d]; i < c->first[d + 1]; i++)
            sum += w[c->term[i]] * c->tf[i] * (k1 + 1.0) / (c->tf[i] + norm);
        scores[d] = sum;
    }
}

int wim_bm25_score(const char *const *docs, const size_t *lens, int n, const char *query,
                   double *scores) {
    if (n <= 0) return 0;
    for (int d = 0; d < n; d++)
        scores[d] = 0;
    char *lower = NULL;
    term_map m = {0};
    int *qf = NULL, *tf = NULL, *seen = NULL, rc = -1;
    double *w = NULL;
    counts c = {0};
    int nq = build_map(query ? query : "", &lower, &m, &qf);
    if (nq <= 0) { /* OOM, or nothing to match: every score stays 0 */
        rc = nq < 0 ? -1 : 0;
        goto done;
    }
    tf = calloc((size_t)nq, sizeof *tf);
    seen = malloc((size_t)nq * sizeof *seen);
    w = malloc((size_t)nq * sizeof *w);
    c.first = malloc(((size_t)n + 1) * sizeof *c.first);
    c.len = malloc((size_t)n * sizeof *c.len);
    c.df = calloc((size_t)nq, sizeof *c.df);
    if (!tf || !seen || !w || !c.first || !c.len || !c.df) goto done;
    for (int d = 0; d < n; d++) {
        const char *s = docs[d] ? docs[d] : "";
        size_t len = lens ? (docs[d] ? lens[d] : 0) : strlen(s);
        if (count_doc(&m, s, len, d, tf, seen, &c)) goto done;
    }
    c.first[n] = c.used;
    score_docs(&c, n, qf, nq, w, scores);
    rc = 0;
done:
    free(lower);
    free(m.slots);
    free(qf);
    free(tf);
    free(seen);
    free(w);
    free_counts(&c);
    return rc;
}

/* The ranking order: higher score first, a number before NaN, then lower index. */
static int ranks_before(const double *s, int a, int b) {
    double x = s[a], y = s[b];
    int xnan = x != x, ynan = y != y;
    if (xnan != ynan) return ynan;
    if (!xnan && x != y) return x > y;
    return a < b;
}

/* Restores the heap below i, where every parent ranks after its children (the worst at 0). */
static void sift_down(const double *s, int *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, worst = i;
        if (l < n && ranks_before(s, h[worst], h[l])) worst = l;
        if (r < n && ranks_before(s, h[worst], h[r])) worst = r;
        if (worst == i) return;
        int t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

int wim_bm25_top(const double *scores, int n, int k, int *out) {
    if (n <= 0 || k <= 0) return 0;
    if (k > n) k = n;
    for (int i = 0; i < k; i++)
        out[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down(scores, out, k, i);
    for (int i = k; i < n; i++) {
        if (!ranks_before(scores, i, out[0])) continue;
        out[0] = i;
        sift_down(scores, out, k, 0);
    }
    /* Heap sort: moving the worst to the back each time leaves the best first. */
    for (int m = k - 1; m > 0; m--) {
        int t = out[0];
        out[0] = out[m];
        out[m] = t;
        sift_down(scores, out, m, 0);
    }
    return k;
}
