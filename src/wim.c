/*
 * wim.c — the Writing-in-the-Margins pipeline and its two baselines.
 *
 *   wim: BOS + system prompt, then for each segment: prefill it; snapshot the
 *        KV cache; prefill the extraction prompt and decode a margin (extractive
 *        margins: choose the segment's sentences one by one, each scored under a
 *        nested snapshot); restore (the cache is bit-identical again); classify
 *        the margin in a separate context. Finally the answer prompt with the
 *        relevant margins.
 *   llm: the whole document, then the question (the long-context baseline).
 *   rag: the classifier (or BM25) chooses segments; the chosen segments and
 *        the question go to a fresh context.
 *
 * Invariants: margins never enter the main context except through the final
 * prompt; every step reports through the event callback and nothing here
 * prints; an interrupt stops after the current step and still answers.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bm25.h"
#include "chat.h"
#include "classify.h"
#include "margins.h"
#include "model.h"
#include "prompts.h"
#include "segment.h"
#include "tokenizer.h"
#include "wim.h"

#define WIM_SCORE_CHUNK 16 /* tokens of a quoted sentence scored per forward pass */

typedef struct {
    const wim_model *m;
    const wim_run_params *p;
    wim_event_fn cb;
    void *user;
    wim_ctx *main, *aux;
    wim_sampler *sampler;
    wim_prompts prompts;
    wim_chat chat;
    const char *query;
    float *logits;
    int yes_id, no_id;
    long prefilled, decoded;
    double ms_prefill, ms_margins, ms_classify, ms_answer;
    char *err;
    size_t errlen;
} run_state;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

wim_run_params wim_run_default_params(void) {
    wim_run_params p;
    memset(&p, 0, sizeof p);
    p.pattern = WIM_PATTERN_WIM;
    p.margin_tokens = 100;
    p.classify_tokens = 10;
    p.answer_tokens = 50;
    p.classify = WIM_CLASSIFY_GENERATE;
    p.retriever = WIM_RETRIEVER_CLASSIFIER;
    p.top_k = 3;
    p.top_p = 1.0f;
    p.ctx = wim_ctx_default_params();
    return p;
}

void wim_result_free(wim_result *r) {
    if (!r) return;
    for (int i = 0; r->margins && i < r->n_segments; i++)
        free(r->margins[i]);
    free(r->margins);
    free(r->relevant);
    free(r->answer);
    free(r->answer_logits);
    memset(r, 0, sizeof *r);
}

static void emit(run_state *s, wim_event *ev) {
    if (s->cb) s->cb(ev, s->user);
}

static int interrupted(const run_state *s) {
    return s->p->interrupt && *s->p->interrupt;
}

/* Tokenizes text; prompts (templates with chat headers) parse special tokens,
 * document text never does. Returns the count (ids malloc'd) or -1. */
static int tokenize(run_state *s, const char *text, size_t len, int bos, int special,
                    int32_t **ids) {
    const wim_tokenizer *t = s->m->tok;
    bos = bos && wim_tokenizer_add_bos(t) && wim_tokenizer_bos(t) >= 0;
    int n = wim_tokenize_alloc(t, text, len, bos, special, ids, s->err, s->errlen);
    return n;
}

/* Appends tokens to a context; the last token's logits land in s->logits. */
static int feed(run_state *s, wim_ctx *c, const int32_t *ids, int n) {
    if (n == 0) return 0;
    double t0 = now_ms();
    int rc = wim_eval(c, ids, n, s->logits, 0, s->err, s->errlen);
    s->ms_prefill += now_ms() - t0;
    s->prefilled += n;
    return rc;
}

static int feed_text(run_state *s, wim_ctx *c, const char *text, int bos, int special) {
    int32_t *ids;
    int n = tokenize(s, text, strlen(text), bos, special, &ids);
    if (n < 0) return -1;
    int rc = feed(s, c, ids, n);
    free(ids);
    return rc;
}

/* Decodes up to max tokens from s->logits (stops at end-of-generation);
 * returns the text (malloc'd) or NULL. */
static char *generate(run_state *s, wim_ctx *c, int max, int *n_out) {
    size_t cap = 256, len = 0;
    char *text = malloc(cap);
    if (!text) {
        snprintf(s->err, s->errlen, "out of memory");
        return NULL;
    }
    wim_detok d;
    wim_detok_init(&d, s->m->tok, -1, 0);
    int n = 0;
    char piece[256];
    for (; n < max; n++) {
        int32_t next = wim_sample(s->sampler, s->logits);
        if (wim_tokenizer_is_eog(s->m->tok, next)) break;
        int nb = wim_detok_push(&d, next, piece, sizeof piece);
        if (len + (size_t)nb + 8 > cap) {
            char *t = realloc(text, cap = 2 * cap + (size_t)nb);
            if (!t) {
                free(text);
                snprintf(s->err, s->errlen, "out of memory");
                return NULL;
            }
            text = t;
        }
        memcpy(text + len, piece, (size_t)nb);
        len += (size_t)nb;
        s->decoded++;
        if (n + 1 < max && wim_eval(c, &next, 1, s->logits, 0, s->err, s->errlen)) {
            free(text);
            return NULL;
        }
    }
    len += (size_t)wim_detok_flush(&d, text + len, (int)(cap - len));
    text[len] = 0;
    if (n_out) *n_out = n;
    return text;
}

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

/* The sentences of src as tokens: the lines an extractive margin may write. Returns the
 * count (ids[j], n_ids[j] and *spans malloc'd), or -1 with nothing allocated. */
static int quote_candidates(run_state *s, const char *src, wim_span **spans, int32_t ***ids,
                            int **n_ids) {
    int n = wim_sentences(src, strlen(src), spans), ok = n >= 0;
    *ids = ok ? calloc((size_t)n + 1, sizeof **ids) : NULL;
    *n_ids = ok ? calloc((size_t)n + 1, sizeof **n_ids) : NULL;
    if (!*ids || !*n_ids) ok = 0, snprintf(s->err, s->errlen, "out of memory");
    for (int j = 0; ok && j < n; j++)
        ok = ((*n_ids)[j] =
                  tokenize(s, src + (*spans)[j].start, (*spans)[j].len, 0, 0, &(*ids)[j])) >= 0;
    if (ok) return n;
    for (int j = 0; *ids && j < n; j++)
        free((*ids)[j]);
    free(*ids), free(*n_ids), free(*spans);
    *ids = NULL, *n_ids = NULL, *spans = NULL;
    return -1;
}

/* Scores tokens after the context: the sum of their log-probabilities (the first from
 * s->logits), and in *least the smallest from index from on. Evaluates them in chunks of
 * WIM_SCORE_CHUNK (rows holds one chunk's logits) and leaves the context as it was.
 * Returns 0 or -1. */
static int score_tokens(run_state *s, wim_ctx *c, const int32_t *ids, int n, int from, float norm,
                        float *rows, float *score, float *least) {
    int vocab = s->m->cfg.n_vocab, rc = 0;
    *score = s->logits[ids[0]] - norm;
    *least = from == 0 ? *score : 0;
    if (n == 1) return 0;
    if (wim_ctx_snapshot(c)) return -1;
    for (int k0 = 0; !rc && k0 < n - 1; k0 += WIM_SCORE_CHUNK) { /* rows k0.. predict k0+1.. */
        int m = n - 1 - k0 < WIM_SCORE_CHUNK ? n - 1 - k0 : WIM_SCORE_CHUNK;
        rc = wim_eval(c, ids + k0, m, rows, 1, s->err, s->errlen);
        s->prefilled += m;
        for (int i = 0; !rc && i < m; i++) {
            const float *row = rows + (size_t)i * vocab;
            int k = k0 + i + 1;
            float lp = row[ids[k]] - log_norm(row, vocab);
            *score += lp;
            if (k >= from && lp < *least) *least = lp;
        }
    }
    if (wim_ctx_restore(c)) rc = -1; /* always: the snapshot must not stay open */
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
                          sentence's tokens (quote_min_prob decides on it) */
    int pick;          /* the candidate, -1: the end of the reply */
} quote_choice;

/* A candidate with this score (or, for a bound, a subtree whose smallest candidate is j)
 * beats the best so far: exactly the exhaustive scan's `score > best` in candidate order. */
static int beats(const quote_choice *q, float score, int j) {
    return score > q->best || (score == q->best && q->pick >= 0 && j < q->pick);
}

/* The reference: every offered candidate scored in full, in order. */
static int choose_exhaustive(run_state *s, wim_ctx *c, quote_choice *q, float norm, float *rows,
                             int32_t *seq) {
    memcpy(seq, q->gap, (size_t)q->n_gap * sizeof *seq);
    for (int j = 0; j < q->n; j++) {
        float score, least;
        if (!q->offered[j] || s->logits[q->n_gap ? q->gap[0] : q->ids[j][0]] - norm <= q->best)
            continue; /* every further token only lowers the score */
        memcpy(seq + q->n_gap, q->ids[j], (size_t)q->n_ids[j] * sizeof *seq);
        if (score_tokens(s, c, seq, q->n_gap + q->n_ids[j], q->n_gap, norm, rows, &score, &least))
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
static int trie_expand(run_state *s, wim_ctx *c, quote_choice *q, quote_node *t, int at, int depth,
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
        if (wim_ctx_snapshot(c)) return -1;
        int rc = wim_eval(c, &t[ch].tok, 1, next_row, 0, s->err, s->errlen);
        s->prefilled++;
        if (!rc)
            rc = trie_expand(s, c, q, t, ch, depth + 1, sc, le, next_row,
                             log_norm(next_row, s->m->cfg.n_vocab), next_row);
        if (wim_ctx_restore(c)) rc = -1; /* always: the snapshot must not stay open */
        if (rc) return -1;
    }
}

/* An extractive margin, a line at a time: each line is the sentence of src (the segment)
 * the model finds likeliest next (after a line break, from the second line on), by the
 * sum of its tokens' log-probabilities, unless ending the reply is likelier; a sentence is
 * offered once. A line in which the model gave one of the sentence's tokens less than
 * quote_min_prob is written (what follows sees it) but not kept: the model meant another
 * sentence, one the segment lacks. The sentences of notes (NULL: none), the notes the
 * prompt shows, are offered too, written but never kept: they are kept already. At most
 * max tokens, counted in ev->n_tokens (the note lines in ev->notes_quoted, the tokens
 * evaluated to choose the lines in ev->scored). Returns the text (malloc'd) or NULL. */
static char *generate_quotes(run_state *s, wim_ctx *c, int max, const char *src, const char *notes,
                             wim_event *ev) {
    const int exhaustive = s->p->quote_exhaustive, vocab = s->m->cfg.n_vocab;
    int spent = 0, longest = 1, n_nodes = 1, ok;
    wim_span *spans = NULL;
    int32_t **ids = NULL, *nl = NULL;
    int *n_ids = NULL, n_nl = tokenize(s, "\n", 1, 0, 0, &nl);
    if (n_nl == 0) snprintf(s->err, s->errlen, "the vocabulary cannot write a line break");
    size_t n_src = strlen(src); /* the candidates: sentences of src, then of the notes */
    char *pool = malloc(n_src + (notes ? strlen(notes) : 0) + 2);
    if (pool) sprintf(pool, "%s\n%s", src, notes ? notes : "");
    if (n_nl > 0 && !pool) snprintf(s->err, s->errlen, "out of memory");
    int n = n_nl > 0 && pool ? quote_candidates(s, pool, &spans, &ids, &n_ids) : -1;
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
    long prefilled0 = s->prefilled;
    ev->notes_quoted = 0;
    ok = rows && (trie || exhaustive) && seq && used && offered && text;
    if (n >= 0 && !ok) snprintf(s->err, s->errlen, "out of memory");
    float floor = s->p->quote_min_prob > 0 ? logf(s->p->quote_min_prob) : -INFINITY;
    while (ok) {
        int gap = spent > 0 ? n_nl : 0; /* a line break before every line but the first */
        float norm = log_norm(s->logits, vocab);
        quote_choice q = {.ids = (const int32_t *const *)ids,
                          .n_ids = n_ids,
                          .offered = offered,
                          .n = n,
                          .gap = nl,
                          .n_gap = gap,
                          .best = log_p_end(s->m->tok, s->logits, vocab, norm),
                          .pick = -1};
        for (int j = 0; j < n; j++)
            offered[j] = !used[j] && spent + gap + n_ids[j] <= max;
        if (exhaustive) {
            ok = !choose_exhaustive(s, c, &q, norm, rows, seq);
        } else {
            int n_trie = 1;
            trie[0] = (quote_node){-1, -1, -1, n, -1, 0, 0};
            for (int j = 0; j < n; j++)
                if (offered[j]) trie_add(trie, &n_trie, &q, j);
            ok = !trie_expand(s, c, &q, trie, 0, 0, 0.0f, 0.0f, s->logits, norm, rows);
        }
        if (!ok || q.pick < 0) break;
        int pick = q.pick;
        used[pick] = 1;
        memcpy(seq, nl, (size_t)gap * sizeof *seq);
        memcpy(seq + gap, ids[pick], (size_t)n_ids[pick] * sizeof *seq);
        ok = !wim_eval(c, seq, gap + n_ids[pick], s->logits, 0, s->err, s->errlen);
        spent += gap + n_ids[pick];
        s->decoded += gap + n_ids[pick];
        ev->notes_quoted += spans[pick].start >= n_src;
        if (q.least >= floor && spans[pick].start < n_src) {
            if (len) text[len++] = '\n';
            memcpy(text + len, src + spans[pick].start, spans[pick].len);
            len += spans[pick].len;
        }
    }
    if (ok) {
        text[len] = 0;
        ev->n_tokens = spent;
        ev->scored = s->prefilled - prefilled0;
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

static char *render(run_state *s, enum wim_prompt_kind kind, const char *answer,
                    const char *margins) {
    wim_prompt_vars v = {s->chat.user_header, s->chat.generation_header, s->query, answer, margins};
    return wim_prompt_render(s->prompts.text[kind], &v, s->err, s->errlen);
}

/* Counts the tokens of a rendered prompt (for capacity planning). */
static int prompt_tokens(run_state *s, enum wim_prompt_kind kind, const char *answer,
                         const char *margins) {
    char *text = render(s, kind, answer, margins);
    if (!text) return -1;
    int n = wim_tokenize(s->m->tok, text, strlen(text), 0, 1, NULL, 0, s->err, s->errlen);
    free(text);
    return n;
}

/* Judges text (a margin, or a segment for rag) in the separate context.
 * Fills *relevant, *raw (malloc'd, "" in logit mode) and *logit_margin. */
static int classify(run_state *s, const char *text, int *relevant, char **raw,
                    float *logit_margin) {
    double t0 = now_ms();
    wim_ctx_reset(s->aux);
    char *prompt = render(s, WIM_PROMPT_CLASSIFY, text, "");
    if (!prompt) return -1;
    int rc = feed_text(s, s->aux, prompt, 1, 1);
    free(prompt);
    if (rc) return -1;
    if (s->p->classify == WIM_CLASSIFY_LOGIT) {
        *logit_margin = s->logits[s->yes_id] - s->logits[s->no_id];
        *relevant = *logit_margin > 0;
        *raw = strdup("");
    } else {
        *raw = generate(s, s->aux, s->p->classify_tokens, NULL);
        if (!*raw) return -1;
        *relevant =
            s->p->lenient_classifier ? wim_classify_parse_lenient(*raw) : wim_classify_parse(*raw);
    }
    s->ms_classify += now_ms() - t0;
    return *raw ? 0 : -1;
}

/* The id a word starts with when the model writes it first in a reply. */
static int word_token(run_state *s, const char *word) {
    int id = wim_tokenizer_find(s->m->tok, word);
    if (id >= 0) return id;
    int32_t *ids;
    int n = tokenize(s, word, strlen(word), 0, 0, &ids);
    if (n <= 0) return -1;
    id = ids[0];
    free(ids);
    return id;
}

static const char *const pattern_names[] = {"wim", "llm", "rag"};

/* Everything the pipeline needs before the first forward pass. */
static int prepare(run_state *s, const char *doc, size_t doc_len, wim_segment **segs, int *n_segs,
                   int *doc_tokens) {
    const wim_run_params *p = s->p;
    const wim_model *m = s->m;
    if (p->load_kv && p->pattern != WIM_PATTERN_LLM)
        return snprintf(s->err, s->errlen,
                        "--load-kv serves the llm pattern: wim and rag read the document "
                        "segment by segment"),
               -1;
    if (doc_len == 0 && !p->load_kv)
        return snprintf(s->err, s->errlen, "the document is empty"), -1;
    if (!s->query || !*s->query) return snprintf(s->err, s->errlen, "the query is empty"), -1;
    char *tmpl = NULL;
    int rc = p->chat ? wim_chat_by_name(p->chat, &s->chat, s->err, s->errlen)
                     : (gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl),
                        wim_chat_detect(tmpl, &s->chat, s->err, s->errlen));
    free(tmpl);
    if (rc) return -1;
    if (wim_prompts_load(p->prompts_dir, &s->prompts, s->err, s->errlen)) return -1;
    int K = p->segment_tokens;
    if (K <= 0) K = m->cfg.n_ctx_train / 4 < 4096 ? m->cfg.n_ctx_train / 4 : 4096;
    *n_segs = p->load_kv ? 0 : wim_segment_text(m->tok, doc, doc_len, K, segs, s->err, s->errlen);
    if (*n_segs < 0) return -1;
    *doc_tokens = 0;
    for (int i = 0; i < *n_segs; i++)
        *doc_tokens += (*segs)[i].n_tokens;
    if (p->max_segments > 0 && *n_segs > p->max_segments) *n_segs = p->max_segments;
    if ((p->injected_margins || p->injected_relevant) && p->n_injected < *n_segs)
        return snprintf(s->err, s->errlen, "%d injected margins or verdicts for %d segments",
                        p->n_injected, *n_segs),
               -1;
    if (p->classify == WIM_CLASSIFY_LOGIT) {
        s->yes_id = word_token(s, "YES");
        s->no_id = word_token(s, "NO");
        if (s->yes_id < 0 || s->no_id < 0 || s->yes_id == s->no_id)
            return snprintf(s->err, s->errlen,
                            "--classify logit: this vocabulary has no "
                            "distinct YES and NO tokens"),
                   -1;
    }
    if (!(s->logits = malloc((size_t)m->cfg.n_vocab * sizeof *s->logits)) ||
        !(s->sampler = wim_sampler_new(p->temp, p->top_p, p->seed, m->cfg.n_vocab)))
        return snprintf(s->err, s->errlen, "out of memory"), -1;
    return 0;
}

/* The classifier's own small context: its prompt around one margin (or, for
 * rag, one segment) plus the verdict. */
static int make_classifier_context(run_state *s, int classify_prompt, int max_seg) {
    const wim_run_params *p = s->p;
    wim_ctx_params ap = p->ctx;
    ap.kv_pin = -1;
    ap.n_ctx = 1 + classify_prompt + p->classify_tokens + 8 +
               (p->pattern == WIM_PATTERN_RAG ? max_seg : p->margin_tokens);
    if (ap.chunk <= 0 || ap.chunk > ap.n_ctx) ap.chunk = ap.n_ctx;
    return wim_ctx_new(s->m, &ap, &s->aux, s->err, s->errlen);
}

/* Creates the main and classifier contexts with capacities planned from the
 * work ahead, or fails up front when the document cannot fit. */
static int make_contexts(run_state *s, const wim_segment *segs, int n_segs, int sys_tokens) {
    const wim_run_params *p = s->p;
    int max_seg = 0;
    long doc = 0;
    for (int i = 0; i < n_segs; i++) {
        doc += segs[i].n_tokens;
        if (segs[i].n_tokens > max_seg) max_seg = segs[i].n_tokens;
    }
    int extract = prompt_tokens(s, WIM_PROMPT_EXTRACT, NULL, NULL);
    int final = prompt_tokens(s, WIM_PROMPT_ANSWER, NULL, "");
    int classify = prompt_tokens(s, WIM_PROMPT_CLASSIFY, "", "");
    if (extract < 0 || final < 0 || classify < 0) return -1;
    long margins = p->pattern == WIM_PATTERN_WIM ? (long)n_segs * (p->margin_tokens + 2) : 0;
    /* the least that must fit at once: one extraction step, or the answer prompt */
    long step = final + p->answer_tokens;
    if (p->pattern == WIM_PATTERN_WIM && extract + p->margin_tokens > step)
        step = extract + p->margin_tokens;
    long tail = final + margins + p->answer_tokens;
    if (p->pattern == WIM_PATTERN_WIM) {
        long with_notes = extract + p->margin_tokens + (p->margins_in_extraction ? margins + 8 : 0);
        if (with_notes > tail) tail = with_notes;
    }
    long need = 1 + sys_tokens + doc + tail;
    wim_ctx_params cp = p->ctx;
    if (p->load_kv) { /* the saved cache brings its own geometry and contents */
        if (wim_kv_file_geometry(p->load_kv, &cp.n_ctx, &cp.kv_pin, s->err, s->errlen) ||
            wim_ctx_new(s->m, &cp, &s->main, s->err, s->errlen) ||
            wim_ctx_load(s->main, p->load_kv, s->err, s->errlen))
            return -1;
        return make_classifier_context(s, classify, max_seg);
    }
    int streaming = p->stream || cp.kv_pin >= 0;
    int limit = cp.n_ctx > 0 ? cp.n_ctx : s->m->cfg.n_ctx_train;
    if (!streaming && need > limit)
        return snprintf(s->err, s->errlen,
                        "the document needs about %ld tokens of KV cache but the capacity is %d: "
                        "raise --kv-capacity, use fewer segments, or stream with --stream",
                        need, limit),
               -1;
    cp.n_ctx = need < limit ? (int)need : limit;
    if (streaming && cp.kv_pin < 0) cp.kv_pin = 1 + sys_tokens; /* pin BOS + system prompt */
    if (streaming && cp.kv_pin + step + max_seg > cp.n_ctx)
        return snprintf(s->err, s->errlen,
                        "a KV window of %d cells is too small for %d pinned tokens, a segment "
                        "of %d and the %ld tokens of one prompt and its generation",
                        cp.n_ctx, cp.kv_pin, max_seg, step),
               -1;
    if (!streaming) cp.kv_pin = -1;
    if (wim_ctx_new(s->m, &cp, &s->main, s->err, s->errlen)) return -1;
    return make_classifier_context(s, classify, max_seg);
}

static int run_segments(run_state *s, const char *doc, const wim_segment *segs, int n_segs,
                        wim_result *res) {
    const wim_run_params *p = s->p;
    for (int i = 0; i < n_segs && !interrupted(s); i++) {
        const char *text = doc + segs[i].start;
        char *seg = strndup(text, segs[i].len);
        if (!seg) return snprintf(s->err, s->errlen, "out of memory"), -1;
        double t0 = now_ms();
        int rc = 0;
        if (p->pattern != WIM_PATTERN_RAG) rc = feed_text(s, s->main, seg, 0, 0);
        wim_event ev = {.type = WIM_EV_SEGMENT,
                        .index = i,
                        .n_tokens = segs[i].n_tokens,
                        .prefilled = s->prefilled,
                        .ms = now_ms() - t0};
        if (!rc) emit(s, &ev);
        res->n_segments = i + 1;
        if (rc || p->pattern == WIM_PATTERN_LLM ||
            (p->pattern == WIM_PATTERN_RAG && p->retriever == WIM_RETRIEVER_BM25)) {
            free(seg);
            if (rc) return -1;
            continue;
        }
        char *raw = NULL;
        float lm = 0;
        if (p->pattern == WIM_PATTERN_WIM) {
            wim_event mev = {.type = WIM_EV_MARGIN, .index = i};
            mev.has_kv_crc = p->verify_kv;
            mev.has_scored = p->extractive_margins && !p->injected_margins;
            mev.has_notes_quoted = mev.has_scored && p->quote_notes;
            if (p->verify_kv) mev.kv_crc_before = wim_ctx_kv_crc(s->main);
            t0 = now_ms();
            if (p->injected_margins) {
                res->margins[i] = strdup(p->injected_margins[i]);
            } else {
                if (wim_ctx_snapshot(s->main)) rc = -1;
                char *notes = NULL;
                if (!rc && p->margins_in_extraction && i > 0 &&
                    (notes = wim_margins_join(res->margins, res->relevant, i, p->dedupe_margins)) &&
                    *notes) {
                    char *framed = malloc(strlen(notes) + 32);
                    if (framed) sprintf(framed, "Notes so far:\n%s", notes);
                    rc = framed ? feed_text(s, s->main, framed, 0, 0) : -1;
                    free(framed);
                }
                char *prompt = rc ? NULL : render(s, WIM_PROMPT_EXTRACT, NULL, NULL);
                rc = rc || !prompt || feed_text(s, s->main, prompt, 0, 1);
                free(prompt);
                if (!rc)
                    res->margins[i] = p->extractive_margins
                                          ? generate_quotes(s, s->main, p->margin_tokens, seg,
                                                            p->quote_notes ? notes : NULL, &mev)
                                          : generate(s, s->main, p->margin_tokens, &mev.n_tokens);
                free(notes);
                if (wim_ctx_restore(s->main) || !res->margins[i]) rc = -1;
            }
            mev.ms = now_ms() - t0;
            s->ms_margins += mev.ms;
            mev.text = res->margins[i];
            if (p->verify_kv) mev.kv_crc_after = wim_ctx_kv_crc(s->main);
            if (rc || !res->margins[i]) {
                free(seg);
                return -1;
            }
            emit(s, &mev);
        }
        int blank = p->pattern == WIM_PATTERN_WIM && p->extractive_margins &&
                    !wim_margin_has_word(res->margins[i]);
        if (blank) { /* an extractive margin that quotes nothing: nothing to judge */
            res->relevant[i] = 0;
            raw = strdup("");
        } else if (p->injected_relevant) {
            res->relevant[i] = p->injected_relevant[i];
            raw = strdup("(injected)");
        } else if (classify(s, p->pattern == WIM_PATTERN_WIM ? res->margins[i] : seg,
                            &res->relevant[i], &raw, &lm)) {
            free(seg);
            free(raw);
            return -1;
        }
        wim_event vev = {.type = WIM_EV_VERDICT,
                         .index = i,
                         .relevant = res->relevant[i],
                         .raw = raw,
                         .logit_margin = lm,
                         .blank = blank,
                         .has_logit_margin =
                             p->classify == WIM_CLASSIFY_LOGIT && !p->injected_relevant && !blank};
        emit(s, &vev);
        free(raw);
        free(seg);
    }
    return 0;
}

/* rag: the chosen segments into the (reset) main context after the system prompt. */
static int rag_context(run_state *s, const char *doc, const wim_segment *segs, int n_segs,
                       const char *sys, wim_result *res) {
    if (s->p->retriever == WIM_RETRIEVER_BM25) {
        const char **docs = malloc((size_t)n_segs * sizeof *docs);
        size_t *lens = malloc((size_t)n_segs * sizeof *lens);
        double *scores = malloc((size_t)n_segs * sizeof *scores);
        int *top = malloc((size_t)n_segs * sizeof *top);
        int rc = !docs || !lens || !scores || !top;
        for (int i = 0; !rc && i < n_segs; i++)
            docs[i] = doc + segs[i].start, lens[i] = segs[i].len;
        rc = rc || wim_bm25_score(docs, lens, n_segs, s->query, scores);
        int k = rc ? 0 : wim_bm25_top(scores, n_segs, s->p->top_k, top);
        for (int i = 0; i < k; i++)
            res->relevant[top[i]] = 1;
        free(docs);
        free(lens);
        free(scores);
        free(top);
        if (rc) return snprintf(s->err, s->errlen, "out of memory"), -1;
    }
    wim_ctx_reset(s->main);
    if (feed_text(s, s->main, sys, 1, 1)) return -1;
    for (int i = 0; i < n_segs; i++) {
        if (!res->relevant[i]) continue;
        char *seg = strndup(doc + segs[i].start, segs[i].len);
        int rc = !seg || feed_text(s, s->main, seg, 0, 0);
        free(seg);
        if (rc) return -1;
    }
    return 0;
}

int wim_run(const wim_model *m, const char *doc, size_t doc_len, const char *query,
            const wim_run_params *p, wim_event_fn cb, void *user, wim_result *res, char *err,
            size_t errlen) {
    memset(res, 0, sizeof *res);
    run_state s = {
        .m = m, .p = p, .cb = cb, .user = user, .query = query, .err = err, .errlen = errlen};
    wim_segment *segs = NULL;
    int n_segs = 0, doc_tokens = 0, rc = -1;
    char *sys = NULL, *final = NULL, *margins = NULL;
    double t_start = now_ms();
    if (prepare(&s, doc, doc_len, &segs, &n_segs, &doc_tokens)) goto done;
    if (!(sys = render(&s, WIM_PROMPT_SYSTEM, NULL, NULL))) goto done;
    int sys_tokens = wim_tokenize(m->tok, sys, strlen(sys), 0, 1, NULL, 0, err, errlen);
    if (sys_tokens < 0 || make_contexts(&s, segs, n_segs, sys_tokens)) goto done;
    res->margins = calloc((size_t)n_segs + 1, sizeof *res->margins);
    res->relevant = calloc((size_t)n_segs + 1, sizeof *res->relevant);
    if (!res->margins || !res->relevant) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    const char *slash = strrchr(m->gguf->path, '/');
    wim_event ev = {.type = WIM_EV_START,
                    .model = slash ? slash + 1 : m->gguf->path,
                    .pattern = pattern_names[p->pattern],
                    .chat = s.chat.name,
                    .segments = n_segs,
                    .tokens = doc_tokens};
    emit(&s, &ev);
    if (p->pattern != WIM_PATTERN_RAG && !p->load_kv && feed_text(&s, s.main, sys, 1, 1)) goto done;
    if (run_segments(&s, doc, segs, n_segs, res)) goto done;
    res->interrupted = interrupted(&s);
    if (p->save_kv && p->pattern != WIM_PATTERN_RAG && !res->interrupted &&
        wim_ctx_save(s.main, p->save_kv, err, errlen))
        goto done;
    if (p->pattern == WIM_PATTERN_RAG && rag_context(&s, doc, segs, res->n_segments, sys, res))
        goto done;
    margins = p->pattern == WIM_PATTERN_WIM ? wim_margins_join(res->margins, res->relevant,
                                                               res->n_segments, p->dedupe_margins)
                                            : strdup("");
    if (!margins || !(final = render(&s, WIM_PROMPT_ANSWER, NULL, margins))) goto done;
    double t0 = now_ms();
    if (p->pattern == WIM_PATTERN_WIM && p->answer_from_margins && *margins) {
        wim_ctx_reset(s.main); /* only the system prompt stays: the notes are the evidence */
        if (feed_text(&s, s.main, sys, 1, 1)) goto done;
    }
    if (feed_text(&s, s.main, final, 0, 1)) goto done;
    if (!(res->answer_logits = malloc((size_t)m->cfg.n_vocab * sizeof(float)))) goto done;
    memcpy(res->answer_logits, s.logits, (size_t)m->cfg.n_vocab * sizeof(float));
    if (!(res->answer = generate(&s, s.main, p->answer_tokens, NULL))) goto done;
    s.ms_answer = now_ms() - t0;
    wim_event aev = {.type = WIM_EV_ANSWER, .text = res->answer, .interrupted = res->interrupted};
    emit(&s, &aev);
    res->tokens_prefilled = s.prefilled;
    res->tokens_decoded = s.decoded;
    res->ms_total = now_ms() - t_start;
    wim_mem_report a, b;
    wim_ctx_memory(s.main, &a);
    wim_ctx_memory(s.aux, &b);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    int kept = 0;
    for (int i = 0; i < res->n_segments; i++)
        kept += res->relevant[i];
    wim_event dev = {.type = WIM_EV_DONE,
                     .interrupted = res->interrupted,
                     .segments = res->n_segments,
                     .relevant_count = kept,
                     .ms_total = res->ms_total,
                     .ms_prefill = s.ms_prefill,
                     .ms_margins = s.ms_margins,
                     .ms_classify = s.ms_classify,
                     .ms_answer = s.ms_answer,
                     .tokens_prefilled = s.prefilled,
                     .tokens_decoded = s.decoded,
                     .kv_bytes = a.kv_bytes + b.kv_bytes,
                     .scratch_peak_bytes = a.scratch_peak + b.scratch_peak,
                     .rss_peak_bytes = (size_t)ru.ru_maxrss * 1024};
    emit(&s, &dev);
    rc = 0;
done:
    if (rc) wim_result_free(res);
    free(sys);
    free(final);
    free(margins);
    free(segs);
    free(s.logits);
    wim_sampler_free(s.sampler);
    wim_prompts_free(&s.prompts);
    wim_ctx_free(s.main);
    wim_ctx_free(s.aux);
    return rc;
}
