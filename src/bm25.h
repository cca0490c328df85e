/*
 * bm25.h — the lexical retriever behind `rag --retriever bm25`.
 *
 * Owns: the term rule, the stopword list and Okapi BM25 scoring of a set of
 * documents (the WiM segments) against a query, and picking the top k.
 *
 * Terms: maximal runs of word bytes, where a word byte is an ASCII letter or
 * digit or any byte >= 0x80 (so every non-ASCII UTF-8 character is a word
 * character and "café" is one term); ASCII letters are lower-cased, nothing
 * else is folded. A small English stopword list ("the", "is", "where", ...) is
 * dropped from queries and documents, and document length |D| counts the terms
 * that remain.
 *
 * Score: sum over query terms t of qf(t) * idf(t) * tf*(k1+1) / (tf + k1*(1 - b + b*|D|/avgdl)),
 * k1 = 1.2, b = 0.75, idf(t) = ln(1 + (N - df + 0.5)/(df + 0.5)) (always > 0); qf(t) is how
 * often t occurs in the query, as when summing over the query's terms one by one.
 *
 * Invariants: scores depend only on the texts (no state between calls); every
 * score is >= 0, and 0 exactly when the document has no query term.
 */
#ifndef WIM_BM25_H
#define WIM_BM25_H

#include <stddef.h>

#define WIM_BM25_K1 1.2
#define WIM_BM25_B 0.75

/* Scores each of n documents (byte ranges of text) against a query with Okapi BM25 (k1=1.2, b=0.75,
 * idf = ln(1 + (N - df + 0.5)/(df + 0.5))). Terms: lower-cased ASCII letters/digits runs and any
 * non-ASCII UTF-8 characters as word characters; a small English stopword list is removed from
 * queries and documents. Writes scores[n]. lens NULL: the documents are NUL-terminated; a NULL
 * document or query is empty (an empty query scores every document 0). Returns 0, -1 on OOM. */
int wim_bm25_score(const char *const *docs, const size_t *lens, int n, const char *query,
                   double *scores);

/* Indices of the top k scores, best first, ties by lower index (a NaN ranks below every number).
 * Returns count written (min(k,n), 0 when k or n <= 0). Needs no memory beyond out[k]. */
int wim_bm25_top(const double *scores, int n, int k, int *out);

/* 1 when the term (any case) is on the stopword list. */
int wim_bm25_is_stopword(const char *term, size_t len);

#endif
