/*
 * test_trace.c — the trace of the forward pass (wim_trace, wim logits --trace) shows
 * what the pass computed and changes nothing.
 *
 * On the bundled model (Q8_0, 4 heads) and stories260K (F32, 8 heads sharing 4 K/V
 * heads), over 300 tokens (five attention tiles in two spans, so the online softmax
 * rescales what it kept and the spans' merge rescales it again): every attention row is a softmax
 * (sums to 1, -1 exactly where the causal mask or a streaming window hides a key); the tiled
 * weights are the textbook materialised softmax's (in layer 0, where both see the same inputs); the
 * logits are the same bits traced or not; the embedding stage is the norm of the embedding row; and
 * on Q8_0 weights the whole trace is the same bits at any chunk size. A layer or head outside the
 * model is refused.
 */
#include "test.h"
#include "wim.h"

#define N 300

static const char *const tiny = "data/wim-tiny/wim-tiny.gguf";
static char stories[512];

static wim_model *load(const char *path) {
    char err[256];
    wim_model *m;
    return wim_model_load(path, &m, err, sizeof err) ? NULL : m;
}

static void tokens(const wim_model *m, int32_t *t, int n) {
    unsigned long long s = 42;
    t[0] = 1;
    for (int i = 1; i < n; i++)
        t[i] = 3 + (int32_t)(t_rand_next(&s) % (unsigned)(wim_model_n_vocab(m) - 3));
}

/* One run: n tokens through a fresh context of the given chunk (and materialised
 * attention, or a streaming window of ctx cells with pin when pin >= 0), traced at
 * (layer, head) over every position when t is not NULL; logits for every token. */
typedef struct {
    int chunk, materialize, ctx, pin;
} setup;

static int run(const wim_model *m, setup s, const int32_t *toks, int n, wim_trace *t,
               float *logits) {
    wim_ctx_params p = wim_ctx_default_params();
    p.chunk = s.chunk;
    p.attn_materialize = s.materialize;
    p.n_ctx = s.ctx ? s.ctx : 512;
    p.kv_pin = s.pin;
    p.n_threads = 2;
    wim_ctx *c;
    char err[256];
    if (wim_ctx_new(m, &p, &c, err, sizeof err)) return -1;
    int rc = (t && wim_ctx_set_trace(c, t, err, sizeof err)) ||
             wim_eval(c, toks, n, logits, 1, err, sizeof err);
    wim_ctx_free(c);
    return rc ? -1 : 0;
}

static wim_trace trace_new(const wim_model *m, int layer, int head, int n) {
    const size_t stages = 1 + 2 * (size_t)wim_model_n_layer(m);
    wim_trace t = {layer,
                   head,
                   0,
                   n,
                   malloc((size_t)n * stages * 3 * sizeof(float)),
                   malloc((size_t)n * n * sizeof(float))};
    return t;
}

static void trace_free(wim_trace *t) {
    free(t->resid);
    free(t->attn);
}

/* Every row a softmax over exactly the keys the rule lets its query see: k < pin, or
 * k > q - window (window 0: every k <= q). Returns the worst |sum - 1|, or -1. */
static double rows_are_softmax(const wim_trace *t, int pin, int window, int *bad_q, int *bad_k) {
    const int keys = t->pos0 + t->n_pos;
    double worst = 0;
    for (int i = 0; i < t->n_pos; i++) {
        const int q = t->pos0 + i;
        const float *row = t->attn + (size_t)i * keys;
        double sum = 0;
        for (int k = 0; k < keys; k++) {
            const int seen = k <= q && (!window || k < pin || k > q - window);
            if (seen ? !(row[k] >= 0 && row[k] <= 1) : row[k] != -1.0f) {
                *bad_q = q, *bad_k = k;
                return -1;
            }
            if (seen) sum += row[k];
        }
        worst = fmax(worst, fabs(sum - 1));
    }
    return worst;
}

static void check_model(const char *path) {
    wim_model *m = load(path);
    if (!m) SKIP("%s not found", path);
    const int V = wim_model_n_vocab(m), L = wim_model_n_layer(m), H = wim_model_n_head(m);
    int32_t toks[N];
    tokens(m, toks, N);
    float *plain = malloc((size_t)N * V * 4), *traced = malloc((size_t)N * V * 4);
    /* a: the last layer's last head; b and c: layer 0, tiled and materialised (past layer
     * 0 their inputs differ: the two attentions sum in different orders) */
    wim_trace a = trace_new(m, L - 1, H - 1, N), b = trace_new(m, 0, H - 1, N),
              c = trace_new(m, 0, H - 1, N);
    const setup tiled = {64, 0, 0, -1}, textbook = {64, 1, 0, -1};
    int ok = plain && traced && a.resid && a.attn && b.resid && b.attn && c.resid && c.attn &&
             !run(m, tiled, toks, N, NULL, plain) && !run(m, tiled, toks, N, &a, traced) &&
             !run(m, tiled, toks, N, &b, NULL) && !run(m, textbook, toks, N, &c, NULL);
    int same_logits = ok && !memcmp(plain, traced, (size_t)N * V * 4);
    int bq = 0, bk = 0;
    double worst = ok ? rows_are_softmax(&a, 0, 0, &bq, &bk) : -1, w0 = 0;
    if (worst >= 0) w0 = rows_are_softmax(&b, 0, 0, &bq, &bk);
    worst = w0 < 0 ? -1 : fmax(worst, w0);
    double diff = 0;
    for (size_t i = 0; ok && i < (size_t)N * N; i++)
        diff = fmax(diff, fabs(b.attn[i] - c.attn[i]));
    /* the embedding stage against the embedding rows; every stage one vector's sizes */
    const int stages = 1 + 2 * L;
    int d_in, rows;
    wim_model_tensor_shape(m, "token_embd.weight", &d_in, &rows);
    float *e = malloc((size_t)d_in * 4);
    double emb = 0, sizes = 0;
    for (int i = 0; ok && e && i < N; i++) {
        wim_model_tensor_row(m, "token_embd.weight", toks[i], e);
        double ss = 0;
        for (int j = 0; j < d_in; j++)
            ss += (double)e[j] * e[j];
        emb = fmax(emb, t_reldiff(sqrt(ss), a.resid[(size_t)i * stages * 3]));
        for (int s = 0; s < stages; s++) {
            const float *v = a.resid + ((size_t)i * stages + s) * 3;
            sizes = fmax(sizes, t_reldiff(v[1] * sqrt(d_in), v[0]));
            if (!(v[2] <= v[0] && v[2] >= v[1] && v[1] > 0)) sizes = 1;
        }
    }
    free(e), free(plain), free(traced);
    trace_free(&a), trace_free(&b), trace_free(&c);
    wim_model_free(m);
    CHECKF(ok, "%s: a run failed", path);
    CHECKF(same_logits, "%s: the logits differ with the trace set", path);
    CHECKF(worst >= 0, "%s: query %d, key %d breaks the causal mask", path, bq, bk);
    CHECKF(worst < 1e-5, "%s: a row sums to 1 +- %g", path, worst);
    CHECKF(diff < 1e-5, "%s: tiled and materialised weights differ by %g", path, diff);
    CHECKF(emb < 1e-6, "%s: the embedding stage is off the embedding rows by %g", path, emb);
    CHECKF(sizes < 1e-5, "%s: a stage's L2, RMS and max |x| are not one vector's (%g)", path,
           sizes);
    t_note("rows sum to 1 +- %.1e, tiled vs materialised %.1e", worst, diff);
}

static void test_bundled_model(void) {
    check_model(tiny);
}

static void test_stories260K_gqa(void) {
    check_model(stories);
}

/* Q8_0 products are exact integer sums and the tiles depend only on positions: the
 * trace, weights and norms, is the same bits for chunks of 1, 7 and 512. */
static void test_trace_same_at_any_chunk(void) {
    wim_model *m = load(tiny);
    if (!m) SKIP("%s not found", tiny);
    int32_t toks[N];
    tokens(m, toks, N);
    const size_t resid = (size_t)N * (1 + 2 * wim_model_n_layer(m)) * 3;
    wim_trace ref = trace_new(m, 1, 2, N), t = trace_new(m, 1, 2, N);
    int ok = ref.resid && ref.attn && t.resid && t.attn &&
             !run(m, (setup){512, 0, 0, -1}, toks, N, &ref, NULL);
    int same = ok;
    for (int chunk = 1; same && chunk <= 7; chunk += 6)
        same = !run(m, (setup){chunk, 0, 0, -1}, toks, N, &t, NULL) &&
               !memcmp(t.resid, ref.resid, resid * 4) &&
               !memcmp(t.attn, ref.attn, (size_t)N * N * 4);
    trace_free(&ref), trace_free(&t);
    wim_model_free(m);
    CHECK(ok);
    CHECKF(same, "the trace depends on the chunk");
}

/* A streaming window (--kv-pin): a query sees the pinned cells and the last C - P
 * positions; the others are -1 in its row, and the rest still sum to 1. */
static void test_streaming_window_hides_keys(void) {
    wim_model *m = load(tiny);
    if (!m) SKIP("%s not found", tiny);
    const int ctx = 16, pin = 2;
    int32_t toks[N];
    tokens(m, toks, N);
    wim_trace t = trace_new(m, 0, 1, N);
    int ok = t.resid && t.attn && !run(m, (setup){5, 0, ctx, pin}, toks, N, &t, NULL);
    int bq = 0, bk = 0;
    double worst = ok ? rows_are_softmax(&t, pin, ctx - pin, &bq, &bk) : -1;
    trace_free(&t);
    wim_model_free(m);
    CHECK(ok);
    CHECKF(worst >= 0, "query %d, key %d: not the window's visibility", bq, bk);
    CHECKF(worst < 1e-5, "a row sums to 1 +- %g", worst);
}

/* Out of range: -1 and one line naming the range; NULL clears, and nothing is written. */
static void test_refusals_and_clearing(void) {
    wim_model *m = load(tiny);
    if (!m) SKIP("%s not found", tiny);
    wim_ctx *c;
    char err[256] = "", err2[256] = "";
    wim_ctx_params p = wim_ctx_default_params();
    p.n_ctx = 64;
    int ok = !wim_ctx_new(m, &p, &c, err, sizeof err);
    wim_trace t = trace_new(m, wim_model_n_layer(m), 0, 8);
    int layer = ok && wim_ctx_set_trace(c, &t, err, sizeof err) == -1 && strstr(err, "0..2");
    t.layer = 0, t.head = -1;
    int head = ok && wim_ctx_set_trace(c, &t, err2, sizeof err2) == -1 && strstr(err2, "0..3");
    t.head = 0;
    int32_t toks[8] = {1, 5, 6, 7, 8, 9, 10, 11};
    int set = ok && !wim_ctx_set_trace(c, &t, err, sizeof err) &&
              !wim_ctx_set_trace(c, NULL, err, sizeof err) &&
              !wim_eval(c, toks, 8, NULL, 0, err, sizeof err);
    int untouched = set;
    for (int i = 0; untouched && i < 8 * 8; i++)
        untouched = t.attn[i] == -1.0f;
    if (ok) wim_ctx_free(c);
    trace_free(&t);
    wim_model_free(m);
    CHECK(ok);
    CHECKF(layer, "layer past the model: '%s'", err);
    CHECKF(head, "negative head: '%s'", err2);
    CHECK(set);
    CHECKF(untouched, "a cleared trace was written to");
}

int main(void) {
    snprintf(stories, sizeof stories, "%s/models/stories260K.gguf", t_shared());
    RUN(test_bundled_model);
    RUN(test_stories260K_gqa);
    RUN(test_trace_same_at_any_chunk);
    RUN(test_streaming_window_hides_keys);
    RUN(test_refusals_and_clearing);
    return t_exit();
}
