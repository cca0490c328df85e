/*
 * test_branches.c — KV branches (margins decoded together) compute exactly what
 * the paper's snapshot / append / restore loop computes.
 *
 * A trunk of tokens is prefilled; two branches fork at different positions and
 * are fed in one mixed batch. Each branch's logits must equal, bit for bit,
 * those of a fresh context holding only the trunk up to its fork and then the
 * branch's tokens; a token planted in the trunk past a fork must not change
 * that branch at all; the trunk's CRC is the same before and after; and 1 and
 * 2 threads agree. On random Q8_0 and F16 models (made with `wim mkmodel`, so
 * $WIM_BIN must be set, as tests/run.sh does) with f16 and f32 KV. And margins
 * decoding together past a long trunk, whose attention splits by span across
 * threads, give the same bits as each branch decoded alone on one thread.
 */
#include <unistd.h>

#include "context.h"
#include "test.h"
#include "wim.h"

#define TRUNK 150
#define FORK1 70
#define FORK2 140
#define BLEN 24

static char dir[] = "/tmp/wim-branches-XXXXXX";

/* A random model of the given weight type and shape, written once per name. */
static wim_model *model_shaped(const char *name, const char *type, const char *shape) {
    const char *bin = getenv("WIM_BIN");
    char path[256], cmd[1024], err[256];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    if (!t_file_exists(path)) {
        if (!bin) return NULL;
        snprintf(cmd, sizeof cmd,
                 "'%s' mkmodel --vocab-from '%s/vocab/ggml-vocab-llama-spm.gguf' -o '%s' --type %s "
                 "%s --layers 2 --seed 11 --ctx 1024 >/dev/null 2>&1",
                 bin, t_shared(), path, type, shape);
        if (system(cmd) != 0) return NULL;
    }
    wim_model *m;
    return wim_model_load(path, &m, err, sizeof err) ? NULL : m;
}

static wim_model *model(const char *type) {
    return model_shaped(type, type, "--dim 64 --heads 4 --kv-heads 2 --ff 128");
}

static void tokens(int32_t *t, int n, uint32_t seed, int vocab) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = 3 + (int32_t)((seed >> 8) % (uint32_t)(vocab - 3));
    }
}

static wim_ctx *context(const wim_model *m, enum wim_kv_type kv, int threads) {
    wim_ctx_params p = wim_ctx_default_params();
    p.n_ctx = 256;
    p.chunk = 32;
    p.kv_type = kv;
    p.n_threads = threads;
    char err[256];
    wim_ctx *c;
    return wim_ctx_new(m, &p, &c, err, sizeof err) ? NULL : c;
}

/* The reference: the trunk up to fork, then the branch's tokens, in a context of its own. */
static int reference(const wim_model *m, enum wim_kv_type kv, const int32_t *trunk, int fork,
                     const int32_t *b, float *logits) {
    wim_ctx *c = context(m, kv, 1);
    char err[256];
    int rc = !c || wim_eval(c, trunk, fork, NULL, 0, err, sizeof err) ||
             wim_eval(c, b, BLEN, logits, 1, err, sizeof err);
    wim_ctx_free(c);
    return rc ? -1 : 0;
}

/* Both branches fed in one mixed batch (alternating tokens) after the trunk;
 * row i of out1 / out2 are the logits after branch token i. */
static int branched(const wim_model *m, enum wim_kv_type kv, int threads, const int32_t *trunk,
                    const int32_t *b1, const int32_t *b2, float *out1, float *out2,
                    uint32_t crc[2]) {
    const int V = wim_model_n_vocab(m);
    wim_ctx *c = context(m, kv, threads);
    char err[256];
    int32_t tok[2 * BLEN];
    int br[2 * BLEN];
    char want[2 * BLEN];
    const int forks[2] = {FORK1, FORK2}, cells[2] = {BLEN, BLEN};
    for (int i = 0; i < BLEN; i++) {
        tok[2 * i] = b1[i], br[2 * i] = 0;
        tok[2 * i + 1] = b2[i], br[2 * i + 1] = 1;
        want[2 * i] = want[2 * i + 1] = 1;
    }
    float *rows = malloc((size_t)2 * BLEN * V * sizeof *rows);
    int rc = !c || !rows || wim_eval(c, trunk, TRUNK, NULL, 0, err, sizeof err);
    if (!rc) crc[0] = wim_ctx_kv_crc(c);
    rc = rc || ctx_branches_open(c, 2, forks, cells, err, sizeof err) ||
         ctx_eval_branches(c, tok, br, 2 * BLEN, want, rows, err, sizeof err);
    if (!rc) {
        ctx_branches_close(c);
        crc[1] = wim_ctx_kv_crc(c);
        for (int i = 0; i < BLEN; i++) {
            memcpy(out1 + (size_t)i * V, rows + (size_t)(2 * i) * V, (size_t)V * sizeof *rows);
            memcpy(out2 + (size_t)i * V, rows + (size_t)(2 * i + 1) * V, (size_t)V * sizeof *rows);
        }
    }
    free(rows);
    wim_ctx_free(c);
    return rc ? -1 : 0;
}

static void check_type(const char *type, enum wim_kv_type kv) {
    wim_model *m = model(type);
    if (!m) SKIP("cannot make a random %s model (WIM_BIN, the llama-spm vocab)", type);
    const int V = wim_model_n_vocab(m);
    const size_t n = (size_t)BLEN * V;
    int32_t trunk[TRUNK], planted[TRUNK], b1[BLEN], b2[BLEN];
    tokens(trunk, TRUNK, 1, V);
    tokens(b1, BLEN, 2, V);
    tokens(b2, BLEN, 3, V);
    memcpy(planted, trunk, sizeof trunk);
    planted[FORK1 + 5] = (trunk[FORK1 + 5] + 1) % V; /* only the later segment has it */
    float *ref1 = malloc(n * 4), *ref2 = malloc(n * 4), *a1 = malloc(n * 4), *a2 = malloc(n * 4);
    float *p1 = malloc(n * 4), *p2 = malloc(n * 4);
    uint32_t crc[2], crc2[2], crcp[2];
    int ok = ref1 && ref2 && a1 && a2 && p1 && p2 && !reference(m, kv, trunk, FORK1, b1, ref1) &&
             !reference(m, kv, trunk, FORK2, b2, ref2);
    int one = ok && !branched(m, kv, 1, trunk, b1, b2, a1, a2, crc);
    int same1 = one && !memcmp(a1, ref1, n * 4) && !memcmp(a2, ref2, n * 4);
    int two = ok && !branched(m, kv, 2, trunk, b1, b2, a1, a2, crc2);
    int same2 = two && !memcmp(a1, ref1, n * 4) && !memcmp(a2, ref2, n * 4);
    int plant = ok && !branched(m, kv, 1, planted, b1, b2, p1, p2, crcp);
    int blind = plant && !memcmp(p1, ref1, n * 4);
    int sees = plant && memcmp(p2, ref2, n * 4) != 0; /* the planted token is before fork 2 */
    free(ref1), free(ref2), free(a1), free(a2), free(p1), free(p2);
    wim_model_free(m);
    CHECKF(ok && one && two && plant, "%s: a run failed", type);
    CHECKF(same1, "%s: branch logits differ from the trunk-then-branch reference", type);
    CHECKF(same2, "%s: 2 threads differ from the reference", type);
    CHECKF(crc[0] == crc[1] && crc2[0] == crc2[1], "%s: branches changed the trunk's cells", type);
    CHECKF(blind, "%s: a branch saw a token planted past its fork", type);
    CHECKF(sees, "%s: the token planted before fork 2 changed nothing (vacuous test)", type);
}

static void test_branches_equal_trunk_append_q8_0_kv_f16(void) {
    check_type("q8_0", WIM_KV_F16);
}
static void test_branches_equal_trunk_append_q8_0_kv_f32(void) {
    check_type("q8_0", WIM_KV_F32);
}
static void test_branches_equal_trunk_append_f16_kv_f16(void) {
    check_type("f16", WIM_KV_F16);
}
static void test_branches_equal_trunk_append_f16_kv_f32(void) {
    check_type("f16", WIM_KV_F32);
}

/* A branch takes no more cells than it was given, a fork past the trunk is refused, and the
 * branches' memory is exactly their cells (K and V of every layer, position, token). */
static void test_branch_limits(void) {
    wim_model *m = model("q8_0");
    if (!m) SKIP("cannot make a random q8_0 model");
    wim_ctx *c = context(m, WIM_KV_F16, 1);
    char err[256];
    int32_t t[8] = {5, 6, 7, 8, 9, 10, 11, 12};
    int br[8] = {0}, fork = 4, bad = 9, cells = 2;
    int rc_eval = !c || wim_eval(c, t, 8, NULL, 0, err, sizeof err);
    int rc_bad = c ? ctx_branches_open(c, 1, &bad, &cells, err, sizeof err) : 0;
    wim_mem_report before, after, closed;
    if (c) wim_ctx_memory(c, &before);
    int rc_open = c ? ctx_branches_open(c, 1, &fork, &cells, err, sizeof err) : -1;
    if (c) wim_ctx_memory(c, &after);
    size_t per_cell = c ? kv_cell_bytes(&c->kv) + 2 * sizeof(int32_t) : 0;
    int rc_full = c ? ctx_eval_branches(c, t, br, 3, NULL, NULL, err, sizeof err) : 0;
    if (c) ctx_branches_close(c), wim_ctx_memory(c, &closed);
    wim_ctx_free(c);
    wim_model_free(m);
    CHECK(rc_eval == 0);
    CHECK(rc_bad == -1);
    CHECK(rc_open == 0);
    CHECKF(rc_full == -1 && strstr(err, "full"), "3 tokens into a branch of 2 cells: %s", err);
    CHECKF(after.kv_bytes - before.kv_bytes == (size_t)cells * per_cell,
           "2 branch cells took %zu bytes, not %zu", after.kv_bytes - before.kv_bytes,
           (size_t)cells * per_cell);
    CHECK(closed.kv_bytes == before.kv_bytes);
}

/* Margins decoding together past a long trunk, on several threads: each decode step's
 * attention splits by span (forward.c) and still gives, bit for bit, each branch decoded
 * alone after its trunk on one thread. One KV head and 8 x 64-wide heads, so the split's
 * work threshold is passed; F16 weights, so no int8 rounding hides a last-bit change. */
static void test_branch_decode_split(void) {
    enum { T = 640, B = 6 };
    wim_model *m = model_shaped("mqa-f16", "f16", "--dim 512 --heads 8 --kv-heads 1 --ff 256");
    if (!m) SKIP("cannot make a random f16 model (WIM_BIN, the llama-spm vocab)");
    const int V = wim_model_n_vocab(m), forks[2] = {300, T - 10}, cells[2] = {B, B};
    int32_t trunk[T], b[2][B];
    tokens(trunk, T, 4, V);
    tokens(b[0], B, 5, V);
    tokens(b[1], B, 6, V);
    float *ref = malloc((size_t)2 * B * V * 4), *got = malloc((size_t)2 * B * V * 4);
    char err[256];
    int ok = ref && got;
    for (int k = 0; ok && k < 2; k++) { /* the reference: trunk to the fork, then the branch */
        wim_ctx_params p = wim_ctx_default_params();
        p.n_ctx = 1024, p.n_threads = 1;
        wim_ctx *c;
        ok = !wim_ctx_new(m, &p, &c, err, sizeof err);
        ok = ok && !wim_eval(c, trunk, forks[k], NULL, 0, err, sizeof err);
        for (int i = 0; ok && i < B; i++) /* one token a step, as decode */
            ok = !wim_eval(c, &b[k][i], 1, ref + (size_t)(2 * i + k) * V, 0, err, sizeof err);
        if (c) wim_ctx_free(c);
    }
    wim_ctx_params p = wim_ctx_default_params();
    p.n_ctx = 1024, p.n_threads = 3;
    wim_ctx *c = NULL;
    ok = ok && !wim_ctx_new(m, &p, &c, err, sizeof err) &&
         !wim_eval(c, trunk, T, NULL, 0, err, sizeof err) &&
         !ctx_branches_open(c, 2, forks, cells, err, sizeof err);
    for (int i = 0; ok && i < B; i++) { /* both branches' next tokens in one step */
        const int32_t tok[2] = {b[0][i], b[1][i]};
        const int br[2] = {0, 1};
        const char want[2] = {1, 1};
        ok = !ctx_eval_branches(c, tok, br, 2, want, got + (size_t)2 * i * V, err, sizeof err);
    }
    const int same = ok && !memcmp(ref, got, (size_t)2 * B * V * 4);
    wim_ctx_free(c);
    free(ref), free(got);
    wim_model_free(m);
    CHECKF(ok, "a run failed: %s", err);
    CHECK(same);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    RUN(test_branches_equal_trunk_append_q8_0_kv_f16);
    RUN(test_branches_equal_trunk_append_q8_0_kv_f32);
    RUN(test_branches_equal_trunk_append_f16_kv_f16);
    RUN(test_branches_equal_trunk_append_f16_kv_f32);
    RUN(test_branch_limits);
    RUN(test_branch_decode_split);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return t_failures ? 1 : 0;
}
