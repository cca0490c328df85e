/*
 * quotes.c — extractive margins: each line the sentence the model finds likeliest next,
 * found by a pruned trie search (or the exhaustive scan it must agree with). See quotes.h.
 */
#include "quotes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "margin_text.h"
#include "model.h"
#include "tokenizer.h"

#define WIM_SCORE_CHUNK 16 /* tokens of a quoted sentence scored per forward pass */

/* One margin's search: the context it is written in and what choosing its lines cost. */
typedef struct {
    const wim_model *m;
    wim_ctx *c;
    float *logits; /* the next token's logits in c */
    long scored;   /* tokens evaluated to choose lines */
    char *err;
    size_t errlen;
} quote_search;

/* log of the sum of exp(logits): the normaliser of the model's distribution. */
static float log_norm(const float *logits, int n) {
    float max = logits[0], sum = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > max) max = logits[i];
    for (int i = 0; i < n; i++)
        sum += expf(logits[i] - max);
    return max + logf(sum);
}

/* log P(the reply ends here): every end-of-generation token together. */
static float log_p_end(const wim_tokenizer *t, const float *logits, int n, float norm) {
    float sum = 0;
    for (int i = 0; i < n; i++)
        if (wim_tokenizer_is_eog(t, i)) sum += expf(logits[i] - norm);
    return sum > 0 ? logf(sum) : -INFINITY;
}

/* The sentences of src as tokens (document text: no BOS, no special tokens): the lines an
 * extractive margin may write. Returns the count (ids[j], n_ids[j] and *spans malloc'd), or
 * -1 with nothing allocated. */
static int quote_candidates(quote_search *qs, const char *src, wim_span **spans, int32_t ***ids,
                            int **n_ids) {
    int n = wim_sentences(src, strlen(src), spans), ok = n >= 0;
    *ids = ok ? calloc((size_t)n + 1, sizeof **ids) : NULL;
    *n_ids = ok ? calloc((size_t)n + 1, sizeof **n_ids) : NULL;
    if (!*ids || !*n_ids) ok = 0, wim_errorf(qs->err, qs->errlen, "out of memory");
    for (int j = 0; ok && j < n; j++)
        ok = ((*n_ids)[j] = wim_tokenize_alloc(qs->m->tok, src + (*spans)[j].start, (*spans)[j].len,
                                               0, 0, &(*ids)[j], qs->err, qs->errlen)) >= 0;
    if (ok) return n;
    for (int j = 0; *ids && j < n; j++)
        free((*ids)[j]);
    free(*ids), free(*n_ids), free(*spans);
    *ids = NULL, *n_ids = NULL, *spans = NULL;
    return -1;
}

/* Scores tokens after the context: the sum of their log-probabilities (the first from
 * qs->logits), and in *least the smallest from index from on. Evaluates them in chunks of
 * WIM_SCORE_CHUNK (rows holds one chunk's logits) and leaves the context as it was.
 * Returns 0 or -1. */
static int score_tokens(quote_search *qs, const int32_t *ids, int n, int from, float norm,
                        float *rows, float *score, float *least) {
    int vocab = qs->m->cfg.n_vocab, rc = 0;
    *score = qs->logits[ids[0]] - norm;
    *least = from == 0 ? *score : 0;
    if (n == 1) return 0;
    if (wim_ctx_snapshot(qs->c)) return wim_errorf(qs->err, qs->errlen, "out of memory");
    for (int k0 = 0; !rc && k0 < n - 1; k0 += WIM_SCORE_CHUNK) { /* rows k0.. predict k0+1.. */
        int m = n - 1 - k0 < WIM_SCORE_CHUNK ? n - 1 - k0 : WIM_SCORE_CHUNK;
        rc = wim_eval(qs->c, ids + k0, m, rows, 1, qs->err, qs->errlen);
        qs->scored += m;
        for (int i = 0; !rc && i < m; i++) {
            const float *row = rows + (size_t)i * vocab;
            int k = k0 + i + 1;
            float lp = row[ids[k]] - log_norm(row, vocab);
            *score += lp;
            if (k >= from && lp < *least) *least = lp;
        }
    }
    if (wim_ctx_restore(qs->c)) rc = -1; /* always: the snapshot must not stay open */
    return rc;
}

/* The next line of an extractive margin: among the offered candidates, the one whose
 * tokens (the line break gap, then the sentence) have the highest sum of log-probabilities,
 * the earlier on a tie, if that beats best (on entry: log P(the reply ends)). */
typedef struct {
    const int32_t *const *ids; /* candidate j: the sentence's tokens, n_ids[j] of them */
    const int *n_ids;
    const char *offered; /* offered[j]: j may be written now */
    int n;
    const int32_t *gap; /* the line break written before the sentence (n_gap tokens) */
    int n_gap;
    float best, least; /* the best score so far; the smallest log-probability of its
                          sentence's tokens (min_prob decides on it) */
    int pick;          /* the candidate, -1: the end of the reply */
} quote_choice;

/* A candidate with this score (or, for a bound, a subtree whose smallest candidate is j)
 * beats the best so far: exactly the exhaustive scan's `score > best` in candidate order. */
static int beats(const quote_choice *q, float score, int j) {
    return score > q->best || (score == q->best && q->pick >= 0 && j < q->pick);
}

/* The reference: every offered candidate scored in full, in order. */
static int choose_exhaustive(quote_search *qs, quote_choice *q, float norm, float *rows,
                             int32_t *seq) {
    memcpy(seq, q->gap, (size_t)q->n_gap * sizeof *seq);
    for (int j = 0; j < q->n; j++) {
        float score, least;
        if (!q->offered[j] || qs->logits[q->n_gap ? q->gap[0] : q->ids[j][0]] - norm <= q->best)
            continue; /* every further token only lowers the score */
        memcpy(seq + q->n_gap, q->ids[j], (size_t)q->n_ids[j] * sizeof *seq);
        if (score_tokens(qs, seq, q->n_gap + q->n_ids[j], q->n_gap, norm, rows, &score, &least))
            return -1;
        if (score > q->best) q->best = score, q->least = least, q->pick = j;
    }
    return 0;
}

/* The pruned search: the candidates' token sequences as a trie, expanded likeliest child
 * first. Every log-probability is <= 0, so a prefix's score bounds every line below it,
 * and a subtree that cannot beat the best line so far is never evaluated. It picks what
 * choose_exhaustive picks, bit for bit, where the forward pass does not depend on how
 * tokens are chunked (quantized and f16 weights; f32 uses OpenBLAS for 4 rows or more):
 * each token's log-probability comes from the same pass and is summed in the same order. */
typedef struct {
    int32_t tok;
    int child, sibling; /* node indices, -1: none */
    int jmin;           /* the smallest candidate at or below this node (unused at the root) */
    int ends;           /* the smallest candidate whose sequence ends here, -1: none */
    float lp;           /* log P(tok | the path to it), set when its parent is expanded */
    char seen;
} quote_node;

static void trie_add(quote_node *t, int *n_nodes, const quote_choice *q, int j) {
    int at = 0, len = q->n_gap + q->n_ids[j];
    for (int k = 0; k < len; k++) {
        int32_t tok = k < q->n_gap ? q->gap[k] : q->ids[j][k - q->n_gap];
        int ch = t[at].child;
        while (ch >= 0 && t[ch].tok != tok)
            ch = t[ch].sibling;
        if (ch < 0) {
            ch = (*n_nodes)++;
            t[ch] = (quote_node){tok, -1, t[at].child, j, -1, 0, 0};
            t[at].child = ch;
        }
        if (j < t[ch].jmin) t[ch].jmin = j;
        at = ch;
    }
    if (t[at].ends < 0 || j < t[at].ends) t[at].ends = j;
}

/* Expands node at (depth tokens below the root, scoring score with smallest sentence
 * log-probability least), whose next-token logits are row with normaliser norm; the
 * context holds its path. next_row is scratch for the children's logits. */
static int trie_expand(quote_search *qs, quote_choice *q, quote_node *t, int at, int depth,
                       float score, float least, const float *row, float norm, float *next_row) {
    for (int ch = t[at].child; ch >= 0; ch = t[ch].sibling)
        t[ch].lp = row[t[ch].tok] - norm, t[ch].seen = 0;
    for (;;) {
        int ch = -1;
        for (int x = t[at].child; x >= 0; x = t[x].sibling)
            if (!t[x].seen &&
                (ch < 0 || t[x].lp > t[ch].lp || (t[x].lp == t[ch].lp && t[x].jmin < t[ch].jmin)))
                ch = x;
        if (ch < 0) return 0;
        t[ch].seen = 1;
        float sc = score + t[ch].lp;
        float le = depth >= q->n_gap && t[ch].lp < least ? t[ch].lp : least;
        if (sc < q->best) return 0; /* nor can its less likely siblings */
        if (!beats(q, sc, t[ch].jmin)) continue;
        if (t[ch].ends >= 0 && beats(q, sc, t[ch].ends))
            q->best = sc, q->least = le, q->pick = t[ch].ends;
        if (t[ch].child < 0) continue;
        if (wim_ctx_snapshot(qs->c)) return wim_errorf(qs->err, qs->errlen, "out of memory");
        int rc = wim_eval(qs->c, &t[ch].tok, 1, next_row, 0, qs->err, qs->errlen);
        qs->scored++;
        if (!rc)
            rc = trie_expand(qs, q, t, ch, depth + 1, sc, le, next_row,
                             log_norm(next_row, qs->m->cfg.n_vocab), next_row);
        if (wim_ctx_restore(qs->c)) rc = -1; /* always: the snapshot must not stay open */
        if (rc) return -1;
    }
}

char *wim_quote_margin(const wim_model *m, wim_ctx *c, float *logits, const char *src,
                       const wim_quote_params *qp, wim_quote_stats *st, char *err, size_t errlen) {
    quote_search qs = {m, c, logits, 0, err, errlen};
    const int exhaustive = qp->exhaustive, vocab = m->cfg.n_vocab, max = qp->max_tokens;
    const char *notes = qp->notes;
    int spent = 0, longest = 1, n_nodes = 1, notes_quoted = 0, ok;
    wim_span *spans = NULL;
    int32_t **ids = NULL, *nl = NULL;
    int *n_ids = NULL, n_nl = wim_tokenize_alloc(m->tok, "\n", 1, 0, 0, &nl, err, errlen);
    if (n_nl == 0) wim_errorf(err, errlen, "the vocabulary cannot write a line break");
    size_t n_src = strlen(src); /* the candidates: sentences of src, then of the notes */
    char *pool = malloc(n_src + (notes ? strlen(notes) : 0) + 2);
    if (pool) sprintf(pool, "%s\n%s", src, notes ? notes : "");
    if (n_nl > 0 && !pool) wim_errorf(err, errlen, "out of memory");
    int n = n_nl > 0 && pool ? quote_candidates(&qs, pool, &spans, &ids, &n_ids) : -1;
    for (int j = 0; j < n; j++) { /* a sentence longer than the margin is never offered */
        longest = n_ids[j] > longest && n_ids[j] <= max ? n_ids[j] : longest;
        n_nodes += n_nl + n_ids[j];
    }
    longest += n_nl;
    size_t n_rows = exhaustive ? WIM_SCORE_CHUNK : 1;
    float *rows = n >= 0 ? malloc(n_rows * vocab * sizeof *rows) : NULL;
    quote_node *trie = n >= 0 && !exhaustive ? malloc((size_t)n_nodes * sizeof *trie) : NULL;
    int32_t *seq = n >= 0 ? malloc((size_t)longest * sizeof *seq) : NULL;
    char *used = n >= 0 ? calloc((size_t)n + 1, 1) : NULL;
    char *offered = n >= 0 ? calloc((size_t)n + 1, 1) : NULL;
    char *text = n >= 0 ? malloc(n_src + (size_t)n + 1) : NULL;
    size_t len = 0;
    ok = rows && (trie || exhaustive) && seq && used && offered && text;
    if (n >= 0 && !ok) wim_errorf(err, errlen, "out of memory");
    float floor = qp->min_prob > 0 ? logf(qp->min_prob) : -INFINITY;
    while (ok) {
        int gap = spent > 0 ? n_nl : 0; /* a line break before every line but the first */
        float norm = log_norm(logits, vocab);
        quote_choice q = {.ids = (const int32_t *const *)ids,
                          .n_ids = n_ids,
                          .offered = offered,
                          .n = n,
                          .gap = nl,
                          .n_gap = gap,
                          .best = log_p_end(m->tok, logits, vocab, norm),
                          .pick = -1};
        for (int j = 0; j < n; j++)
            offered[j] = !used[j] && spent + gap + n_ids[j] <= max;
        if (exhaustive) {
            ok = !choose_exhaustive(&qs, &q, norm, rows, seq);
        } else {
            int n_trie = 1;
            trie[0] = (quote_node){-1, -1, -1, n, -1, 0, 0};
            for (int j = 0; j < n; j++)
                if (offered[j]) trie_add(trie, &n_trie, &q, j);
            ok = !trie_expand(&qs, &q, trie, 0, 0, 0.0f, 0.0f, logits, norm, rows);
        }
        if (!ok || q.pick < 0) break;
        int pick = q.pick;
        used[pick] = 1;
        memcpy(seq, nl, (size_t)gap * sizeof *seq);
        memcpy(seq + gap, ids[pick], (size_t)n_ids[pick] * sizeof *seq);
        ok = !wim_eval(c, seq, gap + n_ids[pick], logits, 0, err, errlen);
        spent += gap + n_ids[pick];
        notes_quoted += spans[pick].start >= n_src;
        if (q.least >= floor && spans[pick].start < n_src) {
            if (len) text[len++] = '\n';
            memcpy(text + len, src + spans[pick].start, spans[pick].len);
            len += spans[pick].len;
        }
    }
    if (ok) {
        text[len] = 0;
        *st =
            (wim_quote_stats){.n_tokens = spent, .notes_quoted = notes_quoted, .scored = qs.scored};
    }
    for (int j = 0; j < n; j++)
        free(ids[j]);
    free(ids);
    free(n_ids);
    free(nl);
    free(spans);
    free(rows);
    free(trie);
    free(seq);
    free(used);
    free(offered);
    free(pool);
    if (!ok) free(text);
    return ok ? text : NULL;
}
