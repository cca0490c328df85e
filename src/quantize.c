/*
 * quantize.c — float rows to every weight type the engine reads.
 *
 * Written from the GGUF block layouts (simd/quants.h): each block's scale (and
 * minimum) from its extremes, the K-quants' sub-block scales quantized again to
 * 6 (Q4_K, Q5_K) or 8 (Q6_K) bits against the super-block's fp16 scale, and every
 * weight rounded to the nearest level of the scale as it will be decoded. No
 * importance matrix: this makes test and benchmark models, not the best files.
 */
#include "quantize.h"

#include <math.h>
#include <string.h>
#include <strings.h>

#include "quants.h"
#include "simd.h"

static const wim_qscheme schemes[] = {
    {"f32", GGUF_T_F32, 0},     {"f16", GGUF_T_F16, 0},   {"bf16", GGUF_T_BF16, 0},
    {"q8_0", GGUF_T_Q8_0, 0},   {"q4_0", GGUF_T_Q4_0, 0}, {"q4_1", GGUF_T_Q4_1, 0},
    {"q5_0", GGUF_T_Q5_0, 0},   {"q5_1", GGUF_T_Q5_1, 0}, {"q4_k", GGUF_T_Q4_K, 0},
    {"q5_k", GGUF_T_Q5_K, 0},   {"q6_k", GGUF_T_Q6_K, 0}, {"q4_k_m", GGUF_T_Q4_K, 1},
    {"q5_k_m", GGUF_T_Q5_K, 1},
};

const wim_qscheme *wim_qscheme_find(const char *name) {
    for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++)
        if (!strcasecmp(name, schemes[i].name)) return &schemes[i];
    return NULL;
}

const char *wim_qscheme_names(void) {
    return "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, q4_k_m, q5_k_m";
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* The _M mixes give more bits to the first and last eighth of the layers and to
 * every third one between (the layers most sensitive to attn_v / ffn_down error). */
static int more_bits(int layer, int n_layer) {
    return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

enum gguf_ttype wim_qscheme_type(const wim_qscheme *s, const char *tensor, int layer, int n_layer,
                                 int tied, int n_in) {
    enum gguf_ttype t = s->base;
    if (s->mix) {
        int is_output =
            !strcmp(tensor, "output.weight") || (tied && !strcmp(tensor, "token_embd.weight"));
        if (is_output)
            t = GGUF_T_Q6_K;
        else if (ends_with(tensor, "attn_qkv.weight"))
            t = GGUF_T_Q5_K;
        else if ((ends_with(tensor, "attn_v.weight") || ends_with(tensor, "ffn_down.weight")) &&
                 layer >= 0 && more_bits(layer, n_layer))
            t = GGUF_T_Q6_K;
    }
    if (n_in % (int)gguf_ttype_block(t) == 0) return t;
    if (n_in % 32) return GGUF_T_F16;
    /* rows the 256-weight super-block does not divide (Qwen2.5-0.5B's 896): the
     * 32-block type of about the same size, as llama-quantize falls back */
    return t == GGUF_T_Q4_K ? GGUF_T_Q5_0 : t == GGUF_T_Q5_K ? GGUF_T_Q5_1 : GGUF_T_Q8_0;
}

static int nearest(float x) {
    return (int)lroundf(x);
}

static int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* The value of largest magnitude, with its sign. */
static float signed_amax(const float *x, int n) {
    float m = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > fabsf(m)) m = x[i];
    return m;
}

/* Q4_0 / Q5_0: symmetric, the extreme value maps to the lowest level. */
static void quantize_sym(int bits, const float *x, uint16_t *d_out, int *q) {
    const int half = 1 << (bits - 1), top = (1 << bits) - 1;
    float d = signed_amax(x, 32) / (float)-half;
    *d_out = wim_fp32_to_fp16(d);
    float dd = wim_fp16_to_fp32(*d_out), id = dd != 0.0f ? 1.0f / dd : 0.0f;
    for (int i = 0; i < 32; i++)
        q[i] = clampi(nearest(x[i] * id) + half, 0, top);
}

/* Q4_1 / Q5_1: value = d*q + m with m the block minimum. */
static void quantize_affine(int bits, const float *x, uint16_t *d_out, uint16_t *m_out, int *q) {
    const int top = (1 << bits) - 1;
    float lo = x[0], hi = x[0];
    for (int i = 1; i < 32; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    *d_out = wim_fp32_to_fp16((hi - lo) / (float)top);
    *m_out = wim_fp32_to_fp16(lo);
    float dd = wim_fp16_to_fp32(*d_out), mm = wim_fp16_to_fp32(*m_out);
    float id = dd != 0.0f ? 1.0f / dd : 0.0f;
    for (int i = 0; i < 32; i++)
        q[i] = clampi(nearest((x[i] - mm) * id), 0, top);
}

static void pack_nibbles(const int *q, uint8_t *qs) {
    for (int i = 0; i < 16; i++)
        qs[i] = (uint8_t)((q[i] & 0xF) | ((q[i + 16] & 0xF) << 4));
}

static void pack_fifth_bits(const int *q, uint8_t *qh) {
    uint32_t h = 0;
    for (int i = 0; i < 32; i++)
        h |= (uint32_t)((q[i] >> 4) & 1) << i;
    memcpy(qh, &h, 4);
}

/* Q4_K / Q5_K: per 32-weight sub-block a scale and a minimum, both as 6-bit
 * multiples of the super-block's d and dmin; value = d*sc*q - dmin*m. */
static void quantize_k45(int bits, const float *x, uint16_t *d_out, uint16_t *dmin_out,
                         uint8_t *scales, int *q) {
    const int top = (1 << bits) - 1;
    float sc[8], mn[8], max_sc = 0.0f, max_mn = 0.0f;
    for (int j = 0; j < 8; j++) {
        float lo = 0.0f, hi = x[32 * j];
        for (int i = 0; i < 32; i++) {
            if (x[32 * j + i] < lo) lo = x[32 * j + i];
            if (x[32 * j + i] > hi) hi = x[32 * j + i];
        }
        sc[j] = hi > lo ? (hi - lo) / (float)top : 0.0f;
        mn[j] = -lo;
        if (sc[j] > max_sc) max_sc = sc[j];
        if (mn[j] > max_mn) max_mn = mn[j];
    }
    *d_out = wim_fp32_to_fp16(max_sc / 63.0f);
    *dmin_out = wim_fp32_to_fp16(max_mn / 63.0f);
    const float d = wim_fp16_to_fp32(*d_out), dmin = wim_fp16_to_fp32(*dmin_out);
    int ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = d > 0.0f ? clampi(nearest(sc[j] / d), 0, 63) : 0;
        lm[j] = dmin > 0.0f ? clampi(nearest(mn[j] / dmin), 0, 63) : 0;
        /* a minimum rounded up must still be reachable: widen the scale if needed */
        float dd = d * (float)ls[j], dm = dmin * (float)lm[j];
        for (int i = 0; i < 32; i++)
            q[32 * j + i] = dd > 0.0f ? clampi(nearest((x[32 * j + i] + dm) / dd), 0, top) : 0;
    }
    memset(scales, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            scales[j] = (uint8_t)ls[j];
            scales[j + 4] = (uint8_t)lm[j];
        } else {
            scales[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            scales[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            scales[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

static void quantize_q6_k(const float *x, block_q6_K *y) {
    float sc[16], max_sc = 0.0f;
    for (int s = 0; s < 16; s++) {
        sc[s] = signed_amax(x + 16 * s, 16) / -32.0f;
        if (fabsf(sc[s]) > fabsf(max_sc)) max_sc = sc[s];
    }
    const float iscale = max_sc != 0.0f ? -128.0f / max_sc : 0.0f;
    y->d = wim_fp32_to_fp16(iscale != 0.0f ? 1.0f / iscale : 0.0f);
    const float d = wim_fp16_to_fp32(y->d);
    memset(y->ql, 0, sizeof y->ql);
    memset(y->qh, 0, sizeof y->qh);
    for (int s = 0; s < 16; s++) {
        int ls = clampi(nearest(iscale * sc[s]), -128, 127);
        y->scales[s] = (int8_t)ls;
        float dd = d * (float)ls, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        for (int i = 0; i < 16; i++) {
            int e = 16 * s + i, q = clampi(nearest(x[e] * id), -32, 31) + 32;
            int half = e / 128, g = e % 128 / 32, l = e % 32;
            uint8_t *ql = &y->ql[64 * half + (g & 1) * 32 + l];
            *ql |= (uint8_t)(g < 2 ? q & 0xF : (q & 0xF) << 4);
            y->qh[32 * half + l] |= (uint8_t)((q >> 4) << (2 * g));
        }
    }
}

void wim_quantize_row(enum gguf_ttype type, const float *x, void *out, int n) {
    int q[QK_K];
    switch (type) {
    case GGUF_T_F32:
        memcpy(out, x, (size_t)n * sizeof(float));
        return;
    case GGUF_T_F16:
    case GGUF_T_BF16:
        for (int i = 0; i < n; i++)
            ((uint16_t *)out)[i] =
                type == GGUF_T_F16 ? wim_fp32_to_fp16(x[i]) : wim_fp32_to_bf16(x[i]);
        return;
    case GGUF_T_Q8_0:
        wim_kernels_get()->quantize_q8_0(x, out, n);
        return;
    case GGUF_T_Q4_0:
        for (int b = 0; b < n / 32; b++) {
            block_q4_0 *y = (block_q4_0 *)out + b;
            quantize_sym(4, x + 32 * b, &y->d, q);
            pack_nibbles(q, y->qs);
        }
        return;
    case GGUF_T_Q5_0:
        for (int b = 0; b < n / 32; b++) {
            block_q5_0 *y = (block_q5_0 *)out + b;
            quantize_sym(5, x + 32 * b, &y->d, q);
            pack_nibbles(q, y->qs);
            pack_fifth_bits(q, y->qh);
        }
        return;
    case GGUF_T_Q4_1:
        for (int b = 0; b < n / 32; b++) {
            block_q4_1 *y = (block_q4_1 *)out + b;
            quantize_affine(4, x + 32 * b, &y->d, &y->m, q);
            pack_nibbles(q, y->qs);
        }
        return;
    case GGUF_T_Q5_1:
        for (int b = 0; b < n / 32; b++) {
            block_q5_1 *y = (block_q5_1 *)out + b;
            quantize_affine(5, x + 32 * b, &y->d, &y->m, q);
            pack_nibbles(q, y->qs);
            pack_fifth_bits(q, y->qh);
        }
        return;
    case GGUF_T_Q4_K:
    case GGUF_T_Q5_K:
        for (int b = 0; b < n / QK_K; b++) {
            const float *xb = x + QK_K * b;
            uint8_t *qs, *qh = NULL;
            if (type == GGUF_T_Q4_K) {
                block_q4_K *y = (block_q4_K *)out + b;
                quantize_k45(4, xb, &y->d, &y->dmin, y->scales, q);
                qs = y->qs;
            } else {
                block_q5_K *y = (block_q5_K *)out + b;
                quantize_k45(5, xb, &y->d, &y->dmin, y->scales, q);
                qs = y->qs, qh = y->qh;
                memset(qh, 0, 32);
            }
            for (int j = 0; j < 8; j++)
                for (int l = 0; l < 32; l++) {
                    int v = q[32 * j + l];
                    qs[32 * (j / 2) + l] =
                        (uint8_t)(j & 1 ? (qs[32 * (j / 2) + l] & 0xF) | ((v & 0xF) << 4)
                                        : v & 0xF);
                    if (qh) qh[l] |= (uint8_t)(((v >> 4) & 1) << j);
                }
        }
        return;
    case GGUF_T_Q6_K:
        for (int b = 0; b < n / QK_K; b++)
            quantize_q6_k(x + QK_K * b, (block_q6_K *)out + b);
        return;
    }
}
