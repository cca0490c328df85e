/*
 * scalar.c — the reference kernels: plain C that defines what every other ISA
 * must compute.
 *
 * Owns: wim_kernels_scalar.
 *
 * Invariants (the semantics every SIMD twin reproduces):
 *  - quantize_q8_0: per 32-block, amax = max|x|, d = amax / 127, id = d >= FLT_MIN ? 1/d : 0,
 *    q = roundf(x * id) (ties away from zero), d stored as fp16 (round to nearest
 *    even). Bit-exact in every ISA.
 *  - gemm_q8_0: per output and per block b in increasing order
 *        isum = sum_k xq*wq (exact int32),  s = dx*dw,  t = (float)isum * s,
 *        acc = acc + t
 *    with three separately rounded fp32 operations (no fused multiply-add).
 *    Every ISA keeps exactly this order per output, so gemm_q8_0 is bit-exact
 *    across ISAs and independent of M, N and tiling.  Activations must come from
 *    quantize_q8_0 (|q| <= 127); weights may use the full int8 range.
 *  - gemm_q (Q4_0 .. Q6_K): the sequences quants.h defines, in the same spirit
 *    (exact int32 sums, then separately rounded fp32 steps); quantize_q8_K is
 *    quantize_q8_0 over 256 values with d kept in fp32, plus exact 16-value sums.
 *  - Float kernels (gemm_f32/f16/bf16, dot_*): a sequential sum in k order.  SIMD
 *    twins reassociate (lane-parallel partial sums, FMA), so they agree to float
 *    reassociation noise only; each SIMD output still depends only on its inputs
 *    and K.  axpy is elementwise y = y + a*x (a product, then a sum).
 *  - This file is built without ISA flags and must stay correct on any target.
 *    Mul and add are separate statements on purpose: the build uses -std=c11,
 *    where GCC does not contract them into an FMA.
 */
#include <float.h>
#include <math.h>

#include "attn_tile.h"
#include "interleave.h"
#include "quants.h"
#include "simd.h"
#include "swiglu.h"

/* One activation block of n values: d = max|x|/127, q = roundf(x/d); returns d
 * (fp32; Q8_0 stores it as fp16, Q8_K as it is). */
static float quantize_block(const float *x, int8_t *q, int n) {
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    float d = amax / 127.0f;
    float id = d >= FLT_MIN ? 1.0f / d : 0.0f; /* a subnormal d: 1/d would overflow */
    for (int i = 0; i < n; i++) {
        float v = roundf(x[i] * id);
        q[i] = v == v ? (int8_t)v : 0; /* NaN (a non-finite activation): forward.c reports it */
    }
    return d;
}

static void quantize_q8_0(const float *x, block_q8_0 *y, int n) {
    for (int b = 0; b < n / QK8_0; b++, x += QK8_0, y++)
        y->d = wim_fp32_to_fp16(quantize_block(x, y->qs, QK8_0));
}

static void quantize_q8_K(const float *x, block_q8_K *y, int n) {
    for (int b = 0; b < n / QK8_K; b++, x += QK8_K, y++) {
        y->d = quantize_block(x, y->qs, QK8_K);
        for (int s = 0; s < QK8_K / 16; s++) {
            int t = 0;
            for (int i = 0; i < 16; i++)
                t += y->qs[16 * s + i];
            y->bsums[s] = (int16_t)t;
        }
    }
}

static void gemm_q8_0(int M, int N, int K, const block_q8_0 *x, const block_q8_0 *w, float *y,
                      int ldy) {
    const int nb = K / QK8_0;
    for (int m = 0; m < M; m++) {
        const block_q8_0 *xr = x + (size_t)m * nb;
        for (int j = 0; j < N; j++) {
            const block_q8_0 *wr = w + (size_t)j * nb;
            float acc = 0.0f;
            for (int b = 0; b < nb; b++) {
                int32_t isum = 0;
                for (int i = 0; i < QK8_0; i++)
                    isum += (int32_t)xr[b].qs[i] * wr[b].qs[i];
                float s = wim_fp16_to_fp32(xr[b].d) * wim_fp16_to_fp32(wr[b].d);
                float t = (float)isum * s;
                acc = acc + t;
            }
            y[(size_t)m * ldy + j] = acc;
        }
    }
}

/* The other quantized types: quants.h's generic body with a plain dot product. */
static int32_t dot16(const int8_t *x, const int8_t *v) {
    int32_t s = 0;
    for (int i = 0; i < 16; i++)
        s += (int32_t)x[i] * v[i];
    return s;
}

static void gemm_q(int type, int M, int N, int K, const void *x, const void *w, size_t row_bytes,
                   float *y, int ldy) {
    wim_q_gemm(type, M, N, K, x, w, row_bytes, y, ldy, dot16);
}

/* The float products: one multiply and one add per element, in k order. */
static inline float widen(int kind, const void *w, size_t i) {
    if (kind == 0) return ((const float *)w)[i];
    if (kind == 1) return wim_fp16_to_fp32(((const uint16_t *)w)[i]);
    return wim_bf16_to_fp32(((const uint16_t *)w)[i]);
}

static inline void gemm_float(int kind, int M, int N, int K, const float *x, const void *w,
                              float *y, int ldy) {
    for (int m = 0; m < M; m++)
        for (int j = 0; j < N; j++) {
            const float *xr = x + (size_t)m * K;
            float acc = 0.0f;
            for (int k = 0; k < K; k++) {
                float t = xr[k] * widen(kind, w, (size_t)j * K + k);
                acc = acc + t;
            }
            y[(size_t)m * ldy + j] = acc;
        }
}

static void gemm_f32(int M, int N, int K, const float *x, const float *w, float *y, int ldy) {
    gemm_float(0, M, N, K, x, w, y, ldy);
}
static void gemm_f16(int M, int N, int K, const float *x, const uint16_t *w, float *y, int ldy) {
    gemm_float(1, M, N, K, x, w, y, ldy);
}
static void gemm_bf16(int M, int N, int K, const float *x, const uint16_t *w, float *y, int ldy) {
    gemm_float(2, M, N, K, x, w, y, ldy);
}

static float dot_f32(const float *a, const float *b, int n) {
    float acc = 0.0f;
    for (int i = 0; i < n; i++) {
        float t = a[i] * b[i];
        acc = acc + t;
    }
    return acc;
}

static float dot_f16(const uint16_t *a, const float *b, int n) {
    float acc = 0.0f;
    for (int i = 0; i < n; i++) {
        float t = wim_fp16_to_fp32(a[i]) * b[i];
        acc = acc + t;
    }
    return acc;
}

static void axpy_f32(float a, const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) {
        float t = a * x[i];
        y[i] = y[i] + t;
    }
}

static void axpy_f16(float a, const uint16_t *x, float *y, int n) {
    for (int i = 0; i < n; i++) {
        float t = a * wim_fp16_to_fp32(x[i]);
        y[i] = y[i] + t;
    }
}

const wim_kernels wim_kernels_scalar = {
    .isa = "scalar",
    .quantize_q8_0 = quantize_q8_0,
    .gemm_q8_0 = gemm_q8_0,
    .gemm_x8 = wim_x8_gemm_ref,
    .gemm_q = gemm_q,
    .quantize_q8_K = quantize_q8_K,
    .gemm_f16 = gemm_f16,
    .gemm_bf16 = gemm_bf16,
    .gemm_f32 = gemm_f32,
    .dot_f32 = dot_f32,
    .dot_f16 = dot_f16,
    .axpy_f32 = axpy_f32,
    .axpy_f16 = axpy_f16,
    .attn_load = attn_load_generic,
    .attn_scores = attn_scores_generic,
    .attn_accum = attn_accum_generic,
    .attn_scale_max = attn_scale_max_generic,
    .attn_exp = attn_exp_generic,
    .swiglu = swiglu_generic,
};
