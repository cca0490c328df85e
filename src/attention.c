/*
 * attention.c — tiled causal attention with an online softmax.
 *
 * Cells are visited in slot order in tiles of ATTN_TILE; the tile boundaries
 * depend only on slot indices, and each query only computes the cells it may
 * see, so a query's result is the same whatever chunk size brought its keys
 * into the cache and however queries are grouped into blocks.
 */
#include "attention.h"

#include <math.h>
#include <string.h>

/* The cells [lo, hi) of a tile that a query at qpos may see (hi == lo: none). */
static void visible_span(const wim_kvcache *kv, int t0, int end, int qpos, int *lo, int *hi) {
    int a = 0, b = end;
    while (a < b && kv->pos[t0 + a] > qpos)
        a++;
    while (b > a && kv->pos[t0 + b - 1] > qpos)
        b--;
    *lo = a;
    *hi = b;
}

void attn_block(const wim_kernels *k, const wim_kvcache *kv, int layer, int kvh, int head_dim,
                const attn_query *qs, int nq, float scale, float *scratch) {
    const size_t off = (size_t)kvh * head_dim, stride = (size_t)kv->kv_dim;
    const size_t row_bytes = stride * kv->elem;
    const int f16 = kv->type == WIM_KV_F16;
    float *score = scratch, *run_max = score + ATTN_TILE, *run_sum = run_max + nq;
    for (int j = 0; j < nq; j++) {
        run_max[j] = -INFINITY;
        run_sum[j] = 0.0f;
        memset(qs[j].out, 0, (size_t)head_dim * sizeof(float));
    }
    for (int t0 = 0; t0 < kv->n; t0 += ATTN_TILE) {
        const int end = kv->n - t0 < ATTN_TILE ? kv->n - t0 : ATTN_TILE;
        const uint8_t *krows = (const uint8_t *)kv_k(kv, layer, t0) + off * kv->elem;
        const uint8_t *vrows = (const uint8_t *)kv_v(kv, layer, t0) + off * kv->elem;
        for (int j = 0; j < nq; j++) {
            int a, b;
            visible_span(kv, t0, end, qs[j].qpos, &a, &b);
            if (a >= b) continue; /* every cell of the tile is in this query's future */
            const int cnt = b - a, c0 = t0 + a;
            const void *kr = krows + (size_t)a * row_bytes, *vr = vrows + (size_t)a * row_bytes;
            if (f16)
                k->dot_rows_f16(kr, stride, cnt, qs[j].q, head_dim, score);
            else
                k->dot_rows_f32(kr, stride, cnt, qs[j].q, head_dim, score);
            float tile_max = -INFINITY;
            for (int i = 0; i < cnt; i++) {
                score[i] = kv->pos[c0 + i] <= qs[j].qpos ? score[i] * scale : -INFINITY;
                if (score[i] > tile_max) tile_max = score[i];
            }
            float *acc = qs[j].out;
            if (tile_max > run_max[j]) { /* rescale what was accumulated so far */
                float corr = expf(run_max[j] - tile_max);
                run_sum[j] *= corr;
                for (int i = 0; i < head_dim; i++)
                    acc[i] *= corr;
                run_max[j] = tile_max;
            }
            for (int i = 0; i < cnt; i++) { /* weights; masked cells get 0 and are skipped */
                score[i] = score[i] == -INFINITY ? 0.0f : expf(score[i] - run_max[j]);
                run_sum[j] += score[i];
            }
            if (f16)
                k->axpy_rows_f16(score, vr, stride, cnt, acc, head_dim);
            else
                k->axpy_rows_f32(score, vr, stride, cnt, acc, head_dim);
        }
    }
    for (int j = 0; j < nq; j++) {
        float inv = run_sum[j] > 0 ? 1.0f / run_sum[j] : 0.0f;
        for (int i = 0; i < head_dim; i++)
            qs[j].out[i] *= inv;
    }
}

void attn_head_materialized(const wim_kernels *k, const wim_kvcache *kv, int layer, int kvh,
                            int head_dim, const float *q, int qpos, float scale, float *out,
                            float *row) {
    const size_t off = (size_t)kvh * head_dim;
    const int f16 = kv->type == WIM_KV_F16;
    float mx = -INFINITY, sum = 0.0f;
    for (int s = 0; s < kv->n; s++) {
        const void *kr = kv_k(kv, layer, s);
        row[s] = kv->pos[s] > qpos
                     ? -INFINITY
                     : scale * (f16 ? k->dot_f16((const uint16_t *)kr + off, q, head_dim)
                                    : k->dot_f32((const float *)kr + off, q, head_dim));
        if (row[s] > mx) mx = row[s];
    }
    for (int s = 0; s < kv->n; s++)
        sum += row[s] = row[s] == -INFINITY ? 0.0f : expf(row[s] - mx);
    memset(out, 0, (size_t)head_dim * sizeof(float));
    for (int s = 0; s < kv->n; s++) {
        if (row[s] == 0.0f) continue;
        const void *vr = kv_v(kv, layer, s);
        if (f16)
            k->axpy_f16(row[s] / sum, (const uint16_t *)vr + off, out, head_dim);
        else
            k->axpy_f32(row[s] / sum, (const float *)vr + off, out, head_dim);
    }
}
