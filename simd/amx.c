/*
 * amx.c — AMX-INT8 tiles for the prefill GEMM (Sapphire Rapids and later).
 *
 * Owns: wim_kernels_amx.  Only gemm_q8_0 uses tiles, and only for whole 16-row x
 * 16-column blocks of the output; every other entry, the row/column remainders
 * and the decode GEMV (M < 16) go to the AVX512-VNNI table.  That mixing is safe
 * because both are bit-exact with scalar.c.
 *
 * Invariants:
 *  - One TDPBSSD per 32-value block: C[j][m] = sum_k w_j[k]*x_m[k] for 16 weight
 *    columns j and 16 activation rows m, exact in int32 (signed x signed, so
 *    even w = -128 needs no trick).  The block's C tile is then folded into fp32
 *    per output as acc = acc + (float)isum * (dx*dw), the scalar order.
 *  - Tile configuration is per thread and the engine calls kernels from several
 *    OpenMP threads, so every call loads its configuration and releases it.
 *  - dispatch.c hands this table out only after the kernel granted the process
 *    tile data (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)).
 */
#include <stdlib.h>

#include "simd.h"

/* Where the rows and columns that do not fill a tile go (any table bit-exact with
 * scalar.c would do; tests/test_simd.c builds this file against the scalar one,
 * with the tile instructions emulated, to check the tiling logic on any CPU). */
#ifndef WIM_AMX_FALLBACK
#define WIM_AMX_FALLBACK wim_kernels_avx512vnni
#define WIM_AMX_TABLE wim_kernels_amx
#endif
extern const wim_kernels WIM_AMX_FALLBACK;

#ifndef WIM_AMX_EMULATE
#include <immintrin.h>
#endif

typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Tile registers (the intrinsics want literal numbers):
 *   tmm0  C  16 rows x 16 int32      C[j][m], j = weight column, m = x row
 *   tmm1  A  16 rows x 32 bytes      one block of 16 weight rows, loaded in place
 *   tmm2  B   8 rows x 64 bytes      one block of 16 x rows, packed by pack_x */

/* GCC's tile intrinsics under-declare their memory operands: _tile_loadconfig's
 * covers 8 of the 64 configuration bytes and _tile_loadd's none, so the compiler
 * could reorder or even delete the stores they depend on (the packed activations
 * are freed without a visible read).  Hence a full-size operand for ldtilecfg and
 * a compiler barrier between packing and the tile loads. */
#ifdef WIM_AMX_EMULATE
#define LOAD_TILE_CONFIG(cfg) _tile_loadconfig(cfg)
#elif defined(__clang__) /* no %X operand modifier (make fuzz builds with clang) */
#define LOAD_TILE_CONFIG(cfg) __asm__ volatile("ldtilecfg\t%0" ::"m"(*(cfg)))
#else
#define LOAD_TILE_CONFIG(cfg) __asm__ volatile("ldtilecfg\t%X0" ::"m"(*(cfg)))
#endif
#define MEMORY_BARRIER() __asm__ volatile("" ::: "memory")

/* 16 fp32 lanes as a GCC vector: the epilogue is plain C that compiles to AVX-512
 * here and to anything in the emulated test build. */
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

/* Activations for rows i0..i0+15 in TDPBSSD's B layout: per block b, row r holds
 * the four bytes k = 4r..4r+3 of each of the 16 rows; plus their fp32 scales. */
static void pack_x(const block_q8_0 *x, int nb, int8_t *xb, float *xs) {
    for (int b = 0; b < nb; b++) {
        int8_t *dst = xb + (size_t)b * 512;
        for (int m = 0; m < 16; m++) {
            const block_q8_0 *blk = x + (size_t)m * nb + b;
            xs[b * 16 + m] = wim_fp16_to_fp32(blk->d);
            for (int r = 0; r < 8; r++)
                memcpy(dst + r * 64 + m * 4, blk->qs + 4 * r, 4);
        }
    }
}

/* Output rows i0..i0+15 (x, y already offset) x columns j0..j0+15. */
static void amx_block(int nb, const int8_t *xb, const float *xs, const block_q8_0 *w, float *y,
                      int ldy) {
    v16f acc[16];
    v16i c[16] __attribute__((aligned(64)));
    for (int j = 0; j < 16; j++)
        acc[j] = (v16f){0};
    const size_t wstride = (size_t)nb * sizeof(block_q8_0);
    for (int b = 0; b < nb; b++) {
        _tile_zero(0);
        _tile_loadd(1, w[b].qs, wstride); /* row j: w[j*nb + b].qs */
        _tile_loadd(2, xb + (size_t)b * 512, 64);
        _tile_dpbssd(0, 1, 2);
        _tile_stored(0, c, 64);
        v16f dx;
        memcpy(&dx, xs + (size_t)b * 16, sizeof dx);
        for (int j = 0; j < 16; j++) {
            const float dw = wim_fp16_to_fp32(w[(size_t)j * nb + b].d);
            v16f s = dx * dw; /* per lane dx*dw, the scalar product */
            v16f t = __builtin_convertvector(c[j], v16f) * s;
            acc[j] = acc[j] + t;
        }
    }
    for (int j = 0; j < 16; j++)
        for (int m = 0; m < 16; m++)
            y[(size_t)m * ldy + j] = acc[j][m];
}

static void gemm_q8_0(int M, int N, int K, const block_q8_0 *x, const block_q8_0 *w, float *y,
                      int ldy) {
    const int nb = K / QK8_0, M16 = M & ~15, N16 = N & ~15;
    int8_t *xb = NULL;
    float *xs = NULL;
    if (M16 && N16 && nb) {
        xb = aligned_alloc(64, (size_t)nb * 512);
        xs = malloc((size_t)nb * 16 * sizeof *xs);
    }
    if (!xb || !xs) { /* nothing for the tiles (or no memory): all on the fallback */
        free(xb);
        free(xs);
        WIM_AMX_FALLBACK.gemm_q8_0(M, N, K, x, w, y, ldy);
        return;
    }
    tile_config cfg __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    cfg.rows[0] = 16, cfg.colsb[0] = 64;
    cfg.rows[1] = 16, cfg.colsb[1] = 32;
    cfg.rows[2] = 8, cfg.colsb[2] = 64;
    LOAD_TILE_CONFIG(&cfg);
    for (int i0 = 0; i0 < M16; i0 += 16) {
        pack_x(x + (size_t)i0 * nb, nb, xb, xs);
        MEMORY_BARRIER();
        for (int j0 = 0; j0 < N16; j0 += 16)
            amx_block(nb, xb, xs, w + (size_t)j0 * nb, y + (size_t)i0 * ldy + j0, ldy);
    }
    _tile_release();
    free(xb);
    free(xs);
    if (N16 < N) /* right columns of the tiled rows */
        WIM_AMX_FALLBACK.gemm_q8_0(M16, N - N16, K, x, w + (size_t)N16 * nb, y + N16, ldy);
    if (M16 < M) /* bottom rows, all columns */
        WIM_AMX_FALLBACK.gemm_q8_0(M - M16, N, K, x + (size_t)M16 * nb, w, y + (size_t)M16 * ldy,
                                   ldy);
}

/* Interleaved weights are the fallback's: this table does not ask for them
 * (interleave = 0), because its prefill tiles read row-major blocks. */
static void gemm_x8(int type, int M, int N, int K, const void *x, const void *w, float *y,
                    int ldy) {
    WIM_AMX_FALLBACK.gemm_x8(type, M, N, K, x, w, y, ldy);
}

static void gemm_q(int type, int M, int N, int K, const void *x, const void *w, size_t row_bytes,
                   float *y, int ldy) {
    WIM_AMX_FALLBACK.gemm_q(type, M, N, K, x, w, row_bytes, y, ldy);
}

static void quantize_q8_K(const float *x, block_q8_K *y, int n) {
    WIM_AMX_FALLBACK.quantize_q8_K(x, y, n);
}

static void quantize_q8_0(const float *x, block_q8_0 *y, int n) {
    WIM_AMX_FALLBACK.quantize_q8_0(x, y, n);
}
static void gemm_f16(int M, int N, int K, const float *x, const uint16_t *w, float *y, int ldy) {
    WIM_AMX_FALLBACK.gemm_f16(M, N, K, x, w, y, ldy);
}
static void gemm_bf16(int M, int N, int K, const float *x, const uint16_t *w, float *y, int ldy) {
    WIM_AMX_FALLBACK.gemm_bf16(M, N, K, x, w, y, ldy);
}
static void gemm_f32(int M, int N, int K, const float *x, const float *w, float *y, int ldy) {
    WIM_AMX_FALLBACK.gemm_f32(M, N, K, x, w, y, ldy);
}
static float dot_f32(const float *a, const float *b, int n) {
    return WIM_AMX_FALLBACK.dot_f32(a, b, n);
}
static float dot_f16(const uint16_t *a, const float *b, int n) {
    return WIM_AMX_FALLBACK.dot_f16(a, b, n);
}
static void axpy_f32(float a, const float *x, float *y, int n) {
    WIM_AMX_FALLBACK.axpy_f32(a, x, y, n);
}
static void axpy_f16(float a, const uint16_t *x, float *y, int n) {
    WIM_AMX_FALLBACK.axpy_f16(a, x, y, n);
}
static void attn_load(const void *k, const void *v, size_t stride, int count, int n, int f16,
                      float *kt, int ldk, float *vt) {
    WIM_AMX_FALLBACK.attn_load(k, v, stride, count, n, f16, kt, ldk, vt);
}
static void attn_scores(const float *q, int nq, const float *kt, int ldk, int nk, int n, float *s,
                        int lds) {
    WIM_AMX_FALLBACK.attn_scores(q, nq, kt, ldk, nk, n, s, lds);
}
static void attn_accum(const float *p, int lds, int nq, const float *vt, int nk, int n,
                       float *out) {
    WIM_AMX_FALLBACK.attn_accum(p, lds, nq, vt, nk, n, out);
}
static float attn_scale_max(float *s, int n, float scale) {
    return WIM_AMX_FALLBACK.attn_scale_max(s, n, scale);
}
static void attn_exp(float *s, int n, float max, float *sum) {
    WIM_AMX_FALLBACK.attn_exp(s, n, max, sum);
}
static void swiglu(const float *g, const float *u, float *out, int n) {
    WIM_AMX_FALLBACK.swiglu(g, u, out, n);
}

const wim_kernels WIM_AMX_TABLE = {
    .isa = "amx",
    .quantize_q8_0 = quantize_q8_0,
    .gemm_q8_0 = gemm_q8_0,
    .gemm_x8 = gemm_x8,
    .gemm_q = gemm_q,
    .quantize_q8_K = quantize_q8_K,
    .gemm_f16 = gemm_f16,
    .gemm_bf16 = gemm_bf16,
    .gemm_f32 = gemm_f32,
    .dot_f32 = dot_f32,
    .dot_f16 = dot_f16,
    .axpy_f32 = axpy_f32,
    .axpy_f16 = axpy_f16,
    .attn_load = attn_load,
    .attn_scores = attn_scores,
    .attn_accum = attn_accum,
    .attn_scale_max = attn_scale_max,
    .attn_exp = attn_exp,
    .swiglu = swiglu,
};
