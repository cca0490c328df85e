/*
 * test_kvcache.c — the ring-buffer KV cache: snapshots restore exactly under
 * thousands of random operations, margins leave no trace in the logits (plain
 * and wrapped regimes), streaming runs in bounded memory.
 */
#include <zlib.h>

#include "forward.h"
#include "kvcache.h"
#include "model.h"
#include "simd.h"
#include "test.h"
#include "wim.h"

enum { LAYERS = 3, DIM = 8, MAX_DEPTH = 6 };

typedef struct {
    uint32_t whole;
    int n;
    uint32_t *cells; /* per live cell */
} picture;

static uint32_t cell_crc(const wim_kvcache *kv, int s) {
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, (const Bytef *)&kv->pos[s], 4);
    c = crc32(c, (const Bytef *)&kv->tok[s], 4);
    for (int l = 0; l < kv->n_layer; l++) {
        c = crc32(c, kv_k(kv, l, s), (uInt)(kv->kv_dim * kv->elem));
        c = crc32(c, kv_v(kv, l, s), (uInt)(kv->kv_dim * kv->elem));
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
    CHECK(kv_init(&kv, &mem, LAYERS, DIM, 96, streaming ? 5 : 0, streaming, type, err,
                  sizeof err) == 0);
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
    CHECK(kv.n <= kv.capacity);
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
    CHECK(kv_init(&kv, &mem, 1, 2, 8, 2, 1, WIM_KV_F32, err, sizeof err) == 0);
    int slots[8];
    int32_t toks[8] = {0};
    CHECK(kv_claim(&kv, 6, toks, slots) == 0 && kv_claim(&kv, 2, toks, slots) == 0 && kv.n == 8);
    CHECK(kv_claim(&kv, 3, toks, slots) == 0);
    CHECK(slots[0] == 2 && slots[1] == 3 && slots[2] == 4); /* oldest unpinned first */
    CHECK(kv.pos[0] == 0 && kv.pos[1] == 1 && kv.pos[2] == 8 && kv.pos[4] == 10);
    CHECK(kv_claim(&kv, 7, toks, slots) == -1); /* more than the window in one claim */
    CHECK(kv_claim(&kv, 6, toks, slots) == 0 && slots[3] == 2); /* wrapped back to the pin */
    kv_free(&kv);
    CHECK(kv_init(&kv, &mem, 1, 2, 4, 0, 0, WIM_KV_F32, err, sizeof err) == 0);
    CHECK(kv_claim(&kv, 4, toks, slots) == 0 && kv_claim(&kv, 1, toks, slots) == -1);
    kv_free(&kv);
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
        wim_ctx *c;
        char err[256];
        CHECK(wim_ctx_new(m, &p, &c, err, sizeof err) == 0);
        float logits[512];
        CHECKF(wim_eval(c, t, lens[r], logits, 0, err, sizeof err) == 0, "%s", err);
        CHECK(wim_ctx_pos(c) == lens[r] && c->kv.n == 2048);
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

/* Materialised attention is the same function as the tiled one. */
static void test_materialized_matches_tiled(void) {
    wim_model *m = load_stories();
    if (!m) SKIP("stories260K.gguf not found under %s", t_shared());
    int32_t t[200];
    fill(t, 200, 9);
    t[0] = 1;
    float l[2][512];
    for (int mode = 0; mode < 2; mode++) {
        wim_ctx_params p = wim_ctx_default_params();
        p.n_ctx = 256;
        p.chunk = 50;
        p.attn_materialize = mode;
        p.kv_type = WIM_KV_F32; /* f16 rounding would amplify reassociation noise */
        wim_ctx *c;
        char err[256];
        CHECK(wim_ctx_new(m, &p, &c, err, sizeof err) == 0);
        CHECK(wim_eval(c, t, 200, l[mode], 0, err, sizeof err) == 0);
        wim_ctx_free(c);
    }
    for (int i = 0; i < 512; i++)
        CHECKF(fabs(l[0][i] - l[1][i]) < 1e-5 * fmax(1.0, fabs(l[0][i])), "logit %d: %g vs %g", i,
               l[0][i], l[1][i]);
    wim_model_free(m);
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
    RUN(test_streaming_bounded_memory);
    RUN(test_materialized_matches_tiled);
    return t_exit();
}
