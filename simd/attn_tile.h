/*
 * attn_tile.h — the attention tile kernels in portable C (simd.h: attn_load,
 * attn_scores, attn_accum, attn_scale_max, attn_exp): scalar.c's reference, and neon.c's.
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
#include <string.h>

#include "simd.h"

static inline void attn_load_generic(const void *k, const void *v, size_t stride, int count, int n,
                                     int f16, float *kt, int ldk, float *vt) {
    for (int i = 0; i < count; i++)
        for (int d = 0; d < n; d++) {
            const size_t at = (size_t)i * stride + d;
            kt[(size_t)d * ldk + i] =
                f16 ? wim_fp16_to_fp32(((const uint16_t *)k)[at]) : ((const float *)k)[at];
            vt[(size_t)i * n + d] =
                f16 ? wim_fp16_to_fp32(((const uint16_t *)v)[at]) : ((const float *)v)[at];
        }
}

static inline void attn_scores_generic(const float *q, int nq, const float *kt, int ldk, int nk,
                                       int n, float *s, int lds) {
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

static inline void attn_accum_generic(const float *p, int lds, int nq, const float *vt, int nk,
                                      int n, float *out) {
    for (int j = 0; j < nq; j++) {
        float *o = out + (size_t)j * n;
        for (int i = 0; i < nk; i++) {
            const float w = p[(size_t)j * lds + i], *vi = vt + (size_t)i * n;
            for (int d = 0; d < n; d++)
                o[d] = fmaf(w, vi[d], o[d]);
        }
    }
}

/* exp(x) for x <= 0 (softmax weights): 2^k * p(r), k = rint(x log2 e), r = x - k ln 2 in
 * two steps (Cody-Waite), p the degree-6 Taylor polynomial by Horner's rule in fmaf;
 * 0 below -87 (where expf leaves the normal range). Within 2 ulp of expf; each step is
 * one rounded operation, so vector lanes doing the same steps give the same bits. */
static inline float attn_exp1(float x) {
    if (!(x >= -87.0f)) return 0.0f; /* -inf too */
    const float k = rintf(x * 1.44269504f);
    float r = fmaf(k, -0.693145752f, x);
    r = fmaf(k, -1.42860677e-06f, r);
    float p = 1.38888889e-03f;
    p = fmaf(p, r, 8.33333333e-03f);
    p = fmaf(p, r, 4.16666667e-02f);
    p = fmaf(p, r, 1.66666667e-01f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    uint32_t bits = (uint32_t)((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

static inline float attn_scale_max_generic(float *s, int n, float scale) {
    float max = -INFINITY;
    for (int i = 0; i < n; i++) {
        s[i] *= scale;
        if (s[i] > max) max = s[i];
    }
    return max;
}

/* The sum of a tile's weights: part[l] = s[l] + s[l + 8] + ... (from 0, in index
 * order), then ((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7)), which is how an
 * 8-lane vector folds its halves and then its pairs. */
#define ATTN_SUM_LANES 8
static inline float attn_tile_sum(const float part[ATTN_SUM_LANES]) {
    return ((part[0] + part[4]) + (part[2] + part[6])) +
           ((part[1] + part[5]) + (part[3] + part[7]));
}

static inline void attn_exp_generic(float *s, int n, float max, float *sum) {
    float part[ATTN_SUM_LANES] = {0};
    for (int i = 0; i < n; i++) {
        s[i] = attn_exp1(s[i] - max);
        part[i % ATTN_SUM_LANES] += s[i];
    }
    *sum += attn_tile_sum(part);
}

#endif
