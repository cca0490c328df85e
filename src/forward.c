/*
 * forward.c — the transformer forward pass over a chunk of tokens.
 *
 * Owns: wim_ctx (KV cache + scratch sized for one chunk), the matrix-product
 * dispatch by weight type, RoPE, RMSNorm, SwiGLU and the layer loop. Read
 * forward_team() top to bottom to follow one pass through the model. An
 * optional trace (wim_trace) only reads what the pass computes.
 *
 * Threads: a pass runs on one team of threads from start to end (one parallel
 * region per pass, not per matrix). Its helpers share their loops out with
 * orphaned `omp for` and meet at barriers only where data crosses threads:
 * before a product reads its input rows, after it writes its outputs, and
 * before attention reads every token's keys. Row work (norms, quantizing,
 * gating, residual adds) is `schedule(static) nowait` over the tokens, so a
 * token's row stays on one thread from stage to stage and needs no barrier
 * between them.
 *
 * Invariants:
 *  - Output rows of every matrix product are split into fixed tiles of
 *    MM_TILE rows; a tile is always computed by one kernel call with the same
 *    arguments, so results do not depend on the number of threads.
 *  - Scratch is sized once for `chunk` tokens; prefill of any length runs in
 *    chunks, so scratch never grows with the context.
 */
#include <cblas.h>
#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "context.h"
#include "error.h"
#include "model.h"
#include "quants.h"
#include "simd.h"
#include "tiles.h"

#define MM_TILE 64 /* output rows per kernel call (a multiple of 8: interleaved groups) */
/* A decode step of up to SPLIT_TOKENS tokens splits its attention by span too; its
 * span states are computed ATTN_WAVE query groups at a time (one shared loop),
 * which bounds their scratch whatever the context length */
#define SPLIT_TOKENS 4
#define ATTN_WAVE 32
/* Below this many multiply-adds in its largest product a pass runs on one thread:
 * its barriers would cost more than they save (and on a busy machine wait for a
 * descheduled thread). */
#define PARALLEL_MIN_WORK (1L << 18)

wim_ctx_params wim_ctx_default_params(void) {
    wim_ctx_params p = {0, 0, 512, WIM_KV_F16, -1, 0};
    return p;
}

/* Carves the chunk scratch out of one counted block: returns its size, and
 * sets the pointers when base is not NULL. */
static size_t layout_scratch(wim_ctx *c, uint8_t *base) {
    const wim_config *cf = &c->m->cfg;
    const size_t T = (size_t)c->p.chunk, d = (size_t)cf->n_embd, ff = (size_t)cf->n_ff;
    const size_t qd = (size_t)cf->n_head * cf->head_dim, kvd = (size_t)cf->n_head_kv * cf->head_dim;
    size_t max_in = d > ff ? d : ff, off = 0;
    if (qd > max_in) max_in = qd;
    int fused = c->m->layers[0].wqkv.data != NULL;
#define CARVE(ptr, bytes)                                                                          \
    do {                                                                                           \
        if (base) ptr = (void *)(base + off);                                                      \
        off += ((bytes) + 63) / 64 * 64;                                                           \
    } while (0)
    CARVE(c->x, T * d * 4);
    CARVE(c->xb, T * d * 4);
    CARVE(c->xb2, T * d * 4);
    CARVE(c->q, T * qd * 4);
    CARVE(c->k, T * kvd * 4);
    CARVE(c->v, T * kvd * 4);
    CARVE(c->att, T * qd * 4);
    CARVE(c->hb, T * 2 * ff * 4); /* room for a fused gate|up product */
    CARVE(c->hb2, T * ff * 4);
    /* activations quantized for the int8 products: Q8_0 blocks, or Q8_K for the K-quants */
    size_t xq8 = (max_in / QK8_0 + 1) * sizeof(block_q8_0),
           xqk = (max_in / QK8_K + 1) * sizeof(block_q8_K);
    CARVE(c->xq, T * (xq8 > xqk ? xq8 : xqk));
    /* per thread: the block's tiles and states, then its query list */
    const int group = cf->n_head / cf->n_head_kv;
    /* rounded to 16 floats so every thread's area and its query list stay aligned */
    c->att_query_offset =
        (attn_block_scratch_floats(cf->head_dim, ATTN_QBLOCK * group) + 15) & ~(size_t)15;
    c->att_scratch_floats =
        (c->att_query_offset + (ATTN_QBLOCK * group * sizeof(attn_query) + 3) / 4 + 15) &
        ~(size_t)15;
    CARVE(c->att_scratch, (size_t)c->p.n_threads * c->att_scratch_floats * 4);
    CARVE(c->att_spans, ATTN_WAVE * attn_part_floats(cf->head_dim, cf->n_head) * 4);
    CARVE(c->att_total, SPLIT_TOKENS * attn_part_floats(cf->head_dim, cf->n_head) * 4);
    CARVE(c->inv_freq, (size_t)(cf->n_rot / 2 + 1) * sizeof(double));
    CARVE(c->runs, (size_t)c->p.n_threads * sizeof(tile_run));
    CARVE(c->slots, T * sizeof(int));
    CARVE(c->tok_pos, T * sizeof(int));
    CARVE(c->tok_branch, T * sizeof(int));
    if (fused) CARVE(c->qkv, T * (qd + 2 * kvd) * 4);
#undef CARVE
    return off;
}

void wim_ctx_free(wim_ctx *c) {
    if (!c) return;
    kv_free(&c->kv);
    wim_mem_free(&c->mem, WIM_MEM_SCRATCH, c->scratch, c->scratch_size);
    free(c);
}

/* YaRN's dimension range between full interpolation and full extrapolation:
 * where the wavelength makes `rotations` turns over the original context. */
static double yarn_corr_dim(int n_rot, int orig_ctx, double rotations, double base) {
    return n_rot * log(orig_ctx / (rotations * 2 * M_PI)) / (2 * log(base));
}

/* The rotation speed of each dimension pair and the cos/sin multiplier, for a
 * context of n_ctx cells (LongRoPE picks its factors by it). See wim_rope_scaling. */
static void rope_frequencies(const wim_model *m, int n_ctx, double *inv_freq, float *mscale) {
    const wim_config *cf = &m->cfg;
    const float *longrope = NULL;
    if (cf->rope_scaling == WIM_ROPE_LONGROPE)
        longrope = n_ctx > cf->rope_orig_ctx ? m->rope_long : m->rope_short;
    /* YaRN's ramp, with beta_fast = 32 and beta_slow = 1 rotations as in the paper */
    double lo = floor(yarn_corr_dim(cf->n_rot, cf->rope_orig_ctx, 32, cf->rope_theta));
    double hi = ceil(yarn_corr_dim(cf->n_rot, cf->rope_orig_ctx, 1, cf->rope_theta));
    lo = lo > 0 ? lo : 0;
    hi = hi < cf->n_rot - 1 ? hi : cf->n_rot - 1;
    const double scale = 1.0 / cf->rope_scale;
    for (int i = 0; i < cf->n_rot / 2; i++) {
        double f_i = pow((double)cf->rope_theta, -2.0 * i / cf->n_rot);
        if (m->rope_freqs) f_i /= m->rope_freqs[i];
        if (longrope) f_i /= longrope[i];
        if (cf->rope_scaling == WIM_ROPE_YARN) {
            double y = (i - lo) / (hi - lo > 0.001 ? hi - lo : 0.001);
            double extrapolate = 1 - (y < 0 ? 0 : y > 1 ? 1 : y);
            inv_freq[i] = f_i * (scale * (1 - extrapolate) + extrapolate);
        } else
            inv_freq[i] = f_i * scale;
    }
    *mscale = cf->rope_attn_factor;
    if (cf->rope_scaling == WIM_ROPE_YARN)
        *mscale = (float)(cf->rope_attn_factor * (1 + 0.1 * log(cf->rope_scale)));
}

/* Threads of this process that are runnable now (OpenMP's workers spin for a while after
 * a parallel region: they are not another process's load). */
static int own_running_threads(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[64], line[256];
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/self/task/%.20s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        const char *close = fgets(line, sizeof line, f) ? strrchr(line, ')') : NULL;
        n += close && close[1] == ' ' && close[2] == 'R';
        fclose(f);
    }
    if (d) closedir(d);
    return n;
}

/* The threads to use when none are asked for: every core, less those other processes keep
 * busy right now (the kernel's count of runnable tasks, this process's aside). OpenMP
 * threads spin at barriers, so one that shares a core with a busy process stalls all the
 * others: on 2 cores with one busy, 2 threads made the demo 2.4x slower than 1
 * (bench/loaded.sh). A count far above the cores comes from a larger host than ours (a
 * container sees the host's): it is not ours to judge, and every core is used. */
static int default_threads(void) {
    const int cores = omp_get_num_procs();
    FILE *f = fopen("/proc/loadavg", "r");
    int running = 0, tasks = 0;
    if (f) {
        if (fscanf(f, "%*f %*f %*f %d/%d", &running, &tasks) != 2) running = 0;
        fclose(f);
    }
    int mine = own_running_threads(), others = running - (mine > 0 ? mine : 1);
    if (others < 0 || others >= 4 * cores) others = 0;
    return cores - others >= 1 ? cores - others : 1;
}

int wim_ctx_new(const wim_model *m, const wim_ctx_params *params, wim_ctx **out, char *err,
                size_t errlen) {
    *out = NULL;
    wim_ctx *c = calloc(1, sizeof *c);
    if (!c) return wim_errorf(err, errlen, "out of memory");
    const wim_config *cf = &m->cfg;
    c->m = m;
    c->p = params ? *params : wim_ctx_default_params();
    if (c->p.n_threads <= 0) c->p.n_threads = default_threads();
    if (c->p.chunk <= 0) c->p.chunk = 512;
    if (c->p.n_ctx <= 0) c->p.n_ctx = cf->n_ctx_train;
    int streaming = c->p.kv_pin >= 0;
    if (streaming && c->p.kv_pin >= c->p.n_ctx) {
        wim_errorf(err, errlen, "--kv-pin %d leaves no room in a KV cache of %d tokens",
                   c->p.kv_pin, c->p.n_ctx);
        free(c);
        return -1;
    }
    int room = streaming ? c->p.n_ctx - c->p.kv_pin : c->p.n_ctx;
    if (c->p.chunk > room) c->p.chunk = room; /* bounds the extra streaming cells too */
    c->kern = wim_kernels_get();
    c->scratch_size = layout_scratch(c, NULL);
    c->scratch = wim_mem_alloc(&c->mem, WIM_MEM_SCRATCH, c->scratch_size);
    if (!c->scratch) {
        wim_errorf(err, errlen, "out of memory for scratch buffers (chunk %d)", c->p.chunk);
        free(c);
        return -1;
    }
    layout_scratch(c, c->scratch);
    rope_frequencies(m, c->p.n_ctx, c->inv_freq, &c->rope_mscale);
    /* streaming: chunk - 1 extra cells, so every query of a chunk still sees its full window */
    if (kv_init(&c->kv, &c->mem, cf->n_layer, cf->n_head_kv, cf->head_dim, c->p.n_ctx,
                streaming ? c->p.kv_pin : 0, streaming, c->p.chunk, c->p.kv_type, err, errlen)) {
        wim_ctx_free(c);
        return -1;
    }
    openblas_set_num_threads(1); /* we thread over tiles ourselves */
    *out = c;
    return 0;
}

int wim_ctx_pos(const wim_ctx *c) {
    return c->kv.next_pos;
}
int wim_ctx_capacity(const wim_ctx *c) {
    return c->kv.capacity;
}
int wim_ctx_threads(const wim_ctx *c) {
    return c->p.n_threads;
}

void wim_ctx_reset(wim_ctx *c) {
    kv_clear(&c->kv);
}

int wim_ctx_set_trace(wim_ctx *c, wim_trace *t, char *err, size_t errlen) {
    const wim_config *cf = &c->m->cfg;
    c->trace = NULL;
    if (!t) return 0;
    if (t->layer < 0 || t->layer >= cf->n_layer)
        return wim_errorf(err, errlen, "trace: layer %d is outside 0..%d (the model has %d)",
                          t->layer, cf->n_layer - 1, cf->n_layer);
    if (t->head < 0 || t->head >= cf->n_head)
        return wim_errorf(err, errlen, "trace: head %d is outside 0..%d (the model has %d)",
                          t->head, cf->n_head - 1, cf->n_head);
    if (t->pos0 < 0 || t->n_pos < 1)
        return wim_errorf(err, errlen, "trace: no positions to record (%d from %d)", t->n_pos,
                          t->pos0);
    const size_t stages = 1 + 2 * (size_t)cf->n_layer, keys = (size_t)t->pos0 + t->n_pos;
    for (size_t i = 0; i < (size_t)t->n_pos * stages * 3; i++)
        t->resid[i] = -1.0f;
    for (size_t i = 0; i < (size_t)t->n_pos * keys; i++)
        t->attn[i] = -1.0f;
    c->trace = t;
    return 0;
}

/* What a weight type multiplies against: 0 the floats themselves, 1 block_q8_0
 * activations, 2 block_q8_K (the K-quants). */
static int activation_form(enum gguf_ttype type) {
    if (wim_q_is_k(type)) return 2;
    return type == GGUF_T_Q8_0 || wim_q_known(type) ? 1 : 0;
}

/* c->xq = x[M][K] quantized as `form` needs (row work: no barrier). */
static void quantize_rows(wim_ctx *c, int form, const float *x, int M, int K) {
    const wim_kernels *kern = c->kern;
    if (form == 0) return;
#pragma omp for schedule(static) nowait
    for (int i = 0; i < M; i++) {
        const float *xi = x + (size_t)i * K;
        if (form == 2)
            kern->quantize_q8_K(xi, (block_q8_K *)c->xq + (size_t)i * (K / QK8_K), K);
        else
            kern->quantize_q8_0(xi, c->xq + (size_t)i * (K / QK8_0), K);
    }
}

/* Fails the pass in hand with rc, keeping the reason found in the lowest layer
 * (rc = FORWARD_NON_FINITE - layer: the largest). Any thread may call it; the
 * layer loop reads pass_rc only after a barrier that follows every write. */
static void pass_fail(wim_ctx *c, int rc) {
    int cur = atomic_load_explicit(&c->pass_rc, memory_order_relaxed);
    while ((cur == 0 || rc > cur) &&
           !atomic_compare_exchange_weak_explicit(&c->pass_rc, &cur, rc, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

/* Output rows j0 .. j0+nn-1 of y = x · wᵀ: one kernel call (a tile; two for the tile of an
 * interleaved matrix that holds its last n_out % 8 rows, which stay row-major). */
static void matmul_tile(const wim_ctx *c, const wim_mat *w, const float *x, int M, int j0, int nn,
                        float *y, int ldy) {
    const wim_kernels *kern = c->kern;
    const int K = w->n_in;
    const void *wt = (const uint8_t *)w->data + (size_t)j0 * w->row_bytes;
    y += j0;
    if (w->interleaved) { /* tiles start at multiples of 8, so at a group */
        const int n8 = (w->n_out - w->n_out % 8) - j0;
        const int grouped = n8 < 0 ? 0 : n8 < nn ? n8 : nn;
        if (grouped) kern->gemm_x8(w->type, M, grouped, K, c->xq, wt, y, ldy);
        if (grouped == nn) return;
        wt = (const uint8_t *)wt + (size_t)grouped * w->row_bytes;
        y += grouped;
        nn -= grouped;
    }
    switch (w->type) {
    case GGUF_T_Q8_0:
        kern->gemm_q8_0(M, nn, K, c->xq, wt, y, ldy);
        break;
    case GGUF_T_F16:
        kern->gemm_f16(M, nn, K, x, wt, y, ldy);
        break;
    case GGUF_T_BF16:
        kern->gemm_bf16(M, nn, K, x, wt, y, ldy);
        break;
    default: /* Q4_0 .. Q6_K */
        kern->gemm_q(w->type, M, nn, K, c->xq, wt, w->row_bytes, y, ldy);
        break;
    case GGUF_T_F32:
        if (M >= 4) /* OpenBLAS pays off once weights are reused across rows */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, nn, K, 1.0f, x, K, wt, K, 0.0f,
                        y, ldy);
        else
            kern->gemm_f32(M, nn, K, x, wt, y, ldy);
        break;
    }
}

/* y[i][M][ldy[i]] (columns 0..w[i]->n_out) = x[M][K] · w[i]ᵀ for n <= 3 matrices that
 * read the same x (q, k, v; gate, up): x is quantized once, and the tiles of all of
 * them go out together (tiles.h). Called by every thread of the team; x's rows must be
 * those the thread's own row work wrote (schedule(static)) or be behind a barrier. Ends
 * with a barrier, so y is complete for every thread. */
static void matmul_n(wim_ctx *c, int n, const wim_mat *const *w, const float *x, int M,
                     float *const *y, const int *ldy) {
    const int K = w[0]->n_in, form = activation_form(w[0]->type);
    for (int i = 1; i < n; i++)
        if (activation_form(w[i]->type) != form) { /* mixed types: one at a time */
            for (int j = 0; j < n; j++)
                matmul_n(c, 1, &w[j], x, M, &y[j], &ldy[j]);
            return;
        }
    quantize_rows(c, form, x, M, K);
    int first[4] = {0}; /* matrix i's tiles are first[i] .. first[i+1]-1 */
    for (int i = 0; i < n; i++)
        first[i + 1] = first[i] + (w[i]->n_out + MM_TILE - 1) / MM_TILE;
    const int tiles = first[n], me = omp_get_thread_num(), team = omp_get_num_threads();
    if (me == 0) tile_runs_init(c->runs, team, tiles);
#pragma omp barrier
    for (int t; (t = tile_next(c->runs, team, me)) >= 0;) {
        int i = 0;
        while (t >= first[i + 1])
            i++;
        const int j0 = (t - first[i]) * MM_TILE, N = w[i]->n_out;
        matmul_tile(c, w[i], x, M, j0, N - j0 < MM_TILE ? N - j0 : MM_TILE, y[i], ldy[i]);
    }
#pragma omp barrier
}

/* y[M][ldy] (columns 0..w->n_out) = x[M][w->n_in] · wᵀ */
static void matmul(wim_ctx *c, const wim_mat *w, const float *x, int M, float *y, int ldy) {
    matmul_n(c, 1, &w, x, M, &y, &ldy);
}

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++)
        out[i] = x[i] * scale * w[i];
}

/* Whether the pass in hand has failed: called right after a product, whose closing
 * barrier follows every write so far, and before the next barrier, which every later
 * write follows, so all threads read the same and leave the pass together. */
static int pass_failed(wim_ctx *c) {
    return atomic_load_explicit(&c->pass_rc, memory_order_relaxed) != 0;
}

/* Whether any of n values is NaN or infinite. */
static int non_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 1;
    return 0;
}

/* A row that holds a NaN or an infinity fails the pass with rc, and is zeroed so
 * that no kernel reads it (the int8 kernels would quietly take it as 0, and
 * converting NaN to an integer is undefined); rc 0: no check. */
static void check_row(wim_ctx *c, float *row, int n, int rc) {
    if (!rc || !non_finite(row, (size_t)n)) return;
    pass_fail(c, rc);
    memset(row, 0, (size_t)n * sizeof(float));
}

/* out[M][d] = x's rows normalised by w (out may be x), checked with rc (row work). */
static void norm_rows(wim_ctx *c, float *out, const float *x, const float *w, int M, int d,
                      int rc) {
    const float eps = c->m->cfg.norm_eps;
#pragma omp for schedule(static) nowait
    for (int i = 0; i < M; i++) {
        rmsnorm(out + (size_t)i * d, x + (size_t)i * d, w, d, eps);
        check_row(c, out + (size_t)i * d, d, rc);
    }
}

/* x[M][d] += y[M][d], the residual stream, after gemma2's norm of y by post
 * (NULL: none); x's rows checked with rc (row work). */
static void add_rows(wim_ctx *c, float *x, float *y, const float *post, int M, int d, int rc) {
    const float eps = c->m->cfg.norm_eps;
#pragma omp for schedule(static) nowait
    for (int i = 0; i < M; i++) {
        float *xi = x + (size_t)i * d, *yi = y + (size_t)i * d;
        if (post) rmsnorm(yi, yi, post, d, eps);
        for (int j = 0; j < d; j++)
            xi[j] += yi[j];
        check_row(c, xi, d, rc);
    }
}

/* Rotates the first n_rot dims of each of n_heads head vectors at position pos. */
static void rope(float *v, int n_heads, int head_dim, int n_rot, int neox, const double *inv_freq,
                 float mscale, int pos) {
    for (int i = 0; i < n_rot / 2; i++) {
        double a = pos * inv_freq[i];
        float cs = (float)cos(a) * mscale, sn = (float)sin(a) * mscale;
        for (int h = 0; h < n_heads; h++) {
            float *x = v + (size_t)h * head_dim;
            int i0 = neox ? i : 2 * i, i1 = neox ? i + n_rot / 2 : 2 * i + 1;
            float x0 = x[i0], x1 = x[i1];
            x[i0] = x0 * cs - x1 * sn;
            x[i1] = x0 * sn + x1 * cs;
        }
    }
}

static void add_bias(float *x, const float *b, int n) {
    if (!b) return;
    for (int j = 0; j < n; j++)
        x[j] += b[j];
}

/* Each token's q, k, v rows (from the fused product's row, where the layer has
 * one) with their biases added, q and k rotated to the token's position, and k, v
 * stored in its KV cell; ends with a barrier, as attention reads every token's. */
static void rotate_and_store(wim_ctx *c, const wim_layer *L, int layer, int M) {
    const wim_config *cf = &c->m->cfg;
    const int hd = cf->head_dim, qd = cf->n_head * hd, kvd = cf->n_head_kv * hd;
#pragma omp for schedule(static)
    for (int i = 0; i < M; i++) {
        float *q = c->q + (size_t)i * qd, *k = c->k + (size_t)i * kvd, *v = c->v + (size_t)i * kvd;
        if (L->wqkv.data) {
            const float *r = c->qkv + (size_t)i * (qd + 2 * kvd);
            memcpy(q, r, (size_t)qd * sizeof(float));
            memcpy(k, r + qd, (size_t)kvd * sizeof(float));
            memcpy(v, r + qd + kvd, (size_t)kvd * sizeof(float));
        }
        add_bias(q, L->bq, qd);
        add_bias(k, L->bk, kvd);
        add_bias(v, L->bv, kvd);
        rope(q, cf->n_head, hd, cf->n_rot, cf->rope_neox, c->inv_freq, c->rope_mscale,
             c->tok_pos[i]);
        rope(k, cf->n_head_kv, hd, cf->n_rot, cf->rope_neox, c->inv_freq, c->rope_mscale,
             c->tok_pos[i]);
        kv_store(&c->kv, layer, c->slots[i], k, v); /* the chunk's cells are distinct */
    }
}

/* GELU, tanh approximation (gemma2's gate activation). */
static float gelu(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)));
}

/* The FFN gate for M rows of n_ff values: out = act(g) * u, with SwiGLU's SiLU (the
 * kernel table's vector exp) or GeGLU's GELU (gemma2); rows of g and u are ld apart,
 * out's n_ff apart (out may be g) (row work). */
static void gate_rows(const wim_ctx *c, const float *g, const float *u, int ld, float *out, int M) {
    const wim_config *cf = &c->m->cfg;
    const int ff = cf->n_ff;
#pragma omp for schedule(static) nowait
    for (int i = 0; i < M; i++) {
        const float *gi = g + (size_t)i * ld, *ui = u + (size_t)i * ld;
        float *oi = out + (size_t)i * ff;
        if (cf->arch == WIM_ARCH_GEMMA2)
            for (int j = 0; j < ff; j++)
                oi[j] = gelu(gi[j]) * ui[j];
        else
            c->kern->swiglu(gi, ui, oi, ff);
    }
}

/* A layer's attention shape: the model's sliding window (gemma2: even layers
 * only) and its score soft-capping. */
static attn_shape layer_shape(const wim_config *cf, int layer) {
    attn_shape s = {1.0f / sqrtf((float)cf->head_dim), cf->attn_softcap, cf->sliding_window};
    if (cf->swa_even_only && layer % 2) s.window = 0;
    return s;
}

static void softcap(float *v, size_t n, float cap) {
    for (size_t i = 0; cap > 0 && i < n; i++)
        v[i] = cap * tanhf(v[i] / cap);
}

/* The trace's row of token i of the pass (i.e. its position's), or -1 when not recorded. */
static int trace_row(const wim_ctx *c, int i) {
    const wim_trace *t = c->trace;
    if (!t || c->tok_branch[i] >= 0) return -1; /* branches are not traced */
    const int r = c->tok_pos[i] - t->pos0;
    return r >= 0 && r < t->n_pos ? r : -1;
}

/* Where token i's weights for query head h of `layer` go, or NULL when not traced. */
static float *trace_weights(const wim_ctx *c, int layer, int h, int i) {
    const wim_trace *t = c->trace;
    const int r = trace_row(c, i);
    if (r < 0 || layer != t->layer || h != t->head) return NULL;
    return t->attn + (size_t)r * ((size_t)t->pos0 + t->n_pos);
}

/* Records the size of the residual stream x (M tokens of d floats) at trace stage `stage`
 * (after a barrier, on the first thread: its rows come from every thread's row work). */
static void trace_residual(const wim_ctx *c, const float *x, int M, int stage) {
    if (!c->trace) return;
#pragma omp barrier
    if (omp_get_thread_num() != 0) return;
    const int d = c->m->cfg.n_embd, stages = 1 + 2 * c->m->cfg.n_layer;
    for (int i = 0; i < M; i++) {
        const int r = trace_row(c, i);
        if (r < 0) continue;
        const float *xi = x + (size_t)i * d;
        double ss = 0, mx = 0;
        for (int j = 0; j < d; j++) {
            ss += (double)xi[j] * xi[j];
            mx = fmax(mx, fabs(xi[j]));
        }
        float *out = c->trace->resid + ((size_t)r * stages + stage) * 3;
        out[0] = (float)sqrt(ss), out[1] = (float)sqrt(ss / d), out[2] = (float)mx;
    }
}

/* The queries of KV head kvh for tokens i0 .. i1-1 (the heads of its GQA group, token
 * after token), into qs; returns how many. */
static int group_queries(const wim_ctx *c, int layer, int kvh, int i0, int i1, attn_query *qs) {
    const wim_config *cf = &c->m->cfg;
    const int hd = cf->head_dim, qd = cf->n_head * hd, group = cf->n_head / cf->n_head_kv;
    int n = 0;
    for (int i = i0; i < i1; i++)
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
            qs[n++] = (attn_query){c->q + (size_t)i * qd + (size_t)h * hd,
                                   c->att + (size_t)i * qd + (size_t)h * hd, c->tok_pos[i],
                                   c->tok_branch[i], trace_weights(c, layer, h, i)};
    return n;
}

/* A decode step's attention (M <= SPLIT_TOKENS tokens: one sequence, or margins
 * decoding together as branches) with each (KV head, span) a task, so a long context
 * keeps every thread busy however few KV heads the model has. The spans' states are
 * merged in span order, as attn_block merges them: the same bits as attention_tiled,
 * for any number of threads. Spans go in waves of ATTN_WAVE / M, so the states held
 * at once never exceed ATTN_WAVE x n_head queries' (att_spans). Called by every thread
 * of the team; ends with a barrier. */
static void attention_split(wim_ctx *c, int layer, int M, int spans) {
    const wim_config *cf = &c->m->cfg;
    const int hd = cf->head_dim, nkv = cf->n_head_kv, nq = M * (cf->n_head / nkv);
    const attn_shape shape = layer_shape(cf, layer);
    const size_t head_floats = attn_part_floats(hd, nq);
    const int first = omp_get_thread_num() == 0; /* merges and finishes */
    if (first)
        for (int kvh = 0; kvh < nkv; kvh++)
            attn_part_clear(attn_part_at(c->att_total + kvh * head_floats, hd, nq), nq, hd);
    const int wave = ATTN_WAVE / M;
    for (int w0 = 0; w0 < spans; w0 += wave) {
        const int nw = spans - w0 < wave ? spans - w0 : wave;
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < nw * nkv; t++) {
            const int kvh = t % nkv, s = w0 + t / nkv;
            float *scratch = c->att_scratch + (size_t)omp_get_thread_num() * c->att_scratch_floats;
            attn_query *qs = (attn_query *)(scratch + c->att_query_offset);
            group_queries(c, layer, kvh, 0, M, qs);
            attn_span_part(c->kern, &c->kv, layer, kvh, hd, qs, nq, shape, s,
                           attn_part_at(c->att_spans + t * head_floats, hd, nq), scratch);
        }
        for (int t = 0; first && t < nw * nkv; t++) /* span by span, as attn_block */
            attn_merge(attn_part_at(c->att_total + (t % nkv) * head_floats, hd, nq),
                       attn_part_at(c->att_spans + t * head_floats, hd, nq), nq, hd);
#pragma omp barrier /* the next wave's states overwrite these */
    }
    if (first) {
        attn_query *qs = (attn_query *)(c->att_scratch + c->att_query_offset); /* its own */
        for (int kvh = 0; kvh < nkv; kvh++) {
            group_queries(c, layer, kvh, 0, M, qs);
            attn_finish(attn_part_at(c->att_total + kvh * head_floats, hd, nq), qs, nq, hd);
        }
    }
#pragma omp barrier
}

/* The spans a decode step's attention splits into, or 0 where it does not: more than
 * SPLIT_TOKENS tokens (prefill has a task per block of tokens already), one thread,
 * too little work, a short context, or a traced layer (the weights of a traced query
 * are rescaled span by span by attn_block). */
static int split_spans(const wim_ctx *c, int layer, int M, long work) {
    if (M > SPLIT_TOKENS || omp_get_num_threads() < 2 || work < PARALLEL_MIN_WORK) return 0;
    attn_query qs[SPLIT_TOKENS];
    for (int i = 0; i < M; i++) {
        if (trace_row(c, i) >= 0 && layer == c->trace->layer) return 0;
        qs[i] = (attn_query){NULL, NULL, c->tok_pos[i], c->tok_branch[i], NULL};
    }
    const int spans = attn_spans(&c->kv, qs, M);
    return spans > 1 ? spans : 0;
}

/* Causal attention of the chunk's M queries over the whole cache: a task per KV head
 * and block of tokens (attn_block), or for a decode step on several threads, per KV
 * head and span (attention_split). Called by every thread of the team, after a barrier
 * (the chunk's keys and values are stored); ends with one. */
static void attention_tiled(wim_ctx *c, int layer, int M) {
    const wim_config *cf = &c->m->cfg;
    const int hd = cf->head_dim;
    const attn_shape shape = layer_shape(cf, layer);
    const int blocks = (M + ATTN_QBLOCK - 1) / ATTN_QBLOCK, tasks = blocks * cf->n_head_kv;
    const long work = (long)M * cf->n_head * c->kv.n * hd;
    const int spans = split_spans(c, layer, M, work);
    if (spans) {
        attention_split(c, layer, M, spans);
        return;
    }
    /* one task: one KV head and up to ATTN_QBLOCK tokens, i.e. every query head of
     * the GQA group for those tokens, so each K/V tile is widened once for all of them;
     * the last tokens see the most keys, so their tasks go out first and the short
     * ones fill in behind (no thread is left with a long task at the end) */
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < tasks; t++) {
        const int kvh = t % cf->n_head_kv, i0 = (blocks - 1 - t / cf->n_head_kv) * ATTN_QBLOCK;
        const int i1 = i0 + ATTN_QBLOCK < M ? i0 + ATTN_QBLOCK : M;
        float *scratch = c->att_scratch + (size_t)omp_get_thread_num() * c->att_scratch_floats;
        attn_query *qs = (attn_query *)(scratch + c->att_query_offset);
        const int nq = group_queries(c, layer, kvh, i0, i1, qs);
        attn_block(c->kern, &c->kv, layer, kvh, hd, qs, nq, shape, scratch);
    }
}

/* The reference the memory profile compares against: the full n_head x M x n
 * score matrix, allocated (and counted) for the duration of the layer. Called by
 * every thread of the team, after a barrier; -1 (on every thread) when out of memory. */
static int attention_materialized(wim_ctx *c, int layer, int M) {
    const wim_config *cf = &c->m->cfg;
    const int hd = cf->head_dim, qd = cf->n_head * hd, group = cf->n_head / cf->n_head_kv;
    const int n = c->kv.n;
    const size_t bytes = (size_t)cf->n_head * M * n * sizeof(float);
    if (omp_get_thread_num() == 0) {
        c->att_scores = wim_mem_alloc(&c->mem, WIM_MEM_SCRATCH, bytes);
        if (!c->att_scores) pass_fail(c, -1);
    }
#pragma omp barrier
    float *S = c->att_scores;
    if (!S) return -1; /* every thread, after the barrier */
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int i = 0; i < M; i++)
        for (int h = 0; h < cf->n_head; h++)
            attn_head_materialized(c->kern, &c->kv, layer, h / group, hd,
                                   c->q + (size_t)i * qd + (size_t)h * hd, c->tok_pos[i],
                                   layer_shape(cf, layer), c->att + (size_t)i * qd + (size_t)h * hd,
                                   S + ((size_t)h * M + i) * n, trace_weights(c, layer, h, i));
    if (omp_get_thread_num() == 0) wim_mem_free(&c->mem, WIM_MEM_SCRATCH, S, bytes);
    return 0;
}

/* A pass of M tokens as every thread of the team runs it (see forward_chunk). */
#define FORWARD_NON_FINITE (-1000)
static void forward_team(wim_ctx *c, const int32_t *tokens, int M, int branched) {
    const wim_model *m = c->m;
    const wim_config *cf = &m->cfg;
    const int d = cf->n_embd, hd = cf->head_dim, qd = cf->n_head * hd, kvd = cf->n_head_kv * hd;
    const int ff = cf->n_ff;
    float *x = c->x, *xb = c->xb, *xb2 = c->xb2;

#pragma omp for schedule(static) nowait
    for (int i = 0; i < M; i++) {
        float *xi = x + (size_t)i * d;
        wim_mat_row(&m->tok_embd, tokens[i], xi);
        if (cf->arch == WIM_ARCH_GEMMA2) /* gemma scales the embedding by sqrt(n_embd) */
            for (int j = 0; j < d; j++)
                xi[j] *= sqrtf((float)d);
    }
    trace_residual(c, x, M, 0);

    for (int l = 0; l < cf->n_layer; l++) {
        const wim_layer *L = &m->layers[l];
        const int bad = FORWARD_NON_FINITE - l;

        /* attention block */
        norm_rows(c, xb, x, L->attn_norm, M, d, bad);
        if (L->wqkv.data) {
            matmul(c, &L->wqkv, xb, M, c->qkv, qd + 2 * kvd);
        } else {
            const wim_mat *w[] = {&L->wq, &L->wk, &L->wv};
            float *y[] = {c->q, c->k, c->v};
            const int ldy[] = {qd, kvd, kvd};
            matmul_n(c, 3, w, xb, M, y, ldy);
        }
        if (pass_failed(c)) return;
        rotate_and_store(c, L, l, M);
        if (c->p.attn_materialize && !branched) {
            if (attention_materialized(c, l, M)) return;
        } else
            attention_tiled(c, l, M);
        matmul(c, &L->wo, c->att, M, xb2, d);
        add_rows(c, x, xb2, L->post_attn_norm, M, d, 0);
        trace_residual(c, x, M, 1 + 2 * l);

        /* feed-forward block (SwiGLU) */
        norm_rows(c, xb, x, L->ffn_norm, M, d, bad);
        float *act = c->hb; /* the gated rows, n_ff each */
        if (L->w_gate.data) {
            const wim_mat *w[] = {&L->w_gate, &L->w_up};
            float *y[] = {c->hb, c->hb2};
            const int ldy[] = {ff, ff};
            matmul_n(c, 2, w, xb, M, y, ldy);
            if (pass_failed(c)) return;
            gate_rows(c, c->hb, c->hb2, ff, act, M);
        } else { /* fused: each row is gate (first n_ff) then up */
            matmul(c, &L->w_gate_up, xb, M, c->hb, 2 * ff);
            if (pass_failed(c)) return;
            act = c->hb2;
            gate_rows(c, c->hb, c->hb + ff, 2 * ff, act, M);
        }
        matmul(c, &L->w_down, act, M, xb2, d);
        add_rows(c, x, xb2, L->post_ffn_norm, M, d, bad);
        trace_residual(c, x, M, 2 + 2 * l);
    }
    norm_rows(c, xb, x, m->output_norm, M, d, 0);
}

/* The threads of a pass over M tokens: one when its largest product is too small to
 * share out. */
static int pass_threads(const wim_ctx *c, int M) {
    const wim_config *cf = &c->m->cfg;
    const long widest = cf->n_ff > cf->n_head * cf->head_dim ? cf->n_ff : cf->n_head * cf->head_dim;
    return (long)M * cf->n_embd * widest >= PARALLEL_MIN_WORK ? c->p.n_threads : 1;
}

/* One pass of M tokens at positions c->tok_pos, of branches c->tok_branch,
 * whose KV cells are c->slots; the final hidden states (after output_norm) are
 * left in c->xb. Returns 0; -1 when the materialised reference attention
 * (trunk passes only) runs out of memory; or FORWARD_NON_FINITE - layer when a
 * layer's normalised input to its matrices, or its output, holds a NaN or an
 * infinity (overflowing or corrupt weights: nothing after it would mean
 * anything, and the int8 kernels would quietly read it as 0). */
static int forward_chunk(wim_ctx *c, const int32_t *tokens, int M, int branched) {
    atomic_store_explicit(&c->pass_rc, 0, memory_order_relaxed);
#pragma omp parallel num_threads(pass_threads(c, M))
    forward_team(c, tokens, M, branched);
    return atomic_load_explicit(&c->pass_rc, memory_order_relaxed);
}

/* forward_chunk's failure as one line; returns -1. */
static int forward_error(int rc, int pos, int M, char *err, size_t errlen) {
    if (rc <= FORWARD_NON_FINITE)
        return wim_errorf(err, errlen,
                          "layer %d produced a non-finite value (NaN or infinity) for the %d "
                          "tokens from position %d: the weights overflow fp32 or are corrupt",
                          FORWARD_NON_FINITE - rc, M, pos);
    return wim_errorf(err, errlen, "out of memory for the attention score matrix (%d tokens)", M);
}

/* Every token id inside the vocabulary; else -1 with one line. */
static int check_tokens(const wim_ctx *c, const int32_t *tokens, int n, char *err, size_t errlen) {
    const int V = c->m->cfg.n_vocab;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return wim_errorf(err, errlen,
                              "token id %d at index %d is outside the vocabulary (0..%d)",
                              tokens[i], i, V - 1);
    return 0;
}

/* The next-token logits of `rows` final hidden states h (after output_norm); -1 with one
 * line when one of them is not finite (an output matrix that overflows fp32). */
static int output_logits(wim_ctx *c, const float *h, int rows, float *logits, char *err,
                         size_t errlen) {
    const int V = c->m->cfg.n_vocab;
#pragma omp parallel num_threads(c->p.n_threads) if ((long)rows * V * c->m->cfg.n_embd >=          \
                                                     PARALLEL_MIN_WORK)
    matmul(c, &c->m->output, h, rows, logits, V);
    softcap(logits, (size_t)rows * V, c->m->cfg.final_softcap);
    if (!non_finite(logits, (size_t)rows * V)) return 0;
    return wim_errorf(err, errlen,
                      "the output layer produced a non-finite logit (NaN or infinity): the "
                      "weights overflow fp32 or are corrupt");
}

int wim_eval(wim_ctx *c, const int32_t *tokens, int n, float *logits, int all_logits, char *err,
             size_t errlen) {
    const wim_config *cf = &c->m->cfg;
    if (check_tokens(c, tokens, n, err, errlen)) return -1;
    if (n > kv_room(&c->kv))
        return wim_errorf(err, errlen,
                          "context too long: %d more tokens do not fit the KV cache (%d of %d "
                          "used; a larger --kv-capacity or --kv-pin to stream)",
                          n, c->kv.n, c->kv.capacity);
    const int d = cf->n_embd, V = cf->n_vocab;
    for (int s = 0; s < n; s += c->p.chunk) {
        int M = n - s < c->p.chunk ? n - s : c->p.chunk;
        int pos0 = c->kv.next_pos;
        if (kv_claim(&c->kv, M, tokens + s, c->slots))
            return wim_errorf(err, errlen, "out of memory for the KV snapshot journal");
        for (int i = 0; i < M; i++)
            c->tok_pos[i] = pos0 + i, c->tok_branch[i] = -1;
        int rc = forward_chunk(c, tokens + s, M, 0);
        if (rc) return forward_error(rc, pos0, M, err, errlen);
        if (!logits) continue;
        if (all_logits && output_logits(c, c->xb, M, logits + (size_t)s * V, err, errlen))
            return -1;
        if (!all_logits && s + M == n &&
            output_logits(c, c->xb + (size_t)(M - 1) * d, 1, logits, err, errlen))
            return -1;
    }
    return 0;
}

int ctx_branches_open(wim_ctx *c, int n, const int *forks, const int *cells, char *err,
                      size_t errlen) {
    return kv_branches_open(&c->kv, n, forks, cells, err, errlen);
}

void ctx_branches_close(wim_ctx *c) {
    kv_branches_close(&c->kv);
}

int ctx_eval_branches(wim_ctx *c, const int32_t *tokens, const int *br, int n, const char *want,
                      float *logits, char *err, size_t errlen) {
    const wim_config *cf = &c->m->cfg;
    const int d = cf->n_embd, V = cf->n_vocab;
    if (check_tokens(c, tokens, n, err, errlen)) return -1;
    for (int i = 0; i < n; i++)
        if (br[i] < 0 || br[i] >= c->kv.n_branches)
            return wim_errorf(err, errlen, "token %d: no branch %d (%d are open)", i, br[i],
                              c->kv.n_branches);
    for (int s = 0; s < n; s += c->p.chunk) {
        const int M = n - s < c->p.chunk ? n - s : c->p.chunk;
        for (int i = 0; i < M; i++) {
            const int b = br[s + i];
            c->tok_pos[i] = kv_branch_next_pos(&c->kv, b);
            c->tok_branch[i] = b;
            if (kv_branch_claim(&c->kv, b, 1, tokens + s + i, c->slots + i))
                return wim_errorf(err, errlen, "branch %d is full (%d cells)", b,
                                  c->kv.branches[b].cap);
        }
        int rc = forward_chunk(c, tokens + s, M, 1); /* branch passes never materialise */
        if (rc) return forward_error(rc, c->tok_pos[0], M, err, errlen);
        int rows = 0; /* the wanted rows' hidden states, packed to the front of xb */
        for (int i = 0; i < M; i++)
            if (want && want[s + i]) {
                if (rows != i)
                    memcpy(c->xb + (size_t)rows * d, c->xb + (size_t)i * d,
                           (size_t)d * sizeof(float));
                rows++;
            }
        if (!rows) continue;
        if (output_logits(c, c->xb, rows, logits, err, errlen)) return -1;
        logits += (size_t)rows * V;
    }
    return 0;
}

int wim_ctx_snapshot(wim_ctx *c) {
    return kv_snapshot(&c->kv) < 0 ? -1 : 0;
}
int wim_ctx_restore(wim_ctx *c) {
    return kv_restore(&c->kv);
}
int wim_ctx_snapshot_drop(wim_ctx *c) {
    return kv_snapshot_drop(&c->kv);
}
uint32_t wim_ctx_kv_crc(const wim_ctx *c) {
    return kv_crc(&c->kv);
}

int wim_ctx_save(const wim_ctx *c, const char *path, char *err, size_t errlen) {
    return kv_save(&c->kv, c->m->fingerprint, path, NULL, 0, err, errlen);
}

int wim_ctx_load(wim_ctx *c, const char *path, char *err, size_t errlen) {
    return kv_load(&c->kv, c->m->fingerprint, path, NULL, NULL, err, errlen);
}

int ctx_save_with(const wim_ctx *c, const char *path, const void *extra, size_t extra_len,
                  char *err, size_t errlen) {
    return kv_save(&c->kv, c->m->fingerprint, path, extra, extra_len, err, errlen);
}

int ctx_load_with(wim_ctx *c, const char *path, void **extra, size_t *extra_len, char *err,
                  size_t errlen) {
    return kv_load(&c->kv, c->m->fingerprint, path, extra, extra_len, err, errlen);
}

int ctx_file_geometry(const wim_model *m, const char *path, int *capacity, int *pin, int *streaming,
                      int *cached, char *err, size_t errlen) {
    if (kv_file_geometry(path, capacity, pin, streaming, cached, err, errlen)) return -1;
    /* a window loads only as large as it was saved, so its size is reserved before the
     * checksum can be verified: one past both the model's context and the tokens it holds
     * is a damaged file, not a plan */
    if (*streaming && *capacity > m->cfg.n_ctx_train && *capacity - *cached > 65536)
        return wim_errorf(err, errlen,
                          "%s: a streaming window of %d cells for %d tokens, past the model's "
                          "context of %d: not reserved (a damaged file?)",
                          path, *capacity, *cached, m->cfg.n_ctx_train);
    return 0;
}

int wim_kv_file_geometry(const char *path, int *capacity, int *pin, char *err, size_t errlen) {
    int streaming;
    if (kv_file_geometry(path, capacity, pin, &streaming, NULL, err, errlen)) return -1;
    if (!streaming) *pin = -1;
    return 0;
}

void wim_ctx_memory(const wim_ctx *c, wim_mem_report *r) {
    const gguf_file *g = c->m->gguf;
    r->weights_bytes = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        r->weights_bytes += g->tensors[i].nbytes;
    r->kv_bytes = c->mem.cur[WIM_MEM_KV];
    r->kv_peak = c->mem.peak[WIM_MEM_KV];
    r->scratch_bytes = c->mem.cur[WIM_MEM_SCRATCH];
    r->scratch_peak = c->mem.peak[WIM_MEM_SCRATCH];
}

void wim_ctx_reset_peaks(wim_ctx *c) {
    wim_mem_reset_peak(&c->mem);
}
