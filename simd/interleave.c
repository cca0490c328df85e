/*
 * interleave.c — weight rows into the 8-row interleaved layouts of interleave.h, in
 * place, and back.
 *
 * Owns: wim_interleave, wim_x8_block and wim_x8_gemm_ref.  Interleaving permutes
 * bytes (and, for Q5, the bits of the fifth-bit masks): every block comes back
 * unchanged, so gemm_x8 gives the same bits as the row-major kernels.  Built
 * without ISA flags: the model calls it once per matrix at load, whatever table
 * runs, and the reference serves tables built for newer cores (neon.c) on the oldest.
 */
#include "interleave.h"

#include <stdlib.h>
#include <string.h>

#include "quants.h"

int wim_x8_type(int type) {
    return type == WIM_Q8_0 || type == WIM_Q4_0 || type == WIM_Q4_1 || type == WIM_Q5_0 ||
           type == WIM_Q5_1 || type == WIM_Q4_K || type == WIM_Q5_K || type == WIM_Q6_K;
}

static size_t block_bytes(int type) {
    return type == WIM_Q8_0 ? sizeof(block_q8_0) : wim_q_block_bytes(type);
}

/* A field of a row block: `bytes` at `off`, laid side by side `unit` bytes of each row at
 * a time (0: Q5_0/Q5_1's fifth bits, which become masks).  The fields of a group block
 * follow each other in list order, 8 * bytes each: unit e of row c sits (8e + c) * unit
 * into its field. */
typedef struct {
    int off, bytes, unit;
} field;

/* The row format's fields in order (quants.h); returns how many. */
static int fields_of(int type, field *f) {
    switch (type) {
    case WIM_Q8_0:
        f[0] = (field){0, 2, 2}, f[1] = (field){2, 32, 4};
        return 2;
    case WIM_Q4_0:
        f[0] = (field){0, 2, 2}, f[1] = (field){2, 16, 4};
        return 2;
    case WIM_Q4_1:
        f[0] = (field){0, 2, 2}, f[1] = (field){2, 2, 2}, f[2] = (field){4, 16, 4};
        return 3;
    case WIM_Q5_0:
        f[0] = (field){0, 2, 2}, f[1] = (field){2, 4, 0}, f[2] = (field){6, 16, 4};
        return 3;
    case WIM_Q5_1:
        f[0] = (field){0, 2, 2}, f[1] = (field){2, 2, 2}, f[2] = (field){4, 4, 0};
        f[3] = (field){8, 16, 4};
        return 4;
    case WIM_Q4_K: /* d, dmin, the 12 packed scale bytes one by one, qs */
        f[0] = (field){0, 2, 2}, f[1] = (field){2, 2, 2}, f[2] = (field){4, 12, 1};
        f[3] = (field){16, 128, 4};
        return 4;
    case WIM_Q5_K:
        f[0] = (field){0, 2, 2}, f[1] = (field){2, 2, 2}, f[2] = (field){4, 12, 1};
        f[3] = (field){16, 32, 4}, f[4] = (field){48, 128, 4};
        return 5;
    default: /* WIM_Q6_K: each half's ql and qh together (the order a decode reads them),
              * the 16 int8 scales, d */
        f[0] = (field){0, 64, 4}, f[1] = (field){128, 32, 4}, f[2] = (field){64, 64, 4};
        f[3] = (field){160, 32, 4}, f[4] = (field){192, 16, 1}, f[5] = (field){208, 2, 2};
        return 6;
    }
}

/* Row block <-> row c's share of a group block, one field (at g): to_group 1 scatters the
 * row's bytes into g, 0 gathers them back. */
static void move_field(field f, int c, uint8_t *row, uint8_t *g, int to_group) {
    row += f.off;
    if (f.unit == 0) { /* mask v, bit 4c + k: the row's bit 4v + k */
        uint32_t h = 0, mask;
        if (to_group) memcpy(&h, row, 4);
        for (int v = 0; v < 8; v++) {
            memcpy(&mask, g + 4 * v, 4);
            if (to_group) {
                mask = (mask & ~(0xFu << (4 * c))) | ((h >> (4 * v)) & 0xFu) << (4 * c);
                memcpy(g + 4 * v, &mask, 4);
            } else
                h |= ((mask >> (4 * c)) & 0xFu) << (4 * v);
        }
        if (!to_group) memcpy(row, &h, 4);
        return;
    }
    /* constant-size copies, which the compiler inlines (a call per unit made loading
     * 10x slower) */
    for (int e = 0; e < f.bytes / f.unit; e++) {
        uint8_t *at = g + (size_t)(8 * e + c) * f.unit, *r = row + e * f.unit;
        uint8_t *dst = to_group ? at : r, *src = to_group ? r : at;
        if (f.unit == 4)
            memcpy(dst, src, 4);
        else if (f.unit == 2)
            memcpy(dst, src, 2);
        else
            *dst = *src;
    }
}

int wim_interleave(int type, void *w, int n, int K) {
    const int nb = K / (wim_q_is_k(type) ? QK_K : 32);
    if (!wim_x8_type(type) || n < 8 || nb <= 0) return 0;
    const size_t bb = block_bytes(type), row = bb * (size_t)nb;
    field f[6];
    const int nf = fields_of(type, f);
    uint8_t *rows = malloc(8 * row); /* one group, row-major */
    if (!rows) return -1;
    for (int g = 0; g < n / 8; g++) {
        uint8_t *dst = (uint8_t *)w + (size_t)g * 8 * row;
        memcpy(rows, dst, 8 * row);
        for (int b = 0; b < nb; b++)
            for (int c = 0; c < 8; c++)
                for (int i = 0, at = 0; i < nf; at += 8 * f[i++].bytes)
                    move_field(f[i], c, rows + c * row + b * bb, dst + 8 * bb * b + at, 1);
    }
    free(rows);
    return 0;
}

void wim_x8_block(int type, const void *group, int b, int c, void *out) {
    field f[6];
    const int nf = fields_of(type, f);
    uint8_t *g = (uint8_t *)group + 8 * block_bytes(type) * (size_t)b;
    for (int i = 0, at = 0; i < nf; at += 8 * f[i++].bytes)
        move_field(f[i], c, out, g + at, 0);
}

/* wim_q_unpack of slice t of one row block at blk, with the type made a constant for each
 * call, so that no other type's reads of a larger block are compiled against the buffer. */
static void unpack_slice(int type, const uint8_t *blk, int t, wim_qblock *q) {
    switch (type) {
#define UNPACK(T)                                                                                  \
    case T:                                                                                        \
        wim_q_unpack(T, blk, t, q);                                                                \
        break;
        UNPACK(WIM_Q4_0)
        UNPACK(WIM_Q4_1)
        UNPACK(WIM_Q5_0) UNPACK(WIM_Q5_1) UNPACK(WIM_Q4_K) UNPACK(WIM_Q5_K) UNPACK(WIM_Q6_K)
#undef UNPACK
    }
}

/* One output: row c of the group at gw against activation row x (block_q8_0, or
 * block_q8_K for the K-quants), as scalar.c's gemm_q8_0 and quants.h's wim_q_gemm
 * compute it. */
static float x8_dot(int type, int K, const void *x, const uint8_t *gw, int c) {
    const int spb = wim_q_is_k(type) ? 8 : 1; /* 32-weight slices per block */
    float acc = 0.0f;
    for (int b = 0; b < K / (32 * spb); b++) {
        union {
            block_q8_0 q8;
            uint8_t bytes[256];
        } blk;
        wim_x8_block(type, gw, b, c, blk.bytes);
        const int8_t *xq;
        float dx;
        int32_t isum = 0, msum = 0;
        if (spb == 8) {
            const block_q8_K *xb = (const block_q8_K *)x + b;
            xq = xb->qs, dx = xb->d;
        } else {
            const block_q8_0 *xb = (const block_q8_0 *)x + b;
            xq = xb->qs, dx = wim_fp16_to_fp32(xb->d);
        }
        wim_qblock q[8];
        if (type == WIM_Q8_0) {
            for (int i = 0; i < QK8_0; i++)
                isum += (int32_t)xq[i] * blk.q8.qs[i];
            q[0].d = wim_fp16_to_fp32(blk.q8.d);
        } else
            for (int t = 0; t < spb; t++) {
                unpack_slice(type, blk.bytes, t, &q[t]);
                int32_t xsum = 0;
                for (int i = 0; i < 32; i++) {
                    isum += (int32_t)xq[32 * t + i] * q[t].v[i] * (i < 16 ? q[t].sa : q[t].sb);
                    xsum += xq[32 * t + i];
                }
                msum += spb == 8 ? q[t].mi * xsum : xsum; /* K-quants: mins; else xsum */
            }
        float s = dx * q[0].d;
        float p = (float)isum * s;
        acc = acc + p;
        if (wim_q_has_min(type) && spb == 8) {
            float sm = dx * q[0].dmin;
            float pm = (float)msum * sm;
            acc = acc - pm;
        } else if (wim_q_has_min(type)) {
            float sm = dx * q[0].mn;
            float pm = (float)msum * sm;
            acc = acc + pm;
        }
    }
    return acc;
}

void wim_x8_gemm_ref(int type, int M, int N, int K, const void *x, const void *w, float *y,
                     int ldy) {
    const int bw = wim_q_is_k(type) ? QK_K : 32;
    const size_t xrow = wim_q_is_k(type) ? (size_t)(K / QK_K) * sizeof(block_q8_K)
                                         : (size_t)(K / 32) * sizeof(block_q8_0);
    const size_t group = 8 * block_bytes(type) * (size_t)(K / bw);
    for (int m = 0; m < M; m++)
        for (int j = 0; j < N; j++)
            y[(size_t)m * ldy + j] = x8_dot(type, K, (const uint8_t *)x + m * xrow,
                                            (const uint8_t *)w + (size_t)(j / 8) * group, j % 8);
}
