/*
 * quants.h — the GGUF block-quantized weight formats beyond Q8_0, and their one
 * unpacked form that every kernel computes with.
 *
 * Owns: the byte layouts of Q4_0, Q4_1, Q5_0, Q5_1 (32 weights a block) and of
 * the K-quants Q4_K, Q5_K, Q6_K (256 weights a super-block), as GGUF files store
 * them; wim_qblock, one 32-weight slice in integer form; the unpackers; and
 * wim_q_gemm, the products one output at a time (scalar.c's and neon.c's body).
 *
 * Invariants (the semantics of every weight type, in every ISA):
 *  - A row is read 32 weights at a time.  Each 32-slice unpacks to small integers
 *    v[32], two integer sub-scales sa (v[0..15]) and sb (v[16..31]), a float
 *    scale d and, for the types with a minimum, a float mn (the K-quants also
 *    give the integer minimum mi and the super-block's dmin, mn = -(dmin * mi)):
 *        weight_i = (d * s_i) * v_i  [+ mn]          (s_i = sa or sb)
 *  - Q4_0, Q4_1, Q5_0, Q5_1 against a block_q8_0 activation block (dx, xq[32]):
 *        isum = sa * sum_{i<16} v_i*xq_i + sb * sum_{i>=16} v_i*xq_i   (exact int32)
 *        acc = acc + (float)isum * (dx * d)
 *        acc = acc + (float)xsum * (dx * mn)      (Q4_1, Q5_1; xsum = sum xq)
 *    per 32 weights in order, each a separately rounded fp32 operation.
 *  - Q4_K, Q5_K, Q6_K against a block_q8_K (dx in fp32, xq[256]): the whole
 *    256-weight super-block is one exact integer sum, then at most two fp32 steps
 *        isum = sum over its 8 slices of (sa * lo + sb * hi)               (int32)
 *        msum = sum over its 8 slices of mi * xsum_slice    (Q4_K, Q5_K; int32)
 *        acc = acc + (float)isum * (dx * d)
 *        acc = acc - (float)msum * (dx * dmin)
 *    as ggml does with its Q8_K: eight times fewer float steps per weight, and
 *    the slices need no reduction of their own.  |isum| < 2^28 (63*31*127*256 for
 *    Q5_K; 128*32*127*256 for Q6_K), so int32 never overflows.
 *  - Both forms are bit-exact across ISAs, tile shapes and threads, like gemm_q8_0.
 *  - The unpackers only read bytes of the block they unpack, so a row is safe to
 *    read at any block index below its length.
 */
#ifndef WIM_QUANTS_H
#define WIM_QUANTS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "simd.h"

/* ggml's type numbers, as stored in GGUF tensor infos. */
enum {
    WIM_Q4_0 = 2,
    WIM_Q4_1 = 3,
    WIM_Q5_0 = 6,
    WIM_Q5_1 = 7,
    WIM_Q4_K = 12,
    WIM_Q5_K = 13,
    WIM_Q6_K = 14,
};

#define QK_K 256 /* weights per K-quant super-block */

typedef struct {
    uint16_t d;
    uint8_t qs[16]; /* element i: low nibble of qs[i], element 16+i: high nibble */
} block_q4_0;
typedef struct {
    uint16_t d, m;
    uint8_t qs[16];
} block_q4_1;
typedef struct {
    uint16_t d;
    uint8_t qh[4]; /* bit i (little-endian uint32): fifth bit of element i */
    uint8_t qs[16];
} block_q5_0;
typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} block_q5_1;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12]; /* 8 six-bit scales and 8 six-bit mins, packed */
    uint8_t qs[128];    /* 64-weight groups: sub-block 2g low nibbles, 2g+1 high */
} block_q4_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32]; /* bit j of qh[l]: fifth bit of element l of sub-block j */
    uint8_t qs[128];
} block_q5_K;
typedef struct {
    uint8_t ql[128];   /* low 4 bits */
    uint8_t qh[64];    /* high 2 bits */
    int8_t scales[16]; /* one per 16 weights */
    uint16_t d;
} block_q6_K;

_Static_assert(sizeof(block_q4_0) == 18, "GGUF layout");
_Static_assert(sizeof(block_q4_1) == 20, "GGUF layout");
_Static_assert(sizeof(block_q5_0) == 22, "GGUF layout");
_Static_assert(sizeof(block_q5_1) == 24, "GGUF layout");
_Static_assert(sizeof(block_q4_K) == 144, "GGUF layout");
_Static_assert(sizeof(block_q5_K) == 176, "GGUF layout");
_Static_assert(sizeof(block_q6_K) == 210, "GGUF layout");

/* One 32-weight slice, unpacked (see the semantics above). */
typedef struct {
    int8_t v[32];
    int16_t sa, sb;
    int16_t mi; /* K-quants: the slice's integer minimum (0 elsewhere) */
    float d, mn;
    float dmin; /* K-quants: the super-block's minimum scale */
} wim_qblock;

/* Whether the type computes per 256-weight super-block against block_q8_K. */
static inline int wim_q_is_k(int type) {
    return type == WIM_Q4_K || type == WIM_Q5_K || type == WIM_Q6_K;
}

/* Whether the type adds a per-block minimum (the xsum term). */
static inline int wim_q_has_min(int type) {
    return type == WIM_Q4_1 || type == WIM_Q5_1 || type == WIM_Q4_K || type == WIM_Q5_K;
}

/* Whether the type's sub-scales can differ between the two halves of a slice. */
static inline int wim_q_split_scales(int type) {
    return type == WIM_Q6_K;
}

/* Whether the type has integer sub-scales other than 1. */
static inline int wim_q_int_scales(int type) {
    return type == WIM_Q4_K || type == WIM_Q5_K || type == WIM_Q6_K;
}

/* Bytes of the storage block that holds 32-slice b, and where it starts. */
static inline size_t wim_q_block_bytes(int type) {
    switch (type) {
    case WIM_Q4_0:
        return sizeof(block_q4_0);
    case WIM_Q4_1:
        return sizeof(block_q4_1);
    case WIM_Q5_0:
        return sizeof(block_q5_0);
    case WIM_Q5_1:
        return sizeof(block_q5_1);
    case WIM_Q4_K:
        return sizeof(block_q4_K);
    case WIM_Q5_K:
        return sizeof(block_q5_K);
    case WIM_Q6_K:
        return sizeof(block_q6_K);
    }
    return 0;
}

/* Weights per storage block: 32, or 256 for the K-quants. */
static inline int wim_q_block_weights(int type) {
    return type == WIM_Q4_K || type == WIM_Q5_K || type == WIM_Q6_K ? QK_K : 32;
}

static inline int wim_q_known(int type) {
    return wim_q_block_bytes(type) != 0;
}

/* The K-quants' 6-bit scale and min of sub-block j (0..7). */
static inline void wim_q_scale_min_k4(const uint8_t *q, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Unpacks 32-slice b of a row of `type` into o. */
static inline void wim_q_unpack(int type, const void *row, int b, wim_qblock *o) {
    const uint8_t *p = row;
    o->sa = o->sb = 1;
    o->mi = 0;
    o->d = o->mn = o->dmin = 0.0f;
    switch (type) {
    case WIM_Q4_0: {
        const block_q4_0 *q = (const block_q4_0 *)(p + (size_t)b * sizeof *q);
        for (int i = 0; i < 16; i++) {
            o->v[i] = (int8_t)((q->qs[i] & 0xF) - 8);
            o->v[i + 16] = (int8_t)((q->qs[i] >> 4) - 8);
        }
        o->d = wim_fp16_to_fp32(q->d);
        return;
    }
    case WIM_Q4_1: {
        const block_q4_1 *q = (const block_q4_1 *)(p + (size_t)b * sizeof *q);
        for (int i = 0; i < 16; i++) {
            o->v[i] = (int8_t)(q->qs[i] & 0xF);
            o->v[i + 16] = (int8_t)(q->qs[i] >> 4);
        }
        o->d = wim_fp16_to_fp32(q->d);
        o->mn = wim_fp16_to_fp32(q->m);
        return;
    }
    case WIM_Q5_0:
    case WIM_Q5_1: {
        const uint8_t *qh, *qs;
        if (type == WIM_Q5_0) {
            const block_q5_0 *q = (const block_q5_0 *)(p + (size_t)b * sizeof *q);
            qh = q->qh, qs = q->qs;
            o->d = wim_fp16_to_fp32(q->d);
        } else {
            const block_q5_1 *q = (const block_q5_1 *)(p + (size_t)b * sizeof *q);
            qh = q->qh, qs = q->qs;
            o->d = wim_fp16_to_fp32(q->d);
            o->mn = wim_fp16_to_fp32(q->m);
        }
        uint32_t h;
        memcpy(&h, qh, 4);
        const int off = type == WIM_Q5_0 ? 16 : 0;
        for (int i = 0; i < 16; i++) {
            o->v[i] = (int8_t)(((qs[i] & 0xF) | (((h >> i) & 1) << 4)) - off);
            o->v[i + 16] = (int8_t)(((qs[i] >> 4) | (((h >> (i + 16)) & 1) << 4)) - off);
        }
        return;
    }
    case WIM_Q4_K:
    case WIM_Q5_K: {
        const int j = b % 8, g = j / 2, hi = j & 1;
        const uint8_t *scales, *qs, *qh = NULL;
        uint16_t d, dmin;
        if (type == WIM_Q4_K) {
            const block_q4_K *q = (const block_q4_K *)(p + (size_t)(b / 8) * sizeof *q);
            scales = q->scales, qs = q->qs, d = q->d, dmin = q->dmin;
        } else {
            const block_q5_K *q = (const block_q5_K *)(p + (size_t)(b / 8) * sizeof *q);
            scales = q->scales, qs = q->qs, qh = q->qh, d = q->d, dmin = q->dmin;
        }
        int sc, mn;
        wim_q_scale_min_k4(scales, j, &sc, &mn);
        for (int l = 0; l < 32; l++) {
            int v = hi ? qs[32 * g + l] >> 4 : qs[32 * g + l] & 0xF;
            if (qh) v |= ((qh[l] >> j) & 1) << 4;
            o->v[l] = (int8_t)v;
        }
        o->sa = o->sb = (int16_t)sc;
        o->mi = (int16_t)mn;
        o->d = wim_fp16_to_fp32(d);
        o->dmin = wim_fp16_to_fp32(dmin);
        o->mn = -(o->dmin * (float)mn);
        return;
    }
    case WIM_Q6_K: {
        const block_q6_K *q = (const block_q6_K *)(p + (size_t)(b / 8) * sizeof *q);
        const int j = b % 8, half = j / 4, g = j % 4;
        const uint8_t *ql = q->ql + 64 * half + (g & 1) * 32, *qh = q->qh + 32 * half;
        for (int l = 0; l < 32; l++) {
            int lo = g < 2 ? ql[l] & 0xF : ql[l] >> 4;
            o->v[l] = (int8_t)((lo | (((qh[l] >> (2 * g)) & 3) << 4)) - 32);
        }
        o->sa = q->scales[2 * j];
        o->sb = q->scales[2 * j + 1];
        o->d = wim_fp16_to_fp32(q->d);
        return;
    }
    }
}

/* The weights of a slice as floats: (d * s) * v, plus mn where the type has one
 * (the order of operations ggml's dequantizers use). */
static inline void wim_q_dequant(int type, const wim_qblock *q, float *out) {
    const float da = q->d * (float)q->sa, db = q->d * (float)q->sb;
    for (int i = 0; i < 32; i++) {
        float w = (i < 16 ? da : db) * (float)q->v[i];
        out[i] = wim_q_has_min(type) ? w + q->mn : w;
    }
}

/* The products of quants.h's semantics, one output at a time: each weight slice
 * unpacked once per column and folded into every row's output, y serving as the
 * accumulator (fp32 values are stored exactly, so this is the defined sequence).
 * dot16 is the exact int32 dot product of 16 int8 pairs; scalar.c instantiates
 * this with plain C, neon.c with its dot instructions. x holds block_q8_0 rows,
 * or block_q8_K rows for the K-quants. */
static inline void wim_q_gemm(int type, int M, int N, int K, const void *x, const void *w,
                              size_t row_bytes, float *y, int ldy,
                              int32_t (*dot16)(const int8_t *, const int8_t *)) {
    const int k = wim_q_is_k(type), has_min = wim_q_has_min(type);
    const int nb = K / 32, nsb = K / 256;
    for (int j = 0; j < N; j++) {
        const uint8_t *wr = (const uint8_t *)w + (size_t)j * row_bytes;
        for (int m = 0; m < M; m++)
            y[(size_t)m * ldy + j] = 0.0f;
        for (int b0 = 0; b0 < nb; b0 += k ? 8 : 1) { /* a super-block, or a slice */
            wim_qblock q[8];
            for (int t = 0; t < (k ? 8 : 1); t++)
                wim_q_unpack(type, wr, b0 + t, &q[t]);
            for (int m = 0; m < M; m++) {
                const int8_t *xq;
                float dx;
                int32_t isum = 0, msum = 0;
                if (k) {
                    const block_q8_K *xb = (const block_q8_K *)x + (size_t)m * nsb + b0 / 8;
                    xq = xb->qs, dx = xb->d;
                    for (int t = 0; t < 8; t++)
                        msum += q[t].mi * (xb->bsums[2 * t] + xb->bsums[2 * t + 1]);
                } else {
                    const block_q8_0 *xb = (const block_q8_0 *)x + (size_t)m * nb + b0;
                    xq = xb->qs, dx = wim_fp16_to_fp32(xb->d);
                    for (int i = 0; i < 32; i++)
                        msum += xq[i]; /* xsum, for Q4_1 / Q5_1 */
                }
                for (int t = 0; t < (k ? 8 : 1); t++)
                    isum += q[t].sa * dot16(xq + 32 * t, q[t].v) +
                            q[t].sb * dot16(xq + 32 * t + 16, q[t].v + 16);
                float *acc = &y[(size_t)m * ldy + j];
                float s = dx * q[0].d;
                float p = (float)isum * s;
                *acc = *acc + p;
                if (has_min && k) {
                    float sm = dx * q[0].dmin;
                    float pm = (float)msum * sm;
                    *acc = *acc - pm;
                } else if (has_min) {
                    float sm = dx * q[0].mn;
                    float pm = (float)msum * sm;
                    *acc = *acc + pm;
                }
            }
        }
    }
}

#endif
