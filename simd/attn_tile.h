/*
 * attn_tile.h — the attention tile kernels in portable C (simd.h: attn_load,
 * attn_scores, attn_accum): scalar.c's reference, and neon.c's.
 *
 * Every product is one fmaf, chained in the order simd.h fixes, so a vector
 * version that runs the same chain in its FMA lanes gives the same bits; the
 * loops are kept plain so that compilers may vectorise them across keys (scores)
 * or dimensions (accum), which keeps each chain intact.
 */
#ifndef WIM_ATTN_TILE_H
#define WIM_ATTN_TILE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "simd.h"

static void attn_load_generic(const void *k, const void *v, size_t stride, int count, int n,
                              int f16, float *kt, int ldk, float *vt) {
    for (int i = 0; i < count; i++)
        for (int d = 0; d < n; d++) {
            const size_t at = (size_t)i * stride + d;
            kt[(size_t)d * ldk + i] = f16 ? wim_fp16_to_fp32(((const uint16_t *)k)[at])
                                          : ((const float *)k)[at];
            vt[(size_t)i * n + d] = f16 ? wim_fp16_to_fp32(((const uint16_t *)v)[at])
                                        : ((const float *)v)[at];
        }
}

static void attn_scores_generic(const float *q, int nq, const float *kt, int ldk, int nk, int n,
                                float *s, int lds) {
    for (int j = 0; j < nq; j++) {
        float *row = s + (size_t)j * lds;
        for (int i = 0; i < nk; i++)
            row[i] = 0.0f;
        for (int d = 0; d < n; d++) {
            const float qd = q[(size_t)j * n + d], *kd = kt + (size_t)d * ldk;
            for (int i = 0; i < nk; i++)
                row[i] = fmaf(qd, kd[i], row[i]);
        }
    }
}

static void attn_accum_generic(const float *p, int lds, int nq, const float *vt, int nk, int n,
                               float *out) {
    for (int j = 0; j < nq; j++) {
        float *o = out + (size_t)j * n;
        for (int i = 0; i < nk; i++) {
            const float w = p[(size_t)j * lds + i], *vi = vt + (size_t)i * n;
            for (int d = 0; d < n; d++)
                o[d] = fmaf(w, vi[d], o[d]);
        }
    }
}

#endif
