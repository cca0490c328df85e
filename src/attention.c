/*
 * attention.c — tiled causal attention with an online softmax.
 *
 * A query visits the cells it may see (kvcache.h: the pinned cells and the
 * last W positions) in logical slot order, in tiles of ATTN_TILE logical
 * slots; a tile's visible cells are a few runs of consecutive physical slots.
 * Tile boundaries and order depend only on positions, never on where the
 * cells physically are, so a query's result is the same whatever chunk size
 * brought its keys into the cache, whatever extra cells the cache has for
 * streaming, and however queries are grouped into blocks (the row kernels do
 * each row's arithmetic on its own, so splitting a tile into runs changes
 * nothing). A branch query (kvcache.h) walks the same tiles of positions over
 * the trunk's cells below its fork and then its own. A model's sliding window (Mistral v0.1, Phi-3
 * mini 4k) hides a prefix of each run by position, so it keeps all of this.
 * A query that asks for its weights (a trace, forward.c) gets them recorded
 * beside the arithmetic, which stays as it is.
 *
 * Spans (attention.h): a query's tiles go in spans of ATTN_SPAN logical slots,
 * each span an online softmax of its own, merged in span order. Where a span's
 * state is computed (which thread, alone or with the others) changes nothing:
 * attn_block and the decode split (forward.c) run the same attn_span_part and
 * the same attn_merge in the same order.
 */
#include "attention.h"

#include <math.h>
#include <string.h>

typedef struct {
    int slot, count;
} cell_run;

/* The cells a query at position p sees in logical tile [t0, t1), as runs of
 * consecutive physical slots in logical order; returns how many (at most 5:
 * pinned cells, then two logical runs each split at most once where the
 * physical ring wraps). */
static int visible_runs(const wim_kvcache *kv, int t0, int t1, int p, cell_run *runs) {
    const int pin = kv->pin, w = kv_window(kv), ring = kv->cells - pin;
    int nr = 0, e = t1 < pin ? t1 : pin;
    if (e > p + 1) e = p + 1;
    if (t0 < e) runs[nr++] = (cell_run){t0, e - t0}; /* pinned: slot == position */
    const int lo = t0 > pin ? t0 : pin;
    if (lo >= t1 || p < pin) return nr;
    /* the window: positions a..p, the oldest in logical slot va, then on cyclically */
    const int a = kv_window_start(kv, p), len = p - a + 1;
    const int va = kv_logical_slot(kv, a);
    const int cut = va > lo && va < t1 ? va : t1;
    const int bounds[3] = {lo, cut, t1};
    for (int r = 0; r < 2; r++) {
        const int s = bounds[r], n = bounds[r + 1] - s;
        if (n <= 0) continue;
        const int o0 = (s - va + w) % w; /* offsets from a grow along the run */
        const int cnt = (o0 + n < len ? o0 + n : len) - o0;
        if (cnt <= 0) continue;
        const int s0 = kv_slot_of(kv, a + o0),
                  first = cnt < pin + ring - s0 ? cnt : pin + ring - s0;
        runs[nr++] = (cell_run){s0, first};
        if (cnt > first) runs[nr++] = (cell_run){pin, cnt - first};
    }
    return nr;
}

/* The cells a query of branch b at position p sees in tile [t0, t1) of
 * positions: the trunk's below the fork (slot == position without streaming),
 * then the branch's own; at most 2 runs. */
static int branch_runs(const wim_kvcache *kv, int b, int t0, int t1, int p, cell_run *runs) {
    const kv_branch *br = &kv->branches[b];
    int nr = 0, e = t1 < br->fork ? t1 : br->fork;
    if (e > p + 1) e = p + 1;
    if (t0 < e) runs[nr++] = (cell_run){t0, e - t0};
    const int lo = t0 > br->fork ? t0 : br->fork, hi = t1 < p + 1 ? t1 : p + 1;
    if (lo < hi) runs[nr++] = (cell_run){kv->cells + br->first + (lo - br->fork), hi - lo};
    return nr;
}

/* Drops the cells a sliding window of `window` positions hides from a query at
 * qpos: a run's positions grow along it, so they are a prefix of each run. */
static int window_runs(const wim_kvcache *kv, cell_run *runs, int nr, int qpos, int window) {
    int out = 0;
    for (int r = 0; r < nr; r++) {
        int hidden = qpos - window + 1 - kv_pos_at(kv, runs[r].slot);
        if (hidden < 0) hidden = 0;
        if (hidden >= runs[r].count) continue;
        runs[out++] = (cell_run){runs[r].slot + hidden, runs[r].count - hidden};
    }
    return out;
}

/* A score as the softmax takes it: scaled, then soft-capped where the model says. */
static inline float shaped(float dot, attn_shape shape) {
    float s = dot * shape.scale;
    return shape.softcap > 0 ? shape.softcap * tanhf(s / shape.softcap) : s;
}

/* Queries j.. that see the same cells, with q rows next to each other (the heads of
 * a GQA group for one token): how many. */
static int same_view(const attn_query *qs, int j, int nq, int head_dim) {
    int g = 1;
    while (j + g < nq && qs[j + g].qpos == qs[j].qpos && qs[j + g].branch == qs[j].branch &&
           qs[j + g].q == qs[j + g - 1].q + head_dim)
        g++;
    return g;
}

/* The cells query q sees in logical tile [t0, t1), as runs (at most 5). */
static int query_runs(const wim_kvcache *kv, const attn_query *q, int t0, int t1, attn_shape shape,
                      cell_run *runs) {
    int nr = q->branch < 0 ? visible_runs(kv, t0, t1, q->qpos, runs)
                           : branch_runs(kv, q->branch, t0, t1, q->qpos, runs);
    if (shape.window > 0) nr = window_runs(kv, runs, nr, q->qpos, shape.window);
    return nr;
}

/* Logical slots in use: a ring of exactly C cells after next_pos tokens; a branch
 * query's positions may run past the trunk's. */
static int logical_slots(const wim_kvcache *kv, const attn_query *qs, int nq) {
    int nl = kv->next_pos < kv->capacity ? kv->next_pos : kv->capacity;
    for (int j = 0; j < nq; j++)
        if (qs[j].branch >= 0 && qs[j].qpos + 1 > nl) nl = qs[j].qpos + 1;
    return nl;
}

/* Where span s of nl logical slots ends. */
static int span_end(int s, int nl) {
    return nl - s * ATTN_SPAN < ATTN_SPAN ? nl : (s + 1) * ATTN_SPAN;
}

int attn_spans(const wim_kvcache *kv, const attn_query *qs, int nq) {
    return (logical_slots(kv, qs, nq) + ATTN_SPAN - 1) / ATTN_SPAN;
}

static int same_runs(const cell_run *a, int na, const cell_run *b, int nb) {
    return na == nb && !memcmp(a, b, (size_t)na * sizeof *a);
}

/* A traced query's weights: every key it may see starts hidden (-1). */
static void weights_hide_all(float *w, int qpos) {
    for (int i = 0; i <= qpos; i++)
        w[i] = -1.0f;
}

/* Keeps a tile's exponentials (sc, in the order of the runs' cells) at their keys' positions. */
static void weights_keep(float *w, const wim_kvcache *kv, const cell_run *runs, int nr,
                         const float *sc) {
    for (int r = 0, i = 0; r < nr; r++) {
        const int p0 = kv_pos_at(kv, runs[r].slot); /* positions grow by one along a run */
        for (int o = 0; o < runs[r].count; o++)
            w[p0 + o] = sc[i++];
    }
}

/* Multiplies every weight kept by f (the final 1 / sum), as the accumulator is. */
static void weights_scale(float *w, int qpos, float f) {
    for (int i = 0; i <= qpos; i++)
        if (w[i] >= 0) w[i] *= f;
}

/* Multiplies the weights kept for the keys of logical tiles [t0, t1) by f (a new
 * running maximum's correction, a merge's factor), as their values are. */
static void weights_scale_tiles(const wim_kvcache *kv, const attn_query *q, int t0, int t1,
                                attn_shape shape, float f) {
    for (int a = t0; a < t1; a += ATTN_TILE) {
        cell_run runs[5];
        const int nr = query_runs(kv, q, a, a + ATTN_TILE < t1 ? a + ATTN_TILE : t1, shape, runs);
        for (int r = 0; r < nr; r++) {
            float *w = q->weights + kv_pos_at(kv, runs[r].slot);
            for (int o = 0; o < runs[r].count; o++)
                if (w[o] >= 0) w[o] *= f;
        }
    }
}

void attn_span_part(const wim_kernels *k, const wim_kvcache *kv, int layer, int kvh, int head_dim,
                    const attn_query *qs, int nq, attn_shape shape, int s, attn_part part,
                    float *scratch) {
    const size_t stride = (size_t)head_dim; /* kvcache.h: a head's cells are contiguous */
    const int f16 = kv->type == WIM_KV_F16, hd = head_dim, nl = logical_slots(kv, qs, nq);
    const int s0 = s * ATTN_SPAN, s1 = span_end(s, nl);
    float *kt = scratch, *vt = kt + (size_t)hd * ATTN_TILE, *score = vt + (size_t)ATTN_TILE * hd;
    attn_part_clear(part, nq, hd);
    for (int t0 = s0; t0 < s1; t0 += ATTN_TILE) {
        const int t1 = s1 - t0 < ATTN_TILE ? s1 : t0 + ATTN_TILE;
        cell_run loaded[5];
        int n_loaded = -1, cnt = 0; /* the runs whose K and V are in kt and vt */
        for (int j = 0, g; j < nq; j += g) {
            g = same_view(qs, j, nq, hd);
            cell_run runs[5];
            const int nr = query_runs(kv, &qs[j], t0, t1, shape, runs);
            if (!nr) continue; /* nothing of the tile is visible to these queries */
            if (!same_runs(runs, nr, loaded, n_loaded)) {
                cnt = 0;
                for (int r = 0; r < nr; r++) {
                    k->attn_load(kv_k(kv, layer, kvh, runs[r].slot),
                                 kv_v(kv, layer, kvh, runs[r].slot), stride, runs[r].count, hd, f16,
                                 kt + cnt, ATTN_TILE, vt + (size_t)cnt * hd);
                    cnt += runs[r].count;
                }
                for (int d = 0; cnt % 16 && d < hd; d++) /* lanes past the keys: zeros */
                    memset(kt + (size_t)d * ATTN_TILE + cnt, 0, (size_t)(16 - cnt % 16) * 4);
                memcpy(loaded, runs, (size_t)nr * sizeof *runs);
                n_loaded = nr;
            }
            k->attn_scores(qs[j].q, g, kt, ATTN_TILE, cnt, hd, score, ATTN_TILE);
            for (int jj = 0; jj < g; jj++) { /* the online softmax, query by query */
                const attn_query *q = &qs[j + jj];
                float *sc = score + (size_t)jj * ATTN_TILE, *acc = part.acc + (size_t)(j + jj) * hd;
                float tile_max = -INFINITY, *mx = &part.max[j + jj], *sum = &part.sum[j + jj];
                if (shape.softcap > 0) {
                    for (int i = 0; i < cnt; i++) {
                        sc[i] = shaped(sc[i], shape);
                        if (sc[i] > tile_max) tile_max = sc[i];
                    }
                } else {
                    tile_max = k->attn_scale_max(sc, cnt, shape.scale);
                }
                if (tile_max > *mx && *mx > -INFINITY) { /* rescale what was accumulated */
                    const float corr = expf(*mx - tile_max);
                    *sum *= corr;
#pragma omp simd
                    for (int i = 0; i < hd; i++)
                        acc[i] *= corr;
                    if (q->weights) weights_scale_tiles(kv, q, s0, t0, shape, corr);
                }
                if (tile_max > *mx) *mx = tile_max;
                k->attn_exp(sc, cnt, *mx, sum);
                if (q->weights) weights_keep(q->weights, kv, runs, nr, sc);
            }
            k->attn_accum(score, ATTN_TILE, g, vt, cnt, hd, part.acc + (size_t)j * hd);
        }
    }
}

void attn_part_clear(attn_part p, int nq, int head_dim) {
    for (int j = 0; j < nq; j++) {
        p.max[j] = -INFINITY;
        p.sum[j] = 0.0f;
    }
    memset(p.acc, 0, (size_t)nq * head_dim * sizeof(float));
}

/* Query j's merge of `part` into `into`; *fa and *fb get the factors its earlier and
 * its new values were multiplied by (1 and 1 when nothing changed). */
static void merge_one(attn_part into, attn_part part, int j, int hd, float *fa, float *fb) {
    float *a = into.acc + (size_t)j * hd;
    const float *b = part.acc + (size_t)j * hd;
    *fa = *fb = 1.0f;
    if (part.max[j] == -INFINITY) return; /* the span holds no key the query sees */
    if (into.max[j] == -INFINITY) {       /* the first that does: taken as it is */
        into.max[j] = part.max[j];
        into.sum[j] = part.sum[j];
        memcpy(a, b, (size_t)hd * sizeof *a);
        return;
    }
    /* the larger maximum's factor is exactly 1: multiplying by it is left out */
    if (into.max[j] >= part.max[j]) {
        const float f = *fb = expf(part.max[j] - into.max[j]);
        into.sum[j] += part.sum[j] * f;
#pragma omp simd
        for (int i = 0; i < hd; i++)
            a[i] += b[i] * f;
    } else {
        const float f = *fa = expf(into.max[j] - part.max[j]);
        into.sum[j] = into.sum[j] * f + part.sum[j];
#pragma omp simd
        for (int i = 0; i < hd; i++)
            a[i] = a[i] * f + b[i];
        into.max[j] = part.max[j];
    }
}

void attn_merge(attn_part into, attn_part part, int nq, int head_dim) {
    float fa, fb;
    for (int j = 0; j < nq; j++)
        merge_one(into, part, j, head_dim, &fa, &fb);
}

void attn_finish(attn_part total, const attn_query *qs, int nq, int head_dim) {
    for (int j = 0; j < nq; j++) {
        const float inv = total.sum[j] > 0 ? 1.0f / total.sum[j] : 0.0f;
        const float *acc = total.acc + (size_t)j * head_dim;
        for (int i = 0; i < head_dim; i++)
            qs[j].out[i] = acc[i] * inv;
        if (qs[j].weights) weights_scale(qs[j].weights, qs[j].qpos, inv);
    }
}

void attn_block(const wim_kernels *k, const wim_kvcache *kv, int layer, int kvh, int head_dim,
                const attn_query *qs, int nq, attn_shape shape, float *scratch) {
    const int hd = head_dim, nl = logical_slots(kv, qs, nq),
              spans = (nl + ATTN_SPAN - 1) / ATTN_SPAN;
    float *tiles = scratch, *states = tiles + attn_part_scratch_floats(hd, nq);
    const attn_part part = attn_part_at(states, hd, nq),
                    total = attn_part_at(states + attn_part_floats(hd, nq), hd, nq);
    attn_part_clear(total, nq, hd);
    for (int j = 0; j < nq; j++)
        if (qs[j].weights) weights_hide_all(qs[j].weights, qs[j].qpos);
    for (int s = 0; s < spans; s++) {
        attn_span_part(k, kv, layer, kvh, hd, qs, nq, shape, s, part, tiles);
        for (int j = 0; j < nq; j++) {
            float fa, fb;
            merge_one(total, part, j, hd, &fa, &fb);
            if (!qs[j].weights) continue; /* as the values: the earlier spans', then this one's */
            const int s0 = s * ATTN_SPAN, s1 = span_end(s, nl);
            if (fa != 1.0f) weights_scale_tiles(kv, &qs[j], 0, s0, shape, fa);
            if (fb != 1.0f) weights_scale_tiles(kv, &qs[j], s0, s1, shape, fb);
        }
    }
    attn_finish(total, qs, nq, hd);
}

/* Whether the reference sees cell s from a query at qpos (its window included). */
static int cell_seen(const wim_kvcache *kv, int s, int qpos, int window) {
    return kv_visible(kv, s, qpos) && !(window > 0 && kv->pos[s] <= qpos - window);
}

void attn_head_materialized(const wim_kernels *k, const wim_kvcache *kv, int layer, int kvh,
                            int head_dim, const float *q, int qpos, attn_shape shape, float *out,
                            float *row, float *weights) {
    const int window = shape.window;
    const int f16 = kv->type == WIM_KV_F16;
    float mx = -INFINITY, sum = 0.0f;
    if (weights) weights_hide_all(weights, qpos);
    for (int s = 0; s < kv->n; s++) {
        const void *kr = kv_k(kv, layer, kvh, s);
        row[s] = !cell_seen(kv, s, qpos, window)
                     ? -INFINITY
                     : shaped(f16 ? k->dot_f16((const uint16_t *)kr, q, head_dim)
                                  : k->dot_f32((const float *)kr, q, head_dim),
                              shape);
        if (row[s] > mx) mx = row[s];
    }
    for (int s = 0; s < kv->n; s++)
        sum += row[s] = row[s] == -INFINITY ? 0.0f : expf(row[s] - mx);
    for (int s = 0; weights && s < kv->n; s++)
        if (cell_seen(kv, s, qpos, window))
            weights[kv->pos[s]] = row[s] / sum; /* the factor its value is weighted with */
    memset(out, 0, (size_t)head_dim * sizeof(float));
    for (int s = 0; s < kv->n; s++) {
        if (row[s] == 0.0f) continue;
        const void *vr = kv_v(kv, layer, kvh, s);
        if (f16)
            k->axpy_f16(row[s] / sum, (const uint16_t *)vr, out, head_dim);
        else
            k->axpy_f32(row[s] / sum, (const float *)vr, out, head_dim);
    }
}
