/*
 * interleave.c — Q8_0 weight rows into the 8-row interleaved layout (simd.h,
 * block_q8_0x8), in place.
 *
 * Owns: wim_q8_0_interleave and wim_q8_0x8_gemm_ref.  A permutation of bytes: the
 * groups hold exactly the rows' bytes, so wim_q8_0x8_block gives every block back
 * unchanged and gemm_q8_0x8 the same bits as gemm_q8_0.  Built without ISA flags:
 * the model calls the interleaver once per matrix at load, whatever table runs, and
 * the reference serves tables built for newer cores (neon.c) on the oldest.
 */
#include <stdlib.h>

#include "simd.h"

int wim_q8_0_interleave(block_q8_0 *w, int n, int nb) {
    if (n < 8 || nb <= 0) return 0;
    block_q8_0 *rows = malloc((size_t)8 * nb * sizeof *rows); /* one group, row-major */
    if (!rows) return -1;
    for (int g = 0; g < n / 8; g++) {
        block_q8_0 *src = w + (size_t)g * 8 * nb;
        memcpy(rows, src, (size_t)8 * nb * sizeof *rows);
        block_q8_0x8 *dst = (block_q8_0x8 *)src;
        for (int b = 0; b < nb; b++)
            for (int c = 0; c < 8; c++) {
                const block_q8_0 *r = &rows[(size_t)c * nb + b];
                dst[b].d[c] = r->d;
                for (int v = 0; v < 8; v++)
                    memcpy(dst[b].qs[v] + 4 * c, r->qs + 4 * v, 4);
            }
    }
    free(rows);
    return 0;
}

void wim_q8_0x8_gemm_ref(int M, int N, int K, const block_q8_0 *x, const block_q8_0x8 *w, float *y,
                         int ldy) {
    const int nb = K / QK8_0;
    for (int m = 0; m < M; m++)
        for (int j = 0; j < N; j++) {
            const block_q8_0 *xr = x + (size_t)m * nb;
            float acc = 0.0f;
            for (int b = 0; b < nb; b++) {
                block_q8_0 wb;
                wim_q8_0x8_block(w + (size_t)(j / 8) * nb, b, j % 8, &wb);
                int32_t isum = 0;
                for (int i = 0; i < QK8_0; i++)
                    isum += (int32_t)xr[b].qs[i] * wb.qs[i];
                float s = wim_fp16_to_fp32(xr[b].d) * wim_fp16_to_fp32(wb.d);
                float t = (float)isum * s;
                acc = acc + t;
            }
            y[(size_t)m * ldy + j] = acc;
        }
}
