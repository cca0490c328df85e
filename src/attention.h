/*
 * attention.h — one query head against the KV cache, fp32, online softmax.
 *
 * Scores are computed a tile of ATTN_TILE cells at a time and folded into a
 * running maximum, sum and weighted value accumulator, so scratch is
 * O(ATTN_TILE + head_dim) whatever the context length.
 */
#ifndef WIM_ATTENTION_H
#define WIM_ATTENTION_H

#include "kvcache.h"
#include "simd.h"

#define ATTN_TILE 64

static inline int attn_scratch_floats(int head_dim) {
    return ATTN_TILE + head_dim;
}

/* out[head_dim] = softmax(q·Kᵀ·scale over cells with pos <= qpos) · V for the
 * KV head kvh of layer. scratch holds attn_scratch_floats(head_dim) floats. */
void attn_head(const wim_kernels *k, const wim_kvcache *kv, int layer, int kvh, int head_dim,
               const float *q, int qpos, float scale, float *out, float *scratch);

/* The same result computed the textbook way: all n scores of the query are
 * written to row[kv->n], then softmax, then the weighted sum of values. */
void attn_head_materialized(const wim_kernels *k, const wim_kvcache *kv, int layer, int kvh,
                            int head_dim, const float *q, int qpos, float scale, float *out,
                            float *row);

#endif
