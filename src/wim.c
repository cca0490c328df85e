/*
 * wim.c — the Writing-in-the-Margins pipeline and its two baselines.
 *
 *   wim: BOS + system prompt, then for each segment: prefill it; snapshot the
 *        KV cache; prefill the extraction prompt and decode a margin (or quote
 *        the segment's sentences: quotes.c); restore (the cache is
 *        bit-identical again); classify the margin in a separate context.
 *        Finally the answer prompt with the relevant margins.
 *   llm: the whole document, then the question (the long-context baseline).
 *   rag: the classifier (or BM25) chooses segments; the chosen segments and
 *        the question go to a fresh context.
 *
 * run() is the algorithm, one step per call; the steps follow it in this file's
 * second half. Invariants: margins never enter the main context except through
 * the final prompt; every step reports through the event callback and nothing
 * here prints; a failure is one line in err (error.h); an interrupt stops after
 * the current step and still answers.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bm25.h"
#include "chat.h"
#include "clock.h"
#include "context.h"
#include "error.h"
#include "margin_text.h"
#include "model.h"
#include "prompts.h"
#include "quotes.h"
#include "segment.h"
#include "tokenizer.h"
#include "verdict.h"
#include "wim.h"

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
    char *sys;               /* the system prompt, rendered */
    int sys_tokens;          /* its tokens, BOS not counted */
    const char *text;        /* the document: the segments are byte ranges of it */
    const wim_segment *segs; /* (borrowed) */
    int n_segs;              /* the segments to process */
    int doc_tokens;          /* the whole document's tokens */
    float *logits;
    int yes_id, no_id;
    long prefilled, decoded;
    double ms_margins, ms_classify, ms_answer, ms_save; /* each phase with its own prompts */
    int *forks;       /* where each segment ends in the main context (its margin's fork) */
    wim_doc *doc;     /* a document read before: its context is the main one (borrowed) */
    wim_ctx *work;    /* a document read before, the paper's loop: where each margin is written,
                         on a copy of the cache as it was after its segment */
    wim_doc *marking; /* wim_doc_read through a window: keep the window after each segment */
    int reading;      /* wim_doc_read: prefill every segment, whatever the pattern */
    int batched;      /* margins as branches (see wim_run_params.sequential_margins) */
    char *save_error; /* --save-kv failed: why (the run goes on to its answer) */
    char *err;
    size_t errlen;
} run_state;

/* Whether text holds nothing but ASCII white space (or nothing at all). */
static int blank(const char *text, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (!strchr(" \t\n\r\v\f", text[i]) || !text[i]) return 0;
    return 1;
}

/* What a run_state owns (the main context unless it was borrowed and cleared). */
static void run_state_free(run_state *s) {
    free(s->forks);
    free(s->logits);
    free(s->sys);
    wim_sampler_free(s->sampler);
    wim_prompts_free(&s->prompts);
    wim_ctx_free(s->main);
    wim_ctx_free(s->aux);
    wim_ctx_free(s->work);
    free(s->save_error);
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
    free(r->save_error);
    memset(r, 0, sizeof *r);
}

const char *wim_answer_text(const char *answer, size_t *len) {
    size_t n = strlen(answer);
    while (n && isspace((unsigned char)answer[n - 1]))
        n--;
    while (n && isspace((unsigned char)*answer))
        answer++, n--;
    *len = n;
    return answer;
}

static void emit(run_state *s, const wim_event *ev) {
    if (s->cb) s->cb(ev, s->user);
}

static int interrupted(const run_state *s) {
    return s->p->interrupt && *s->p->interrupt;
}

static int out_of_memory(run_state *s) {
    return wim_errorf(s->err, s->errlen, "out of memory");
}

/* Whether a text tokenized with BOS asked for starts with it (the model's rule). */
static int adds_bos(const run_state *s, int bos) {
    const wim_tokenizer *t = s->m->tok;
    return bos && wim_tokenizer_add_bos(t) && wim_tokenizer_bos(t) >= 0;
}

/* Tokenizes text; prompts (templates with chat headers) parse special tokens,
 * document text never does. Returns the count (ids malloc'd) or -1. */
static int tokenize(run_state *s, const char *text, size_t len, int bos, int special,
                    int32_t **ids) {
    return wim_tokenize_alloc(s->m->tok, text, len, adds_bos(s, bos), special, ids, s->err,
                              s->errlen);
}

/* Appends tokens to a context; the last token's logits land in s->logits. */
static int feed(run_state *s, wim_ctx *c, const int32_t *ids, int n) {
    if (n == 0) return 0;
    int rc = wim_eval(c, ids, n, s->logits, 0, s->err, s->errlen);
    s->prefilled += n;
    return rc;
}

/* Appends document text (no BOS, no special tokens) to a context. */
static int feed_text(run_state *s, wim_ctx *c, const char *text) {
    int32_t *ids;
    int n = tokenize(s, text, strlen(text), 0, 0, &ids);
    if (n < 0) return -1;
    int rc = feed(s, c, ids, n);
    free(ids);
    return rc;
}

/* A copy of segment i's text. */
static char *segment_text(run_state *s, int i) {
    char *seg = strndup(s->text + s->segs[i].start, s->segs[i].len);
    if (!seg) out_of_memory(s);
    return seg;
}

/* Generated text: the detokenizer's state and the bytes so far. */
typedef struct {
    wim_detok d;
    char *text;
    size_t len, cap;
    int n; /* tokens */
} gen_text;

static int gen_init(run_state *s, gen_text *g) {
    memset(g, 0, sizeof *g);
    wim_detok_init(&g->d, s->m->tok, -1, 0);
    return (g->text = malloc(g->cap = 256)) ? 0 : out_of_memory(s);
}

/* Appends a generated token (counted in s->decoded). */
static int gen_push(run_state *s, gen_text *g, int32_t tok) {
    char piece[256];
    int nb = wim_detok_push(&g->d, tok, piece, sizeof piece);
    if (g->len + (size_t)nb + 8 > g->cap) {
        char *t = realloc(g->text, g->cap = 2 * g->cap + (size_t)nb);
        if (!t) return out_of_memory(s);
        g->text = t;
    }
    memcpy(g->text + g->len, piece, (size_t)nb);
    g->len += (size_t)nb;
    g->n++;
    s->decoded++;
    return 0;
}

/* The finished text (the caller owns it; g is spent). */
static char *gen_take(gen_text *g) {
    g->len += (size_t)wim_detok_flush(&g->d, g->text + g->len, (int)(g->cap - g->len));
    g->text[g->len] = 0;
    char *t = g->text;
    g->text = NULL;
    return t;
}

/* Decodes up to max tokens from s->logits (stops at end-of-generation);
 * returns the text (malloc'd) or NULL. The last token is not evaluated. */
static char *generate(run_state *s, wim_ctx *c, int max, int *n_out) {
    gen_text g;
    if (gen_init(s, &g)) return NULL;
    for (int n = 0; n < max; n++) {
        int32_t next = wim_sample(s->sampler, s->logits);
        if (wim_tokenizer_is_eog(s->m->tok, next)) break;
        if (gen_push(s, &g, next) ||
            (n + 1 < max && wim_eval(c, &next, 1, s->logits, 0, s->err, s->errlen))) {
            free(g.text);
            return NULL;
        }
    }
    if (n_out) *n_out = g.n;
    return gen_take(&g);
}

/* ---- prompts: rendered from the templates, fed, and shown when asked ---- */

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

/* prompt_events (wim run --show-prompts): a prompt event, just before the prompt is fed. */
static void show_prompt(run_state *s, const wim_event *ev) {
    if (s->p->prompt_events) emit(s, ev);
}

/* Appends a rendered prompt (chat headers parsed as special tokens; bos: it opens its
 * context) to c, shown first when asked: kind and index (a segment, or -1) name it. */
static int feed_prompt(run_state *s, wim_ctx *c, const char *kind, int index, const char *text,
                       int bos) {
    int32_t *ids;
    int n = tokenize(s, text, strlen(text), bos, 1, &ids);
    if (n < 0) return -1;
    wim_event ev = {.type = WIM_EV_PROMPT,
                    .kind = kind,
                    .index = index,
                    .position = wim_ctx_pos(c),
                    .bos = adds_bos(s, bos),
                    .n_tokens = n,
                    .text = text};
    show_prompt(s, &ev);
    int rc = feed(s, c, ids, n);
    free(ids);
    return rc;
}

/* Margin i's prompt as the model reads it, when asked: its segment (in the cache already,
 * from where it starts), then notes (NULL: none) and the extraction prompt, which take
 * n_after tokens. */
static int show_margin_prompt(run_state *s, int i, const char *notes, const char *prompt,
                              int n_after) {
    if (!s->p->prompt_events) return 0;
    const wim_segment *g = &s->segs[i];
    char *text = malloc(g->len + (notes ? strlen(notes) : 0) + strlen(prompt) + 1);
    if (!text) return out_of_memory(s);
    sprintf(text, "%.*s%s%s", (int)g->len, s->text + g->start, notes ? notes : "", prompt);
    wim_event ev = {.type = WIM_EV_PROMPT,
                    .kind = "margin",
                    .index = i,
                    .position = s->forks[i] - g->n_tokens,
                    .n_tokens = g->n_tokens + n_after,
                    .lead_tokens = g->n_tokens,
                    .text = text};
    emit(s, &ev);
    free(text);
    return 0;
}

/* ---- the classifier ---- */

/* The classifier's reply read by the rule the run asked for. */
static int parse_verdict(const run_state *s, const char *raw) {
    return s->p->lenient_classifier ? wim_verdict_parse_lenient(raw) : wim_verdict_parse(raw);
}

/* Judges text (margin i, or for rag segment i) in the separate context.
 * Fills *relevant, *raw (malloc'd, "" in logit mode) and *logit_margin. */
static int classify(run_state *s, int i, const char *text, int *relevant, char **raw,
                    float *logit_margin) {
    double t0 = wim_now_ms();
    wim_ctx_reset(s->aux);
    char *prompt = render(s, WIM_PROMPT_CLASSIFY, text, "");
    if (!prompt) return -1;
    int rc = feed_prompt(s, s->aux, "classify", i, prompt, 1);
    free(prompt);
    if (rc) return -1;
    if (s->p->classify == WIM_CLASSIFY_LOGIT) {
        *logit_margin = s->logits[s->yes_id] - s->logits[s->no_id];
        *relevant = *logit_margin > 0;
        if (!(*raw = strdup(""))) return out_of_memory(s);
    } else {
        *raw = generate(s, s->aux, s->p->classify_tokens, NULL);
        if (!*raw) return -1;
        *relevant = parse_verdict(s, *raw);
    }
    s->ms_classify += wim_now_ms() - t0;
    return 0;
}

/* ---- margins and verdicts as branches: one pass per step serves them all ---- */

/* One sequence decoded as a branch of a context: its prompt, then up to max
 * generated tokens (max 0: none; the logits after the prompt are kept). */
typedef struct {
    const int32_t *prompt;
    int n_prompt, fed;
    int max;
    float *logits;        /* max == 0: n_vocab floats, filled once the prompt is in */
    wim_sampler *sampler; /* its own when sampling (temp > 0): the draws do not depend
                             on which other branches share a pass; NULL: s->sampler */
    gen_text out;
    int32_t next; /* sampled, still to be fed */
    int has_next, done;
    int step;  /* the pass it finished on, from 1 */
    double ms; /* from the start of the batch to its end */
} branch_job;

typedef int (*job_done_fn)(run_state *s, branch_job *job, int j, void *arg);

#define WIM_MAX_BRANCHES 64 /* per batch: bounds the logits kept per pass */

/* Runs jobs[0..n) (n <= WIM_MAX_BRANCHES and <= the context's chunk) as
 * branches of c forked at forks[j]. Every pass feeds each unfinished job's
 * sampled token, then as many prompt tokens as the chunk has room for, so the
 * weights are read once per step for all of them; done() is called as each
 * job finishes, in job order within a pass. When stoppable, an interrupt
 * stops it after the current pass, jobs unfinished. The branches are closed
 * on return. Returns 0 or -1. */
static int run_branches(run_state *s, wim_ctx *c, branch_job *jobs, int n, const int *forks,
                        int stoppable, job_done_fn done, void *arg) {
    const int V = s->m->cfg.n_vocab, chunk = c->p.chunk;
    int *cells = malloc((size_t)n * sizeof *cells), *br = malloc((size_t)chunk * sizeof *br);
    int *owner = malloc((size_t)n * sizeof *owner), rc = -1;
    int32_t *tok = malloc((size_t)chunk * sizeof *tok);
    char *want = malloc((size_t)chunk);
    float *rows = malloc((size_t)n * V * sizeof *rows);
    if (!cells || !br || !owner || !tok || !want || !rows) {
        wim_errorf(s->err, s->errlen, "out of memory for %d branches", n);
        goto out;
    }
    for (int j = 0; j < n; j++)
        cells[j] = jobs[j].n_prompt + jobs[j].max;
    if (ctx_branches_open(c, n, forks, cells, s->err, s->errlen)) goto out;
    const double t0 = wim_now_ms();
    for (int step = 1; !(stoppable && interrupted(s)); step++) {
        int m = 0, w = 0;
        for (int j = 0; j < n && m < chunk; j++) /* decoding: one token each */
            if (!jobs[j].done && jobs[j].has_next) {
                tok[m] = jobs[j].next, br[m] = j, want[m++] = 1;
                owner[w++] = j;
                jobs[j].has_next = 0;
            }
        for (int j = 0; j < n && m < chunk; j++) { /* prompts: what room is left */
            branch_job *b = &jobs[j];
            if (b->done || b->fed == b->n_prompt) continue;
            int k = b->n_prompt - b->fed < chunk - m ? b->n_prompt - b->fed : chunk - m;
            memcpy(tok + m, b->prompt + b->fed, (size_t)k * sizeof *tok);
            for (int i = 0; i < k; i++)
                br[m + i] = j, want[m + i] = 0;
            b->fed += k;
            s->prefilled += k;
            m += k;
            if (b->fed == b->n_prompt) want[m - 1] = 1, owner[w++] = j;
        }
        if (m == 0) break;
        if (ctx_eval_branches(c, tok, br, m, want, rows, s->err, s->errlen)) goto out;
        for (int r = 0; r < w; r++) {
            branch_job *b = &jobs[owner[r]];
            const float *row = rows + (size_t)r * V;
            int finished = b->max == 0;
            if (finished) {
                memcpy(b->logits, row, (size_t)V * sizeof *row);
            } else {
                int32_t next = wim_sample(b->sampler ? b->sampler : s->sampler, row);
                if (wim_tokenizer_is_eog(s->m->tok, next))
                    finished = 1;
                else if (gen_push(s, &b->out, next))
                    goto out;
                else if (b->out.n == b->max)
                    finished = 1;
                else
                    b->next = next, b->has_next = 1;
            }
            if (!finished) continue;
            b->done = 1, b->step = step, b->ms = wim_now_ms() - t0;
            if (done && done(s, b, owner[r], arg)) goto out;
        }
    }
    rc = 0;
out:
    ctx_branches_close(c);
    free(cells), free(br), free(owner), free(tok), free(want), free(rows);
    return rc;
}

/* A job's sampler: greedy decoding needs none of its own. */
static int job_sampler(run_state *s, branch_job *b, uint64_t salt) {
    if (s->p->temp <= 0) return 0;
    b->sampler = wim_sampler_new(s->p->temp, s->p->top_p, s->p->seed + 0x9E3779B97F4A7C15ull * salt,
                                 s->m->cfg.n_vocab);
    return b->sampler ? 0 : out_of_memory(s);
}

static void jobs_free(branch_job *jobs, int n) {
    for (int j = 0; j < n; j++) {
        free(jobs[j].out.text);
        wim_sampler_free(jobs[j].sampler);
        memset(&jobs[j], 0, sizeof jobs[j]);
    }
}

/* How many branches of `cells` cells each one batch of a context takes: at most
 * a chunk's worth (a decoding step is one pass), WIM_MAX_BRANCHES, and as many as
 * fit in as many cells as the context has (16384 at least), so a long
 * --margin-tokens batches fewer margins instead of reserving memory for all. */
static int batch_size(const wim_ctx *c, int n, long cells) {
    const long budget = wim_ctx_capacity(c) > 16384 ? wim_ctx_capacity(c) : 16384;
    long g = n < c->p.chunk ? n : c->p.chunk;
    if (g > WIM_MAX_BRANCHES) g = WIM_MAX_BRANCHES;
    if (g * cells > budget) g = budget / cells;
    return g > 0 ? (int)g : 1;
}

typedef struct {
    wim_result *res;
    int first;    /* the batch's first segment */
    uint32_t crc; /* the document's cells before the batch (verify_kv) */
} margin_sink;

static int on_margin(run_state *s, branch_job *b, int j, void *arg) {
    margin_sink *k = arg;
    const int i = k->first + j, verify = s->p->verify_kv;
    k->res->margins[i] = gen_take(&b->out);
    wim_event ev = {.type = WIM_EV_MARGIN,
                    .index = i,
                    .n_tokens = b->out.n,
                    .ms = b->ms,
                    .text = k->res->margins[i],
                    .has_step = 1,
                    .step = b->step,
                    .has_kv_crc = verify,
                    .kv_crc_before = k->crc,
                    .kv_crc_after = verify ? wim_ctx_kv_crc(s->main) : 0};
    emit(s, &ev);
    return 0;
}

/* The margin of every segment i < n, each a branch of the main context forked at
 * s->forks[i] (where segment i ends), all decoded together. A margin an interrupt cut
 * short stays NULL. */
static int margins_as_branches(run_state *s, int n, wim_result *res) {
    const wim_run_params *p = s->p;
    int32_t *prompt = NULL;
    char *text = render(s, WIM_PROMPT_EXTRACT, NULL, NULL);
    const int n_prompt = text ? tokenize(s, text, strlen(text), 0, 1, &prompt) : -1;
    const int group = batch_size(s->main, n, (long)n_prompt + p->margin_tokens);
    branch_job *jobs = n_prompt >= 0 ? calloc((size_t)group, sizeof *jobs) : NULL;
    int rc = n_prompt < 0 || !jobs ? -1 : 0;
    if (n_prompt >= 0 && !jobs) out_of_memory(s);
    const double t0 = wim_now_ms();
    for (int g0 = 0; !rc && g0 < n && !interrupted(s); g0 += group) {
        const int m = n - g0 < group ? n - g0 : group;
        margin_sink k = {res, g0, p->verify_kv ? wim_ctx_kv_crc(s->main) : 0};
        for (int j = 0; !rc && j < m; j++) {
            jobs[j] = (branch_job){.prompt = prompt, .n_prompt = n_prompt, .max = p->margin_tokens};
            rc = gen_init(s, &jobs[j].out) ||
                 job_sampler(s, &jobs[j], 2 * (uint64_t)(g0 + j) + 1) ||
                 show_margin_prompt(s, g0 + j, NULL, text, n_prompt);
        }
        rc = rc || run_branches(s, s->main, jobs, m, s->forks + g0, 1, on_margin, &k);
        jobs_free(jobs, m);
        if (!rc && p->verify_kv && wim_ctx_kv_crc(s->main) != k.crc)
            rc = wim_errorf(s->err, s->errlen, "the document's KV cells changed under margins");
    }
    s->ms_margins += wim_now_ms() - t0;
    free(jobs);
    free(prompt);
    free(text);
    return rc;
}

typedef struct {
    const int *index; /* the text each job judges */
    int *relevant;
    char **raw;
    float *logit_margin;
} verdict_sink;

static int on_verdict(run_state *s, branch_job *b, int j, void *arg) {
    verdict_sink *k = arg;
    const int i = k->index[j];
    if (s->p->classify == WIM_CLASSIFY_LOGIT) {
        k->logit_margin[i] = b->logits[s->yes_id] - b->logits[s->no_id];
        k->relevant[i] = k->logit_margin[i] > 0;
        k->raw[i] = strdup("");
    } else {
        k->raw[i] = gen_take(&b->out);
        k->relevant[i] = parse_verdict(s, k->raw[i]);
    }
    return k->raw[i] ? 0 : out_of_memory(s);
}

/* The classification of text (margin i, or rag's segment i) as a branch job: its prompt
 * from BOS (ids: its tokens, malloc'd), shown when asked, then its verdict decoded (logits:
 * where --classify logit keeps the logits after the prompt instead). */
static int verdict_job(run_state *s, const char *text, int i, branch_job *job, int32_t **ids,
                       float *logits) {
    char *prompt = render(s, WIM_PROMPT_CLASSIFY, text, "");
    int n = prompt ? tokenize(s, prompt, strlen(prompt), 1, 1, ids) : -1;
    wim_event ev = {.type = WIM_EV_PROMPT,
                    .kind = "classify",
                    .index = i,
                    .bos = adds_bos(s, 1),
                    .n_tokens = n,
                    .text = prompt};
    if (n >= 0) show_prompt(s, &ev);
    free(prompt);
    *job = (branch_job){
        .prompt = *ids, .n_prompt = n, .max = logits ? 0 : s->p->classify_tokens, .logits = logits};
    return n < 0 || gen_init(s, &job->out) || job_sampler(s, job, 2 * (uint64_t)i + 2) ? -1 : 0;
}

/* The verdict events, in index order (raw[i] NULL: margin i was interrupted, none). */
static void emit_verdicts(run_state *s, char *const *raw, const float *lm, int n,
                          const wim_result *res) {
    const wim_run_params *p = s->p;
    for (int i = 0; i < n; i++) {
        if (!raw[i]) continue;
        wim_event ev = {.type = WIM_EV_VERDICT,
                        .index = i,
                        .relevant = res->relevant[i],
                        .raw = raw[i],
                        .logit_margin = lm[i],
                        .has_logit_margin =
                            p->classify == WIM_CLASSIFY_LOGIT && !p->injected_relevant};
        emit(s, &ev);
    }
}

/* Verdicts on texts[i] (margins, or rag's segments; NULL: none to judge), each
 * classification a branch of the classifier context forked at 0 (so it sees
 * only its own prompt), all decoded together; the verdict events follow in
 * index order. */
static int verdicts_as_branches(run_state *s, char *const *texts, int n, wim_result *res) {
    const wim_run_params *p = s->p;
    const int V = s->m->cfg.n_vocab, logit = p->classify == WIM_CLASSIFY_LOGIT;
    char **raw = calloc((size_t)n + 1, sizeof *raw);
    float *lm = calloc((size_t)n + 1, sizeof *lm);
    int *index = malloc(((size_t)n + 1) * sizeof *index), todo = 0, rc = 0;
    if (!raw || !lm || !index) rc = out_of_memory(s);
    for (int i = 0; !rc && i < n; i++) {
        if (!texts[i]) continue;
        if (p->injected_relevant) {
            res->relevant[i] = p->injected_relevant[i];
            if (!(raw[i] = strdup("(injected)"))) rc = out_of_memory(s);
        } else
            index[todo++] = i;
    }
    const int group = batch_size(s->aux, todo > 0 ? todo : 1,
                                 wim_ctx_capacity(s->aux) + (long)p->classify_tokens);
    branch_job *jobs = rc ? NULL : calloc((size_t)group, sizeof *jobs);
    int *forks = rc ? NULL : calloc((size_t)group, sizeof *forks);
    float *logits = logit && !rc ? malloc((size_t)group * V * sizeof *logits) : NULL;
    if (!rc && (!jobs || !forks || (logit && !logits))) rc = out_of_memory(s);
    verdict_sink k = {index, res->relevant, raw, lm};
    const double t0 = wim_now_ms();
    /* not stopped by an interrupt: the answer is to come from the margins written so far */
    for (int g0 = 0; !rc && g0 < todo; g0 += group) {
        const int m = todo - g0 < group ? todo - g0 : group;
        int32_t *prompts[WIM_MAX_BRANCHES] = {0};
        for (int j = 0; !rc && j < m; j++)
            rc = verdict_job(s, texts[index[g0 + j]], index[g0 + j], &jobs[j], &prompts[j],
                             logits ? logits + (size_t)j * V : NULL);
        wim_ctx_reset(s->aux);
        k.index = index + g0;
        rc = rc || run_branches(s, s->aux, jobs, m, forks, 0, on_verdict, &k);
        jobs_free(jobs, m);
        for (int j = 0; j < m; j++)
            free(prompts[j]);
    }
    s->ms_classify += wim_now_ms() - t0;
    if (!rc) emit_verdicts(s, raw, lm, n, res);
    for (int i = 0; raw && i < n; i++)
        free(raw[i]);
    free(raw), free(lm), free(index), free(jobs), free(forks), free(logits);
    return rc;
}

/* ---- before the first forward pass: the work ahead, and contexts sized for it ---- */

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

/* The start event: the model's file name, the pattern and chat family, the work ahead. */
static void emit_start(run_state *s) {
    const char *path = s->m->gguf->path, *slash = strrchr(path, '/');
    wim_event ev = {.type = WIM_EV_START,
                    .model = slash ? slash + 1 : path,
                    .pattern = pattern_names[s->p->pattern],
                    .chat = s->chat.name,
                    .segments = s->n_segs,
                    .tokens = s->doc_tokens};
    emit(s, &ev);
}

static int check_query(run_state *s) {
    const char *q = s->query;
    if (!q || blank(q, strlen(q)))
        return wim_errorf(s->err, s->errlen, "the query is empty%s",
                          q && *q ? " (only white space)" : "");
    return 0;
}

static int check_document(run_state *s, const char *doc, size_t doc_len) {
    if (doc && blank(doc, doc_len))
        return wim_errorf(s->err, s->errlen, "the document is empty%s",
                          doc_len ? " (only white space)" : "");
    return 0;
}

/* The chat family's headers and the four templates. */
static int load_templates(run_state *s) {
    char *tmpl = NULL;
    int rc = s->p->chat ? wim_chat_by_name(s->p->chat, &s->chat, s->err, s->errlen)
                        : (gguf_get_str(s->m->gguf, "tokenizer.chat_template", &tmpl),
                           wim_chat_detect(tmpl, &s->chat, s->err, s->errlen));
    free(tmpl);
    return rc || wim_prompts_load(s->p->prompts_dir, &s->prompts, s->err, s->errlen) ? -1 : 0;
}

/* Cuts doc (NULL: none) into segments of at most K tokens; the first max_segments are
 * processed, the whole document's tokens are reported. */
static int segment_document(run_state *s, const char *doc, size_t doc_len, wim_segment **segs) {
    const wim_run_params *p = s->p;
    int K = p->segment_tokens;
    if (K <= 0) K = s->m->cfg.n_ctx_train / 4 < 4096 ? s->m->cfg.n_ctx_train / 4 : 4096;
    s->n_segs = !doc ? 0 : wim_segment_text(s->m->tok, doc, doc_len, K, segs, s->err, s->errlen);
    if (s->n_segs < 0) return -1;
    s->text = doc;
    s->segs = *segs;
    s->doc_tokens = 0;
    for (int i = 0; i < s->n_segs; i++)
        s->doc_tokens += (*segs)[i].n_tokens;
    if (p->max_segments > 0 && s->n_segs > p->max_segments) s->n_segs = p->max_segments;
    return 0;
}

/* Replayed margins or verdicts must cover every segment processed. */
static int check_injected(run_state *s, int n) {
    const wim_run_params *p = s->p;
    if ((p->injected_margins || p->injected_relevant) && p->n_injected < n)
        return wim_errorf(s->err, s->errlen, "%d injected margins or verdicts for %d segments",
                          p->n_injected, n);
    return 0;
}

/* --classify logit: the tokens whose logits decide. */
static int find_verdict_tokens(run_state *s) {
    if (s->p->classify != WIM_CLASSIFY_LOGIT) return 0;
    s->yes_id = word_token(s, "YES");
    s->no_id = word_token(s, "NO");
    if (s->yes_id < 0 || s->no_id < 0 || s->yes_id == s->no_id)
        return wim_errorf(s->err, s->errlen,
                          "--classify logit: this vocabulary has no distinct YES and NO tokens");
    return 0;
}

/* Everything the pipeline needs before the first forward pass (doc NULL: a document read
 * before, adopted later). */
static int prepare(run_state *s, const char *doc, size_t doc_len, wim_segment **segs) {
    const wim_run_params *p = s->p;
    if (check_document(s, doc, doc_len) || load_templates(s) ||
        segment_document(s, doc, doc_len, segs) || check_injected(s, s->n_segs) ||
        find_verdict_tokens(s))
        return -1;
    if (!(s->logits = malloc((size_t)s->m->cfg.n_vocab * sizeof *s->logits)) ||
        !(s->sampler = wim_sampler_new(p->temp, p->top_p, p->seed, s->m->cfg.n_vocab)))
        return out_of_memory(s);
    return 0;
}

/* The system prompt, rendered once: every context the pattern answers in opens with it. */
static int render_system(run_state *s) {
    if (!(s->sys = render(s, WIM_PROMPT_SYSTEM, NULL, NULL))) return -1;
    s->sys_tokens =
        wim_tokenize(s->m->tok, s->sys, strlen(s->sys), 0, 1, NULL, 0, s->err, s->errlen);
    return s->sys_tokens < 0 ? -1 : 0;
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

/* The KV cells a run needs beyond the document: *tail, after the document at
 * once (the answer prompt with every margin, or one extraction step with the
 * notes shown), and *step, the most one prompt and its generation take (what a
 * streaming window must hold beside a segment). *classify: the classifier
 * prompt's own tokens. */
static int plan_tail(run_state *s, int n_segs, long *tail, long *step, int *classify) {
    const wim_run_params *p = s->p;
    int extract = prompt_tokens(s, WIM_PROMPT_EXTRACT, NULL, NULL);
    int final = prompt_tokens(s, WIM_PROMPT_ANSWER, NULL, "");
    *classify = prompt_tokens(s, WIM_PROMPT_CLASSIFY, "", "");
    if (extract < 0 || final < 0 || *classify < 0) return -1;
    long margins = p->pattern == WIM_PATTERN_WIM ? (long)n_segs * (p->margin_tokens + 2) : 0;
    *step = final + p->answer_tokens;
    if (p->pattern == WIM_PATTERN_WIM && extract + p->margin_tokens > *step)
        *step = extract + p->margin_tokens;
    *tail = final + margins + p->answer_tokens;
    if (p->pattern == WIM_PATTERN_WIM) {
        long with_notes = extract + p->margin_tokens + (p->margins_in_extraction ? margins + 8 : 0);
        if (with_notes > *tail) *tail = with_notes;
    }
    return 0;
}

static int longest_segment(const wim_segment *segs, int n_segs) {
    int max_seg = 0;
    for (int i = 0; i < n_segs; i++)
        if (segs[i].n_tokens > max_seg) max_seg = segs[i].n_tokens;
    return max_seg;
}

/* Creates the main and classifier contexts with capacities planned from the
 * work ahead, or fails up front when the document cannot fit; and the table of
 * where each segment will end. */
static int make_contexts(run_state *s) {
    const wim_run_params *p = s->p;
    long doc = 0, tail, step;
    int classify;
    for (int i = 0; i < s->n_segs; i++)
        doc += s->segs[i].n_tokens;
    if (plan_tail(s, s->n_segs, &tail, &step, &classify)) return -1;
    const int max_seg = longest_segment(s->segs, s->n_segs);
    long need = 1 + s->sys_tokens + doc + tail;
    wim_ctx_params cp = p->ctx;
    int streaming = p->stream || cp.kv_pin >= 0;
    int limit = cp.n_ctx > 0 ? cp.n_ctx : s->m->cfg.n_ctx_train;
    if (!streaming && need > limit)
        return wim_errorf(s->err, s->errlen,
                          "the document needs about %ld tokens of KV cache but the capacity is "
                          "%d: raise --kv-capacity, use fewer segments, or stream with --stream",
                          need, limit);
    cp.n_ctx = need < limit ? (int)need : limit;
    if (streaming && cp.kv_pin < 0) cp.kv_pin = 1 + s->sys_tokens; /* pin BOS + system prompt */
    if (streaming && cp.kv_pin + step + max_seg > cp.n_ctx)
        return wim_errorf(s->err, s->errlen,
                          "a KV window of %d cells is too small for %d pinned tokens, a segment "
                          "of %d and the %ld tokens of one prompt and its generation",
                          cp.n_ctx, cp.kv_pin, max_seg, step);
    if (!streaming) cp.kv_pin = -1;
    if (wim_ctx_new(s->m, &cp, &s->main, s->err, s->errlen) ||
        make_classifier_context(s, classify, max_seg))
        return -1;
    return (s->forks = malloc(((size_t)s->n_segs + 1) * sizeof *s->forks)) ? 0 : out_of_memory(s);
}

/* The result's tables: a margin and a verdict per segment. */
static int start_result(run_state *s, wim_result *res) {
    res->margins = calloc((size_t)s->n_segs + 1, sizeof *res->margins);
    res->relevant = calloc((size_t)s->n_segs + 1, sizeof *res->relevant);
    return res->margins && res->relevant ? 0 : out_of_memory(s);
}

/* ---- a document read once: its cells and segments saved together ---- */

#define SEGS_MAGIC "WIMSEGS1"

/* The segments as saved beside the document's cells: the magic, their count,
 * then per segment where it ends in the cache (its margin's fork), its tokens,
 * its text's length, and the text. */
static uint8_t *segments_pack(const char *doc, const wim_segment *segs, const int *forks, int n,
                              size_t *len) {
    size_t bytes = 8 + 4;
    for (int i = 0; i < n; i++)
        bytes += 12 + segs[i].len;
    uint8_t *b = malloc(bytes), *p = b;
    if (!b) return NULL;
    memcpy(p, SEGS_MAGIC, 8);
    memcpy(p + 8, &n, 4);
    p += 12;
    for (int i = 0; i < n; i++) {
        const uint32_t text_len = (uint32_t)segs[i].len;
        memcpy(p, &forks[i], 4);
        memcpy(p + 4, &segs[i].n_tokens, 4);
        memcpy(p + 8, &text_len, 4);
        memcpy(p + 12, doc + segs[i].start, segs[i].len);
        p += 12 + segs[i].len;
    }
    *len = bytes;
    return b;
}

/* A document read once (wim.h): the context that read it and its segments. */
struct wim_doc {
    wim_ctx *ctx;      /* BOS, the system prompt and every segment */
    char *text;        /* the segments' text, one after another */
    wim_segment *segs; /* byte ranges of text */
    int *forks;        /* where each segment ends in ctx: its margin's fork */
    int n_segs, doc_tokens;
    int streamed; /* ctx streamed: it holds only the document's last window */
    /* streamed for the wim pattern: the window as it was after each segment but the last
     * (the paper's loop writes margin i there); counted in marks_mem */
    wim_kvcache *marks;
    wim_mem marks_mem;
};

void wim_doc_free(wim_doc *d) {
    if (!d) return;
    wim_ctx_free(d->ctx);
    for (int i = 0; d->marks && i < d->n_segs - 1; i++)
        kv_free(&d->marks[i]);
    free(d->marks);
    free(d->text);
    free(d->segs);
    free(d->forks);
    free(d);
}

/* Reads the saved segments into d (the file's CRC vouches for the bytes, but
 * every count is still checked against the cells, `cached` of them): the texts
 * one after another in d->text, each segment's range, tokens and end. */
static int segments_unpack(wim_doc *d, const uint8_t *b, size_t len, int cached, const char *path,
                           char *err, size_t errlen) {
    int32_t n = -1;
    if (len >= 12 && !memcmp(b, SEGS_MAGIC, 8)) memcpy(&n, b + 8, 4);
    int ok = n >= 0 && (size_t)n <= (len - 12) / 12;
    d->text = ok ? malloc(len) : NULL; /* the texts take less than the table */
    d->segs = ok ? malloc(((size_t)n + 1) * sizeof *d->segs) : NULL;
    d->forks = ok ? malloc(((size_t)n + 1) * sizeof *d->forks) : NULL;
    if (ok && (!d->text || !d->segs || !d->forks)) return wim_errorf(err, errlen, "out of memory");
    size_t at = 12, text = 0;
    for (int32_t i = 0, prev = 0; ok && i < n; prev = d->forks[i++]) {
        uint32_t tl;
        wim_segment *g = &d->segs[i];
        if (!(ok = len - at >= 12)) break; /* the texts before took the room the count promised */
        memcpy(&d->forks[i], b + at, 4), memcpy(&g->n_tokens, b + at + 4, 4);
        memcpy(&tl, b + at + 8, 4);
        ok = d->forks[i] > prev && d->forks[i] <= cached && g->n_tokens > 0 && tl <= len - at - 12;
        if (!ok) break;
        memcpy(d->text + text, b + at + 12, tl);
        g->start = text, g->len = tl;
        d->doc_tokens += g->n_tokens;
        at += 12 + tl, text += tl;
    }
    if (!ok || at != len) return wim_errorf(err, errlen, "%s: corrupt segment table", path);
    d->text[text] = 0; /* text < len: every segment takes 12 bytes of the table besides */
    d->n_segs = n;
    return 0;
}

int wim_doc_segments(const wim_doc *d) {
    return d->n_segs;
}

int wim_doc_tokens(const wim_doc *d) {
    return wim_ctx_pos(d->ctx);
}

int wim_doc_document_tokens(const wim_doc *d) {
    return d->doc_tokens;
}

const char *wim_doc_segment(const wim_doc *d, int i, size_t *len) {
    if (i < 0 || i >= d->n_segs) return NULL;
    *len = d->segs[i].len;
    return d->text + d->segs[i].start;
}

size_t wim_doc_bytes(const wim_doc *d) {
    wim_mem_report r;
    wim_ctx_memory(d->ctx, &r);
    size_t text = d->n_segs > 0 ? d->segs[d->n_segs - 1].start + d->segs[d->n_segs - 1].len : 0;
    return r.kv_bytes + r.scratch_bytes + text + d->marks_mem.cur[WIM_MEM_KV] +
           (d->n_segs > 0 ? (size_t)d->n_segs * (sizeof *d->segs + sizeof *d->forks) : 0);
}

/* A context's cells with the segments of the document they hold. */
static int save_cells(const wim_ctx *c, const char *path, const char *text, const wim_segment *segs,
                      const int *forks, int n, char *err, size_t errlen) {
    size_t len;
    uint8_t *b = segments_pack(text, segs, forks, n, &len);
    if (!b) return wim_errorf(err, errlen, "out of memory");
    int rc = ctx_save_with(c, path, b, len, err, errlen);
    free(b);
    return rc;
}

int wim_doc_save(const wim_doc *d, const char *path, char *err, size_t errlen) {
    return save_cells(d->ctx, path, d->text, d->segs, d->forks, d->n_segs, err, errlen);
}

/* --save-kv after reading: the main context's cells (the document) and its segments. A
 * file that cannot be written does not cost the answer: the reason is kept for the result
 * (nothing is left under the file's name). Fails only when out of memory for that. */
static int save_document(run_state *s, const wim_ctx *c, const char *doc, const wim_segment *segs,
                         const int *forks, int n) {
    const double t0 = wim_now_ms();
    char why[512];
    int rc = save_cells(c, s->p->save_kv, doc, segs, forks, n, why, sizeof why);
    s->ms_save += wim_now_ms() - t0;
    if (rc && !(s->save_error = strdup(why))) return out_of_memory(s);
    return 0;
}

int wim_doc_load(const wim_model *m, const char *path, const wim_ctx_params *cp, wim_doc **out,
                 char *err, size_t errlen) {
    int capacity, pin, streaming, cached;
    void *extra = NULL;
    size_t extra_len = 0;
    wim_ctx_params c = cp ? *cp : wim_ctx_default_params();
    wim_doc *d = calloc(1, sizeof *d);
    *out = NULL;
    if (!d) return wim_errorf(err, errlen, "out of memory");
    if (ctx_file_geometry(m, path, &capacity, &pin, &streaming, &cached, err, errlen)) goto fail;
    /* a plain cache loads into any capacity that holds its cells, and asking makes it larger
     * when a question needs it: a capacity far past the cells is not reserved up front */
    c.n_ctx = streaming || capacity - cached <= 65536 ? capacity : cached + 65536;
    c.kv_pin = streaming ? pin : -1;
    if (wim_ctx_new(m, &c, &d->ctx, err, errlen) ||
        ctx_load_with(d->ctx, path, &extra, &extra_len, err, errlen))
        goto fail;
    d->streamed = streaming;
    d->n_segs = -1; /* an older file: the cells alone */
    if (extra && segments_unpack(d, extra, extra_len, cached, path, err, errlen)) goto fail;
    free(extra);
    *out = d;
    return 0;
fail:
    free(extra);
    wim_doc_free(d);
    return -1;
}

/* How many of a document read before's segments this run processes: refused when the
 * pattern needs what the document does not keep. Returns the count, or -1. */
static int document_segments(run_state *s, const wim_doc *d, const char *what) {
    const wim_run_params *p = s->p;
    int n = d->n_segs;
    if (n < 0 && p->pattern != WIM_PATTERN_LLM)
        return wim_errorf(s->err, s->errlen,
                          "%s: saved without its segments (an older wim): the %s pattern needs "
                          "them; save the document again",
                          what, p->pattern == WIM_PATTERN_WIM ? "wim" : "rag");
    if (n < 0) n = 0;
    if (p->pattern == WIM_PATTERN_WIM && d->streamed && n > 1 && !d->marks)
        return wim_errorf(s->err, s->errlen,
                          "%s: the cache streamed and holds only the document's last window, not "
                          "the window after each segment that the wim pattern needs (a document "
                          "read by wim_doc_read keeps them, a saved one does not; llm and rag "
                          "work)",
                          what);
    if (p->max_segments > 0 && n > p->max_segments) n = p->max_segments;
    return check_injected(s, n) ? -1 : n;
}

/* A document read before gets the room this question needs after it: its cells move into
 * a larger cache when the one it has is too small (a cache that streamed has its window). */
static int fit_question(run_state *s, wim_doc *d, long tail, const char *what) {
    const wim_run_params *p = s->p;
    const long need = wim_ctx_pos(d->ctx) + tail;
    const int limit = p->ctx.n_ctx > 0 ? p->ctx.n_ctx : s->m->cfg.n_ctx_train;
    if (d->streamed || need <= wim_ctx_capacity(d->ctx)) return 0;
    if (need > limit)
        return wim_errorf(s->err, s->errlen,
                          "%s: the document and this question need about %ld tokens of KV "
                          "cache but the capacity is %d: raise --kv-capacity",
                          what, need, limit);
    wim_ctx_params cp = d->ctx->p;
    wim_ctx *bigger;
    cp.n_ctx = (int)need;
    if (wim_ctx_new(s->m, &cp, &bigger, s->err, s->errlen)) return -1;
    if (kv_copy(&bigger->kv, &d->ctx->kv, wim_ctx_pos(d->ctx), s->err, s->errlen))
        return wim_ctx_free(bigger), -1;
    wim_ctx_free(d->ctx);
    d->ctx = bigger;
    return 0;
}

/* A document read before serves this run: its context becomes the main one
 * (made larger first when this question needs more room than it has), rolled
 * back at the end (a snapshot is taken here); the classifier context is made. */
static int adopt_document(run_state *s, wim_doc *d) {
    const wim_run_params *p = s->p;
    const char *what = p->load_kv ? p->load_kv : "the document";
    long tail, step;
    int classify, n = document_segments(s, d, what);
    if (n < 0) return -1;
    if (d->streamed) s->batched = 0; /* margins come from the windows kept */
    if (plan_tail(s, n, &tail, &step, &classify) || fit_question(s, d, tail, what) ||
        make_classifier_context(s, classify, longest_segment(d->segs, n)))
        return -1;
    if (p->pattern == WIM_PATTERN_WIM && !s->batched &&
        wim_ctx_new(s->m, &d->ctx->p, &s->work, s->err, s->errlen))
        return -1;
    if (p->save_kv && save_document(s, d->ctx, d->text, d->segs, d->forks, d->n_segs)) return -1;
    if (wim_ctx_snapshot(d->ctx)) return out_of_memory(s);
    s->main = d->ctx;
    s->doc = d;
    s->forks = d->forks;
    s->text = d->text;
    s->segs = d->segs;
    s->n_segs = n;
    s->doc_tokens = d->doc_tokens;
    return 0;
}

/* Where rag's chosen segments, or an answer from the margins alone, start over
 * from an empty context: the main one, or a fresh one beside a document read
 * once (whose cells other questions still need). */
static int empty_main(run_state *s) {
    if (!s->doc || s->main != s->doc->ctx) {
        wim_ctx_reset(s->main);
        return 0;
    }
    wim_ctx_params cp = s->main->p;
    return wim_ctx_new(s->m, &cp, &s->main, s->err, s->errlen);
}

/* BOS and the system prompt, at the start of the main context. */
static int read_system_prompt(run_state *s) {
    return feed_prompt(s, s->main, "system", -1, s->sys, 1);
}

/* ---- reading: each segment into the main context ---- */

/* The start of a segment as a reader recognises it: white space runs as one space, at most
 * WIM_FIRST_WORDS bytes, cut at a word (or a character) boundary. Returns out. */
static const char *first_words(const char *seg, char *out) {
    size_t n = 0, word_end = 0;
    const char *p = seg;
    for (; *p && n < WIM_FIRST_WORDS; p++) {
        if (!isspace((unsigned char)*p)) {
            out[n++] = *p;
        } else if (n && out[n - 1] != ' ') {
            word_end = n;
            out[n++] = ' ';
        }
    }
    if (*p) { /* cut short: at the last word boundary, else at a character boundary */
        if (word_end) n = word_end;
        while (n && ((unsigned char)out[n] & 0xC0) == 0x80)
            n--;
    }
    while (n && out[n - 1] == ' ')
        n--;
    out[n] = 0;
    return out;
}

/* Reads segment i into the main context (unless it came from a saved cache, or
 * rag has no use for it there), records where it ends and reports it. */
static int read_segment(run_state *s, const char *seg, int i, wim_result *res) {
    const wim_run_params *p = s->p;
    const wim_segment *g = &s->segs[i];
    double t0 = wim_now_ms();
    if (!s->doc && (p->pattern != WIM_PATTERN_RAG || p->save_kv || s->reading) &&
        feed_text(s, s->main, seg))
        return -1;
    if (!s->doc) s->forks[i] = wim_ctx_pos(s->main);
    char first[WIM_FIRST_WORDS + 1];
    wim_event ev = {.type = WIM_EV_SEGMENT,
                    .index = i,
                    .n_tokens = g->n_tokens,
                    .prefilled = s->prefilled,
                    .offset = g->start,
                    .bytes = g->len,
                    .first = first_words(seg, first),
                    .ms = wim_now_ms() - t0};
    emit(s, &ev);
    res->n_segments = i + 1;
    return 0;
}

/* wim_doc_read through a window: the window after segment i, for its margin later. */
static int keep_mark(run_state *s, int i) {
    const wim_kvcache *kv = &s->main->kv;
    wim_kvcache *mark = &s->marking->marks[i];
    return kv_init(mark, &s->marking->marks_mem, kv->n_layer, kv->n_head_kv, kv->head_dim,
                   kv->capacity, kv->pin, kv->streaming, kv->max_claim, kv->type, s->err,
                   s->errlen) ||
                   kv_clone(mark, kv, s->err, s->errlen)
               ? -1
               : 0;
}

/* Every segment, in order, until an interrupt (res->n_segments says how far). */
static int read_segments(run_state *s, wim_result *res) {
    for (int i = 0; i < s->n_segs && !interrupted(s); i++) {
        char *seg = segment_text(s, i);
        int rc = !seg || read_segment(s, seg, i, res) ||
                 (s->marking && i + 1 < s->n_segs && keep_mark(s, i));
        free(seg);
        if (rc) return -1;
    }
    return 0;
}

/* ---- margins and verdicts, segment by segment: the paper's loop ---- */

/* Whether the pattern judges each segment (wim: its margin; rag: the segment itself). */
static int judges_segments(const wim_run_params *p) {
    return p->pattern == WIM_PATTERN_WIM ||
           (p->pattern == WIM_PATTERN_RAG && p->retriever == WIM_RETRIEVER_CLASSIFIER);
}

/* Where margin i is written: the main context, or for a document read before,
 * the work context holding the cache as it was after segment i (a copy of the
 * prefix, or the window kept then), so the loop computes what it would have
 * while reading. */
static wim_ctx *margin_context(run_state *s, int i) {
    if (!s->doc) return s->main;
    const wim_doc *d = s->doc;
    const wim_kvcache *src = d->streamed && i + 1 < d->n_segs ? &d->marks[i] : &d->ctx->kv;
    int rc = d->streamed ? kv_clone(&s->work->kv, src, s->err, s->errlen)
                         : kv_copy(&s->work->kv, src, d->forks[i], s->err, s->errlen);
    return rc ? NULL : s->work;
}

/* --margins-in-extraction: the margins kept before segment i, joined (NULL: none shown). */
static int notes_so_far(run_state *s, int i, wim_result *res, char **notes) {
    *notes = NULL;
    if (!s->p->margins_in_extraction || i == 0) return 0;
    *notes = wim_margins_join(res->margins, res->relevant, i, s->p->dedupe_margins);
    return *notes ? 0 : out_of_memory(s);
}

/* What margin i reads after its segment: the notes (framed as document text; NULL or
 * empty: none), then the extraction prompt. */
static int feed_extraction(run_state *s, wim_ctx *mc, int i, const char *notes) {
    const int framing = notes && *notes;
    char *framed = framing ? malloc(strlen(notes) + 32) : NULL;
    char *prompt = framing && !framed ? NULL : render(s, WIM_PROMPT_EXTRACT, NULL, NULL);
    int32_t *note_ids = NULL, *prompt_ids = NULL;
    int n_notes = 0, n_prompt = -1, rc = -1;
    if (framing && !framed) out_of_memory(s);
    if (framed) {
        sprintf(framed, "Notes so far:\n%s", notes);
        n_notes = tokenize(s, framed, strlen(framed), 0, 0, &note_ids);
    }
    if (prompt && n_notes >= 0) n_prompt = tokenize(s, prompt, strlen(prompt), 0, 1, &prompt_ids);
    if (n_prompt >= 0)
        rc = show_margin_prompt(s, i, framed, prompt, n_notes + n_prompt) ||
                     feed(s, mc, note_ids, n_notes) || feed(s, mc, prompt_ids, n_prompt)
                 ? -1
                 : 0;
    free(framed), free(prompt), free(note_ids), free(prompt_ids);
    return rc;
}

/* An extractive margin of seg (quotes.c), counted in the run and in its event. */
static char *quote_margin(run_state *s, wim_ctx *mc, const char *seg, const char *notes,
                          wim_event *ev) {
    const wim_run_params *p = s->p;
    wim_quote_params qp = {.max_tokens = p->margin_tokens,
                           .min_prob = p->quote_min_prob,
                           .exhaustive = p->quote_exhaustive,
                           .notes = p->quote_notes ? notes : NULL};
    wim_quote_stats st;
    char *text = wim_quote_margin(s->m, mc, s->logits, seg, &qp, &st, s->err, s->errlen);
    if (!text) return NULL;
    s->prefilled += st.scored;
    s->decoded += st.n_tokens;
    ev->n_tokens = st.n_tokens;
    ev->notes_quoted = st.notes_quoted;
    ev->scored = st.scored;
    return text;
}

/* Margin i decoded in mc after its segment, under a snapshot rolled back after: the notes
 * so far when asked, the extraction prompt, then the margin (quoted, or free text). */
static char *decode_margin(run_state *s, wim_ctx *mc, const char *seg, int i, wim_result *res,
                           wim_event *ev) {
    char *notes = NULL, *margin = NULL;
    if (wim_ctx_snapshot(mc)) return out_of_memory(s), NULL;
    if (!notes_so_far(s, i, res, &notes) && !feed_extraction(s, mc, i, notes))
        margin = s->p->extractive_margins ? quote_margin(s, mc, seg, notes, ev)
                                          : generate(s, mc, s->p->margin_tokens, &ev->n_tokens);
    free(notes);
    if (wim_ctx_restore(mc)) free(margin), margin = NULL; /* always: no trace may stay */
    return margin;
}

/* A replayed margin (injected_margins) in place of decoding it. */
static char *replay_margin(run_state *s, int i) {
    char *margin = strdup(s->p->injected_margins[i]);
    if (!margin) out_of_memory(s);
    return margin;
}

/* Margin i in the paper's loop, where margin_context says, reported in its event (with
 * --verify-kv, the cache's CRC before and after: the same). */
static int write_margin(run_state *s, const char *seg, int i, wim_result *res) {
    const wim_run_params *p = s->p;
    wim_event ev = {.type = WIM_EV_MARGIN,
                    .index = i,
                    .has_kv_crc = p->verify_kv,
                    .has_scored = p->extractive_margins && !p->injected_margins};
    ev.has_notes_quoted = ev.has_scored && p->quote_notes;
    wim_ctx *mc = margin_context(s, i);
    if (!mc) return -1;
    if (p->verify_kv) ev.kv_crc_before = wim_ctx_kv_crc(mc);
    const double t0 = wim_now_ms();
    res->margins[i] =
        p->injected_margins ? replay_margin(s, i) : decode_margin(s, mc, seg, i, res, &ev);
    ev.ms = wim_now_ms() - t0;
    s->ms_margins += ev.ms;
    if (!res->margins[i]) return -1;
    ev.text = res->margins[i];
    if (p->verify_kv) ev.kv_crc_after = wim_ctx_kv_crc(mc);
    emit(s, &ev);
    return 0;
}

/* Verdict i in the paper's loop, reported in its event: an extractive margin that quotes
 * nothing is not judged, a replayed verdict is taken as is, otherwise the classifier reads
 * the margin (rag: the segment seg). */
static int judge(run_state *s, const char *seg, int i, wim_result *res) {
    const wim_run_params *p = s->p;
    const char *text = p->pattern == WIM_PATTERN_WIM ? res->margins[i] : seg;
    char *raw = NULL;
    wim_event ev = {.type = WIM_EV_VERDICT, .index = i};
    ev.blank = p->pattern == WIM_PATTERN_WIM && p->extractive_margins && !wim_margin_has_word(text);
    if (ev.blank) /* nothing to judge */
        res->relevant[i] = 0;
    else if (p->injected_relevant)
        res->relevant[i] = p->injected_relevant[i];
    else if (classify(s, i, text, &res->relevant[i], &raw, &ev.logit_margin)) {
        free(raw);
        return -1;
    }
    ev.relevant = res->relevant[i];
    ev.raw = raw ? raw : ev.blank ? "" : "(injected)";
    ev.has_logit_margin = p->classify == WIM_CLASSIFY_LOGIT && !p->injected_relevant && !ev.blank;
    emit(s, &ev);
    free(raw);
    return 0;
}

/* The paper's loop: each segment, then its margin (snapshot, extract,
 * restore), then its verdict. */
static int run_segments_sequential(run_state *s, wim_result *res) {
    for (int i = 0; i < s->n_segs && !interrupted(s); i++) {
        char *seg = segment_text(s, i);
        int rc = !seg || read_segment(s, seg, i, res) ||
                 (judges_segments(s->p) &&
                  ((s->p->pattern == WIM_PATTERN_WIM && write_margin(s, seg, i, res)) ||
                   judge(s, seg, i, res)));
        free(seg);
        if (rc) return -1;
    }
    return 0;
}

/* ---- margins and verdicts after reading: branches ---- */

/* Replayed margins (injected_margins) in place of decoding them, reported as written. */
static int replay_margins(run_state *s, int n, wim_result *res) {
    for (int i = 0; i < n; i++) {
        if (!(res->margins[i] = replay_margin(s, i))) return -1;
        wim_event ev = {.type = WIM_EV_MARGIN, .index = i, .text = res->margins[i]};
        emit(s, &ev);
    }
    return 0;
}

/* rag with the classifier: a verdict on each of the n segments read, as branches. */
static int judge_segments(run_state *s, int n, wim_result *res) {
    char **texts = calloc((size_t)n, sizeof *texts);
    int rc = texts ? 0 : out_of_memory(s);
    for (int i = 0; !rc && i < n; i++)
        rc = (texts[i] = segment_text(s, i)) ? 0 : -1;
    rc = rc || verdicts_as_branches(s, texts, n, res);
    for (int i = 0; texts && i < n; i++)
        free(texts[i]);
    free(texts);
    return rc ? -1 : 0;
}

/* Margins as branches: every segment first, then all margins together, then
 * all verdicts together. */
static int run_segments_batched(run_state *s, wim_result *res) {
    const wim_run_params *p = s->p;
    if (read_segments(s, res)) return -1;
    const int n = res->n_segments;
    if (!judges_segments(p) || n == 0) return 0;
    if (p->pattern == WIM_PATTERN_RAG) return judge_segments(s, n, res);
    if (p->injected_margins ? replay_margins(s, n, res) : margins_as_branches(s, n, res)) return -1;
    return verdicts_as_branches(s, res->margins, n, res);
}

/* ---- after reading: the answer ---- */

/* An interrupt before the first segment leaves nothing to answer from (a document read
 * before answers alone). */
static int check_something_read(run_state *s, const wim_result *res) {
    if (res->interrupted && res->n_segments == 0 && s->n_segs > 0 && !s->doc)
        return wim_errorf(s->err, s->errlen, "interrupted before any segment was read: no answer");
    return 0;
}

/* rag: the chosen segments (by the classifier's verdicts, or BM25's top k) after the
 * system prompt in an emptied main context. */
static int rag_context(run_state *s, wim_result *res) {
    const int n_segs = res->n_segments;
    if (s->p->retriever == WIM_RETRIEVER_BM25) {
        const size_t n = (size_t)n_segs + 1; /* none scored yet is not out of memory */
        const char **docs = malloc(n * sizeof *docs);
        size_t *lens = malloc(n * sizeof *lens);
        double *scores = malloc(n * sizeof *scores);
        int *top = malloc(n * sizeof *top);
        int rc = !docs || !lens || !scores || !top;
        for (int i = 0; !rc && i < n_segs; i++)
            docs[i] = s->text + s->segs[i].start, lens[i] = s->segs[i].len;
        rc = rc || wim_bm25_score(docs, lens, n_segs, s->query, scores);
        int k = rc ? 0 : wim_bm25_top(scores, n_segs, s->p->top_k, top);
        for (int i = 0; i < k; i++)
            res->relevant[top[i]] = 1;
        free(docs);
        free(lens);
        free(scores);
        free(top);
        if (rc) return out_of_memory(s);
    }
    if (empty_main(s) || read_system_prompt(s)) return -1;
    for (int i = 0; i < n_segs; i++) {
        if (!res->relevant[i]) continue;
        char *seg = segment_text(s, i);
        int rc = !seg || feed_text(s, s->main, seg);
        free(seg);
        if (rc) return -1;
    }
    return 0;
}

/* What the answer prompt's {margins} holds: wim's relevant margins; nothing for the
 * baselines. */
static char *kept_margins(run_state *s, const wim_result *res) {
    const wim_run_params *p = s->p;
    char *margins =
        p->pattern == WIM_PATTERN_WIM
            ? wim_margins_join(res->margins, res->relevant, res->n_segments, p->dedupe_margins)
            : strdup("");
    if (!margins) out_of_memory(s);
    return margins;
}

/* The logits that chose the answer's first token, for the result. */
static int keep_answer_logits(run_state *s, wim_result *res) {
    const size_t bytes = (size_t)s->m->cfg.n_vocab * sizeof *s->logits;
    if (!(res->answer_logits = malloc(bytes))) return out_of_memory(s);
    memcpy(res->answer_logits, s->logits, bytes);
    return 0;
}

/* The final prompt (the relevant margins and the question) after what the main context
 * holds, and the answer decoded from it. With --answer-from-margins and a margin kept,
 * only the system prompt stays before it: the notes are the evidence. */
static int answer(run_state *s, wim_result *res) {
    const wim_run_params *p = s->p;
    char *margins = kept_margins(s, res);
    char *final = margins ? render(s, WIM_PROMPT_ANSWER, NULL, margins) : NULL;
    const double t0 = wim_now_ms();
    int rc = final ? 0 : -1;
    if (!rc && p->pattern == WIM_PATTERN_WIM && p->answer_from_margins && *margins)
        rc = empty_main(s) || read_system_prompt(s);
    rc = rc || feed_prompt(s, s->main, "answer", -1, final, 0) || keep_answer_logits(s, res) ||
         !(res->answer = generate(s, s->main, p->answer_tokens, NULL));
    s->ms_answer = wim_now_ms() - t0;
    free(margins);
    free(final);
    if (rc) return -1;
    wim_event ev = {.type = WIM_EV_ANSWER, .text = res->answer, .interrupted = res->interrupted};
    emit(s, &ev);
    return 0;
}

/* The result's totals and the done event: phases, tokens, memory. */
static void report_done(run_state *s, wim_result *res, double t_start) {
    res->tokens_prefilled = s->prefilled;
    res->tokens_decoded = s->decoded;
    res->ms_total = wim_now_ms() - t_start;
    wim_mem_report a, b, w = {0};
    wim_ctx_memory(s->main, &a);
    wim_ctx_memory(s->aux, &b);
    if (s->work) wim_ctx_memory(s->work, &w);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    int kept = 0;
    for (int i = 0; i < res->n_segments; i++)
        kept += res->relevant[i];
    wim_event ev = {.type = WIM_EV_DONE,
                    .interrupted = res->interrupted,
                    .segments = res->n_segments,
                    .relevant_count = kept,
                    .ms_total = res->ms_total,
                    /* the rest: reading the document (and rag's chosen segments) */
                    .ms_prefill =
                        res->ms_total - s->ms_margins - s->ms_classify - s->ms_answer - s->ms_save,
                    .ms_margins = s->ms_margins,
                    .ms_classify = s->ms_classify,
                    .ms_answer = s->ms_answer,
                    .ms_save = s->ms_save,
                    .save_error = s->save_error,
                    .tokens_prefilled = s->prefilled,
                    .tokens_decoded = s->decoded,
                    .kv_bytes = a.kv_bytes + b.kv_bytes + w.kv_bytes,
                    .scratch_peak_bytes = a.scratch_peak + b.scratch_peak + w.scratch_peak,
                    .rss_peak_bytes = (size_t)ru.ru_maxrss * 1024};
    emit(s, &ev);
    res->save_error = s->save_error, s->save_error = NULL;
}

/* ---- the algorithm ---- */

/* wim_run and wim_doc_ask: doc_len bytes of doc to read, or the document d read before. */
static int run(const wim_model *m, const char *doc, size_t doc_len, wim_doc *d, const char *query,
               const wim_run_params *p, wim_event_fn cb, void *user, wim_result *res, char *err,
               size_t errlen) {
    memset(res, 0, sizeof *res);
    run_state s = {
        .m = m, .p = p, .cb = cb, .user = user, .query = query, .err = err, .errlen = errlen};
    wim_segment *segs = NULL; /* the document's segments, when it is read here */
    int rc = -1;
    const double t_start = wim_now_ms();
    s.batched = !p->sequential_margins && !p->stream && p->ctx.kv_pin < 0 &&
                !p->margins_in_extraction && !p->extractive_margins;
    *err = 0;
    /* the work ahead: segments, prompts, and contexts sized for them */
    if (check_query(&s) || prepare(&s, d ? NULL : doc, doc_len, &segs) || render_system(&s) ||
        (d ? adopt_document(&s, d) : make_contexts(&s)) || start_result(&s, res))
        goto done;
    emit_start(&s);
    /* reading: BOS and the system prompt (rag reads them later, where it answers), then
     * each segment with its margin and verdict */
    if (!d && (p->pattern != WIM_PATTERN_RAG || p->save_kv) && read_system_prompt(&s)) goto done;
    if ((s.batched ? run_segments_batched : run_segments_sequential)(&s, res)) goto done;
    res->interrupted = interrupted(&s);
    if (check_something_read(&s, res)) goto done;
    if (p->save_kv && !d && !res->interrupted &&
        save_document(&s, s.main, s.text, s.segs, s.forks, res->n_segments))
        goto done;
    /* answering: rag from its chosen segments; wim and llm after the document */
    if (p->pattern == WIM_PATTERN_RAG && rag_context(&s, res)) goto done;
    if (answer(&s, res)) goto done;
    report_done(&s, res, t_start);
    rc = 0;
done:
    if (rc && !*err) wim_errorf(err, errlen, "out of memory"); /* a failure without a word */
    if (rc) wim_result_free(res);
    free(segs);
    if (s.doc) { /* a document read before: roll its context back, keep it */
        wim_ctx_restore(s.doc->ctx);
        if (s.main == s.doc->ctx) s.main = NULL;
        s.forks = NULL;
    }
    run_state_free(&s);
    return rc;
}

int wim_run(const wim_model *m, const char *doc, size_t doc_len, const char *query,
            const wim_run_params *p, wim_event_fn cb, void *user, wim_result *res, char *err,
            size_t errlen) {
    if (!p->load_kv) return run(m, doc, doc_len, NULL, query, p, cb, user, res, err, errlen);
    wim_doc *d;
    memset(res, 0, sizeof *res);
    if (wim_doc_load(m, p->load_kv, &p->ctx, &d, err, errlen)) return -1;
    int rc = run(m, NULL, 0, d, query, p, cb, user, res, err, errlen);
    wim_doc_free(d);
    return rc;
}

int wim_doc_ask(wim_doc *d, const char *query, const wim_run_params *p, wim_event_fn cb, void *user,
                wim_result *res, char *err, size_t errlen) {
    if (p->load_kv) {
        memset(res, 0, sizeof *res);
        return wim_errorf(err, errlen, "wim_doc_ask: the document is given; load_kv is not");
    }
    return run(d->ctx->m, NULL, 0, d, query, p, cb, user, res, err, errlen);
}

/* wim_doc_read: d takes a copy of the text the segments index, and for the wim pattern
 * through a window, room for the window after each segment but the last. */
static int doc_init(run_state *s, wim_doc *d) {
    const wim_run_params *p = s->p;
    const int n = s->n_segs;
    const size_t used = n ? s->segs[n - 1].start + s->segs[n - 1].len : 0;
    if (!(d->text = malloc(used + 1))) return out_of_memory(s);
    memcpy(d->text, s->text, used);
    d->text[used] = 0;
    d->streamed = p->stream || p->ctx.kv_pin >= 0;
    d->n_segs = n; /* marks[0, n_segs - 1) */
    if (d->streamed && p->pattern == WIM_PATTERN_WIM && n > 1) {
        if (!(d->marks = calloc((size_t)n - 1, sizeof *d->marks))) return out_of_memory(s);
        s->marking = d;
    }
    return 0;
}

int wim_doc_read(const wim_model *m, const char *doc, size_t doc_len, const wim_run_params *p,
                 wim_event_fn cb, void *user, wim_doc **out, char *err, size_t errlen) {
    /* no question yet: the room planned after the document assumes an empty one */
    run_state s = {
        .m = m, .p = p, .cb = cb, .user = user, .query = "", .err = err, .errlen = errlen};
    wim_segment *segs = NULL;
    int rc = -1;
    wim_result res = {0};
    wim_doc *d = calloc(1, sizeof *d);
    s.reading = 1;
    *out = NULL;
    *err = 0;
    if (!d) {
        out_of_memory(&s);
        goto done;
    }
    if (prepare(&s, doc, doc_len, &segs) || render_system(&s) || make_contexts(&s) ||
        doc_init(&s, d))
        goto done;
    emit_start(&s);
    if (read_system_prompt(&s) || read_segments(&s, &res)) goto done;
    if (res.n_segments < s.n_segs) {
        wim_errorf(err, errlen, "interrupted while reading the document");
        goto done;
    }
    d->doc_tokens = 0;
    for (int i = 0; i < s.n_segs; i++)
        d->doc_tokens += segs[i].n_tokens;
    d->ctx = s.main, s.main = NULL;
    d->segs = segs, segs = NULL;
    d->forks = s.forks, s.forks = NULL;
    *out = d, d = NULL;
    rc = 0;
done:
    wim_doc_free(d);
    free(segs);
    run_state_free(&s);
    return rc;
}
