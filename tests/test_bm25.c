/*
 * test_bm25.c — the BM25 retriever: scores computed by hand from the formula on
 * a tiny corpus, ordering and ties, stopwords, case folding, UTF-8 terms, byte
 * ranges, empty queries and documents, a naive reference on a random corpus, and
 * 1,000 documents of 4,000 words in well under a second.
 */
#include "test.h"

#include "bm25.h"

#include <time.h>

static int close_to(double got, double want) {
    return fabs(got - want) <= 1e-12 * fmax(1.0, fabs(want));
}

/* |D| after stopwords: d0 cat sat mat (3), d1 dog sat (2), d2 cats dogs (2),
 * d3 cat saw other cat (4); N = 4, avgdl = 11/4 = 2.75. */
static const char *const tiny[] = {"The cat sat on the mat.", "The dog sat.", "Cats and dogs.",
                                   "The cat saw the other cat."};

static void test_hand_computed(void) {
    double s[4];
    CHECK(wim_bm25_score(tiny, NULL, 4, "Where is the cat?", s) == 0);
    /* only "cat" remains; df = 2, so idf = ln(1 + (4 - 2 + 0.5)/(2 + 0.5)) = ln 2 */
    double d0 = log(2.0) * 1 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 3 / 2.75));
    double d3 = log(2.0) * 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 4 / 2.75));
    CHECKF(close_to(s[0], d0), "d0 %.17g want %.17g", s[0], d0);
    CHECKF(close_to(s[3], d3), "d3 %.17g want %.17g", s[3], d3);
    CHECK(s[1] == 0 && s[2] == 0);
    /* "dog" (df 1: "dogs" is another term) and "sat" (df 2) */
    CHECK(wim_bm25_score(tiny, NULL, 4, "dog sat", s) == 0);
    double idf_dog = log(1 + 3.5 / 1.5), idf_sat = log(2.0);
    double e0 = idf_sat * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 3 / 2.75));
    double e1 = (idf_dog + idf_sat) * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / 2.75));
    CHECKF(close_to(s[0], e0), "d0 %.17g want %.17g", s[0], e0);
    CHECKF(close_to(s[1], e1), "d1 %.17g want %.17g", s[1], e1);
    CHECK(s[2] == 0 && s[3] == 0);
    int top[4];
    CHECK(wim_bm25_top(s, 4, 4, top) == 4);
    CHECK(top[0] == 1 && top[1] == 0 && top[2] == 2 && top[3] == 3); /* zeros: lower index first */
    /* a query word twice counts twice */
    double once[4], twice[4];
    CHECK(wim_bm25_score(tiny, NULL, 4, "cat", once) == 0);
    CHECK(wim_bm25_score(tiny, NULL, 4, "cat, CAT", twice) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(close_to(twice[i], 2 * once[i]));
}

static void test_ordering(void) {
    const char *docs[] = {
        "Paris is the capital of France.",
        "The Eiffel Tower is in Paris, the capital of France; Paris has many museums.",
        "Berlin is the capital of Germany.",
        "Bananas are yellow.",
    };
    double s[4];
    int top[4];
    CHECK(wim_bm25_score(docs, NULL, 4, "What is the capital of France?", s) == 0);
    CHECK(wim_bm25_top(s, 4, 2, top) == 2);
    CHECK((top[0] == 0 || top[0] == 1) && (top[1] == 0 || top[1] == 1));
    CHECK(s[2] > 0 && s[2] < s[0] && s[3] == 0); /* "capital" only; nothing */
    CHECK(wim_bm25_score(docs, NULL, 4, "Eiffel tower museums", s) == 0);
    CHECK(wim_bm25_top(s, 4, 1, top) == 1 && top[0] == 1);
    CHECK(wim_bm25_score(docs, NULL, 4, "yellow bananas", s) == 0);
    CHECK(wim_bm25_top(s, 4, 1, top) == 1 && top[0] == 3);
    /* the same term count in a shorter document scores higher (length normalisation) */
    const char *len_docs[] = {"apple pear plum kiwi fig lime", "apple pear"};
    CHECK(wim_bm25_score(len_docs, NULL, 2, "apple", s) == 0);
    CHECK(s[1] > s[0] && s[0] > 0);
}

static void test_stopwords(void) {
    CHECK(wim_bm25_is_stopword("the", 3) && wim_bm25_is_stopword("The", 3));
    CHECK(wim_bm25_is_stopword("WHERE", 5) && wim_bm25_is_stopword("is", 2));
    CHECK(!wim_bm25_is_stopword("cat", 3) && !wim_bm25_is_stopword("theme", 5));
    CHECK(wim_bm25_is_stopword("theme", 3)); /* the length decides: "the" */
    CHECK(!wim_bm25_is_stopword("", 0));
    double s[4];
    CHECK(wim_bm25_score(tiny, NULL, 4, "the and of where is", s) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(s[i] == 0);
    /* stopwords do not count toward |D|: both documents have length 1 */
    const char *docs[] = {"the the the the cat", "cat"};
    CHECK(wim_bm25_score(docs, NULL, 2, "cat", s) == 0);
    CHECK(s[0] == s[1] && s[0] > 0);
}

static void test_case_folding_and_terms(void) {
    const char *docs[] = {"CAT Cat cAt", "cat", "Café au lait", "CAFÉ", "abc123 well-known 2024"};
    double s[5];
    CHECK(wim_bm25_score(docs, NULL, 5, "cat", s) == 0);
    CHECK(s[0] > s[1] && s[1] > 0 && s[2] == 0);
    /* ASCII letters fold; non-ASCII characters are word characters but are not folded */
    CHECK(wim_bm25_score(docs, NULL, 5, "CAFé", s) == 0);
    CHECK(s[2] > 0 && s[3] == 0);
    CHECK(wim_bm25_score(docs, NULL, 5, "café", s) == 0);
    CHECK(s[2] > 0 && s[3] == 0);
    CHECK(wim_bm25_score(docs, NULL, 5, "CAFÉ", s) == 0);
    CHECK(s[3] > 0 && s[2] == 0);
    /* digits join words; punctuation splits them; "abc" alone is not "abc123" */
    CHECK(wim_bm25_score(docs, NULL, 5, "known", s) == 0);
    CHECK(s[4] > 0);
    CHECK(wim_bm25_score(docs, NULL, 5, "2024", s) == 0);
    CHECK(s[4] > 0);
    CHECK(wim_bm25_score(docs, NULL, 5, "abc", s) == 0);
    CHECK(s[4] == 0);
}

static void test_ties_and_top(void) {
    const double s[] = {1, 3, 3, 2, 3, 0};
    int out[6];
    CHECK(wim_bm25_top(s, 6, 3, out) == 3);
    CHECK(out[0] == 1 && out[1] == 2 && out[2] == 4);
    CHECK(wim_bm25_top(s, 6, 10, out) == 6); /* k > n */
    CHECK(out[0] == 1 && out[1] == 2 && out[2] == 4 && out[3] == 3 && out[4] == 0 && out[5] == 5);
    CHECK(wim_bm25_top(s, 6, 0, out) == 0 && wim_bm25_top(s, 0, 3, out) == 0);
    CHECK(wim_bm25_top(s, 6, -1, out) == 0);
    const double z[] = {0, 0, 0, 0};
    CHECK(wim_bm25_top(z, 4, 4, out) == 4);
    CHECK(out[0] == 0 && out[1] == 1 && out[2] == 2 && out[3] == 3);
    const double nan_s[] = {NAN, 1, -1, NAN};
    CHECK(wim_bm25_top(nan_s, 4, 4, out) == 4);
    CHECK(out[0] == 1 && out[1] == 2 && out[2] == 0 && out[3] == 3);
    /* agrees with a full selection sort on random scores with many ties */
    unsigned long long seed = 42;
    enum { N = 200 };
    double r[N];
    int heap[N], want[N];
    for (int i = 0; i < N; i++)
        r[i] = (double)(t_rand_next(&seed) % 17);
    for (int i = 0; i < N; i++)
        want[i] = i;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            if (r[want[j]] > r[want[i]] || (r[want[j]] == r[want[i]] && want[j] < want[i])) {
                int t = want[i];
                want[i] = want[j];
                want[j] = t;
            }
    for (int k = 1; k <= N; k += 37) {
        CHECK(wim_bm25_top(r, N, k, heap) == k);
        for (int i = 0; i < k; i++)
            CHECKF(heap[i] == want[i], "k=%d i=%d", k, i);
    }
}

static void test_empty(void) {
    double s[3] = {9, 9, 9};
    CHECK(wim_bm25_score(tiny, NULL, 3, "", s) == 0);
    CHECK(s[0] == 0 && s[1] == 0 && s[2] == 0);
    s[0] = 9;
    CHECK(wim_bm25_score(tiny, NULL, 3, NULL, s) == 0);
    CHECK(s[0] == 0);
    CHECK(wim_bm25_score(tiny, NULL, 3, "?!, ...", s) == 0);
    CHECK(s[0] == 0);
    /* empty documents (NULL, zero length, only punctuation or stopwords): all zero, no
     * division by avgdl = 0 */
    const char *empty[] = {NULL, "", "...", "the of"};
    const size_t lens[] = {0, 0, 3, 6};
    double e[4] = {9, 9, 9, 9};
    CHECK(wim_bm25_score(empty, lens, 4, "cat", e) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(e[i] == 0);
    CHECK(wim_bm25_score(empty, NULL, 4, "cat", e) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(e[i] == 0);
    CHECK(wim_bm25_score(empty, lens, 0, "cat", e) == 0);
    /* one non-empty document among empty ones */
    const char *one[] = {"", "cat"};
    CHECK(wim_bm25_score(one, NULL, 2, "cat", e) == 0);
    CHECK(e[0] == 0 && e[1] > 0);
}

/* Documents are byte ranges: nothing past lens[i] is read (no NUL needed). */
static void test_byte_ranges(void) {
    const char text[] = {'c', 'a', 't', ' ', 'd', 'o', 'g'};
    const char *docs[] = {text, text + 4};
    const size_t lens[] = {3, 3};
    double s[2];
    CHECK(wim_bm25_score(docs, lens, 2, "dog", s) == 0);
    CHECK(s[0] == 0 && s[1] > 0);
    CHECK(wim_bm25_score(docs, lens, 2, "cat", s) == 0);
    CHECK(s[0] > 0 && s[1] == 0);
}

/* ---------- a naive reference on a random corpus ---------- */

static int naive_is_word(unsigned char c) {
    return c >= 0x80 || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* Lower-cased terms of s, stopwords dropped, as NUL-separated strings; returns the count. */
static int naive_terms(const char *s, char *buf, char **terms, int max) {
    int n = 0;
    for (size_t i = 0; s[i];) {
        if (!naive_is_word((unsigned char)s[i])) {
            i++;
            continue;
        }
        size_t j = i;
        char *t = buf;
        while (s[j] && naive_is_word((unsigned char)s[j])) {
            char c = s[j++];
            *buf++ = c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
        }
        *buf++ = 0;
        if (!wim_bm25_is_stopword(t, strlen(t)) && n < max) terms[n++] = t;
        i = j;
    }
    return n;
}

static void test_random_against_naive(void) {
    static const char *const vocab[] = {"Alpha", "beta", "GAMMA", "delta", "the", "is",   "of",
                                        "x1",    "y2",   "zeta",  "eta",   "a",   "Theta"};
    enum { ND = 30, MAXW = 80 };
    unsigned long long seed = 7;
    static char docs_buf[ND][MAXW * 8];
    const char *docs[ND];
    for (int d = 0; d < ND; d++) {
        int words = (int)(t_rand_next(&seed) % MAXW), used = 0;
        docs_buf[d][0] = 0;
        for (int w = 0; w < words; w++)
            used += snprintf(docs_buf[d] + used, sizeof docs_buf[d] - (size_t)used, "%s%s",
                             vocab[t_rand_next(&seed) % 13], w % 5 == 4 ? ". " : " ");
        docs[d] = docs_buf[d];
    }
    const char *query = "alpha GAMMA the zeta, zeta? x1";
    double s[ND];
    CHECK(wim_bm25_score(docs, NULL, ND, query, s) == 0);
    static char tbuf[ND][MAXW * 8], qbuf[128];
    static char *dterms[ND][MAXW];
    char *qterms[16];
    int dn[ND], qn = naive_terms(query, qbuf, qterms, 16);
    double total = 0;
    for (int d = 0; d < ND; d++)
        total += dn[d] = naive_terms(docs[d], tbuf[d], dterms[d], MAXW);
    double avgdl = total / ND;
    for (int d = 0; d < ND; d++) {
        double want = 0;
        for (int q = 0; q < qn; q++) { /* every query occurrence, as the textbook sum */
            int df = 0, tf = 0;
            for (int e = 0; e < ND; e++) {
                int has = 0;
                for (int i = 0; i < dn[e]; i++)
                    has |= strcmp(dterms[e][i], qterms[q]) == 0;
                df += has;
            }
            for (int i = 0; i < dn[d]; i++)
                tf += strcmp(dterms[d][i], qterms[q]) == 0;
            if (!tf) continue;
            double idf = log(1 + (ND - df + 0.5) / (df + 0.5));
            want += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dn[d] / avgdl));
        }
        CHECKF(fabs(s[d] - want) <= 1e-9 * fmax(1, want), "doc %d: %.17g want %.17g", d, s[d],
               want);
    }
}

/* 1,000 segments of 4,000 words: one pass, well under a second with -O2 (the bound leaves room
 * for sanitizer builds and a busy machine). */
static void test_speed_1000_docs(void) {
    enum { ND = 1000, WORDS = 4000 };
    unsigned long long seed = 99;
    char **docs = calloc(ND, sizeof *docs);
    size_t *lens = calloc(ND, sizeof *lens);
    double *s = calloc(ND, sizeof *s);
    CHECK(docs && lens && s);
    int ok = 1;
    for (int d = 0; d < ND && ok; d++) {
        docs[d] = malloc(WORDS * 9);
        ok = docs[d] != NULL;
        size_t n = 0;
        for (int w = 0; ok && w < WORDS; w++) {
            /* words w0..w4999, and "needle" in every 97th document */
            int id = (int)(t_rand_next(&seed) % 5000);
            n += (size_t)sprintf(docs[d] + n, d % 97 == 5 && w == 10 ? "needle " : "w%d ", id);
        }
        lens[d] = n;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = ok ? wim_bm25_score((const char *const *)docs, lens, ND,
                                 "Where is the needle w17 w4242?", s)
                : -1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    int top[11], n = wim_bm25_top(s, ND, 11, top), found = 0;
    for (int i = 0; i < n; i++)
        found += top[i] % 97 == 5;
    for (int d = 0; d < ND; d++)
        free(docs[d]);
    free(docs);
    free(lens);
    free(s);
    CHECK(rc == 0);
    CHECKF(found == 11, "the 11 documents with the rare term are not the top 11 (%d)", found);
    CHECKF(sec < 10.0, "%.2f s for 1,000 x 4,000 words", sec);
    fprintf(stderr, "bm25: 1,000 x 4,000 words in %.3f s\n", sec);
}

int main(void) {
    RUN(test_hand_computed);
    RUN(test_ordering);
    RUN(test_stopwords);
    RUN(test_case_folding_and_terms);
    RUN(test_ties_and_top);
    RUN(test_empty);
    RUN(test_byte_ranges);
    RUN(test_random_against_naive);
    RUN(test_speed_1000_docs);
    return t_exit();
}
