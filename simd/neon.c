/*
 * neon.c — AArch64 Advanced SIMD kernels, in two variants: plain ASIMD (ARMv8.0)
 * and ASIMD + dot product (SDOT, ARMv8.2+).
 *
 * Owns: wim_kernels_neon (isa "neon") and wim_kernels_neon_dotprod
 * (isa "neon-dotprod"); dispatch.c picks one from HWCAP_ASIMDDP.
 *
 * Invariants:
 *  - The Makefile compiles this file with -march=armv8.2-a+dotprod+fp16, but the
 *    plain variant must run on ARMv8.0 cores.  So every function here carries an
 *    explicit target: the body below is compiled twice (this file includes itself
 *    with NEON_BODY set), once under target("arch=armv8-a") and once under
 *    target("arch=armv8.2-a+dotprod"); only the 32-byte block product differs.
 *  - Same semantics as scalar.c: gemm_q8_0 reduces each (row, column, block)
 *    product to an exact int32 and accumulates acc = acc + (float)isum*(dx*dw)
 *    per output, so it is bit-exact with scalar.c for any tile; quantize uses
 *    FCVTAS (round half away from zero = roundf); axpy has no FMA.
 *  - Tails reuse the full tiles with row/column indices clamped to the last valid
 *    one: the extra lanes recompute a real output and are not stored, so every
 *    output runs the same instruction sequence wherever it sits.
 */
#ifndef NEON_BODY

#include <arm_neon.h>
#include <float.h>
#include <math.h>

#include "attn_tile.h"
#include "interleave.h"
#include "quants.h"
#include "simd.h"
#include "swiglu.h"

#define INLINE static inline __attribute__((always_inline))
#define NEON_NP 64 /* weight columns per panel, reused by every row tile */

/* Plain ASIMD (ARMv8.0). */
#pragma GCC push_options
#pragma GCC target("arch=armv8-a")
#define NEON_BODY 1
#define SFX(name) name##_plain
/* 4 int32 lanes summing to sum x*w over a 32-byte block.  |x| <= 127 and
 * |w| <= 128, so two products fit an int16 lane (<= 32512) before widening. */
INLINE int32x4_t dot32_plain(int8x16_t xa, int8x16_t xb, int8x16_t wa, int8x16_t wb) {
    int16x8_t s0 = vmlal_high_s8(vmull_s8(vget_low_s8(xa), vget_low_s8(wa)), xa, wa);
    int16x8_t s1 = vmlal_high_s8(vmull_s8(vget_low_s8(xb), vget_low_s8(wb)), xb, wb);
    return vpadalq_s16(vpaddlq_s16(s0), s1);
}
/* Sum of x*w over 16 bytes; |w| <= 64 in the unpacked types, so pairs fit int16. */
INLINE int32_t dot16_plain(int8x16_t x, int8x16_t w) {
    return vaddvq_s32(vpaddlq_s16(vmlal_high_s8(vmull_s8(vget_low_s8(x), vget_low_s8(w)), x, w)));
}
#define DOT32 dot32_plain
#define DOT16 dot16_plain
#include "neon.c"
#undef DOT32
#undef DOT16
#undef SFX
#pragma GCC pop_options

/* ASIMD + SDOT (ARMv8.2 dotprod). */
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#define SFX(name) name##_dot
INLINE int32x4_t dot32_sdot(int8x16_t xa, int8x16_t xb, int8x16_t wa, int8x16_t wb) {
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), xa, wa), xb, wb);
}
INLINE int32_t dot16_sdot(int8x16_t x, int8x16_t w) {
    return vaddvq_s32(vdotq_s32(vdupq_n_s32(0), x, w));
}
#define DOT32 dot32_sdot
#define DOT16 dot16_sdot
#include "neon.c"
#undef DOT32
#undef DOT16
#undef SFX
#pragma GCC pop_options

#define TABLE(name, isa_name, sfx)                                                                 \
    const wim_kernels name = {                                                                     \
        .isa = isa_name,                                                                           \
        .quantize_q8_0 = quantize_q8_0_##sfx,                                                      \
        .gemm_q8_0 = gemm_q8_0_##sfx,                                                              \
        .gemm_x8 = wim_x8_gemm_ref,                                                                \
        .gemm_q = gemm_q_##sfx,                                                                    \
        .quantize_q8_K = quantize_q8_K_##sfx,                                                      \
        .gemm_f16 = gemm_f16_##sfx,                                                                \
        .gemm_bf16 = gemm_bf16_##sfx,                                                              \
        .gemm_f32 = gemm_f32_##sfx,                                                                \
        .dot_f32 = dot_f32_##sfx,                                                                  \
        .dot_f16 = dot_f16_##sfx,                                                                  \
        .axpy_f32 = axpy_f32_##sfx,                                                                \
        .axpy_f16 = axpy_f16_##sfx,                                                                \
        .attn_load = attn_load_generic,                                                            \
        .attn_scores = attn_scores_generic,                                                        \
        .attn_accum = attn_accum_generic,                                                          \
        .attn_scale_max = attn_scale_max_generic,                                                  \
        .attn_exp = attn_exp_generic,                                                              \
        .swiglu = swiglu_generic,                                                                  \
    };
TABLE(wim_kernels_neon, "neon", plain)
TABLE(wim_kernels_neon_dotprod, "neon-dotprod", dot)

#else /* NEON_BODY: the kernels, compiled once per variant */

/* ---- int8 --------------------------------------------------------------- */

INLINE float32x4_t SFX(h4)(const uint16_t *h) { /* 4 fp16 -> fp32, exact */
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}

INLINE int32x4_t SFX(hsum4)(int32x4_t a, int32x4_t b, int32x4_t c, int32x4_t d) {
    return vpaddq_s32(vpaddq_s32(a, b), vpaddq_s32(c, d)); /* lane i = sum of the i-th */
}

/* Rows i0..i0+3 x columns j0..j0+3; lanes are rows, one accumulator per column. */
static void SFX(q8_tile4x4)(int M, int N, int i0, int j0, int nb, const block_q8_0 *x,
                            const block_q8_0 *w, float *y, int ldy) {
    const block_q8_0 *xr[4], *wr[4];
    for (int m = 0; m < 4; m++)
        xr[m] = x + (size_t)(i0 + m < M ? i0 + m : M - 1) * nb;
    for (int j = 0; j < 4; j++)
        wr[j] = w + (size_t)(j0 + j < N ? j0 + j : N - 1) * nb;
    float32x4_t acc[4];
#pragma GCC unroll 16
    for (int j = 0; j < 4; j++)
        acc[j] = vdupq_n_f32(0.0f);
    for (int b = 0; b < nb; b++) {
        int8x16_t xa[4], xb[4];
        uint16_t hx[4], hw[4];
#pragma GCC unroll 16
        for (int m = 0; m < 4; m++) {
            xa[m] = vld1q_s8(xr[m][b].qs);
            xb[m] = vld1q_s8(xr[m][b].qs + 16);
            hx[m] = xr[m][b].d;
            hw[m] = wr[m][b].d;
        }
        const float32x4_t dx = SFX(h4)(hx);
        float dw[4];
        vst1q_f32(dw, SFX(h4)(hw));
#pragma GCC unroll 16
        for (int j = 0; j < 4; j++) {
            const int8x16_t wa = vld1q_s8(wr[j][b].qs), wb = vld1q_s8(wr[j][b].qs + 16);
            int32x4_t isum = SFX(hsum4)(DOT32(xa[0], xb[0], wa, wb), DOT32(xa[1], xb[1], wa, wb),
                                        DOT32(xa[2], xb[2], wa, wb), DOT32(xa[3], xb[3], wa, wb));
            float32x4_t s = vmulq_n_f32(dx, dw[j]);
            float32x4_t t = vmulq_f32(vcvtq_f32_s32(isum), s);
            acc[j] = vaddq_f32(acc[j], t);
        }
    }
#pragma GCC unroll 16
    for (int j = 0; j < 4; j++) {
        float t[4];
        vst1q_f32(t, acc[j]);
        for (int m = 0; m < 4; m++)
            if (i0 + m < M && j0 + j < N) y[(size_t)m * ldy + j] = t[m];
    }
}

/* GEMV: one row, columns j0..j0+7; lanes are columns. */
static void SFX(q8_gemv8)(int N, int j0, int nb, const block_q8_0 *x, const block_q8_0 *w,
                          float *y) {
    const block_q8_0 *wr[8];
    for (int j = 0; j < 8; j++)
        wr[j] = w + (size_t)(j0 + j < N ? j0 + j : N - 1) * nb;
    float32x4_t acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    for (int b = 0; b < nb; b++) {
        const int8x16_t xa = vld1q_s8(x[b].qs), xb = vld1q_s8(x[b].qs + 16);
        uint16_t hw[8], hx[4] = {x[b].d, 0, 0, 0};
        int32x4_t p[8];
#pragma GCC unroll 16
        for (int j = 0; j < 8; j++) {
            hw[j] = wr[j][b].d;
            p[j] = DOT32(xa, xb, vld1q_s8(wr[j][b].qs), vld1q_s8(wr[j][b].qs + 16));
        }
        const float dx = vgetq_lane_f32(SFX(h4)(hx), 0);
        float32x4_t s0 = vmulq_n_f32(SFX(h4)(hw), dx), s1 = vmulq_n_f32(SFX(h4)(hw + 4), dx);
        float32x4_t t0 = vmulq_f32(vcvtq_f32_s32(SFX(hsum4)(p[0], p[1], p[2], p[3])), s0);
        float32x4_t t1 = vmulq_f32(vcvtq_f32_s32(SFX(hsum4)(p[4], p[5], p[6], p[7])), s1);
        acc0 = vaddq_f32(acc0, t0);
        acc1 = vaddq_f32(acc1, t1);
    }
    float t[8];
    vst1q_f32(t, acc0);
    vst1q_f32(t + 4, acc1);
    for (int j = 0; j < 8 && j0 + j < N; j++)
        y[j0 + j] = t[j];
}

static void SFX(gemm_q8_0)(int M, int N, int K, const block_q8_0 *x, const block_q8_0 *w, float *y,
                           int ldy) {
    const int nb = K / QK8_0;
    if (M <= 0 || N <= 0) return;
    if (nb == 0) {
        for (int m = 0; m < M; m++)
            for (int j = 0; j < N; j++)
                y[(size_t)m * ldy + j] = 0.0f;
        return;
    }
    if (M == 1) {
        for (int j0 = 0; j0 < N; j0 += 8)
            SFX(q8_gemv8)(N, j0, nb, x, w, y);
        return;
    }
    for (int jp = 0; jp < N; jp += NEON_NP) {
        const int j1 = N - jp < NEON_NP ? N : jp + NEON_NP;
        for (int i0 = 0; i0 < M; i0 += 4)
            for (int j0 = jp; j0 < j1; j0 += 4)
                SFX(q8_tile4x4)(M, N, i0, j0, nb, x, w, y + (size_t)i0 * ldy + j0, ldy);
    }
}

static void SFX(quantize_q8_0)(const float *x, block_q8_0 *y, int n) {
    for (int b = 0; b < n / QK8_0; b++, x += QK8_0, y++) {
        float32x4_t v[8];
        float32x4_t mx = vdupq_n_f32(0.0f);
#pragma GCC unroll 16
        for (int i = 0; i < 8; i++) {
            v[i] = vld1q_f32(x + 4 * i);
            mx = vmaxq_f32(mx, vabsq_f32(v[i]));
        }
        const float amax = vmaxvq_f32(mx);
        const float d = amax / 127.0f;
        const float id = d >= FLT_MIN ? 1.0f / d : 0.0f; /* as scalar.c */
        y->d = wim_fp32_to_fp16(d);
        int16x8_t h[4];
#pragma GCC unroll 16
        for (int i = 0; i < 4; i++) {
            /* FCVTAS rounds to nearest with ties away from zero, exactly roundf */
            int32x4_t a = vcvtaq_s32_f32(vmulq_n_f32(v[2 * i], id));
            int32x4_t c = vcvtaq_s32_f32(vmulq_n_f32(v[2 * i + 1], id));
            h[i] = vcombine_s16(vqmovn_s32(a), vqmovn_s32(c));
        }
        vst1q_s8(y->qs, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
        vst1q_s8(y->qs + 16, vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
    }
}

/* ---- float -------------------------------------------------------------- */

enum { SFX(W_F32), SFX(W_F16), SFX(W_BF16) };

INLINE float32x4_t SFX(load_w4)(const int kind, const void *w, size_t i) {
    if (kind == SFX(W_F32)) return vld1q_f32((const float *)w + i);
    uint16x4_t h = vld1_u16((const uint16_t *)w + i);
    if (kind == SFX(W_F16)) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

INLINE float SFX(load_w1)(const int kind, const void *w, size_t i) {
    if (kind == SFX(W_F32)) return ((const float *)w)[i];
    if (kind == SFX(W_F16)) return wim_fp16_to_fp32(((const uint16_t *)w)[i]);
    return wim_bf16_to_fp32(((const uint16_t *)w)[i]);
}

/* 4x4 outputs, each with its own 4-lane FMA accumulator over k; indices past M
 * or N are clamped (recomputed, not stored). */
INLINE void SFX(f_tile)(const int kind, int M, int N, int i0, int j0, int K, const float *x,
                        const void *w, float *y, int ldy) {
    const size_t esz = kind == SFX(W_F32) ? 4 : 2;
    const float *xr[4];
    const void *wr[4];
    for (int m = 0; m < 4; m++)
        xr[m] = x + (size_t)(i0 + m < M ? i0 + m : M - 1) * K;
    for (int j = 0; j < 4; j++)
        wr[j] = (const char *)w + (size_t)(j0 + j < N ? j0 + j : N - 1) * K * esz;
    float32x4_t acc[4][4];
#pragma GCC unroll 16
    for (int m = 0; m < 4; m++) {
#pragma GCC unroll 16
        for (int j = 0; j < 4; j++)
            acc[m][j] = vdupq_n_f32(0.0f);
    }
    int k = 0;
    for (; k + 4 <= K; k += 4) {
        float32x4_t wv[4];
#pragma GCC unroll 16
        for (int j = 0; j < 4; j++)
            wv[j] = SFX(load_w4)(kind, wr[j], k);
#pragma GCC unroll 16
        for (int m = 0; m < 4; m++) {
            const float32x4_t xv = vld1q_f32(xr[m] + k);
#pragma GCC unroll 16
            for (int j = 0; j < 4; j++)
                acc[m][j] = vfmaq_f32(acc[m][j], xv, wv[j]);
        }
    }
#pragma GCC unroll 16
    for (int m = 0; m < 4; m++) {
#pragma GCC unroll 16
        for (int j = 0; j < 4; j++) {
            float s = vaddvq_f32(acc[m][j]);
            for (int kk = k; kk < K; kk++)
                s = fmaf(xr[m][kk], SFX(load_w1)(kind, wr[j], kk), s);
            if (i0 + m < M && j0 + j < N) y[(size_t)m * ldy + j] = s;
        }
    }
}

INLINE void SFX(gemm_float)(const int kind, int M, int N, int K, const float *x, const void *w,
                            float *y, int ldy) {
    if (M <= 0 || N <= 0) return;
    for (int jp = 0; jp < N; jp += 32) {
        const int j1 = N - jp < 32 ? N : jp + 32;
        for (int i0 = 0; i0 < M; i0 += 4)
            for (int j0 = jp; j0 < j1; j0 += 4)
                SFX(f_tile)(kind, M, N, i0, j0, K, x, w, y + (size_t)i0 * ldy + j0, ldy);
    }
}

static void SFX(gemm_f32)(int M, int N, int K, const float *x, const float *w, float *y, int ldy) {
    SFX(gemm_float)(SFX(W_F32), M, N, K, x, w, y, ldy);
}
static void SFX(gemm_f16)(int M, int N, int K, const float *x, const uint16_t *w, float *y,
                          int ldy) {
    SFX(gemm_float)(SFX(W_F16), M, N, K, x, w, y, ldy);
}
static void SFX(gemm_bf16)(int M, int N, int K, const float *x, const uint16_t *w, float *y,
                           int ldy) {
    SFX(gemm_float)(SFX(W_BF16), M, N, K, x, w, y, ldy);
}

INLINE float SFX(dot_any)(const int kind, const void *a, const float *b, int n) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, SFX(load_w4)(kind, a, i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, SFX(load_w4)(kind, a, i + 4), vld1q_f32(b + i + 4));
        s2 = vfmaq_f32(s2, SFX(load_w4)(kind, a, i + 8), vld1q_f32(b + i + 8));
        s3 = vfmaq_f32(s3, SFX(load_w4)(kind, a, i + 12), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4)
        s0 = vfmaq_f32(s0, SFX(load_w4)(kind, a, i), vld1q_f32(b + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++)
        s = fmaf(SFX(load_w1)(kind, a, i), b[i], s);
    return s;
}

static float SFX(dot_f32)(const float *a, const float *b, int n) {
    return SFX(dot_any)(SFX(W_F32), a, b, n);
}
static float SFX(dot_f16)(const uint16_t *a, const float *b, int n) {
    return SFX(dot_any)(SFX(W_F16), a, b, n);
}

INLINE void SFX(axpy_any)(const int kind, float a, const void *x, float *y, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t t = vmulq_n_f32(SFX(load_w4)(kind, x, i), a);
        vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), t));
    }
    for (; i < n; i++) {
        float t = a * SFX(load_w1)(kind, x, i);
        y[i] = y[i] + t;
    }
}

static void SFX(axpy_f32)(float a, const float *x, float *y, int n) {
    SFX(axpy_any)(SFX(W_F32), a, x, y, n);
}
static void SFX(axpy_f16)(float a, const uint16_t *x, float *y, int n) {
    SFX(axpy_any)(SFX(W_F16), a, x, y, n);
}

/* ---- the other quantized types (quants.h) --------------------------------- */

/* quants.h's generic body, its 16-byte dot products on NEON (bit-exact with
 * scalar.c: the integer sums are exact and the float steps the same). */
static int32_t SFX(dot16q)(const int8_t *x, const int8_t *v) {
    return DOT16(vld1q_s8(x), vld1q_s8(v));
}

static void SFX(gemm_q)(int type, int M, int N, int K, const void *x, const void *w,
                        size_t row_bytes, float *y, int ldy) {
    wim_q_gemm(type, M, N, K, x, w, row_bytes, y, ldy, SFX(dot16q));
}

/* quantize_q8_0's rounding (FCVTAS: half away from zero) over 256 values, d in
 * fp32, and the exact 16-value sums. */
static void SFX(quantize_q8_K)(const float *x, block_q8_K *y, int n) {
    for (int b = 0; b < n / QK8_K; b++, x += QK8_K, y++) {
        float32x4_t mx = vdupq_n_f32(0.0f);
        for (int i = 0; i < QK8_K; i += 4)
            mx = vmaxq_f32(mx, vabsq_f32(vld1q_f32(x + i)));
        const float d = vmaxvq_f32(mx) / 127.0f;
        const float id = d >= FLT_MIN ? 1.0f / d : 0.0f; /* as scalar.c */
        y->d = d;
        for (int i = 0; i < QK8_K; i += 4) {
            int32_t q[4];
            vst1q_s32(q, vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x + i), id)));
            for (int l = 0; l < 4; l++)
                y->qs[i + l] = (int8_t)q[l];
        }
        for (int s = 0; s < QK8_K / 16; s++)
            y->bsums[s] = (int16_t)vaddlvq_s8(vld1q_s8(y->qs + 16 * s));
    }
}

#endif /* NEON_BODY */
