/*
 * test_kvcache.c — the ring-buffer KV cache: snapshots restore exactly under
 * thousands of random operations, margins leave no trace in the logits (plain
 * and wrapped regimes), streaming runs in bounded memory, every query sees
 * exactly its window whatever the prefill chunk, and streamed caches
 * snapshot, restore, save and load exactly across chunk sizes.
 */
#include <unistd.h>
#include <zlib.h>

#include "attention.h"
#include "context.h"
#include "kvcache.h"
#include "model.h"
#include "simd.h"
#include "test.h"
#include "wim.h"

enum { LAYERS = 3, HEADS = 2, DIM = 8, MAX_DEPTH = 6 };

typedef struct {
    uint32_t whole;
    int n;
    uint32_t *cells; /* per live cell */
} picture;

static uint32_t cell_crc(const wim_kvcache *kv, int s) {
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, (const Bytef *)&kv->pos[s], 4);
    c = crc32(c, (const Bytef *)&kv->tok[s], 4);
    for (int l = 0; l < kv->n_layer; l++)
        for (int h = 0; h < kv->n_head_kv; h++) {
            c = crc32(c, kv_k(kv, l, h, s), (uInt)(kv->head_dim * kv->elem));
            c = crc32(c, kv_v(kv, l, h, s), (uInt)(kv->head_dim * kv->elem));
        }
    return (uint32_t)c;
}

static picture take(const wim_kvcache *kv) {
    picture p = {kv_crc(kv), kv->n, malloc((size_t)(kv->n + 1) * sizeof(uint32_t))};
    for (int s = 0; s < kv->n; s++)
        p.cells[s] = cell_crc(kv, s);
    return p;
}

static void append_random(wim_kvcache *kv, int count, unsigned long long *rng) {
    int slots[64];
    int32_t toks[64];
    float k[DIM], v[DIM];
    while (count > 0) {
        int m = count < 16 ? count : 16;
        for (int i = 0; i < m; i++)
            toks[i] = (int32_t)(t_rand_next(rng) % 1000);
        if (kv_claim(kv, m, toks, slots)) return;
        for (int i = 0; i < m; i++)
            for (int l = 0; l < LAYERS; l++) {
                for (int j = 0; j < DIM; j++)
                    k[j] = t_rand_float(rng), v[j] = t_rand_float(rng);
                kv_store(kv, l, slots[i], k, v);
            }
        count -= m;
    }
}

/* Random appends, nested snapshots, restores and drops; every restore must
 * reproduce the picture taken at its snapshot, cell by cell. */
static void property_run(int streaming, enum wim_kv_type type, unsigned long long seed) {
    wim_mem mem = {0};
    wim_kvcache kv;
    char err[128];
    CHECK(kv_init(&kv, &mem, LAYERS, HEADS, DIM / HEADS, 96, streaming ? 5 : 0, streaming, 20, type,
                  err, sizeof err) == 0);
    picture stack[MAX_DEPTH];
    int depth = 0;
    unsigned long long rng = seed;
    for (int op = 0; op < 4000; op++) {
        unsigned r = (unsigned)(t_rand_next(&rng) % 10);
        if (r < 5) {
            append_random(&kv, 1 + (int)(t_rand_next(&rng) % 20), &rng);
        } else if (r < 7 && depth < MAX_DEPTH) {
            stack[depth++] = take(&kv);
            CHECK(kv_snapshot(&kv) == depth);
        } else if (r < 9 && depth > 0) {
            CHECK(kv_restore(&kv) == 0);
            picture now = take(&kv), *then = &stack[--depth];
            CHECKF(now.whole == then->whole && now.n == then->n,
                   "op %d: cache differs after restore", op);
            for (int s = 0; s < now.n; s++)
                CHECKF(now.cells[s] == then->cells[s], "op %d: cell %d", op, s);
            free(now.cells);
            free(then->cells);
        } else if (depth > 0) {
            CHECK(kv_snapshot_drop(&kv) == 0);
            free(stack[--depth].cells);
        } else if (!streaming && kv.n > 80) {
            kv_clear(&kv);
        }
    }
    while (depth > 0)
        free(stack[--depth].cells);
    CHECK(kv.n <= kv.cells);
    kv_free(&kv);
    CHECK(mem.cur[WIM_MEM_KV] == 0);
}

static void test_snapshot_property_plain(void) {
    property_run(0, WIM_KV_F16, 1);
}
static void test_snapshot_property_streaming_f16(void) {
    property_run(1, WIM_KV_F16, 2);
}
static void test_snapshot_property_streaming_f32(void) {
    property_run(1, WIM_KV_F32, 3);
}

static void test_ring_pins_and_overwrites_oldest(void) {
    wim_mem mem = {0};
    wim_kvcache kv;
    char err[128];
    /* capacity 8, 2 pinned, claims of up to 3: 8 + 3 - 1 cells, a ring of 8 */
    CHECK(kv_init(&kv, &mem, 1, 1, 2, 8, 2, 1, 3, WIM_KV_F32, err, sizeof err) == 0);
    CHECK(kv.cells == 10);
    int slots[8];
    int32_t toks[8] = {0};
    CHECK(kv_claim(&kv, 3, toks, slots) == 0 && kv_claim(&kv, 3, toks, slots) == 0);
    CHECK(kv_claim(&kv, 3, toks, slots) == 0 && kv_claim(&kv, 1, toks, slots) == 0 && kv.n == 10);
    CHECK(kv_claim(&kv, 3, toks, slots) == 0);
    CHECK(slots[0] == 2 && slots[1] == 3 && slots[2] == 4); /* oldest unpinned first */
    CHECK(kv.pos[0] == 0 && kv.pos[1] == 1 && kv.pos[2] == 10 && kv.pos[4] == 12);
    CHECK(kv.pos[5] == 5 && kv.pos[9] == 9);
    CHECK(kv_claim(&kv, 4, toks, slots) == -1); /* more than max_claim in one claim */
    CHECK(kv_claim(&kv, 3, toks, slots) == 0 && kv_claim(&kv, 3, toks, slots) == 0);
    CHECK(slots[2] == 2 && kv.pos[2] == 18); /* wrapped back to the pin */
    for (int q = 11; q < 19; q++) /* the last R positions are held where kv_slot_of says */
        CHECK(kv.pos[kv_slot_of(&kv, q)] == q);
    /* the query at 18 sees 0, 1 (pinned) and 13..18 (W = 6); 12 is held but too old */
    CHECK(kv_visible(&kv, 0, 18) && kv_visible(&kv, 1, 18));
    CHECK(!kv_visible(&kv, kv_slot_of(&kv, 12), 18) && kv_visible(&kv, kv_slot_of(&kv, 13), 18));
    CHECK(kv_visible(&kv, kv_slot_of(&kv, 18), 18) && !kv_visible(&kv, kv_slot_of(&kv, 18), 17));
    kv_free(&kv);
    CHECK(kv_init(&kv, &mem, 1, 1, 2, 4, 0, 0, 3, WIM_KV_F32, err, sizeof err) == 0);
    CHECK(kv.cells == 4); /* no extra cells without streaming */
    CHECK(kv_claim(&kv, 4, toks, slots) == 0 && kv_claim(&kv, 1, toks, slots) == -1);
    kv_free(&kv);
}

/* ---- the streaming window at the attention level ---- */

enum { HD = 8 };

/* Deterministic K, V and query vectors of a position. */
static void vec_of(int pos, int which, float *x) {
    unsigned long long r = 0x9e3779b97f4a7c15ULL * (unsigned long long)(3 * pos + which + 1);
    for (int i = 0; i < HD; i++)
        x[i] = t_rand_float(&r);
}

/* Feeds positions 0..n-1 in claims of `chunk` through a streaming cache of
 * capacity C (pin pinned) and runs every query of each claim against it as
 * one block: out[p * HD ..] is the attention output of position p. */
static int stream_attention(int C, int pin, int chunk, int n, enum wim_kv_type type, float *out) {
    wim_mem mem = {0};
    wim_kvcache kv;
    char err[128];
    if (kv_init(&kv, &mem, 1, 1, HD, C, pin, 1, chunk, type, err, sizeof err)) return -1;
    const wim_kernels *kern = wim_kernels_get();
    int *slots = malloc((size_t)chunk * sizeof *slots);
    float *q = malloc((size_t)chunk * HD * sizeof *q);
    attn_query *qs = malloc((size_t)chunk * sizeof *qs);
    float *scratch = malloc(attn_block_scratch_floats(HD, chunk) * sizeof *scratch);
    int rc = 0;
    for (int p0 = 0; p0 < n && !rc; p0 += chunk) {
        int m = n - p0 < chunk ? n - p0 : chunk;
        if ((rc = kv_claim(&kv, m, NULL, slots))) break;
        for (int i = 0; i < m; i++) {
            float k[HD], v[HD];
            vec_of(p0 + i, 0, k);
            vec_of(p0 + i, 1, v);
            kv_store(&kv, 0, slots[i], k, v);
            vec_of(p0 + i, 2, q + (size_t)i * HD);
            qs[i] = (attn_query){q + (size_t)i * HD, out + (size_t)(p0 + i) * HD, p0 + i, -1, NULL};
        }
        attn_block(kern, &kv, 0, 0, HD, qs, m, (attn_shape){0.7f, 0.0f, 0}, scratch);
    }
    free(slots);
    free(q);
    free(qs);
    free(scratch);
    kv_free(&kv);
    return rc;
}

/* Every query at position p attends to the pinned cells and exactly the keys
 * at positions (p - (C - pin), p], whatever the claim (chunk) size: bitwise
 * the same output for every chunk size, and the naive softmax over that key
 * set in double. Several tiles, the window wrapping the ring many times. */
static void test_streaming_attention_window(void) {
    enum { C = 150, N = 700 };
    const int pins[2] = {5, 0}, chunks[5] = {1, 7, 64, 149, 150};
    float *ref = malloc((size_t)N * HD * sizeof *ref), *out = malloc((size_t)N * HD * sizeof *out);
    for (int t = 0; t < 2; t++)
        for (int pi = 0; pi < 2; pi++) {
            const int pin = pins[pi], w = C - pin;
            enum wim_kv_type type = t ? WIM_KV_F16 : WIM_KV_F32;
            CHECK(stream_attention(C, pin, 1, N, type, ref) == 0);
            for (int c = 1; c < 5; c++) {
                CHECK(stream_attention(C, pin, chunks[c], N, type, out) == 0);
                int first = -1;
                for (int p = 0; p < N && first < 0; p++)
                    if (memcmp(ref + (size_t)p * HD, out + (size_t)p * HD, HD * sizeof *out))
                        first = p;
                CHECKF(first < 0, "%s, pin %d, chunk %d: position %d differs from chunk 1",
                       t ? "f16" : "f32", pin, chunks[c], first);
            }
            if (type != WIM_KV_F32) continue;
            for (int p = 0; p < N; p++) { /* the reference, in double */
                float qv[HD], kv[HD], vv[HD];
                double mx = -1e300, sum = 0, acc[HD] = {0};
                vec_of(p, 2, qv);
                for (int pass = 0; pass < 2; pass++)
                    for (int k = 0; k <= p; k++) {
                        if (k >= pin && k <= p - w) continue; /* left the window */
                        vec_of(k, 0, kv);
                        double sc = 0;
                        for (int i = 0; i < HD; i++)
                            sc += (double)qv[i] * kv[i];
                        sc *= 0.7;
                        if (pass == 0) {
                            if (sc > mx) mx = sc;
                            continue;
                        }
                        double e = exp(sc - mx);
                        sum += e;
                        vec_of(k, 1, vv);
                        for (int i = 0; i < HD; i++)
                            acc[i] += e * vv[i];
                    }
                for (int i = 0; i < HD; i++)
                    CHECKF(fabs(acc[i] / sum - ref[(size_t)p * HD + i]) < 1e-5,
                           "pin %d, position %d: %g vs reference %g", pin, p,
                           ref[(size_t)p * HD + i], acc[i] / sum);
            }
        }
    free(ref);
    free(out);
}

/* ---- model-level tests on the real stories260K ---- */

static wim_model *load_stories(void) {
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", t_shared());
    wim_model *m = NULL;
    if (!t_file_exists(path)) return NULL;
    if (wim_model_load(path, &m, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    return m;
}

static void fill(int32_t *t, int n, unsigned long long seed) {
    for (int i = 0; i < n; i++)
        t[i] = 3 + (int32_t)(t_rand_next(&seed) % 509);
}

/* prefill A, snapshot, junk, restore, prefill B  ==  prefill A, prefill B. */
static void margin_leaves_no_trace(int capacity, int pin, int na, int nb, int chunk) {
    wim_model *m = load_stories();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    int32_t a[400], junk[100], b[100];
    fill(a, na, 10);
    fill(junk, 100, 11);
    fill(b, nb, 12);
    a[0] = 1;
    wim_ctx_params p = wim_ctx_default_params();
    p.n_ctx = capacity;
    p.kv_pin = pin;
    p.chunk = chunk;
    wim_ctx *c1, *c2;
    char err[256];
    CHECK(wim_ctx_new(m, &p, &c1, err, sizeof err) == 0);
    CHECK(wim_ctx_new(m, &p, &c2, err, sizeof err) == 0);
    float *l1 = malloc(512 * sizeof(float)), *l2 = malloc(512 * sizeof(float));
    CHECK(wim_eval(c1, a, na, NULL, 0, err, sizeof err) == 0);
    uint32_t before = wim_ctx_kv_crc(c1);
    CHECK(wim_ctx_snapshot(c1) == 0);
    CHECK(wim_eval(c1, junk, 100, l1, 0, err, sizeof err) == 0);
    CHECK(wim_ctx_restore(c1) == 0);
    CHECK(wim_ctx_kv_crc(c1) == before);
    CHECK(wim_eval(c1, b, nb, l1, 0, err, sizeof err) == 0);
    CHECK(wim_eval(c2, a, na, NULL, 0, err, sizeof err) == 0);
    CHECK(wim_eval(c2, b, nb, l2, 0, err, sizeof err) == 0);
    CHECK(memcmp(l1, l2, 512 * sizeof(float)) == 0);
    CHECK(wim_ctx_kv_crc(c1) == wim_ctx_kv_crc(c2));
    free(l1);
    free(l2);
    wim_ctx_free(c1);
    wim_ctx_free(c2);
    wim_model_free(m);
}

static void test_margin_no_trace_plain(void) {
    margin_leaves_no_trace(512, -1, 300, 40, 64);
}
static void test_margin_no_trace_wrapped(void) {
    margin_leaves_no_trace(128, 8, 300, 40, 32);
}

/* 20,000 tokens through a 2,048-cell window: the accounted KV and scratch
 * peaks are the same as for 2,500 tokens. */
static void test_streaming_bounded_memory(void) {
    wim_model *m = load_stories();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    size_t peaks[2][2];
    int lens[2] = {2500, 20000}; /* both past the 2,048-cell window */
    const char *quick = getenv("WIM_TEST_QUICK");
    if (quick && atoi(quick) > 0) lens[1] = 6000; /* sanitizer builds: same paths, fewer laps */
    int32_t *t = malloc(20000 * sizeof *t);
    fill(t, 20000, 5);
    t[0] = 1;
    for (int r = 0; r < 2; r++) {
        wim_ctx_params p = wim_ctx_default_params();
        p.n_ctx = 2048;
        p.kv_pin = 16;
        p.chunk = 512;
        p.n_threads = 2; /* scratch has a slice per thread; the default follows the load */
        wim_ctx *c;
        char err[256];
        CHECK(wim_ctx_new(m, &p, &c, err, sizeof err) == 0);
        float logits[512];
        CHECKF(wim_eval(c, t, lens[r], logits, 0, err, sizeof err) == 0, "%s", err);
        CHECK(wim_ctx_pos(c) == lens[r] && c->kv.cells == 2048 + 511); /* chunk - 1 extra */
        CHECK(c->kv.n == (lens[r] < c->kv.cells ? lens[r] : c->kv.cells));
        wim_mem_report rep;
        wim_ctx_memory(c, &rep);
        peaks[r][0] = rep.kv_peak;
        peaks[r][1] = rep.scratch_peak;
        wim_ctx_free(c);
    }
    free(t);
    CHECKF(peaks[0][0] == peaks[1][0] && peaks[0][1] == peaks[1][1],
           "peaks differ: kv %zu vs %zu, scratch %zu vs %zu", peaks[0][0], peaks[1][0], peaks[0][1],
           peaks[1][1]);
    wim_model_free(m);
}

static wim_ctx *stream_ctx(wim_model *m, int capacity, int pin, int chunk) {
    wim_ctx_params p = wim_ctx_default_params();
    p.n_ctx = capacity;
    p.kv_pin = pin;
    p.chunk = chunk;
    p.kv_type = WIM_KV_F32; /* f16 rounding would amplify reassociation noise */
    wim_ctx *c = NULL;
    char err[256];
    if (wim_ctx_new(m, &p, &c, err, sizeof err)) t_set(1, "%s", err);
    return c;
}

/* Largest |a - b| / max(1, max |b|) over rows of V logits. */
static double max_rel_diff(const float *a, const float *b, int rows, int V) {
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double scale = 1;
        for (int i = 0; i < V; i++)
            scale = fmax(scale, fabs(b[(size_t)r * V + i]));
        for (int i = 0; i < V; i++)
            worst = fmax(worst, fabs(a[(size_t)r * V + i] - b[(size_t)r * V + i]) / scale);
    }
    return worst;
}

/* Streaming prefill of a prompt three times the window gives the logits of
 * token-by-token feeding (every query sees the pinned cells and the last
 * C - pin positions) whatever the chunk size, and so does decoding after it;
 * only float reassociation in the matrix products may differ. */
static void test_streaming_prefill_chunk_invariant(void) {
    wim_model *m = load_stories();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    enum { C = 128, N = 400, D = 12, V = 512 };
    const int pins[2] = {8, 0}, chunks[5] = {1, 7, C - 1, C, N};
    int32_t t[N + D];
    fill(t, N + D, 21);
    t[0] = 1;
    float *ref = malloc((size_t)(N + D) * V * sizeof *ref);
    float *got = malloc((size_t)(N + D) * V * sizeof *got);
    char err[256];
    for (int pi = 0; pi < 2; pi++)
        for (int ci = 0; ci < 5; ci++) {
            wim_ctx *c = stream_ctx(m, C, pins[pi], chunks[ci]);
            if (!c) continue;
            float *l = ci ? got : ref;
            CHECKF(wim_eval(c, t, N, l, 1, err, sizeof err) == 0, "%s", err);
            for (int i = 0; i < D; i++) /* decode after the prefill */
                CHECK(wim_eval(c, t + N + i, 1, l + (size_t)(N + i) * V, 0, err, sizeof err) == 0);
            wim_ctx_free(c);
            if (!ci) continue;
            double d = max_rel_diff(got, ref, N + D, V);
            CHECKF(d < 1e-4, "pin %d, chunk %d: logits differ from chunk 1 by %.3g (relative)",
                   pins[pi], chunks[ci], d);
        }
    free(ref);
    free(got);
    wim_model_free(m);
}

/* The physical state: every cell's K, V, position and token, and the ring. */
static int same_physical(const wim_kvcache *a, const wim_kvcache *b) {
    size_t bytes = (size_t)a->n_layer * a->cells * a->kv_dim * a->elem;
    return a->n == b->n && a->head == b->head && a->next_pos == b->next_pos &&
           !memcmp(a->k, b->k, bytes) && !memcmp(a->v, b->v, bytes) &&
           !memcmp(a->pos, b->pos, (size_t)a->n * 4) && !memcmp(a->tok, b->tok, (size_t)a->n * 4);
}

static wim_kvcache copy_cache(const wim_kvcache *a) {
    wim_kvcache c = *a;
    size_t bytes = (size_t)a->n_layer * a->cells * a->kv_dim * a->elem;
    c.k = malloc(bytes);
    c.v = malloc(bytes);
    c.pos = malloc((size_t)a->cells * 4);
    c.tok = malloc((size_t)a->cells * 4);
    memcpy(c.k, a->k, bytes);
    memcpy(c.v, a->v, bytes);
    memcpy(c.pos, a->pos, (size_t)a->n * 4);
    memcpy(c.tok, a->tok, (size_t)a->n * 4);
    return c;
}

static void free_copy(wim_kvcache *c) {
    free(c->k);
    free(c->v);
    free(c->pos);
    free(c->tok);
}

/* After a streamed prefill (the ring already lapped, extra cells in use):
 * snapshot, decode token by token and prefill a chunk past a whole window
 * (with a nested snapshot), restore: every byte of the cache is back, and
 * what follows is bit for bit what follows without the detour. */
static void test_streaming_snapshot_after_prefill_exact(void) {
    wim_model *m = load_stories();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    enum { C = 128, PIN = 8, CHUNK = 48, N = 300, V = 512 };
    int32_t t[N], junk[200], after[20];
    fill(t, N, 31);
    fill(junk, 200, 32);
    fill(after, 20, 33);
    t[0] = 1;
    wim_ctx *c1 = stream_ctx(m, C, PIN, CHUNK), *c2 = stream_ctx(m, C, PIN, CHUNK);
    if (!c1 || !c2) {
        wim_ctx_free(c1);
        wim_ctx_free(c2);
        wim_model_free(m);
        return;
    }
    char err[256];
    float l1[V], l2[V];
    CHECK(wim_eval(c1, t, N, NULL, 0, err, sizeof err) == 0);
    CHECK(wim_eval(c2, t, N, NULL, 0, err, sizeof err) == 0);
    CHECK(c1->kv.cells == C + CHUNK - 1 && c1->kv.n == c1->kv.cells);
    wim_kvcache before = copy_cache(&c1->kv);
    uint32_t crc = wim_ctx_kv_crc(c1);
    CHECK(wim_ctx_snapshot(c1) == 0);
    for (int i = 0; i < 60; i++)
        CHECK(wim_eval(c1, junk + i, 1, l1, 0, err, sizeof err) == 0);
    CHECK(wim_ctx_snapshot(c1) == 0);
    CHECK(wim_eval(c1, junk + 60, 140, l1, 0, err, sizeof err) == 0);
    CHECK(wim_ctx_restore(c1) == 0);
    CHECK(wim_eval(c1, junk, 30, l1, 0, err, sizeof err) == 0);
    CHECK(wim_ctx_restore(c1) == 0);
    CHECK(same_physical(&c1->kv, &before));
    CHECK(wim_ctx_kv_crc(c1) == crc);
    for (int i = 0; i < 20; i++) {
        CHECK(wim_eval(c1, after + i, 1, l1, 0, err, sizeof err) == 0);
        CHECK(wim_eval(c2, after + i, 1, l2, 0, err, sizeof err) == 0);
        CHECKF(memcmp(l1, l2, sizeof l1) == 0, "decode step %d after restore differs", i);
    }
    CHECK(same_physical(&c1->kv, &c2->kv));
    free_copy(&before);
    wim_ctx_free(c1);
    wim_ctx_free(c2);
    wim_model_free(m);
}

/* A streamed cache saved from a context with one prefill chunk loads into
 * contexts with others (a different number of physical cells): same CRC, the
 * same file when saved again, and decoding continues bit for bit alike. */
static void test_streaming_save_load_across_chunks(void) {
    wim_model *m = load_stories();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    enum { C = 128, PIN = 8, N = 300, V = 512 };
    int32_t t[N + 30];
    fill(t, N + 30, 41);
    t[0] = 1;
    char dir[] = "/tmp/wim-test-kv-XXXXXX", a[64], b[64], err[256];
    if (!mkdtemp(dir)) SKIP("cannot create a temporary directory");
    snprintf(a, sizeof a, "%s/a.kv", dir);
    snprintf(b, sizeof b, "%s/b.kv", dir);
    const int chunks[3] = {100, 1, 7};
    wim_ctx *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = stream_ctx(m, C, PIN, chunks[i]);
    if (c[0] && c[1] && c[2]) {
        CHECK(wim_eval(c[0], t, N, NULL, 0, err, sizeof err) == 0);
        CHECKF(wim_ctx_save(c[0], a, err, sizeof err) == 0, "%s", err);
        for (int i = 1; i < 3; i++) {
            CHECKF(wim_ctx_load(c[i], a, err, sizeof err) == 0, "%s", err);
            CHECK(wim_ctx_kv_crc(c[i]) == wim_ctx_kv_crc(c[0]) && wim_ctx_pos(c[i]) == N);
        }
        CHECKF(wim_ctx_save(c[1], b, err, sizeof err) == 0, "%s", err);
        FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
        int same = fa && fb;
        while (same) {
            int x = fgetc(fa), y = fgetc(fb);
            same = x == y;
            if (x == EOF) break;
        }
        CHECKF(same, "the cache saved again after loading is not the same file");
        if (fa) fclose(fa);
        if (fb) fclose(fb);
        for (int s = 0; s < 30; s++) { /* past a quarter of the window, lapping the ring */
            float l[3][V];
            for (int i = 0; i < 3; i++)
                CHECK(wim_eval(c[i], t + N + s, 1, l[i], 0, err, sizeof err) == 0);
            CHECKF(!memcmp(l[0], l[1], sizeof l[0]) && !memcmp(l[0], l[2], sizeof l[0]),
                   "decode step %d differs between chunk sizes after loading", s);
        }
        CHECK(wim_ctx_kv_crc(c[0]) == wim_ctx_kv_crc(c[1]));
        CHECK(wim_ctx_kv_crc(c[0]) == wim_ctx_kv_crc(c[2]));
    }
    for (int i = 0; i < 3; i++)
        wim_ctx_free(c[i]);
    remove(a);
    remove(b);
    rmdir(dir);
    wim_model_free(m);
}

/* Materialised attention is the same function as the tiled one (streaming:
 * the same window mask, checked at every position). */
static void materialized_matches_tiled(int capacity, int pin, int n, int chunk) {
    wim_model *m = load_stories();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    int32_t t[700];
    fill(t, n, 9);
    t[0] = 1;
    float *l[2];
    for (int mode = 0; mode < 2; mode++) {
        l[mode] = malloc((size_t)n * 512 * sizeof(float));
        wim_ctx_params p = wim_ctx_default_params();
        p.n_ctx = capacity;
        p.kv_pin = pin;
        p.chunk = chunk;
        p.attn_materialize = mode;
        p.kv_type = WIM_KV_F32; /* f16 rounding would amplify reassociation noise */
        wim_ctx *c;
        char err[256];
        CHECK(wim_ctx_new(m, &p, &c, err, sizeof err) == 0);
        CHECK(wim_eval(c, t, n, l[mode], 1, err, sizeof err) == 0);
        wim_ctx_free(c);
    }
    for (size_t i = 0; i < (size_t)n * 512; i++) /* the last position as tight as ever */
        CHECKF(fabs(l[0][i] - l[1][i]) <
                   (i / 512 == (size_t)n - 1 ? 1e-5 : 1e-4) * fmax(1.0, fabs(l[0][i])),
               "position %zu, logit %zu: %g vs %g", i / 512, i % 512, l[0][i], l[1][i]);
    free(l[0]);
    free(l[1]);
    wim_model_free(m);
}

static void test_materialized_matches_tiled(void) {
    materialized_matches_tiled(256, -1, 200, 50);
}
static void test_materialized_matches_tiled_streaming(void) {
    materialized_matches_tiled(128, 8, 300, 50);
}
/* past one span (attention.h): the spans' merge is still the textbook softmax */
static void test_materialized_matches_tiled_spans(void) {
    materialized_matches_tiled(1024, -1, 700, 128);
}
static void test_materialized_matches_tiled_spans_streaming(void) {
    materialized_matches_tiled(600, 8, 700, 128);
}

int main(void) {
    char err[128];
    if (wim_kernels_init(err, sizeof err)) {
        printf("FAIL kernels: %s\n", err);
        return 1;
    }
    RUN(test_snapshot_property_plain);
    RUN(test_snapshot_property_streaming_f16);
    RUN(test_snapshot_property_streaming_f32);
    RUN(test_ring_pins_and_overwrites_oldest);
    RUN(test_margin_no_trace_plain);
    RUN(test_margin_no_trace_wrapped);
    RUN(test_streaming_attention_window);
    RUN(test_streaming_bounded_memory);
    RUN(test_streaming_prefill_chunk_invariant);
    RUN(test_streaming_snapshot_after_prefill_exact);
    RUN(test_streaming_save_load_across_chunks);
    RUN(test_materialized_matches_tiled);
    RUN(test_materialized_matches_tiled_streaming);
    RUN(test_materialized_matches_tiled_spans);
    RUN(test_materialized_matches_tiled_spans_streaming);
    return t_exit();
}
