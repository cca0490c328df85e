/*
 * simd.h — the kernel dispatch table and the numeric formats it works on.
 *
 * Owns: the Q8_0 block layout (identical to GGUF/ggml), fp16/bf16 scalar
 * conversions, and `wim_kernels`, one table of function pointers per ISA.
 *
 * Invariants:
 *  - The scalar table (simd/scalar.c) defines the semantics; every other ISA
 *    must match it (bit-exact where only int32 accumulation is involved,
 *    within float reassociation noise otherwise).  In this implementation
 *    quantize_q8_0, gemm_q8_0 and axpy_* are bit-exact in every ISA: gemm_q8_0
 *    folds each block's exact int32 sum into its output as
 *    acc = acc + (float)isum * (d_x*d_w), blocks in order, no FMA.  That relies
 *    on the C compiler not contracting a*b+c (GCC's default with -std=c11).
 *  - Every output element's arithmetic depends only on its own inputs and K,
 *    never on M, N, or where the element falls inside a tile.  The engine
 *    splits N across threads, so this is what makes results independent of
 *    the thread count.
 *  - The table is chosen once at start-up (wim_kernels_init) and never
 *    changes afterwards; it is the only global mutable state in the engine.
 */
#ifndef WIM_SIMD_H
#define WIM_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define QK8_0 32

/* One block of 32 weights or activations: value = d * qs[i]. 34 bytes, as in GGUF. */
typedef struct {
    uint16_t d; /* IEEE fp16 scale */
    int8_t qs[QK8_0];
} block_q8_0;

_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must match the GGUF layout");

#define QK8_K 256
/* Activations for the K-quant weights: 256 values with one fp32 scale, and the
 * exact sums of each 16 (the minimum and offset terms need them). */
typedef struct {
    float d;
    int8_t qs[QK8_K];
    int16_t bsums[QK8_K / 16];
} block_q8_K;

static inline float wim_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) {
                mant <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, as F16C's _mm_cvtps_ph(x, 0) does. */
static inline uint16_t wim_fp32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) /* NaN: quiet it, keep the top payload bits (as F16C does) */
        return (uint16_t)(sign | 0x7e00 | ((absx >> 13) & 0x3ff));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow -> inf */
    if (absx < 0x38800000u) {                                  /* subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t e = absx >> 23, m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* value = m * 2^(e-150); the unit is 2^-24 */
        uint32_t half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t r = absx + 0xfff + ((absx >> 13) & 1); /* round to nearest even */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

static inline float wim_bf16_to_fp32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t wim_fp32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

/*
 * Matrix products all have the shape   y[m*ldy + j] = sum_k x[m][k] * w[j][k]
 * for 0 <= m < M, 0 <= j < N: x holds M activation rows of K values, w holds
 * N weight rows of K values (GGUF stores a [K, N] tensor as N rows of K).
 */
typedef struct wim_kernels {
    /* "scalar", "avx2", "avxvnni", "avx512vnni", "amx", "neon", "neon-dotprod" */
    const char *isa;

    /* n % 32 == 0. Per block, as ggml's reference: d = max|x|/127, id = d ? 1/d : 0,
     * q = roundf(x*id) (so |q| <= 127), and d is stored as fp16. */
    void (*quantize_q8_0)(const float *x, block_q8_0 *y, int n);

    /* K % 32 == 0. Per block: int32 sum of qs products, times d_x*d_w in fp32.
     * x must come from quantize_q8_0 (|qs| <= 127); w may hold any int8. */
    void (*gemm_q8_0)(int M, int N, int K, const block_q8_0 *x, const block_q8_0 *w, float *y,
                      int ldy);
    /* gemm_q8_0 or gemm_q on weights interleaved 8 rows at a time (interleave.h), for
     * the types wim_x8_type accepts (Q8_0, Q4_0 .. Q5_1 and the K-quants, by ggml
     * type number): N % 8 == 0, w holds N/8 groups of the row's blocks; x as the
     * row-major entry takes it.  The same bits as that entry on the rows before
     * interleaving.  interleave says whether this table decodes faster from them
     * (the model then interleaves its matrices of those types at load). */
    void (*gemm_x8)(int type, int M, int N, int K, const void *x, const void *w, float *y, int ldy);
    int interleave;
    /* The other block-quantized weight types (quants.h: Q4_0 .. Q6_K, by ggml type
     * number): w holds N rows of row_bytes, K % 32 == 0 (a multiple of 256 for the
     * K-quants); x holds M rows of block_q8_0 from quantize_q8_0, or for the
     * K-quants of block_q8_K from quantize_q8_K. Bit-exact across ISAs (quants.h). */
    void (*gemm_q)(int type, int M, int N, int K, const void *x, const void *w, size_t row_bytes,
                   float *y, int ldy);
    /* n % 256 == 0. As quantize_q8_0 per 256 values, d kept in fp32; bsums exact. */
    void (*quantize_q8_K)(const float *x, block_q8_K *y, int n);
    void (*gemm_f16)(int M, int N, int K, const float *x, const uint16_t *w, float *y, int ldy);
    void (*gemm_bf16)(int M, int N, int K, const float *x, const uint16_t *w, float *y, int ldy);
    void (*gemm_f32)(int M, int N, int K, const float *x, const float *w, float *y, int ldy);

    /* Attention helpers (KV cache rows in f32 or f16). */
    float (*dot_f32)(const float *a, const float *b, int n);
    float (*dot_f16)(const uint16_t *a, const float *b, int n);
    void (*axpy_f32)(float a, const float *x, float *y, int n); /* y += a*x */
    void (*axpy_f16)(float a, const uint16_t *x, float *y, int n);

    /* Attention, a tile of nk <= ldk keys at a time (ldk a multiple of 16), for a
     * block of nq queries that see the same keys (the heads of a GQA group):
     *  attn_load: count K rows and V rows (row i at k + i*stride, n values, f16 when
     *    f16 is set, else f32) into fp32 kt[d*ldk + i] (K transposed) and
     *    vt[i*n + d]; the conversion is exact;
     *  attn_scores: s[j*lds + i] = the dot of query j (q + j*n) and key i;
     *  attn_accum: out[j*n + d] += sum over i of p[j*lds + i] * vt[i*n + d].
     * Each result is one chain of fused multiply-adds in a fixed order (scores:
     * d = 0, 1, ... from 0; accum: i = 0, 1, ... from out), so it is the same
     * bits in every table, whatever nq, nk and the other queries of the call. */
    void (*attn_load)(const void *k, const void *v, size_t stride, int count, int n, int f16,
                      float *kt, int ldk, float *vt);
    void (*attn_scores)(const float *q, int nq, const float *kt, int ldk, int nk, int n, float *s,
                        int lds);
    void (*attn_accum)(const float *p, int lds, int nq, const float *vt, int nk, int n, float *out);
    /* A tile's scores as the softmax takes them: s[i] *= scale; returns the
     * largest (NaN ignored; -inf when there is none). */
    float (*attn_scale_max)(float *s, int n, float scale);
    /* The softmax weights of a tile: s[i] = exp(s[i] - max) (0 for -inf and below
     * -87; attn_tile.h's polynomial, the same bits in every table), then *sum += the
     * tile's sum, taken in attn_tile.h's fixed order (8 interleaved partial sums, so
     * that a vector adds them without a serial chain through every value). */
    void (*attn_exp)(float *s, int n, float max, float *sum);

    /* SwiGLU's gate: out[i] = silu(g[i]) * u[i] (out may be g or u), swiglu.h's
     * sequence, the same bits in every table. */
    void (*swiglu)(const float *g, const float *u, float *out, int n);
} wim_kernels;

/* Chooses the table from cpuid (and the WIM_ISA environment variable, which
 * forces one: scalar|avx2|avxvnni|avx512vnni|amx|neon). Returns 0, or -1 with a
 * message in err ("WIM_ISA=amx: CPU lacks amx-tile amx-int8") when WIM_ISA names
 * an ISA this CPU or build lacks; the active table is then left unchanged.
 * Safe to call more than once; not thread-safe (call it before the threads). */
int wim_kernels_init(char *err, size_t errlen);

/* Whether `isa` (a WIM_ISA name) can run on this CPU, OS and build; if not and
 * why != NULL, one phrase saying why ("CPU lacks avx512vnni"). Added for tests
 * and `wim info`; same rules as wim_kernels_for. */
int wim_kernels_available(const char *isa, char *why, size_t cap);

/* The active table (the scalar one until wim_kernels_init succeeds). */
const wim_kernels *wim_kernels_get(void);

/* A specific ISA's table, or NULL when this CPU/build cannot run it (tests). */
const wim_kernels *wim_kernels_for(const char *isa);

/* Human-readable CPU feature summary for `wim info --cpu`. */
void wim_cpu_describe(char *buf, size_t cap);

#endif
