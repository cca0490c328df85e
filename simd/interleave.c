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
           type == WIM_Q5_1;
}

static size_t block_bytes(int type) {
    return type == WIM_Q8_0 ? sizeof(block_q8_0) : wim_q_block_bytes(type);
}

/* Where a row block's fields start (-1: the type has none) and its quant bytes. */
typedef struct {
    int m, qh, qs, nq;
} fields;

static fields fields_of(int type) {
    const int has_min = type == WIM_Q4_1 || type == WIM_Q5_1;
    const int five = type == WIM_Q5_0 || type == WIM_Q5_1;
    const int nq = type == WIM_Q8_0 ? 32 : 16;
    fields f = {has_min ? 2 : -1, five ? 2 + 2 * has_min : -1, 0, nq};
    f.qs = (int)block_bytes(type) - nq;
    return f;
}

/* The group block of 8 row blocks rows[c] (each block_bytes apart) into g. */
static void interleave_block(int type, const uint8_t *rows, size_t row_stride, uint8_t *g) {
    const fields f = fields_of(type);
    for (int c = 0; c < 8; c++) {
        const uint8_t *r = rows + c * row_stride;
        memcpy(g + 2 * c, r, 2);
        if (f.m >= 0) memcpy(g + 8 * f.m + 2 * c, r + f.m, 2);
        for (int u = 0; u < f.nq / 4; u++)
            memcpy(g + 8 * f.qs + 32 * u + 4 * c, r + f.qs + 4 * u, 4);
    }
    if (f.qh >= 0)
        for (int v = 0; v < 8; v++) {
            uint32_t mask = 0;
            for (int c = 0; c < 8; c++) {
                uint32_t h;
                memcpy(&h, rows + c * row_stride + f.qh, 4);
                mask |= ((h >> (4 * v)) & 0xFu) << (4 * c);
            }
            memcpy(g + 8 * f.qh + 4 * v, &mask, 4);
        }
}

int wim_interleave(int type, void *w, int n, int nb) {
    if (!wim_x8_type(type) || n < 8 || nb <= 0) return 0;
    const size_t bb = block_bytes(type), row = bb * (size_t)nb;
    uint8_t *rows = malloc(8 * row); /* one group, row-major */
    if (!rows) return -1;
    for (int g = 0; g < n / 8; g++) {
        uint8_t *dst = (uint8_t *)w + (size_t)g * 8 * row;
        memcpy(rows, dst, 8 * row);
        for (int b = 0; b < nb; b++)
            interleave_block(type, rows + b * bb, row, dst + 8 * bb * b);
    }
    free(rows);
    return 0;
}

void wim_x8_block(int type, const void *group, int b, int c, void *out) {
    const fields f = fields_of(type);
    const uint8_t *g = (const uint8_t *)group + 8 * block_bytes(type) * (size_t)b;
    uint8_t *r = out;
    memcpy(r, g + 2 * c, 2);
    if (f.m >= 0) memcpy(r + f.m, g + 8 * f.m + 2 * c, 2);
    for (int u = 0; u < f.nq / 4; u++)
        memcpy(r + f.qs + 4 * u, g + 8 * f.qs + 32 * u + 4 * c, 4);
    if (f.qh >= 0) {
        uint32_t h = 0;
        for (int v = 0; v < 8; v++) {
            uint32_t mask;
            memcpy(&mask, g + 8 * f.qh + 4 * v, 4);
            h |= ((mask >> (4 * c)) & 0xFu) << (4 * v);
        }
        memcpy(r + f.qh, &h, 4);
    }
}

/* wim_q_unpack of one block of a 32-weight type (the type made a constant for each
 * call, so no other type's reads of a larger block are compiled against the buffer). */
static void unpack_block(int type, const uint8_t *blk, wim_qblock *q) {
    switch (type) {
    case WIM_Q4_0:
        wim_q_unpack(WIM_Q4_0, blk, 0, q);
        break;
    case WIM_Q4_1:
        wim_q_unpack(WIM_Q4_1, blk, 0, q);
        break;
    case WIM_Q5_0:
        wim_q_unpack(WIM_Q5_0, blk, 0, q);
        break;
    default:
        wim_q_unpack(WIM_Q5_1, blk, 0, q);
        break;
    }
}

void wim_x8_gemm_ref(int type, int M, int N, int K, const block_q8_0 *x, const void *w, float *y,
                     int ldy) {
    const int nb = K / QK8_0;
    const size_t group = 8 * block_bytes(type) * (size_t)nb;
    for (int m = 0; m < M; m++)
        for (int j = 0; j < N; j++) {
            const block_q8_0 *xr = x + (size_t)m * nb;
            const uint8_t *gw = (const uint8_t *)w + (size_t)(j / 8) * group;
            float acc = 0.0f;
            for (int b = 0; b < nb; b++) {
                union {
                    block_q8_0 q8;
                    uint8_t bytes[sizeof(block_q8_0)];
                } blk;
                wim_x8_block(type, gw, b, j % 8, blk.bytes);
                const float dx = wim_fp16_to_fp32(xr[b].d);
                int32_t isum = 0, xsum = 0;
                float d, mn = 0.0f;
                if (type == WIM_Q8_0) { /* scalar.c's gemm_q8_0 */
                    for (int i = 0; i < QK8_0; i++)
                        isum += (int32_t)xr[b].qs[i] * blk.q8.qs[i];
                    d = wim_fp16_to_fp32(blk.q8.d);
                } else { /* quants.h's wim_q_gemm, a 32-weight slice */
                    wim_qblock q;
                    unpack_block(type, blk.bytes, &q);
                    for (int i = 0; i < 32; i++) {
                        isum += (int32_t)xr[b].qs[i] * q.v[i] * (i < 16 ? q.sa : q.sb);
                        xsum += xr[b].qs[i];
                    }
                    d = q.d, mn = q.mn;
                }
                float s = dx * d;
                float t = (float)isum * s;
                acc = acc + t;
                if (wim_q_has_min(type)) {
                    float sm = dx * mn;
                    float pm = (float)xsum * sm;
                    acc = acc + pm;
                }
            }
            y[(size_t)m * ldy + j] = acc;
        }
}
