/*
 * attention.c — tiled causal attention with an online softmax.
 *
 * Cells are visited in slot order in tiles of ATTN_TILE; the tile boundaries
 * depend only on slot indices, so a query's result is the same whatever chunk
 * size brought its keys into the cache.
 */
#include "attention.h"

#include <math.h>
#include <string.h>

void attn_head(const wim_kernels *k, const wim_kvcache *kv, int layer, int kvh, int head_dim,
               const float *q, int qpos, float scale, float *out, float *scratch) {
    float *score = scratch, *acc = out;
    const size_t off = (size_t)kvh * head_dim, stride = (size_t)kv->kv_dim;
    const int f16 = kv->type == WIM_KV_F16;
    float run_max = -INFINITY, run_sum = 0.0f;
    memset(acc, 0, (size_t)head_dim * sizeof(float));
    for (int t0 = 0; t0 < kv->n; t0 += ATTN_TILE) {
        const int end = kv->n - t0 < ATTN_TILE ? kv->n - t0 : ATTN_TILE;
        /* only the span of cells this query may see: in prefill the chunk's own future
         * cells sit at the end of the last tiles, so they cost nothing */
        int lo = 0, hi = end;
        while (lo < hi && kv->pos[t0 + lo] > qpos)
            lo++;
        while (hi > lo && kv->pos[t0 + hi - 1] > qpos)
            hi--;
        if (lo == hi) continue; /* every cell in the tile is in the future */
        const int cnt = hi - lo, c0 = t0 + lo;
        const void *kr = kv_k(kv, layer, c0), *vr = kv_v(kv, layer, c0);
        if (f16)
            k->dot_rows_f16((const uint16_t *)kr + off, stride, cnt, q, head_dim, score);
        else
            k->dot_rows_f32((const float *)kr + off, stride, cnt, q, head_dim, score);
        float tile_max = -INFINITY;
        for (int i = 0; i < cnt; i++) {
            score[i] = kv->pos[c0 + i] <= qpos ? score[i] * scale : -INFINITY;
            if (score[i] > tile_max) tile_max = score[i];
        }
        if (tile_max > run_max) { /* rescale what was accumulated so far */
            float corr = expf(run_max - tile_max);
            run_sum *= corr;
            for (int i = 0; i < head_dim; i++)
                acc[i] *= corr;
            run_max = tile_max;
        }
        for (int i = 0; i < cnt; i++) { /* weights; masked cells get 0 and are skipped */
            score[i] = score[i] == -INFINITY ? 0.0f : expf(score[i] - run_max);
            run_sum += score[i];
        }
        if (f16)
            k->axpy_rows_f16(score, (const uint16_t *)vr + off, stride, cnt, acc, head_dim);
        else
            k->axpy_rows_f32(score, (const float *)vr + off, stride, cnt, acc, head_dim);
    }
    float inv = run_sum > 0 ? 1.0f / run_sum : 0.0f;
    for (int i = 0; i < head_dim; i++)
        acc[i] *= inv;
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
