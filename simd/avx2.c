/*
 * avx2.c — AVX2 + FMA + F16C kernels, and the shared 256-bit body of the
 * AVX-VNNI and AVX512-VNNI tables.
 *
 * Owns: wim_kernels_avx2 (or, when included by avxvnni.c / avx512vnni.c with
 * WIM_X86_TABLE defined, that file's table; only the int8 block product differs).
 *
 * Invariants:
 *  - Compiled with -mavx2 -mfma -mf16c (more for the includers): nothing here runs
 *    before dispatch.c has checked the CPU, and nothing runs at load time.
 *  - gemm_q8_0 is bit-exact with scalar.c: each (row, column, block) product is
 *    reduced to one exact int32, then the output's fp32 accumulator does
 *    acc = acc + (float)isum * (dx*dw) block after block, one output per lane.
 *    So tiles, tails and the M = 1 GEMV all give the same bits for an output.
 *    M == 1 (decode) reads the weights as they are and reduces each product with
 *    a hadd tree; M >= 2 packs 8 weight columns 4 bytes at a time so the int32
 *    lanes are already the 8 columns' sums and no reduction is needed.
 *    gemm_x8 gets gemm_q8_0's and gemm_q's bits from quantized weights interleaved
 *    that way at load (interleave.h): M <= 4 reads the groups as they are, M >= 5
 *    packs its panels from them.
 *  - gemm_q (the other quantized types, quants.h) keeps quants.h's sequences the
 *    same way: decode (M <= 4) walks 8 weight rows at a time, unpacks each slice
 *    once, unsigned, for every activation row (32-block types: one dot per slice,
 *    the offset of Q4_0/Q5_0 taken off as offset x the block's activation sum;
 *    K-quants: maddubs, then madd by the slice's int16 scale into int32 lanes per
 *    super-block), and reduces the 8 rows' sums by one hadd tree; prefill
 *    unpacks a panel once and runs the Q8_0 prefill tiles with the integer scales
 *    (and, for the K-quants, super-block integer sums) applied to the exact lane
 *    sums.  quantize_q8_K is quantize_q8_0's rounding over 256 values with an
 *    fp32 scale.
 *  - Float GEMMs: each output owns one 8-lane FMA accumulator over k (steps of 8),
 *    a fixed horizontal sum, then the k tail in order with fmaf.  Every tile shape
 *    runs that same sequence, so an output does not depend on M, N or its tile.
 *  - quantize_q8_0 and axpy are bit-exact with scalar.c (no FMA in axpy).
 */
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#include "attn_tile.h"
#include "interleave.h"
#include "quants.h"
#include "simd.h"

#ifndef WIM_X86_TABLE
#define WIM_X86_TABLE wim_kernels_avx2
#define WIM_X86_ISA "avx2"
#define WIM_X86_DPBUSD 0 /* 0: maddubs+madd, 1: AVX-VNNI, 2: AVX512-VNNI (VL) */
#endif

#define INLINE static inline __attribute__((always_inline))
/* The tile bodies loop over compile-time tile sizes; "#pragma GCC unroll" on those
 * loops is what keeps the per-output accumulators in registers at -O2. */

/* ---- int8 --------------------------------------------------------------- */

/* 8 int32 lanes whose sum is sum_i |w_i| * (x_i * sign(w_i)) = sum_i x_i*w_i.
 * maddubs needs its first operand unsigned: |w| fits u8 even for w = -128, and
 * x*sign(w) fits s8 because |x| <= 127, so the int16 pair sums stay below 32767. */
INLINE __m256i dot_i8(__m256i aw, __m256i sx) {
#if WIM_X86_DPBUSD == 1
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), aw, sx);
#elif WIM_X86_DPBUSD == 2
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, sx);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1));
#endif
}

/* acc + dot_i8(aw, sx), fused where the ISA has it. */
INLINE __m256i dot_acc_i8(__m256i acc, __m256i aw, __m256i sx) {
#if WIM_X86_DPBUSD == 1
    return _mm256_dpbusd_avx_epi32(acc, aw, sx);
#elif WIM_X86_DPBUSD == 2
    return _mm256_dpbusd_epi32(acc, aw, sx);
#else
    return _mm256_add_epi32(acc, dot_i8(aw, sx));
#endif
}

/* Prefetches the lines of bytes [off, off+n) from p into L2. The address may lie
 * past the weights (a prefetch never faults); it is formed as an integer because
 * pointer arithmetic beyond an object is undefined.  L2, not L1: the decode GEMVs
 * prefetch two 8-row tiles ahead, 82 KiB for rows of 4864 Q8_0 weights, which L1
 * (32-48 KiB) cannot hold until they are read; into L1, rows of 2048 and more
 * streamed from memory 1.4-2x slower than rows of 896 (Q8_0, Q4_0, Q5_1, Q5_0). */
INLINE void prefetch_lines(const void *p, size_t off, size_t n) {
    for (size_t o = 0; o < n; o += 64)
        _mm_prefetch((const char *)((uintptr_t)p + off + o), _MM_HINT_T1);
}

/* Lane p of the result = sum of the 8 lanes of v[p] (exact int32). */
INLINE __m256i hsum8_epi32(const __m256i *v) {
    __m256i a = _mm256_hadd_epi32(v[0], v[1]);
    __m256i b = _mm256_hadd_epi32(v[2], v[3]);
    __m256i c = _mm256_hadd_epi32(v[4], v[5]);
    __m256i d = _mm256_hadd_epi32(v[6], v[7]);
    a = _mm256_hadd_epi32(a, b); /* [v0..v3 low halves | v0..v3 high halves] */
    c = _mm256_hadd_epi32(c, d);
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, c, 0x20),
                            _mm256_permute2x128_si256(a, c, 0x31));
}

/* The fp16 scales of block b of rows 0..n-1 (stride nb blocks) in lanes 0..n-1.
 * Lane positions are literal, so this builds at any optimisation level. */
INLINE __m128i load_d8(const block_q8_0 *p, int nb, int b, const int n) {
#define D(i) (n > (i) ? (short)p[(size_t)(i)*nb + b].d : (short)0)
    return _mm_setr_epi16(D(0), D(1), D(2), D(3), D(4), D(5), D(6), D(7));
#undef D
}

/* The byte offsets of 8 rows stride bytes apart, for gather_halves. */
INLINE __m256i row_offsets8(size_t stride) {
    return _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                              _mm256_set1_epi32((int)stride));
}

/* The dword at p of each of 8 rows (offsets `rows`) by one gather, split: the 8 low
 * 16-bit halves in the low 128 bits, the 8 high halves in the high 128 bits. */
INLINE __m256i gather_halves(const void *p, __m256i rows) {
    const __m256i dw = _mm256_i32gather_epi32((const int *)p, rows, 1);
    const __m256i split = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0,
                                           1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(dw, split), 0xd8);
}

/* load_d8 for 8 rows (offsets row_offsets8 of the row size) by one gather: each
 * row's scale is the low half of the dword that starts its block (the rest is the
 * block's first two quants, inside it).  Fewer instructions than 8 inserts: decode
 * at 1 thread ~6 % faster with AVX-512. */
INLINE __m128i gather_d8(const block_q8_0 *p, __m256i rows, int b) {
    return _mm256_castsi256_si128(gather_halves(p + b, rows));
}

/* The tile's lane maps: lane l of group g holds product 8g + l. */
INLINE void qx_lanes(const int RM, const int RN, __m256i *im, __m256i *ij) {
    const int P = RM * RN, G = (P + 7) / 8;
    for (int g = 0; g < G; g++) {
        int a[8], c[8];
        for (int l = 0; l < 8; l++) {
            int p = 8 * g + l;
            a[l] = p < P ? p % RM : 0;
            c[l] = p < P ? p / RM : 0;
        }
        im[g] = _mm256_loadu_si256((const __m256i *)a);
        ij[g] = _mm256_loadu_si256((const __m256i *)c);
    }
}

INLINE void qx_store(const int RM, const int RN, const __m256 *acc, float *y, int ldy) {
    float tmp[16];
    for (int g = 0; g < (RM * RN + 7) / 8; g++)
        _mm256_storeu_ps(tmp + 8 * g, acc[g]);
    for (int p = 0; p < RM * RN; p++)
        y[(size_t)(p % RM) * ldy + p / RM] = tmp[p];
}

/*
 * Decode (M <= 4): one RM x RN register tile over all nb blocks, unpacked.
 * Products are numbered p = j*RM + m and live 8 to a vector; each is reduced to
 * its exact int32 block sum by a hadd tree, 8 products per tree.
 */
INLINE void q8_tile(const int RM, const int RN, int nb, const block_q8_0 *x, const block_q8_0 *w,
                    float *y, int ldy) {
    const int P = RM * RN, G = (P + 7) / 8;
    __m256i im[2], ij[2];
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    qx_lanes(RM, RN, im, ij);
    const __m256i rows = row_offsets8((size_t)nb * sizeof(block_q8_0));

    for (int b = 0; b < nb; b++) {
        __m256i xq[4], prod[16];
#pragma GCC unroll 16
        for (int m = 0; m < RM; m++)
            xq[m] = _mm256_loadu_si256((const __m256i *)x[(size_t)m * nb + b].qs);
        /* the tile two tiles on, at the pace this one is read: 8 short rows side by
         * side are too many streams for the hardware prefetcher (2x at 1 thread) */
        prefetch_lines(w, ((size_t)2 * RN * nb + (size_t)b * RN) * sizeof(block_q8_0),
                       RN * sizeof(block_q8_0));
#pragma GCC unroll 16
        for (int j = 0; j < RN; j++) {
            __m256i wq = _mm256_loadu_si256((const __m256i *)w[(size_t)j * nb + b].qs);
            __m256i aw = _mm256_abs_epi8(wq);
#pragma GCC unroll 16
            for (int m = 0; m < RM; m++)
                prod[j * RM + m] = dot_i8(aw, _mm256_sign_epi8(xq[m], wq));
        }
#pragma GCC unroll 16
        for (int p = P; p < 8 * G; p++)
            prod[p] = _mm256_setzero_si256();
        __m256 xs8 = _mm256_cvtph_ps(load_d8(x, nb, b, RM));
        const __m256 ws8 = _mm256_cvtph_ps(RN == 8 ? gather_d8(w, rows, b) : load_d8(w, nb, b, RN));
#pragma GCC unroll 16
        for (int g = 0; g < G; g++) {
            __m256i isum = hsum8_epi32(prod + 8 * g);
            __m256 s = _mm256_mul_ps(_mm256_permutevar8x32_ps(xs8, im[g]),
                                     _mm256_permutevar8x32_ps(ws8, ij[g]));
            __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), s);
            acc[g] = _mm256_add_ps(acc[g], t);
        }
    }
    qx_store(RM, RN, acc, y, ldy);
}

/*
 * Prefill (M >= 5): weights packed 8 columns at a time so that no product ever
 * needs a horizontal sum.  In a packed block, vector g (0..7) holds bytes
 * 4g..4g+3 of the 8 columns' blocks, column c in int32 lane c.  With row m's
 * bytes 4g..4g+3 broadcast to every lane, dot_i8 gives in lane c the exact
 * 4-byte partial product of column c; adding the 8 of them gives the exact
 * int32 block sum of all 8 outputs (m, c) at once, which then goes through the
 * same acc = acc + (float)isum * (dx*dw) as everywhere else.  The int32 sums are
 * exact in any order, so this is bit-identical with scalar.c and the GEMV path.
 *
 * Blocking: a panel of Q8_NP columns and Q8_KCH blocks (64 x 32 x 32 B = 64 KiB
 * packed, 128 KiB with its |w| copy, on the stack) is packed once and reused by
 * every row tile of x.
 */
#ifndef Q8_NP
#define Q8_NP 64
#endif
#ifndef Q8_KCH
#define Q8_KCH 32
#endif
#define Q8_RM 4 /* rows per register tile */
/* One panel's vectors.  Panels of unsigned bytes (u8w: Q8_0 with VNNI packs w + 128,
 * the other types their stored values, qx_offset) meet x as it is.  Q8_0's signed
 * weights without VNNI meet it as |w| times x with w's sign (dot_i8): the packer
 * stores |w| PANEL_VECS vectors on, beside the panel, instead of every row tile
 * recomputing it per product (5 % faster). */
#define PANEL_VECS (Q8_NP / 8 * Q8_KCH * 8)
#ifndef Q8_RC
#define Q8_RC 2 /* 8-column groups per register tile */
#endif
#define XC_HALF (Q8_KCH * Q8_RM) /* q8p_tile's xc: where the second halves start */

/* Vector g (0..7) of o gets bytes 4g..4g+3 of the 32-byte rows r[0..7], row c in
 * int32 lane c. */
INLINE void pack8_rows(const __m256i *r, __m256i *o) {
    __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    o[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
    o[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
    o[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
    o[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
    o[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    o[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    o[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    o[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

/* The |w| copy of one packed block's 8 vectors, PANEL_VECS on. */
INLINE void pack_abs(__m256i *v) {
#pragma GCC unroll 8
    for (int g = 0; g < 8; g++)
        v[PANEL_VECS + g] = _mm256_abs_epi8(v[g]);
}

/* Packs columns j0..j0+n-1 (n <= 8; the rest zero), blocks 0..nbk-1, of w. */
static void q8_pack8(const block_q8_0 *w, int nb, int n, int nbk, __m256i *wp, float *ws) {
    for (int b = 0; b < nbk; b++) {
        __m256i r[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++)
            r[c] = c < n ? _mm256_loadu_si256((const __m256i *)w[(size_t)c * nb + b].qs)
                         : _mm256_setzero_si256();
        pack8_rows(r, wp + (size_t)b * 8);
#if !WIM_X86_DPBUSD
        pack_abs(wp + (size_t)b * 8);
#else /* w + 128 as u8 (q8p_tile's u8w) */
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++)
            wp[(size_t)b * 8 + g] = _mm256_xor_si256(wp[(size_t)b * 8 + g], _mm256_set1_epi8(-128));
#endif
        _mm256_storeu_ps(ws + (size_t)b * 8, _mm256_cvtph_ps(load_d8(w, nb, b, n)));
    }
}

/* The scales of a packed panel of another quantized type (quants.h), per block
 * and column: d, mn, and the integer sub-scales sa, sb. */
typedef struct {
    float *d, *mn;
    int32_t *sa, *sb;
    int32_t *mi; /* K-quants: integer minimums */
    float *dm;   /* K-quants: the super-block's dmin */
} qx_scales;

INLINE __m256i bcast4(const int8_t *p) {
    int v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* RM rows x RC groups of 8 packed columns over nbk blocks (group stride gs
 * vectors / floats); n of the RC*8 columns are stored.  xs[b*Q8_RM + m]: row
 * scales; acc starts at 0 (first) or at y.
 * The other quantized types (quants.h) use the same tile: sub = 1 multiplies each
 * block's int32 sum by the column's integer scale, sub = 2 sums the two 16-byte
 * halves separately and weights them by sa and sb; hasmin adds the minimum term
 * with xm[b*Q8_RM + m] = (float)sum of the row's block.  sub = hasmin = 0 is Q8_0. */
INLINE void q8p_tile(const int RM, const int RC, int nbk, int nb, const block_q8_0 *x,
                     const __m256i *wp, const float *ws, size_t gs, const float *xs, float *y,
                     int ldy, int n, int first, const int sub, const int hasmin,
                     const qx_scales *qs, const float *xm, const int kmode, const int u8w,
                     const int32_t *xc) {
    /* u8w: wp holds unsigned bytes u = w + offset (Q8_0 with VNNI: 128; the others
     * qx_offset), the product takes x as it is, and offset * (the block's sum of x),
     * xc[b*Q8_RM + m], comes off the exact sum (no xc: offset 0; sub = 2: the halves',
     * the second XC_HALF on) */
    __m256 acc[Q8_RM * 2];
    __m256i S[Q8_RM * 2], MS[Q8_RM * 2]; /* kmode: the super-block's integer sums */
    float tmp[16];
#pragma GCC unroll 8
    for (int p = 0; p < RM * RC; p++)
        S[p] = MS[p] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int m = 0; m < RM; m++) {
        if (first) {
#pragma GCC unroll 2
            for (int r = 0; r < RC; r++)
                acc[m * RC + r] = _mm256_setzero_ps();
        } else if (n == 8 * RC) {
#pragma GCC unroll 2
            for (int r = 0; r < RC; r++)
                acc[m * RC + r] = _mm256_loadu_ps(y + (size_t)m * ldy + 8 * r);
        } else {
            for (int c = 0; c < 8 * RC; c++)
                tmp[c] = c < n ? y[(size_t)m * ldy + c] : 0.0f;
#pragma GCC unroll 2
            for (int r = 0; r < RC; r++)
                acc[m * RC + r] = _mm256_loadu_ps(tmp + 8 * r);
        }
    }
    for (int b = 0; b < nbk; b++) {
        __m256i s[Q8_RM * 2], lo[Q8_RM * 2];
#pragma GCC unroll 8
        for (int p = 0; p < RM * RC; p++)
            s[p] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            if (sub == 2 && g == 4) {
#pragma GCC unroll 8
                for (int p = 0; p < RM * RC; p++) {
                    lo[p] = s[p];
                    s[p] = _mm256_setzero_si256();
                }
            }
            __m256i wq[2], aw[2];
#pragma GCC unroll 2
            for (int r = 0; r < RC; r++) {
                wq[r] = _mm256_load_si256(wp + r * gs + (size_t)b * 8 + g);
                aw[r] =
                    u8w ? wq[r] : _mm256_load_si256(wp + PANEL_VECS + r * gs + (size_t)b * 8 + g);
            }
#pragma GCC unroll 4
            for (int m = 0; m < RM; m++) {
                __m256i xb = bcast4(x[(size_t)m * nb + b].qs + 4 * g);
#pragma GCC unroll 2
                for (int r = 0; r < RC; r++)
                    s[m * RC + r] =
                        dot_acc_i8(s[m * RC + r], aw[r], u8w ? xb : _mm256_sign_epi8(xb, wq[r]));
            }
            /* keeps GCC from regrouping the int32 adds into trees, which spills */
#pragma GCC unroll 8
            for (int p = 0; p < RM * RC; p++)
                __asm__("" : "+x"(s[p]));
        }
        if (xc) {
#pragma GCC unroll 4
            for (int m = 0; m < RM; m++) {
                const __m256i c = _mm256_set1_epi32(xc[b * Q8_RM + m]);
                const __m256i c2 = sub == 2 ? _mm256_set1_epi32(xc[XC_HALF + b * Q8_RM + m]) : c;
#pragma GCC unroll 2
                for (int r = 0; r < RC; r++) {
                    if (sub == 2) lo[m * RC + r] = _mm256_sub_epi32(lo[m * RC + r], c);
                    s[m * RC + r] = _mm256_sub_epi32(s[m * RC + r], c2);
                }
            }
        }
        if (sub) {
#pragma GCC unroll 2
            for (int r = 0; r < RC; r++) {
                const __m256i sa = _mm256_loadu_si256((const __m256i *)(qs->sa + r * gs + b * 8));
                const __m256i sb = _mm256_loadu_si256((const __m256i *)(qs->sb + r * gs + b * 8));
#pragma GCC unroll 4
                for (int m = 0; m < RM; m++)
                    s[m * RC + r] = sub == 1
                                        ? _mm256_mullo_epi32(s[m * RC + r], sa)
                                        : _mm256_add_epi32(_mm256_mullo_epi32(lo[m * RC + r], sa),
                                                           _mm256_mullo_epi32(s[m * RC + r], sb));
            }
        }
        if (kmode) { /* quants.h's K-quant form: integers until the super-block ends */
#pragma GCC unroll 4
            for (int m = 0; m < RM; m++) {
                const __m256i xsum =
                    _mm256_cvttps_epi32(_mm256_broadcast_ss(xm + (size_t)b * Q8_RM + m));
#pragma GCC unroll 2
                for (int r = 0; r < RC; r++) {
                    S[m * RC + r] = _mm256_add_epi32(S[m * RC + r], s[m * RC + r]);
                    if (hasmin)
                        MS[m * RC + r] = _mm256_add_epi32(
                            MS[m * RC + r],
                            _mm256_mullo_epi32(
                                xsum,
                                _mm256_loadu_si256((const __m256i *)(qs->mi + r * gs + b * 8))));
                }
            }
            if (b % 8 != 7) continue;
#pragma GCC unroll 4
            for (int m = 0; m < RM; m++) {
                __m256 dx = _mm256_broadcast_ss(xs + (size_t)b * Q8_RM + m);
#pragma GCC unroll 2
                for (int r = 0; r < RC; r++) {
                    const int p = m * RC + r;
                    __m256 sc = _mm256_mul_ps(dx, _mm256_load_ps(ws + r * gs + (size_t)b * 8));
                    acc[p] = _mm256_add_ps(acc[p], _mm256_mul_ps(_mm256_cvtepi32_ps(S[p]), sc));
                    if (hasmin) {
                        __m256 sm = _mm256_mul_ps(dx, _mm256_loadu_ps(qs->dm + r * gs + b * 8));
                        acc[p] =
                            _mm256_sub_ps(acc[p], _mm256_mul_ps(_mm256_cvtepi32_ps(MS[p]), sm));
                    }
                    S[p] = MS[p] = _mm256_setzero_si256();
                }
            }
            continue;
        }
#pragma GCC unroll 4
        for (int m = 0; m < RM; m++) {
            __m256 dx = _mm256_broadcast_ss(xs + (size_t)b * Q8_RM + m);
#pragma GCC unroll 2
            for (int r = 0; r < RC; r++) {
                __m256 sc = _mm256_mul_ps(dx, _mm256_load_ps(ws + r * gs + (size_t)b * 8));
                acc[m * RC + r] = _mm256_add_ps(
                    acc[m * RC + r], _mm256_mul_ps(_mm256_cvtepi32_ps(s[m * RC + r]), sc));
                if (hasmin) {
                    __m256 mn = _mm256_mul_ps(dx, _mm256_loadu_ps(qs->mn + r * gs + b * 8));
                    __m256 xsum = _mm256_broadcast_ss(xm + (size_t)b * Q8_RM + m);
                    acc[m * RC + r] = _mm256_add_ps(acc[m * RC + r], _mm256_mul_ps(xsum, mn));
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int m = 0; m < RM; m++) {
        if (n == 8 * RC) {
#pragma GCC unroll 2
            for (int r = 0; r < RC; r++)
                _mm256_storeu_ps(y + (size_t)m * ldy + 8 * r, acc[m * RC + r]);
        } else {
#pragma GCC unroll 2
            for (int r = 0; r < RC; r++)
                _mm256_storeu_ps(tmp + 8 * r, acc[m * RC + r]);
            for (int c = 0; c < n; c++)
                y[(size_t)m * ldy + c] = tmp[c];
        }
    }
}

/* All 8-column groups of one packed panel for RM rows (sub, hasmin, qs, xm: see
 * q8p_tile; qs's arrays are laid out as ws). */
INLINE void q8p_rows(const int RM, int np, int nbk, int nb, const block_q8_0 *x, const __m256i *wp,
                     const float *ws, const float *xs, float *y, int ldy, int first, const int sub,
                     const int hasmin, const qx_scales *qs, const float *xm, const int kmode,
                     const int u8w, const int32_t *xc) {
    const size_t gs = (size_t)nbk * 8; /* one group's vectors / scales */
    int j = 0;
    qx_scales q = qs ? *qs : (qx_scales){0};
    /* (two halves of sums, or the K-quants' super-block sums, double the live
     * accumulators: one column group at a time) */
    for (; Q8_RC == 2 && sub < 2 && !kmode && j + 16 <= np;
         j += 16, q.d += 2 * gs, q.mn += 2 * gs, q.sa += 2 * gs, q.sb += 2 * gs)
        q8p_tile(RM, 2, nbk, nb, x, wp + (j / 8) * gs, ws + (j / 8) * gs, gs, xs, y + j, ldy, 16,
                 first, sub, hasmin, &q, xm, 0, u8w, xc);
    for (; j < np; j += 8, q.d += gs, q.mn += gs, q.sa += gs, q.sb += gs, q.mi += gs, q.dm += gs)
        q8p_tile(RM, 1, nbk, nb, x, wp + (j / 8) * gs, ws + (j / 8) * gs, gs, xs, y + j, ldy,
                 np - j < 8 ? np - j : 8, first, sub, hasmin, &q, xm, kmode, u8w, xc);
}

/* q8p_rows for a row tile of rm (1..4) rows: Q8_0's panels, and the other
 * quantized types' (sub, hasmin, qs, xm, kmode as q8p_tile takes them). */
INLINE void panel_rows(int rm, int np, int nbk, int nb, const block_q8_0 *x, const __m256i *wp,
                       const float *ws, const float *xs, float *y, int ldy, int first,
                       const int sub, const int hasmin, const qx_scales *qs, const float *xm,
                       const int kmode, const int u8w, const int32_t *xc) {
    switch (rm) {
    case 4:
        q8p_rows(4, np, nbk, nb, x, wp, ws, xs, y, ldy, first, sub, hasmin, qs, xm, kmode, u8w, xc);
        break;
    case 3:
        q8p_rows(3, np, nbk, nb, x, wp, ws, xs, y, ldy, first, sub, hasmin, qs, xm, kmode, u8w, xc);
        break;
    case 2:
        q8p_rows(2, np, nbk, nb, x, wp, ws, xs, y, ldy, first, sub, hasmin, qs, xm, kmode, u8w, xc);
        break;
    default:
        q8p_rows(1, np, nbk, nb, x, wp, ws, xs, y, ldy, first, sub, hasmin, qs, xm, kmode, u8w, xc);
        break;
    }
}

/* y = 0 for an empty product (K = 0). */
static void zero_y(int M, int N, float *y, int ldy) {
    for (int m = 0; m < M; m++)
        for (int j = 0; j < N; j++)
            y[(size_t)m * ldy + j] = 0.0f;
}

/* The exact sum of an activation block's 32 values: the bytes made unsigned
 * (x + 128) summed by psadbw, less 32 * 128. */
INLINE int q8_block_sum(const block_q8_0 *xb) {
    const __m256i u =
        _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)xb->qs), _mm256_set1_epi8(-128));
    const __m256i s = _mm256_sad_epu8(u, _mm256_setzero_si256());
    __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi64(t, _mm_unpackhi_epi64(t, t));
    return _mm_cvtsi128_si32(t) - 32 * 128;
}

/* M <= 4 (decode): one row tile, so nothing is reused across row tiles; stream
 * each weight row over the whole of K with the scales converted on the fly. */
INLINE void q8_small(const int RM, const int RN, int N, int nb, const block_q8_0 *x,
                     const block_q8_0 *w, float *y, int ldy) {
    int j = 0;
    for (; j + RN <= N; j += RN)
        q8_tile(RM, RN, nb, x, w + (size_t)j * nb, y + j, ldy);
    for (; j < N; j++)
        q8_tile(RM, 1, nb, x, w + (size_t)j * nb, y + j, ldy);
}

/* Packs the 8 interleaved rows of group w (blocks 0..nbk-1) as q8_pack8 packs 8
 * row-major ones: the interleaved bytes already are the packed vectors. */
static void q8x8_pack8(const block_q8_0x8 *w, int nbk, __m256i *wp, float *ws) {
    for (int b = 0; b < nbk; b++) {
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)w[b].qs[g]);
            wp[(size_t)b * 8 + g] =
                WIM_X86_DPBUSD ? _mm256_xor_si256(v, _mm256_set1_epi8(-128)) : v;
        }
#if !WIM_X86_DPBUSD
        pack_abs(wp + (size_t)b * 8);
#endif
        _mm256_storeu_ps(ws + (size_t)b * 8,
                         _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w[b].d)));
    }
}

/* M >= 2 rows through the packed panels, w row-major (w8 NULL) or interleaved. */
static void q8_panels(int M, int N, int nb, const block_q8_0 *x, const block_q8_0 *w,
                      const block_q8_0x8 *w8, float *y, int ldy) {
    _Alignas(32) __m256i wp[PANEL_VECS * (WIM_X86_DPBUSD ? 1 : 2)];
    _Alignas(32) float ws[Q8_NP * Q8_KCH], xs[Q8_KCH * Q8_RM];
    int32_t xc[Q8_KCH * Q8_RM];
    for (int jp = 0; jp < N; jp += Q8_NP) {
        const int np = N - jp < Q8_NP ? N - jp : Q8_NP;
        for (int b0 = 0; b0 < nb; b0 += Q8_KCH) {
            const int nbk = nb - b0 < Q8_KCH ? nb - b0 : Q8_KCH;
            for (int j = 0; j < np; j += 8) {
                __m256i *wpj = wp + (size_t)(j / 8) * nbk * 8;
                float *wsj = ws + (size_t)(j / 8) * nbk * 8;
                if (w8)
                    q8x8_pack8(w8 + (size_t)(jp + j) / 8 * nb + b0, nbk, wpj, wsj);
                else
                    q8_pack8(w + (size_t)(jp + j) * nb + b0, nb, np - j < 8 ? np - j : 8, nbk, wpj,
                             wsj);
            }
            for (int i0 = 0; i0 < M;) {
                const int rm = M - i0 < Q8_RM ? M - i0 : Q8_RM;
                for (int b = 0; b < nbk; b++)
                    for (int m = 0; m < Q8_RM; m++) {
                        xs[b * Q8_RM + m] = 0.0f;
                        xc[b * Q8_RM + m] = 0;
                        if (m >= rm) continue;
                        const block_q8_0 *xb = x + (size_t)(i0 + m) * nb + b0 + b;
                        xs[b * Q8_RM + m] = wim_fp16_to_fp32(xb->d);
                        if (WIM_X86_DPBUSD) xc[b * Q8_RM + m] = 128 * q8_block_sum(xb);
                    }
                const block_q8_0 *xp = x + (size_t)i0 * nb + b0;
                float *yp = y + (size_t)i0 * ldy + jp;
                panel_rows(rm, np, nbk, nb, xp, wp, ws, xs, yp, ldy, b0 == 0, 0, 0, NULL, NULL, 0,
                           WIM_X86_DPBUSD, WIM_X86_DPBUSD ? xc : NULL);
                i0 += rm;
            }
        }
    }
}

/* Whether a product has nothing left to compute: no outputs, or K = 0 (y zeroed). */
INLINE int gemm_done(int M, int N, int K, float *y, int ldy) {
    if (M <= 0 || N <= 0) return 1;
    if (K / QK8_0 == 0) zero_y(M, N, y, ldy);
    return K / QK8_0 == 0;
}

static void gemm_q8_0(int M, int N, int K, const block_q8_0 *x, const block_q8_0 *w, float *y,
                      int ldy) {
    const int nb = K / QK8_0;
    if (gemm_done(M, N, K, y, ldy)) return;
    if (M == 1) { /* decode: weights read in place; from 2 rows on the panels win */
        q8_small(1, 8, N, nb, x, w, y, ldy);
        return;
    }
    q8_panels(M, N, nb, x, w, NULL, y, ldy);
}

/* v plus 16 in each byte i whose bit i of h is set: Q5's fifth bits. */
INLINE __m256i add_fifth_bits(__m256i v, uint32_t h) {
#if WIM_X86_DPBUSD == 2
    /* AVX512BW: bit i of h masks the add of 16 to byte i */
    return _mm256_mask_add_epi8(v, (__mmask32)h, v, _mm256_set1_epi8(0x10));
#else
    /* byte i gets byte i/8 of h, then keeps bit i%8 of it */
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)h),
        _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_or_si256(v, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
#endif
}

/* A 32-block slice's values without Q4_0/Q5_0's offset (0..15 or 0..31). */
INLINE __m256i qx_unsigned(const int type, const uint8_t *p) {
    const size_t bb = wim_q_block_bytes(type);
    /* the 16 bytes in both halves (one broadcast load), the high half shifted to its
     * high nibbles */
    const __m256i qs = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p + bb - 16)));
    __m256i v = _mm256_and_si256(_mm256_srlv_epi64(qs, _mm256_setr_epi64x(0, 0, 4, 4)),
                                 _mm256_set1_epi8(0xF));
    if (type == WIM_Q4_0 || type == WIM_Q4_1) return v;
    uint32_t h;
    memcpy(&h, p + bb - 20, 4);
    return add_fifth_bits(v, h);
}

/* A slice's 32 stored values (quants.h) as unsigned bytes in order: the value plus
 * qx_offset; at most 63, so maddubs's int16 pair sums stay exact. */
INLINE __m256i qx_unpack(const int type, const uint8_t *row, int b) {
    const __m256i low4 = _mm256_set1_epi8(0xF);
    switch (type) {
    case WIM_Q4_0:
    case WIM_Q4_1:
    case WIM_Q5_0:
    case WIM_Q5_1:
        return qx_unsigned(type, row + (size_t)b * wim_q_block_bytes(type));
    case WIM_Q4_K:
    case WIM_Q5_K: {
        const int j = b % 8;
        const uint8_t *p = row + (size_t)(b / 8) * wim_q_block_bytes(type);
        const uint8_t *qs = p + (type == WIM_Q4_K ? 16 : 48) + 32 * (j / 2);
        __m256i v = _mm256_loadu_si256((const __m256i *)qs);
        if (j & 1) v = _mm256_srli_epi16(v, 4);
        v = _mm256_and_si256(v, low4);
        if (type == WIM_Q5_K) {
            __m256i qh = _mm256_loadu_si256((const __m256i *)(p + 16));
            qh = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(j)), _mm256_set1_epi8(1));
            v = _mm256_or_si256(v, _mm256_slli_epi16(qh, 4));
        }
        return v;
    }
    default: { /* WIM_Q6_K */
        const int j = b % 8, half = j / 4, g = j % 4;
        const block_q6_K *q = (const block_q6_K *)(row + (size_t)(b / 8) * sizeof(block_q6_K));
        __m256i lo = _mm256_loadu_si256((const __m256i *)(q->ql + 64 * half + (g & 1) * 32));
        if (g >= 2) lo = _mm256_srli_epi16(lo, 4);
        lo = _mm256_and_si256(lo, low4);
        __m256i hi = _mm256_loadu_si256((const __m256i *)(q->qh + 32 * half));
        hi = _mm256_and_si256(_mm256_srl_epi16(hi, _mm_cvtsi32_si128(2 * g)), _mm256_set1_epi8(3));
        return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
    }
    }
}

/* A slice's scales (quants.h) with F16C conversions: d, mn, the integer
 * sub-scales, and for the K-quants the integer minimum and the dmin. */
INLINE void qx_scales_of(const int type, const uint8_t *row, int b, float *d, float *mn, int *sa,
                         int *sb, int *mi, float *dmin) {
    uint16_t h[2];
    *sa = *sb = 1;
    *mi = 0;
    *mn = *dmin = 0.0f;
    if (type == WIM_Q4_K || type == WIM_Q5_K) {
        const uint8_t *p = row + (size_t)(b / 8) * wim_q_block_bytes(type);
        memcpy(h, p, 4);
        wim_q_scale_min_k4(p + 4, b % 8, sa, mi);
        *sb = *sa;
        *d = _cvtsh_ss(h[0]);
        *dmin = _cvtsh_ss(h[1]);
        *mn = -(*dmin * (float)*mi);
    } else if (type == WIM_Q6_K) {
        const block_q6_K *q = (const block_q6_K *)(row + (size_t)(b / 8) * sizeof(block_q6_K));
        *d = _cvtsh_ss(q->d);
        *sa = q->scales[2 * (b % 8)];
        *sb = q->scales[2 * (b % 8) + 1];
    } else {
        memcpy(h, row + (size_t)b * wim_q_block_bytes(type), 4);
        *d = _cvtsh_ss(h[0]);
        if (wim_q_has_min(type)) *mn = _cvtsh_ss(h[1]);
    }
}

/* What comes off a type's stored (unsigned) value to give its value: Q4_0 8,
 * Q5_0 16, Q6_K 32; 0 for the types with a minimum. */
INLINE int qx_offset(const int type) {
    return type == WIM_Q4_0 ? 8 : type == WIM_Q5_0 ? 16 : type == WIM_Q6_K ? 32 : 0;
}

/* As q8_pack8 for the other quantized types: rows w (row_bytes apart), columns
 * 0..n-1 (the rest zero), slices b0..b0+nbk-1, unpacked and packed; the scales of
 * (block b, column c) go to index b*8 + c of each qx_scales array. */
INLINE void qx_pack8(const int type, const uint8_t *w, size_t row_bytes, int n, int b0, int nbk,
                     __m256i *wp, qx_scales sc) {
    for (int b = 0; b < nbk; b++) {
        __m256i r[8];
        for (int c = 0; c < 8; c++) {
            int sa = 0, sb = 0, mi = 0;
            float d = 0.0f, mn = 0.0f, dmin = 0.0f;
            r[c] = _mm256_setzero_si256();
            if (c < n) {
                const uint8_t *row = w + (size_t)c * row_bytes;
                r[c] = qx_unpack(type, row, b0 + b);
                qx_scales_of(type, row, b0 + b, &d, &mn, &sa, &sb, &mi, &dmin);
            }
            sc.d[b * 8 + c] = d;
            sc.mn[b * 8 + c] = mn;
            sc.sa[b * 8 + c] = sa;
            sc.sb[b * 8 + c] = sb;
            sc.mi[b * 8 + c] = mi;
            sc.dm[b * 8 + c] = dmin;
        }
        pack8_rows(r, wp + (size_t)b * 8);
    }
}

/* ---- K-quant decode (M <= 4) ----------------------------------------------- */

/* Byte pairs that broadcast int16 lane t of each 128-bit lane (pshufb controls). */
INLINE __m256i bcast16_ctl(int t) {
    return _mm256_set1_epi16((short)(0x0101 * 2 * t + 0x0100));
}

/* A Q4_K/Q5_K super-block's 12 packed 6-bit scales and mins (quants.h,
 * wim_q_scale_min_k4 for j = 0..7) as bytes: scales 0-7 in bytes 0-7, mins in
 * 8-15.  u holds the 12 bytes in its low dwords (the high dword is ignored). */
INLINE __m128i k4_scales_mins(__m128i u) {
    const __m128i m6 = _mm_set1_epi8(0x3f), m4 = _mm_set1_epi8(0x0f), m2 = _mm_set1_epi8(3);
    const __m128i low = _mm_and_si128(u, m6); /* dwords: scales 0-3, mins 0-3 */
    __m128i top = _mm_srlv_epi32(_mm_shuffle_epi32(u, 0xaa), _mm_setr_epi32(0, 4, 0, 0));
    top = _mm_and_si128(top, m4); /* low 4 bits of scales 4-7, mins 4-7 */
    const __m128i hi2 = _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(u, 6), m2), 4);
    return _mm_unpacklo_epi32(low, _mm_or_si128(top, hi2));
}

/* acc + the int16 pairs of p times the int16 scales s, as int32 (VNNI fuses it). */
INLINE __m256i madd_acc_i16(__m256i acc, __m256i p, __m256i s) {
#if WIM_X86_DPBUSD == 1
    return _mm256_dpwssd_avx_epi32(acc, p, s);
#elif WIM_X86_DPBUSD == 2
    return _mm256_dpwssd_epi32(acc, p, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, s));
#endif
}

/* One weight row's super-block p against RM activation super-blocks xb[m]: the
 * lanes of S[m] sum to its isum, those of ms[m] to its msum (Q4_K, Q5_K).  xsl[m]:
 * the activation's 8 slice sums; bseo[m]: its 16-sums in the even | odd order of
 * Q6_K's scale vector.  The values and scales unpack once for all RM rows. */
INLINE void qk_row(const int type, const uint8_t *p, const int RM, const int RN, size_t rb,
                   const block_q8_K *const *xb, const __m128i *xsl, const __m256i *bseo, __m256i *S,
                   __m128i *ms) {
    const size_t bb = wim_q_block_bytes(type);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    for (size_t o = 0; o < bb + 63; o += 64) /* every line of the block, 2 tiles on */
        _mm_prefetch((const char *)(p + 2 * RN * rb + (o < bb ? o : bb - 1)), _MM_HINT_T1);
    /* at M = 1 two chains per row: vpdpwssd's latency would serialise the 8 slices */
    __m256i acc[4][2];
#pragma GCC unroll 4
    for (int m = 0; m < RM; m++)
        acc[m][0] = acc[m][1] = _mm256_setzero_si256();
    if (type == WIM_Q6_K) {
        const block_q6_K *q = (const block_q6_K *)p;
        /* scales as int16, even ones in the low lane, odd ones in the high:
         * pshufb with bcast16_ctl(t) gives slice t's two half scales */
        const __m128i s8 =
            _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)q->scales),
                             _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
        const __m256i sc = _mm256_cvtepi8_epi16(s8);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(q->ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(q->ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(q->qh + 32 * h));
            const __m256i m30 = _mm256_set1_epi8(0x30);
            __m256i v[4];
            v[0] = _mm256_or_si256(_mm256_and_si256(l0, low4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            v[1] = _mm256_or_si256(_mm256_and_si256(l1, low4),
                                   _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                                   _mm256_and_si256(qh, m30));
            v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                                   _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                const int t = 4 * h + g, c = RM == 1 ? g & 1 : 0;
                const __m256i s = _mm256_shuffle_epi8(sc, bcast16_ctl(t));
#pragma GCC unroll 4
                for (int m = 0; m < RM; m++) {
                    const __m256i xq = _mm256_loadu_si256((const __m256i *)(xb[m]->qs + 32 * t));
                    acc[m][c] = madd_acc_i16(acc[m][c], _mm256_maddubs_epi16(v[g], xq), s);
                }
            }
        }
        /* minus 32 x sum of scale x 16-sum */
#pragma GCC unroll 4
        for (int m = 0; m < RM; m++)
            S[m] = _mm256_sub_epi32(_mm256_add_epi32(acc[m][0], acc[m][1]),
                                    _mm256_slli_epi32(_mm256_madd_epi16(sc, bseo[m]), 5));
        return;
    }
    const __m128i sm = k4_scales_mins(_mm_loadu_si128((const __m128i *)(p + 4)));
    const __m128i sc16 = _mm_cvtepu8_epi16(sm),
                  mn16 = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(sm, sm));
#pragma GCC unroll 4
    for (int m = 0; m < RM; m++)
        ms[m] = _mm_madd_epi16(mn16, xsl[m]);
    const __m256i sc = _mm256_set_m128i(sc16, sc16);
    const uint8_t *qs = p + (type == WIM_Q4_K ? 16 : 48);
    __m256i qh = _mm256_setzero_si256();
    if (type == WIM_Q5_K) qh = _mm256_loadu_si256((const __m256i *)(p + 16));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * i));
        __m256i lo = _mm256_and_si256(q, low4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
        if (type == WIM_Q5_K) { /* bit t of qh[l] is bit 4 of slice t's value l */
            const __m256i m10 = _mm256_set1_epi8(0x10);
            lo = _mm256_or_si256(lo, _mm256_and_si256(2 * i <= 4 ? _mm256_slli_epi16(qh, 4 - 2 * i)
                                                                 : _mm256_srli_epi16(qh, 2 * i - 4),
                                                      m10));
            hi = _mm256_or_si256(hi,
                                 _mm256_and_si256(2 * i + 1 <= 4 ? _mm256_slli_epi16(qh, 3 - 2 * i)
                                                                 : _mm256_srli_epi16(qh, 2 * i - 3),
                                                  m10));
        }
        const __m256i slo = _mm256_shuffle_epi8(sc, bcast16_ctl(2 * i));
        const __m256i shi = _mm256_shuffle_epi8(sc, bcast16_ctl(2 * i + 1));
        const int c = RM == 1;
#pragma GCC unroll 4
        for (int m = 0; m < RM; m++) {
            const __m256i x0 = _mm256_loadu_si256((const __m256i *)(xb[m]->qs + 64 * i));
            const __m256i x1 = _mm256_loadu_si256((const __m256i *)(xb[m]->qs + 64 * i + 32));
            acc[m][0] = madd_acc_i16(acc[m][0], _mm256_maddubs_epi16(lo, x0), slo);
            acc[m][c] = madd_acc_i16(acc[m][c], _mm256_maddubs_epi16(hi, x1), shi);
        }
    }
#pragma GCC unroll 4
    for (int m = 0; m < RM; m++)
        S[m] = RM == 1 ? _mm256_add_epi32(acc[m][0], acc[m][1]) : acc[m][0];
}

/* The 8 rows' fp16 pair at p (offsets `rows`) as fp32: low halves in *lo, high in *hi. */
INLINE void gather_h2(const uint8_t *p, __m256i rows, __m256 *lo, __m256 *hi) {
    const __m256i h = gather_halves(p, rows);
    *lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
    *hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
}

/* hsum8_epi32's hadd tree fed one row at a time (row j = 0..7, in order), so few
 * vectors stay live across the 8 rows: t1 holds an even row, t2[4] pairs, t4[2]
 * quads; tree_sum gives lane j = the sum of row j's lanes. */
INLINE void tree_push(int j, __m256i v, __m256i *t1, __m256i *t2, __m256i *t4) {
    if (j % 2 == 0) {
        *t1 = v;
        return;
    }
    t2[j / 2] = _mm256_hadd_epi32(*t1, v);
    if (j % 4 == 3) t4[j / 4] = _mm256_hadd_epi32(t2[j / 2 - 1], t2[j / 2]);
}
INLINE __m256i tree_sum(const __m256i *t4) {
    return _mm256_add_epi32(_mm256_permute2x128_si256(t4[0], t4[1], 0x20),
                            _mm256_permute2x128_si256(t4[0], t4[1], 0x31));
}

/*
 * Decode GEMV for the K-quants: RN (8 or 1) weight rows against RM (1..4)
 * block_q8_K rows.  Each (activation, weight row) super-block becomes one int32
 * vector whose lanes sum to isum; 8 weight rows reduce together by one hadd tree.
 * Per weight row and super-block: the scales unpack in SIMD (no scalar loop), each
 * 32-weight slice is one maddubs on its unsigned values (Q6_K's offset of 32 comes
 * off as 32 x scale x the activation's 16-sums, so no sign transfer) and one madd
 * by its scale broadcast with pshufb, per activation row.  The same exact isum and
 * msum as scalar.c, so the same bits.
 */
INLINE void qk_gemv(const int type, const int RM, const int RN, int nsb, const block_q8_K *x,
                    const uint8_t *w, size_t rb, float *y, int ldy) {
    const size_t bb = wim_q_block_bytes(type);
    /* each row's (d, dmin) dword (Q6_K: the dword ending in d) by one gather */
    const __m256i rows = row_offsets8(rb);
    const int doff = type == WIM_Q6_K ? (int)offsetof(block_q6_K, d) - 2 : 0;
    __m256 acc[4];
#pragma GCC unroll 4
    for (int m = 0; m < RM; m++)
        acc[m] = _mm256_setzero_ps();
    for (int sbk = 0; sbk < nsb; sbk++) {
        const uint8_t *blk = w + (size_t)sbk * bb;
        const block_q8_K *xb[4];
        __m128i xsl[4];
        __m256i bseo[4];
        /* the activations' 8 slice sums (Q4_K/Q5_K's minimum term), or their 16-sums
         * in the even | odd order of Q6_K's scale vector */
#pragma GCC unroll 4
        for (int m = 0; m < RM; m++) {
            xb[m] = x + (size_t)m * nsb + sbk;
            const __m128i bs0 = _mm_loadu_si128((const __m128i *)xb[m]->bsums);
            const __m128i bs1 = _mm_loadu_si128((const __m128i *)(xb[m]->bsums + 8));
            xsl[m] = _mm_hadd_epi16(bs0, bs1);
            const __m128i eo16 =
                _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
            const __m128i b0 = _mm_shuffle_epi8(bs0, eo16), b1 = _mm_shuffle_epi8(bs1, eo16);
            bseo[m] = _mm256_set_m128i(_mm_unpackhi_epi64(b0, b1), _mm_unpacklo_epi64(b0, b1));
        }
        /* row sums reduced as they come (tree_push) */
        __m256i S1[4], S2[4][4], S4[4][2];
        __m128i M1[4], M2[4][4], M4[4][2];
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m256i Sj[4];
            __m128i Mj[4];
#pragma GCC unroll 4
            for (int m = 0; m < RM; m++)
                Sj[m] = _mm256_setzero_si256(), Mj[m] = _mm_setzero_si128();
            if (j < RN) qk_row(type, blk + (size_t)j * rb, RM, RN, rb, xb, xsl, bseo, Sj, Mj);
#pragma GCC unroll 4
            for (int m = 0; m < RM; m++) {
                tree_push(j, Sj[m], &S1[m], S2[m], S4[m]);
                if (j % 2 == 0) {
                    M1[m] = Mj[m];
                    continue;
                }
                M2[m][j / 2] = _mm_hadd_epi32(M1[m], Mj[m]);
                if (j % 4 == 3) M4[m][j / 4] = _mm_hadd_epi32(M2[m][j / 2 - 1], M2[m][j / 2]);
            }
        }
        __m256 wd, wdm;
        if (RN == 8) {
            gather_h2(blk + doff, rows, &wd, &wdm);
            if (type == WIM_Q6_K) wd = wdm; /* d is the dword's high half */
        } else {
            uint16_t h[2];
            memcpy(h, blk + doff, 4);
            wd = _mm256_set1_ps(_cvtsh_ss(h[type == WIM_Q6_K]));
            wdm = _mm256_set1_ps(_cvtsh_ss(h[1]));
        }
#pragma GCC unroll 4
        for (int m = 0; m < RM; m++) {
            const __m256 dx = _mm256_set1_ps(xb[m]->d);
            const __m256i isum = tree_sum(S4[m]);
            acc[m] = _mm256_add_ps(acc[m],
                                   _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dx, wd)));
            if (type != WIM_Q6_K) {
                const __m256i msum = _mm256_set_m128i(M4[m][1], M4[m][0]);
                acc[m] = _mm256_sub_ps(
                    acc[m], _mm256_mul_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(dx, wdm)));
            }
        }
    }
#pragma GCC unroll 4
    for (int m = 0; m < RM; m++)
        if (RN == 8)
            _mm256_storeu_ps(y + (size_t)m * ldy, acc[m]);
        else
            y[(size_t)m * ldy] = _mm256_cvtss_f32(acc[m]);
}

/* The activation side of a Q4_0 .. Q5_1 GEMV at (block b, row m), index 4b + m: the
 * scale, the block's sum and the offset times it, found once per call rather than once
 * per 8 weight rows (K up to 32768; beyond, qx_gemv finds them itself). */
#define QX_XPRE_BLOCKS 1024
typedef struct {
    float d[4 * QX_XPRE_BLOCKS], sum[4 * QX_XPRE_BLOCKS];
    int32_t off_sum[4 * QX_XPRE_BLOCKS];
} qx_xpre;

INLINE void qx_xpre_fill(const int type, const int RM, int nb, const block_q8_0 *x, qx_xpre *pre) {
    const int off = qx_offset(type);
    for (int b = 0; b < nb; b++)
#pragma GCC unroll 4
        for (int m = 0; m < RM; m++) {
            const block_q8_0 *xb = &x[(size_t)m * nb + b];
            const int xs = q8_block_sum(xb);
            pre->d[4 * b + m] = _cvtsh_ss(xb->d);
            pre->sum[4 * b + m] = (float)xs;
            pre->off_sum[4 * b + m] = off * xs;
        }
}

/*
 * Decode GEMV for Q4_0 .. Q5_1: RN (8 or 1) weight rows against RM (1..4)
 * block_q8_0 rows.  Each weight slice unpacks once, unsigned, and meets each
 * activation row in one unsigned-by-signed product (dot_i8 without the sign
 * transfer); Q4_0/Q5_0's offset of 8/16 comes off the 8 rows' int32 sums at once as
 * offset x the activation block's sum.  The rows' fp16 scales come by one gather.
 * The same exact isum per (row, block) as scalar.c, so the same bits.
 */
INLINE void qx_gemv(const int type, const int RM, const int RN, int nb, const block_q8_0 *x,
                    const uint8_t *w, size_t rb, const qx_xpre *pre, float *y, int ldy) {
    const size_t bb = wim_q_block_bytes(type);
    const int off = qx_offset(type);
    const __m256i rows = row_offsets8(rb);
    __m256 acc[4];
#pragma GCC unroll 4
    for (int m = 0; m < RM; m++)
        acc[m] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = w + (size_t)b * bb;
        __m256i xq[4];
#pragma GCC unroll 4
        for (int m = 0; m < RM; m++)
            xq[m] = _mm256_loadu_si256((const __m256i *)x[(size_t)m * nb + b].qs);
        /* the rows two tiles on, at this tile's pace: its RN rows are one run of bytes,
         * so block b's share of that run covers every line (prefetching each row's
         * next block where row 0 crossed a line missed lines of rows aligned
         * otherwise: Q5_0 streamed at half its in-cache rate) */
        prefetch_lines(w, ((size_t)2 * RN * nb + (size_t)b * RN) * bb, RN * bb);
        /* row sums reduced as they come (tree_push) */
        __m256i S1[4], S2[4][4], S4[4][2];
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __m256i v = _mm256_setzero_si256();
            if (j < RN) {
                v = qx_unsigned(type, blk + (size_t)j * rb);
            }
#pragma GCC unroll 4
            for (int m = 0; m < RM; m++) {
                tree_push(j, j < RN ? dot_i8(v, xq[m]) : _mm256_setzero_si256(), &S1[m], S2[m],
                          S4[m]);
            }
        }
        __m256 wd, wm;
        if (RN == 8)
            gather_h2(blk, rows, &wd, &wm);
        else {
            uint16_t h[2];
            memcpy(h, blk, 4);
            wd = _mm256_set1_ps(_cvtsh_ss(h[0]));
            wm = _mm256_set1_ps(_cvtsh_ss(h[1]));
        }
#pragma GCC unroll 4
        for (int m = 0; m < RM; m++) {
            const block_q8_0 *xb = &x[(size_t)m * nb + b];
            __m256i isum = tree_sum(S4[m]);
            __m256 dx, xsum;
            if (pre) {
                const int at = 4 * b + m;
                if (off) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(pre->off_sum[at]));
                dx = _mm256_broadcast_ss(&pre->d[at]);
                xsum = _mm256_broadcast_ss(&pre->sum[at]);
            } else {
                const int xs = off || wim_q_has_min(type) ? q8_block_sum(xb) : 0;
                if (off) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(off * xs));
                dx = _mm256_set1_ps(_cvtsh_ss(xb->d));
                xsum = _mm256_set1_ps((float)xs);
            }
            acc[m] = _mm256_add_ps(acc[m],
                                   _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dx, wd)));
            if (wim_q_has_min(type))
                acc[m] = _mm256_add_ps(acc[m], _mm256_mul_ps(xsum, _mm256_mul_ps(dx, wm)));
        }
    }
#pragma GCC unroll 4
    for (int m = 0; m < RM; m++)
        if (RN == 8)
            _mm256_storeu_ps(y + (size_t)m * ldy, acc[m]);
        else
            y[(size_t)m * ldy] = _mm256_cvtss_f32(acc[m]);
}

/* Decode: RM activation rows against every weight row, 8 weight rows at a time. */
INLINE void qx_rows(const int type, const int RM, int N, int nb, const void *x, const uint8_t *w,
                    size_t rb, float *y, int ldy) {
    int j = 0;
    if (wim_q_is_k(type)) {
        for (; j + 8 <= N; j += 8)
            qk_gemv(type, RM, 8, nb / 8, x, w + (size_t)j * rb, rb, y + j, ldy);
        for (; j < N; j++)
            qk_gemv(type, RM, 1, nb / 8, x, w + (size_t)j * rb, rb, y + j, ldy);
        return;
    }
    qx_xpre pre_buf, *pre = NULL;
    if (nb <= QX_XPRE_BLOCKS) qx_xpre_fill(type, RM, nb, x, pre = &pre_buf);
    for (; j + 8 <= N; j += 8)
        qx_gemv(type, RM, 8, nb, x, w + (size_t)j * rb, rb, pre, y + j, ldy);
    for (; j < N; j++)
        qx_gemv(type, RM, 1, nb, x, w + (size_t)j * rb, rb, pre, y + j, ldy);
}

INLINE void qx_decode(const int type, int M, int N, int nb, const void *x, const uint8_t *w,
                      size_t rb, float *y, int ldy) {
    switch (M) {
    case 1:
        qx_rows(type, 1, N, nb, x, w, rb, y, ldy);
        return;
    case 2:
        qx_rows(type, 2, N, nb, x, w, rb, y, ldy);
        return;
    case 3:
        qx_rows(type, 3, N, nb, x, w, rb, y, ldy);
        return;
    default:
        qx_rows(type, 4, N, nb, x, w, rb, y, ldy);
        return;
    }
}

/* The bytes of a row block of `type` (an interleaved group block holds 8 of them). */
INLINE size_t x8_bb(const int type) {
    return type == WIM_Q8_0 ? sizeof(block_q8_0) : wim_q_block_bytes(type);
}

/* Vector v (0..7) of the group block at p: lane c holds row c's values 4v..4v+3, Q8_0's
 * as stored (signed), the other types' unsigned (0..31, their offset not taken off). */
INLINE __m256i x8_values(const int type, const uint8_t *p, int v) {
    const size_t gb = 8 * x8_bb(type);
    if (type == WIM_Q8_0) return _mm256_loadu_si256((const __m256i *)(p + gb - 256 + 32 * v));
    const __m256i n = _mm256_loadu_si256((const __m256i *)(p + gb - 128 + 32 * (v & 3)));
    const __m256i val =
        _mm256_and_si256(v < 4 ? n : _mm256_srli_epi16(n, 4), _mm256_set1_epi8(0xF));
    if (type != WIM_Q5_0 && type != WIM_Q5_1) return val;
    uint32_t h; /* the masks follow d (and m) */
    memcpy(&h, p + 16 + 16 * wim_q_has_min(type) + 4 * v, 4);
    return add_fifth_bits(val, h);
}

/* Shifts each 16-bit lane by n left (n > 0) or right (n < 0), n known or not. */
INLINE __m256i shift16(__m256i v, int n) {
    return n >= 0 ? _mm256_sll_epi16(v, _mm_cvtsi32_si128(n))
                  : _mm256_srl_epi16(v, _mm_cvtsi32_si128(-n));
}

/* Vector u (lane c: values 4u..4u+3 of row c) of slice j (0..7) of a K-quant group
 * block at p, unsigned (Q6_K's offset of 32 not taken off).  Q4_K/Q5_K: the quants of
 * slices 2i and 2i+1 share bytes (low and high nibbles); Q5_K's fifth bit of value l
 * of slice j is bit j of qh[l]; Q6_K's slice 4h+s takes ql's low (s < 2) or high
 * nibbles of its half h and bits 2s, 2s+1 of qh (quants.h). */
INLINE __m256i xk8_values(const int type, const uint8_t *p, int j, int u) {
    const __m256i low4 = _mm256_set1_epi8(0xF);
    if (type == WIM_Q6_K) {
        const int h = j / 4, sl = j % 4;
        const uint8_t *half = p + 768 * h; /* its ql (512 bytes), then its qh */
        const __m256i ql = _mm256_loadu_si256((const __m256i *)(half + 32 * (8 * (sl & 1) + u)));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(half + 512 + 32 * u));
        const __m256i lo = _mm256_and_si256(sl >= 2 ? _mm256_srli_epi16(ql, 4) : ql, low4);
        return _mm256_or_si256(lo,
                               _mm256_and_si256(shift16(qh, 4 - 2 * sl), _mm256_set1_epi8(0x30)));
    }
    const int qs = type == WIM_Q4_K ? 128 : 384; /* after d, dmin, scales (and qh) */
    const __m256i q = _mm256_loadu_si256((const __m256i *)(p + qs + 32 * (8 * (j / 2) + u)));
    const __m256i v = _mm256_and_si256(j & 1 ? _mm256_srli_epi16(q, 4) : q, low4);
    if (type != WIM_Q5_K) return v;
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(p + 128 + 32 * u));
    return _mm256_or_si256(v, _mm256_and_si256(shift16(qh, 4 - j), _mm256_set1_epi8(0x10)));
}

/* Byte k of each row of a side-by-side byte field at p, in lane c, widened. */
INLINE __m256i x8_byte_u(const uint8_t *p, int k) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8 * k)));
}
INLINE __m256i x8_byte_s(const uint8_t *p, int k) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8 * k)));
}

/* Slice j's 6-bit scale and minimum of each row of a Q4_K/Q5_K group block, from its
 * 12 packed scale bytes side by side at s (wim_q_scale_min_k4). */
INLINE void k4x8_scale_min(const uint8_t *s, int j, __m256i *sc, __m256i *mn) {
    const __m256i m6 = _mm256_set1_epi32(63), m4 = _mm256_set1_epi32(15);
    if (j < 4) {
        *sc = _mm256_and_si256(x8_byte_u(s, j), m6);
        *mn = _mm256_and_si256(x8_byte_u(s, j + 4), m6);
        return;
    }
    const __m256i lo = x8_byte_u(s, j + 4);
    *sc = _mm256_or_si256(_mm256_and_si256(lo, m4),
                          _mm256_slli_epi32(_mm256_srli_epi32(x8_byte_u(s, j - 4), 6), 4));
    *mn = _mm256_or_si256(_mm256_srli_epi32(lo, 4),
                          _mm256_slli_epi32(_mm256_srli_epi32(x8_byte_u(s, j), 6), 4));
}

/* Where each row's fp16 d sits in a group block (dmin follows, Q4_K/Q5_K). */
INLINE int x8_d_offset(const int type) {
    return type == WIM_Q6_K ? 8 * 208 : 0;
}

/* As qx_pack8, from interleaved groups: the group's nbk slices at g (from a slice that
 * starts a block) unpacked straight into packed vectors (they already are in that
 * order), and their scales as qx_scales_of gives them. */
INLINE void qx8_pack8(const int type, const uint8_t *g, int nbk, __m256i *wp, qx_scales sc) {
    const size_t gb = 8 * x8_bb(type);
    if (wim_q_is_k(type)) {
        for (int b = 0; b < nbk; b++) {
            const uint8_t *blk = g + (size_t)(b / 8) * gb;
            const int j = b % 8;
            for (int u = 0; u < 8; u++)
                wp[(size_t)b * 8 + u] = xk8_values(type, blk, j, u);
            _mm256_storeu_ps(sc.d + b * 8, _mm256_cvtph_ps(_mm_loadu_si128(
                                               (const __m128i *)(blk + x8_d_offset(type)))));
            /* the K-quant tiles take the minimum as mi and dm (mn unused) */
            __m256i sa, sb, mi = _mm256_setzero_si256();
            __m256 dm = _mm256_setzero_ps();
            const __m256 mn = _mm256_setzero_ps();
            if (type == WIM_Q6_K) {
                sa = x8_byte_s(blk + 8 * 192, 2 * j);
                sb = x8_byte_s(blk + 8 * 192, 2 * j + 1);
            } else {
                k4x8_scale_min(blk + 32, j, &sa, &mi);
                sb = sa;
                dm = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16)));
            }
            _mm256_storeu_si256((__m256i *)(sc.sa + b * 8), sa);
            _mm256_storeu_si256((__m256i *)(sc.sb + b * 8), sb);
            _mm256_storeu_si256((__m256i *)(sc.mi + b * 8), mi);
            _mm256_storeu_ps(sc.dm + b * 8, dm);
            _mm256_storeu_ps(sc.mn + b * 8, mn);
        }
        return;
    }
    for (int b = 0; b < nbk; b++, g += gb) {

#pragma GCC unroll 8
        for (int v = 0; v < 8; v++)
            wp[(size_t)b * 8 + v] = x8_values(type, g, v);
        const __m256 none = _mm256_setzero_ps();
        _mm256_storeu_ps(sc.d + b * 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)g)));
        _mm256_storeu_ps(sc.mn + b * 8,
                         wim_q_has_min(type)
                             ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + 16)))
                             : none);
        _mm256_storeu_si256((__m256i *)(sc.sa + b * 8), _mm256_set1_epi32(1));
        _mm256_storeu_si256((__m256i *)(sc.sb + b * 8), _mm256_set1_epi32(1));
        _mm256_storeu_si256((__m256i *)(sc.mi + b * 8), _mm256_setzero_si256());
        _mm256_storeu_ps(sc.dm + b * 8, none);
    }
}

/* The activation slice b of row m: a block_q8_0, or for the K-quants a copy of
 * its 32 bytes of the block_q8_K into one (with the super-block's d), so the
 * Q8_0 prefill tiles read both alike. */
INLINE void qx_slice_x(const int type, const void *x, int nb, int m, int b, block_q8_0 *out,
                       float *dx, float *xsum) {
    if (wim_q_is_k(type)) {
        const block_q8_K *xk = (const block_q8_K *)x + (size_t)m * (nb / 8) + b / 8;
        memcpy(out->qs, xk->qs + 32 * (b % 8), 32);
        *dx = xk->d;
        *xsum = (float)(xk->bsums[2 * (b % 8)] + xk->bsums[2 * (b % 8) + 1]);
        return;
    }
    const block_q8_0 *xb = (const block_q8_0 *)x + (size_t)m * nb + b;
    *dx = _cvtsh_ss(xb->d);
    *xsum = wim_q_has_min(type) ? (float)q8_block_sum(xb) : 0.0f;
}

INLINE void qx_gemm(const int type, int M, int N, int K, const void *x, const void *w,
                    size_t row_bytes, int x8, float *y, int ldy) {
    const int nb = K / QK8_0;
    if (gemm_done(M, N, K, y, ldy)) return;
    const int kq = wim_q_is_k(type);
    const int sub = wim_q_split_scales(type) ? 2 : wim_q_int_scales(type) ? 1 : 0;
    const int hasmin = wim_q_has_min(type), off = qx_offset(type);
    _Alignas(32) __m256i wp[PANEL_VECS];
    _Alignas(32) float wd[Q8_NP * Q8_KCH], wmn[Q8_NP * Q8_KCH], wdm[Q8_NP * Q8_KCH];
    _Alignas(32) int32_t wsa[Q8_NP * Q8_KCH], wsb[Q8_NP * Q8_KCH], wmi[Q8_NP * Q8_KCH];
    _Alignas(32) float xs[Q8_KCH * Q8_RM], xm[Q8_KCH * Q8_RM];
    int32_t xc[2 * XC_HALF];       /* the offset times each slice's sum (Q6_K: of each half) */
    block_q8_0 xt[Q8_RM * Q8_KCH]; /* the row tile's slices, Q8_0-shaped */
    for (int jp = 0; jp < N; jp += Q8_NP) {
        const int np = N - jp < Q8_NP ? N - jp : Q8_NP;
        for (int b0 = 0; b0 < nb; b0 += Q8_KCH) {
            const int nbk = nb - b0 < Q8_KCH ? nb - b0 : Q8_KCH;
            const size_t gs = (size_t)nbk * 8;
            for (int j = 0; j < np; j += 8) {
                const size_t o = (size_t)(j / 8) * gs;
                const qx_scales so = {wd + o, wmn + o, wsa + o, wsb + o, wmi + o, wdm + o};
                if (x8) { /* interleaved: row_bytes is 8 rows' block of spb slices */
                    const int spb = kq ? 8 : 1;
                    qx8_pack8(type,
                              (const uint8_t *)w +
                                  ((size_t)(jp + j) / 8 * (nb / spb) + b0 / spb) * row_bytes,
                              nbk, wp + o, so);
                } else
                    qx_pack8(type, (const uint8_t *)w + (size_t)(jp + j) * row_bytes, row_bytes,
                             np - j < 8 ? np - j : 8, b0, nbk, wp + o, so);
            }
            const qx_scales qs = {wd, wmn, wsa, wsb, wmi, wdm};
            for (int i0 = 0; i0 < M;) {
                const int rm = M - i0 < Q8_RM ? M - i0 : Q8_RM;
                for (int b = 0; b < nbk; b++)
                    for (int m = 0; m < Q8_RM; m++) {
                        xs[b * Q8_RM + m] = xm[b * Q8_RM + m] = 0.0f;
                        xc[b * Q8_RM + m] = 0;
                        if (m >= rm) continue;
                        qx_slice_x(type, x, nb, i0 + m, b0 + b, &xt[m * nbk + b],
                                   &xs[b * Q8_RM + m], &xm[b * Q8_RM + m]);
                        if (type == WIM_Q6_K) {
                            const int16_t *bs =
                                ((const block_q8_K *)x)[(size_t)(i0 + m) * (nb / 8) + (b0 + b) / 8]
                                    .bsums +
                                2 * ((b0 + b) % 8);
                            xc[b * Q8_RM + m] = off * bs[0];
                            xc[XC_HALF + b * Q8_RM + m] = off * bs[1];
                        } else if (off)
                            xc[b * Q8_RM + m] = off * q8_block_sum((const block_q8_0 *)x +
                                                                   (size_t)(i0 + m) * nb + b0 + b);
                    }
                /* the tiles read the slices from xt (K-quants) or x in place */
                const block_q8_0 *xp = kq ? xt : (const block_q8_0 *)x + (size_t)i0 * nb + b0;
                const int xnb = kq ? nbk : nb;
                float *yp = y + (size_t)i0 * ldy + jp;
                const int first = b0 == 0;
                panel_rows(rm, np, nbk, xnb, xp, wp, qs.d, xs, yp, ldy, first, sub, hasmin, &qs, xm,
                           kq, 1, off ? xc : NULL);
                i0 += rm;
            }
        }
    }
}

/* ---- interleaved weights (interleave.h) ----------------------------------- */

/* The activation side of a GEMV on interleaved weights, index 4b + m: the scale, the
 * block's sum as a float (the minimum's term) and the offset times it, found once per
 * X8_CHUNK blocks of a call rather than once per group of 8 rows. */
#define X8_CHUNK 512
typedef struct {
    float d[4 * X8_CHUNK], sum[4 * X8_CHUNK];
    int32_t off[4 * X8_CHUNK];
} x8_pre;

/*
 * Decode (M <= 4) on interleaved weights: group after group of 8 rows, each block's
 * 8 value vectors read once and met by each activation row's 4-byte groups
 * broadcast, so the int32 lanes are the 8 rows' exact block sums as they come.
 * Q8_0 with VNNI: w + 128 unsigned against x, 128 x the activation block's sum
 * taken off afterwards; Q8_0 on AVX2: |w| against x with w's sign; the other types'
 * values are unsigned already, and Q4_0/Q5_0's offset of 8/16 comes off the same
 * way.  Blocks go in chunks of X8_CHUNK; y carries each output's fp32 accumulator
 * from one chunk to the next, which is exact.  The same bits as scalar.c.
 */
INLINE void x8_gemv(const int type, const int RM, int N, int nb, const block_q8_0 *x,
                    const uint8_t *w, float *y, int ldy) {
    const size_t gb = 8 * x8_bb(type);
    const int q8 = type == WIM_Q8_0, hasmin = wim_q_has_min(type);
    const int off = q8 ? (WIM_X86_DPBUSD ? 128 : 0) : qx_offset(type);
    x8_pre pre;
    for (int b0 = 0; b0 < nb; b0 += X8_CHUNK) {
        const int nbk = nb - b0 < X8_CHUNK ? nb - b0 : X8_CHUNK;
        for (int b = 0; b < nbk; b++)
#pragma GCC unroll 4
            for (int m = 0; m < RM; m++) {
                const block_q8_0 *xb = &x[(size_t)m * nb + b0 + b];
                const int xs = off || hasmin ? q8_block_sum(xb) : 0;
                pre.d[4 * b + m] = _cvtsh_ss(xb->d);
                pre.sum[4 * b + m] = (float)xs;
                pre.off[4 * b + m] = off * xs;
            }
        for (int g = 0; g < N / 8; g++) {
            const uint8_t *blk = w + ((size_t)g * nb + b0) * gb;
            __m256 acc[4];
#pragma GCC unroll 4
            for (int m = 0; m < RM; m++)
                acc[m] = b0 ? _mm256_loadu_ps(y + (size_t)m * ldy + 8 * g) : _mm256_setzero_ps();
            /* no prefetch: the groups are one run of bytes, which the hardware
             * prefetcher follows (prefetching Q8_0 8 or 32 blocks on was slower) */
            for (int b = 0; b < nbk; b++, blk += gb) {
                /* two chains for one row: a block's 8 products are otherwise one
                 * serial run of vpdpbusd latencies */
                __m256i s[4][2];
#pragma GCC unroll 4
                for (int m = 0; m < RM; m++)
                    s[m][0] = s[m][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int v = 0; v < 8; v++) {
                    const __m256i wv = x8_values(type, blk, v);
                    __m256i u = wv;
                    if (q8)
                        u = WIM_X86_DPBUSD ? _mm256_xor_si256(wv, _mm256_set1_epi8(-128))
                                           : _mm256_abs_epi8(wv);
#pragma GCC unroll 4
                    for (int m = 0; m < RM; m++) {
                        __m256i xv = bcast4(x[(size_t)m * nb + b0 + b].qs + 4 * v);
                        if (q8 && !WIM_X86_DPBUSD) xv = _mm256_sign_epi8(xv, wv);
                        s[m][RM == 1 ? v & 1 : 0] = dot_acc_i8(s[m][RM == 1 ? v & 1 : 0], u, xv);
                    }
                }
                const __m256 wd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
                const __m256 wm =
                    hasmin ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16)))
                           : _mm256_setzero_ps();
#pragma GCC unroll 4
                for (int m = 0; m < RM; m++) {
                    const int at = 4 * b + m;
                    __m256i isum = _mm256_add_epi32(s[m][0], s[m][1]);
                    if (off) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(pre.off[at]));
                    const __m256 dx = _mm256_set1_ps(pre.d[at]);
                    acc[m] = _mm256_add_ps(
                        acc[m], _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dx, wd)));
                    if (hasmin)
                        acc[m] = _mm256_add_ps(acc[m], _mm256_mul_ps(_mm256_set1_ps(pre.sum[at]),
                                                                     _mm256_mul_ps(dx, wm)));
                }
            }
#pragma GCC unroll 4
            for (int m = 0; m < RM; m++)
                _mm256_storeu_ps(y + (size_t)m * ldy + 8 * g, acc[m]);
        }
    }
}

/*
 * Decode (M <= 4) on interleaved K-quant weights: per group of 8 rows and super-block,
 * each slice's 8 value vectors (unsigned) meet each activation row's bytes broadcast,
 * so lane c holds row c's exact slice sum (two halves for Q6_K's 16-value scales),
 * which its integer scale multiplies into isum; the minimums' term (Q4_K, Q5_K) and
 * Q6_K's offset of 32 come from the activation's exact 16-sums the same way.  Then
 * quants.h's two fp32 steps.  The same bits as scalar.c.
 */
INLINE void xk8_gemv(const int type, const int RM, int N, int nsb, const block_q8_K *x,
                     const uint8_t *w, float *y, int ldy) {
    const size_t gb = 8 * wim_q_block_bytes(type);
    const int q6 = type == WIM_Q6_K;
    for (int g = 0; g < N / 8; g++) {
        const uint8_t *blk = w + (size_t)g * nsb * gb;
        __m256 acc[4];
#pragma GCC unroll 4
        for (int m = 0; m < RM; m++)
            acc[m] = _mm256_setzero_ps();
        for (int sbk = 0; sbk < nsb; sbk++, blk += gb) {
            /* 16 blocks on: from memory, Q6_K's interleaved groups streamed at 16 GB/s
             * where row-major rows (which prefetch) took 28; 4 or 8 on were not enough */
            prefetch_lines(blk, 16 * gb, gb);
            const block_q8_K *xb[4];
            __m256i isum[4], msum[4];
#pragma GCC unroll 4
            for (int m = 0; m < RM; m++) {
                xb[m] = x + (size_t)m * nsb + sbk;
                isum[m] = msum[m] = _mm256_setzero_si256();
            }
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                __m256i s[4][2];
#pragma GCC unroll 4
                for (int m = 0; m < RM; m++)
                    s[m][0] = s[m][1] = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int u = 0; u < 8; u++) {
                    const __m256i v = xk8_values(type, blk, j, u);
#pragma GCC unroll 4
                    for (int m = 0; m < RM; m++)
                        s[m][u >= 4] =
                            dot_acc_i8(s[m][u >= 4], v, bcast4(xb[m]->qs + 32 * j + 4 * u));
                }
                if (q6) { /* int8 scales for each 16 values; the offset's term by them */
                    const __m256i sa = x8_byte_s(blk + 8 * 192, 2 * j);
                    const __m256i sb = x8_byte_s(blk + 8 * 192, 2 * j + 1);
#pragma GCC unroll 4
                    for (int m = 0; m < RM; m++) {
                        isum[m] = _mm256_add_epi32(
                            isum[m], _mm256_add_epi32(_mm256_mullo_epi32(s[m][0], sa),
                                                      _mm256_mullo_epi32(s[m][1], sb)));
                        msum[m] = _mm256_add_epi32(
                            msum[m],
                            _mm256_add_epi32(
                                _mm256_mullo_epi32(sa, _mm256_set1_epi32(xb[m]->bsums[2 * j])),
                                _mm256_mullo_epi32(sb,
                                                   _mm256_set1_epi32(xb[m]->bsums[2 * j + 1]))));
                    }
                } else {
                    __m256i sc, mn;
                    k4x8_scale_min(blk + 32, j, &sc, &mn);
#pragma GCC unroll 4
                    for (int m = 0; m < RM; m++) {
                        const int xs = xb[m]->bsums[2 * j] + xb[m]->bsums[2 * j + 1];
                        isum[m] = _mm256_add_epi32(
                            isum[m], _mm256_mullo_epi32(_mm256_add_epi32(s[m][0], s[m][1]), sc));
                        msum[m] = _mm256_add_epi32(msum[m],
                                                   _mm256_mullo_epi32(mn, _mm256_set1_epi32(xs)));
                    }
                }
            }
            const __m256 wd =
                _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + x8_d_offset(type))));
            const __m256 wdm =
                q6 ? wd : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16)));
#pragma GCC unroll 4
            for (int m = 0; m < RM; m++) {
                const __m256 dx = _mm256_set1_ps(xb[m]->d);
                if (q6) isum[m] = _mm256_sub_epi32(isum[m], _mm256_slli_epi32(msum[m], 5));
                acc[m] = _mm256_add_ps(
                    acc[m], _mm256_mul_ps(_mm256_cvtepi32_ps(isum[m]), _mm256_mul_ps(dx, wd)));
                if (!q6)
                    acc[m] = _mm256_sub_ps(
                        acc[m], _mm256_mul_ps(_mm256_cvtepi32_ps(msum[m]), _mm256_mul_ps(dx, wdm)));
            }
        }
#pragma GCC unroll 4
        for (int m = 0; m < RM; m++)
            _mm256_storeu_ps(y + (size_t)m * ldy + 8 * g, acc[m]);
    }
}

#define X8_QX_TYPES(F) F(WIM_Q4_0) F(WIM_Q4_1) F(WIM_Q5_0) F(WIM_Q5_1)
#define X8_K_TYPES(F) F(WIM_Q4_K) F(WIM_Q5_K) F(WIM_Q6_K)
#define X8_TYPES(F) F(WIM_Q8_0) X8_QX_TYPES(F)

/* Decode on interleaved weights, apart from prefill for the reason decode_q gives. */
static __attribute__((noinline)) void decode_x8(int type, int M, int N, int K, const void *x,
                                                const void *w, float *y, int ldy) {
    const int nb = K / QK8_0;
#define X8_CASE(T)                                                                                 \
    case T:                                                                                        \
        if (M == 1) x8_gemv(T, 1, N, nb, x, w, y, ldy);                                            \
        if (M == 2) x8_gemv(T, 2, N, nb, x, w, y, ldy);                                            \
        if (M == 3) x8_gemv(T, 3, N, nb, x, w, y, ldy);                                            \
        if (M == 4) x8_gemv(T, 4, N, nb, x, w, y, ldy);                                            \
        return;
#define XK8_CASE(T)                                                                                \
    case T:                                                                                        \
        if (M == 1) xk8_gemv(T, 1, N, nb / 8, x, w, y, ldy);                                       \
        if (M == 2) xk8_gemv(T, 2, N, nb / 8, x, w, y, ldy);                                       \
        if (M == 3) xk8_gemv(T, 3, N, nb / 8, x, w, y, ldy);                                       \
        if (M == 4) xk8_gemv(T, 4, N, nb / 8, x, w, y, ldy);                                       \
        return;
    switch (type) { X8_TYPES(X8_CASE) X8_K_TYPES(XK8_CASE) }
#undef X8_CASE
#undef XK8_CASE
}

static void gemm_x8(int type, int M, int N, int K, const void *x, const void *w, float *y,
                    int ldy) {
    const int nb = K / QK8_0;
    if (gemm_done(M, N, K, y, ldy)) return;
    if (M <= 4) {
        decode_x8(type, M, N, K, x, w, y, ldy);
        return;
    }
    if (type == WIM_Q8_0) {
        q8_panels(M, N, nb, x, NULL, w, y, ldy);
        return;
    }
#define X8_CASE(T)                                                                                 \
    case T:                                                                                        \
        qx_gemm(T, M, N, K, x, w, 8 * x8_bb(T), 1, y, ldy);                                        \
        return;
    switch (type) { X8_QX_TYPES(X8_CASE) X8_K_TYPES(X8_CASE) }
#undef X8_CASE
}
#undef X8_TYPES
#undef X8_QX_TYPES
#undef X8_K_TYPES

/* Decode (M <= 4) and prefill have one specialised body per type each, in separate
 * functions: inlined into one, the decode bodies cost prefill ~15 % (Llama-3.2-1B
 * shape Q4_K_M pp512), by the compiler's register and stack choices for the whole. */
#define QX_TYPES(F)                                                                                \
    F(WIM_Q4_0) F(WIM_Q4_1) F(WIM_Q5_0) F(WIM_Q5_1) F(WIM_Q4_K) F(WIM_Q5_K) F(WIM_Q6_K)

static __attribute__((noinline)) void decode_q(int type, int M, int N, int nb, const void *x,
                                               const void *w, size_t row_bytes, float *y, int ldy) {
#define QX_CASE(T)                                                                                 \
    case T:                                                                                        \
        qx_decode(T, M, N, nb, x, w, row_bytes, y, ldy);                                           \
        return;
    switch (type) { QX_TYPES(QX_CASE) }
#undef QX_CASE
}

static void gemm_q(int type, int M, int N, int K, const void *x, const void *w, size_t row_bytes,
                   float *y, int ldy) {
    if (M > 0 && M <= 4 && N > 0 && K >= QK8_0) {
        decode_q(type, M, N, K / QK8_0, x, w, row_bytes, y, ldy);
        return;
    }
#define QX_CASE(T)                                                                                 \
    case T:                                                                                        \
        qx_gemm(T, M, N, K, x, w, row_bytes, 0, y, ldy);                                           \
        return;
    switch (type) { QX_TYPES(QX_CASE) }
#undef QX_CASE
}
#undef QX_TYPES

/* ---- quantization ------------------------------------------------------- */

/* roundf: round half away from zero, exactly (|p| < 2^23, so p - trunc(p) is exact). */
INLINE __m256 round_away(__m256 p) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_andnot_ps(sign, _mm256_sub_ps(p, t));
    __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(p, sign));
    __m256 up = _mm256_cmp_ps(f, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_add_ps(t, _mm256_and_ps(up, one));
}

/* 32 values times id, rounded as roundf and packed to int8 in order. */
INLINE __m256i round32(const __m256 *v, __m256 vid) {
    __m256i q[4];
    for (int i = 0; i < 4; i++)
        q[i] = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v[i], vid)));
    /* packs work within 128-bit lanes; the permute restores element order */
    __m256i q01 = _mm256_packs_epi32(q[0], q[1]), q23 = _mm256_packs_epi32(q[2], q[3]);
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(q01, q23),
                                       _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void quantize_q8_0(const float *x, block_q8_0 *y, int n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int b = 0; b < n / QK8_0; b++, x += QK8_0, y++) {
        __m256 v[4];
        for (int i = 0; i < 4; i++)
            v[i] = _mm256_loadu_ps(x + 8 * i);
        __m256 mx = _mm256_max_ps(
            _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
            _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h);
        const float d = amax / 127.0f;
        const float id = d >= FLT_MIN ? 1.0f / d : 0.0f; /* as scalar.c */
        y->d = wim_fp32_to_fp16(d);
        _mm256_storeu_si256((__m256i *)y->qs, round32(v, _mm256_set1_ps(id)));
    }
}

/* quantize_q8_0's rounding over 256 values with one fp32 scale, and the exact
 * sums of each 16 (maddubs against ones, then pairs). */
static void quantize_q8_K(const float *x, block_q8_K *y, int n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int b = 0; b < n / QK8_K; b++, x += QK8_K, y++) {
        __m256 mx = _mm256_setzero_ps();
        for (int i = 0; i < QK8_K; i += 8)
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float d = _mm_cvtss_f32(h) / 127.0f;
        const float id = d >= FLT_MIN ? 1.0f / d : 0.0f; /* as scalar.c */
        y->d = d;
        const __m256 vid = _mm256_set1_ps(id);
        for (int c = 0; c < QK8_K; c += 32) {
            const __m256 v[4] = {_mm256_loadu_ps(x + c), _mm256_loadu_ps(x + c + 8),
                                 _mm256_loadu_ps(x + c + 16), _mm256_loadu_ps(x + c + 24)};
            const __m256i q8 = round32(v, vid);
            _mm256_storeu_si256((__m256i *)(y->qs + c), q8);
            /* byte pairs, then 4-byte groups: lanes 0-3 hold bytes 0-15, 4-7 bytes 16-31 */
            __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q8);
            __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1)); /* 8 x 4 bytes */
            int32_t l[8];
            _mm256_storeu_si256((__m256i *)l, s32);
            y->bsums[c / 16] = (int16_t)(l[0] + l[1] + l[2] + l[3]);
            y->bsums[c / 16 + 1] = (int16_t)(l[4] + l[5] + l[6] + l[7]);
        }
    }
}

/* ---- float -------------------------------------------------------------- */

enum { W_F32, W_F16, W_BF16 };

INLINE __m256 load_w8(const int kind, const void *w, size_t i) {
    if (kind == W_F32) return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (kind == W_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INLINE float load_w1(const int kind, const void *w, size_t i) {
    if (kind == W_F32) return ((const float *)w)[i];
    if (kind == W_F16) return wim_fp16_to_fp32(((const uint16_t *)w)[i]);
    return wim_bf16_to_fp32(((const uint16_t *)w)[i]);
}

/* Fixed reduction tree; every output uses this same one. */
INLINE float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE void f_tile(const int kind, const int RM, const int RN, int K, const float *x, const void *w,
                   float *y, int ldy) {
    __m256 acc[4][8];
#pragma GCC unroll 16
    for (int m = 0; m < RM; m++) {
#pragma GCC unroll 16
        for (int j = 0; j < RN; j++)
            acc[m][j] = _mm256_setzero_ps();
    }
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 wv[8];
#pragma GCC unroll 16
        for (int j = 0; j < RN; j++)
            wv[j] = load_w8(kind, w, (size_t)j * K + k);
#pragma GCC unroll 16
        for (int m = 0; m < RM; m++) {
            __m256 xv = _mm256_loadu_ps(x + (size_t)m * K + k);
#pragma GCC unroll 16
            for (int j = 0; j < RN; j++)
                acc[m][j] = _mm256_fmadd_ps(xv, wv[j], acc[m][j]);
        }
    }
#pragma GCC unroll 16
    for (int m = 0; m < RM; m++) {
#pragma GCC unroll 16
        for (int j = 0; j < RN; j++) {
            float s = hsum_ps(acc[m][j]);
            for (int kk = k; kk < K; kk++)
                s = fmaf(x[(size_t)m * K + kk], load_w1(kind, w, (size_t)j * K + kk), s);
            y[(size_t)m * ldy + j] = s;
        }
    }
}

INLINE void f_rows(const int kind, const int RM, const int RN, int j0, int j1, int K,
                   const float *x, const void *w, float *y, int ldy) {
    const size_t esz = kind == W_F32 ? 4 : 2;
    int j = j0;
    for (; j + RN <= j1; j += RN)
        f_tile(kind, RM, RN, K, x, (const char *)w + (size_t)j * K * esz, y + j, ldy);
    for (; j < j1; j++)
        f_tile(kind, RM, 1, K, x, (const char *)w + (size_t)j * K * esz, y + j, ldy);
}

/* Columns in panels small enough for L2, rows of x in tiles of 4 (3 columns each:
 * 12 accumulators + 3 weight vectors + 1 activation = 16 ymm registers). */
#define F_NP 24

INLINE void gemm_float(const int kind, int M, int N, int K, const float *x, const void *w, float *y,
                       int ldy) {
    for (int jp = 0; jp < N; jp += F_NP) {
        const int j1 = N - jp < F_NP ? N : jp + F_NP;
        for (int i0 = 0; i0 < M;) {
            const int rm = M - i0 < 4 ? M - i0 : 4;
            const float *xp = x + (size_t)i0 * K;
            float *yp = y + (size_t)i0 * ldy;
            switch (rm) {
            case 4:
                f_rows(kind, 4, 3, jp, j1, K, xp, w, yp, ldy);
                break;
            case 3:
                f_rows(kind, 3, 4, jp, j1, K, xp, w, yp, ldy);
                break;
            case 2:
                f_rows(kind, 2, 4, jp, j1, K, xp, w, yp, ldy);
                break;
            default:
                f_rows(kind, 1, 8, jp, j1, K, xp, w, yp, ldy);
                break;
            }
            i0 += rm;
        }
    }
}

static void gemm_f32(int M, int N, int K, const float *x, const float *w, float *y, int ldy) {
    gemm_float(W_F32, M, N, K, x, w, y, ldy);
}
static void gemm_f16(int M, int N, int K, const float *x, const uint16_t *w, float *y, int ldy) {
    gemm_float(W_F16, M, N, K, x, w, y, ldy);
}
static void gemm_bf16(int M, int N, int K, const float *x, const uint16_t *w, float *y, int ldy) {
    gemm_float(W_BF16, M, N, K, x, w, y, ldy);
}

/* Attention helpers: four accumulators hide the FMA latency on short rows. */
INLINE float dot_any(const int kind, const void *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(load_w8(kind, a, i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(load_w8(kind, a, i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(load_w8(kind, a, i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(load_w8(kind, a, i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(load_w8(kind, a, i), _mm256_loadu_ps(b + i), s0);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        s = fmaf(load_w1(kind, a, i), b[i], s);
    return s;
}

static float dot_f32(const float *a, const float *b, int n) {
    return dot_any(W_F32, a, b, n);
}
static float dot_f16(const uint16_t *a, const float *b, int n) {
    return dot_any(W_F16, a, b, n);
}

/* y = y + a*x with a separate product and sum, as scalar.c (bit-exact). */
INLINE void axpy_any(const int kind, float a, const void *x, float *y, int n) {
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 t = _mm256_mul_ps(va, load_w8(kind, x, i));
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), t));
    }
    for (; i < n; i++) {
        float t = a * load_w1(kind, x, i);
        y[i] = y[i] + t;
    }
}

static void axpy_f32(float a, const float *x, float *y, int n) {
    axpy_any(W_F32, a, x, y, n);
}
static void axpy_f16(float a, const uint16_t *x, float *y, int n) {
    axpy_any(W_F16, a, x, y, n);
}

/* ---- attention tiles (simd.h): the same fmaf chains as attn_tile.h, 8 lanes at a time ---- */

/* queries per register block, 2 accumulators of 8 keys (or dimensions) each: as many
 * as the registers hold beside the loads (16 ymm with AVX2, 32 with AVX-512) */
#ifdef __AVX512F__
#define ATT_QB 8
#else
#define ATT_QB 6
#endif

/* Transposes an 8 x 8 block of floats held as 8 rows.  Every loop over the rows is
 * unrolled, here and where the rows are loaded and stored: left as loops, -O2 kept
 * the rows on the stack, and attn_load ran 3x slower (23 vs 8 ns per key of 64 f16
 * dimensions, K and V, in cache). */
INLINE void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
#pragma GCC unroll 8
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

static void x86_attn_load(const void *k, const void *v, size_t stride, int count, int n, int f16,
                          float *kt, int ldk, float *vt) {
    const int kind = f16 ? W_F16 : W_F32;
    const size_t row = stride * (f16 ? 2 : 4), len = (size_t)n * (f16 ? 2 : 4);
    for (int i = 0; i < count; i++) {
        /* the row a tile on, which the next call most likely loads (a head's cells
         * are contiguous, kvcache.h): into L2, as the decode GEMVs' weights */
        for (size_t o = 0; o < len; o += 64) {
            _mm_prefetch((const char *)((uintptr_t)k + (size_t)(i + count) * row + o), _MM_HINT_T1);
            _mm_prefetch((const char *)((uintptr_t)v + (size_t)(i + count) * row + o), _MM_HINT_T1);
        }
        int d = 0;
        for (; d + 8 <= n; d += 8)
            _mm256_storeu_ps(vt + (size_t)i * n + d, load_w8(kind, v, (size_t)i * stride + d));
        for (; d < n; d++)
            vt[(size_t)i * n + d] = load_w1(kind, v, (size_t)i * stride + d);
    }
    int i0 = 0; /* K goes in transposed: blocks of 8 keys x 8 dimensions through registers */
    for (; i0 + 8 <= count; i0 += 8) {
        int d = 0;
        for (; d + 8 <= n; d += 8) {
            __m256 r[8];
#pragma GCC unroll 8
            for (int e = 0; e < 8; e++)
                r[e] = load_w8(kind, k, (size_t)(i0 + e) * stride + d);
            transpose8(r);
#pragma GCC unroll 8
            for (int e = 0; e < 8; e++)
                _mm256_storeu_ps(kt + (size_t)(d + e) * ldk + i0, r[e]);
        }
        for (; d < n; d++)
            for (int e = 0; e < 8; e++)
                kt[(size_t)d * ldk + i0 + e] = load_w1(kind, k, (size_t)(i0 + e) * stride + d);
    }
    for (; i0 < count; i0++)
        for (int d = 0; d < n; d++)
            kt[(size_t)d * ldk + i0] = load_w1(kind, k, (size_t)i0 * stride + d);
}

/* s[j][i0 .. i0+16) for qb queries: every lane a chain over d from 0, as fmaf. The lanes
 * past nk read what kt holds there (ldk >= i0 + 16) and are not stored. */
INLINE void scores16(const int qb, const float *q, const float *kt, int ldk, int i0, int nk, int n,
                     float *s, int lds) {
    __m256 acc[ATT_QB][2];
#pragma GCC unroll 8
    for (int j = 0; j < qb; j++)
        acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (int d = 0; d < n; d++) {
        const float *kd = kt + (size_t)d * ldk + i0;
        const __m256 k0 = _mm256_loadu_ps(kd), k1 = _mm256_loadu_ps(kd + 8);
#pragma GCC unroll 8
        for (int j = 0; j < qb; j++) {
            const __m256 b = _mm256_broadcast_ss(q + (size_t)j * n + d);
            acc[j][0] = _mm256_fmadd_ps(b, k0, acc[j][0]);
            acc[j][1] = _mm256_fmadd_ps(b, k1, acc[j][1]);
        }
    }
    const int w = nk - i0 < 16 ? nk - i0 : 16;
#pragma GCC unroll 8
    for (int j = 0; j < qb; j++) {
        if (w == 16) {
            _mm256_storeu_ps(s + (size_t)j * lds + i0, acc[j][0]);
            _mm256_storeu_ps(s + (size_t)j * lds + i0 + 8, acc[j][1]);
            continue;
        }
        float tmp[16];
        _mm256_storeu_ps(tmp, acc[j][0]);
        _mm256_storeu_ps(tmp + 8, acc[j][1]);
        memcpy(s + (size_t)j * lds + i0, tmp, (size_t)w * sizeof *tmp);
    }
}

/* Calls BODY(QB) with QB = min(rest, ATT_QB) as a constant, so each register block
 * size gets its own unrolled copy. */
#if ATT_QB > 6
#define QB_CASES_WIDE(BODY)                                                                        \
    case 6:                                                                                        \
        BODY(6);                                                                                   \
        break;                                                                                     \
    case 7:                                                                                        \
        BODY(7);                                                                                   \
        break;
#else
#define QB_CASES_WIDE(BODY)
#endif
#define QB_SWITCH(rest, BODY)                                                                      \
    switch ((rest) < ATT_QB ? (rest) : ATT_QB) {                                                   \
    case 1:                                                                                        \
        BODY(1);                                                                                   \
        break;                                                                                     \
    case 2:                                                                                        \
        BODY(2);                                                                                   \
        break;                                                                                     \
    case 3:                                                                                        \
        BODY(3);                                                                                   \
        break;                                                                                     \
    case 4:                                                                                        \
        BODY(4);                                                                                   \
        break;                                                                                     \
    case 5:                                                                                        \
        BODY(5);                                                                                   \
        break;                                                                                     \
        QB_CASES_WIDE(BODY)                                                                        \
    default:                                                                                       \
        BODY(ATT_QB);                                                                              \
        break;                                                                                     \
    }

static void x86_attn_scores(const float *q, int nq, const float *kt, int ldk, int nk, int n,
                            float *s, int lds) {
    for (int j0 = 0; j0 < nq; j0 += ATT_QB) {
        const float *qj = q + (size_t)j0 * n;
        float *sj = s + (size_t)j0 * lds;
        for (int i0 = 0; i0 < nk; i0 += 16) {
#define SCORES16(QB) scores16(QB, qj, kt, ldk, i0, nk, n, sj, lds)
            QB_SWITCH(nq - j0, SCORES16)
#undef SCORES16
        }
    }
}

/* out[j][d0 .. d0+8*NV) for qb queries: every element a chain over i, as fmaf. */
INLINE void accum8(const int qb, const int nv, const float *p, int lds, const float *vt, int nk,
                   int n, int d0, float *out) {
    __m256 acc[ATT_QB][2];
#pragma GCC unroll 8
    for (int j = 0; j < qb; j++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++)
            acc[j][v] = _mm256_loadu_ps(out + (size_t)j * n + d0 + 8 * v);
    for (int i = 0; i < nk; i++) {
        const float *vi = vt + (size_t)i * n + d0;
        const __m256 v0 = _mm256_loadu_ps(vi), v1 = nv > 1 ? _mm256_loadu_ps(vi + 8) : v0;
#pragma GCC unroll 8
        for (int j = 0; j < qb; j++) {
            const __m256 b = _mm256_broadcast_ss(p + (size_t)j * lds + i);
            acc[j][0] = _mm256_fmadd_ps(b, v0, acc[j][0]);
            if (nv > 1) acc[j][1] = _mm256_fmadd_ps(b, v1, acc[j][1]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < qb; j++)
#pragma GCC unroll 2
        for (int v = 0; v < nv; v++)
            _mm256_storeu_ps(out + (size_t)j * n + d0 + 8 * v, acc[j][v]);
}

#define ACCUM8(QB)                                                                                 \
    do {                                                                                           \
        int d = 0;                                                                                 \
        for (; d + 16 <= n; d += 16)                                                               \
            accum8(QB, 2, pj, lds, vt, nk, n, d, oj);                                              \
        if (d + 8 <= n) accum8(QB, 1, pj, lds, vt, nk, n, d, oj), d += 8;                          \
        for (; d < n; d++) /* what is left of an odd head size */                                  \
            for (int j = 0; j < (QB); j++)                                                         \
                for (int i = 0; i < nk; i++)                                                       \
                    oj[(size_t)j * n + d] = fmaf(pj[(size_t)j * lds + i], vt[(size_t)i * n + d],   \
                                                 oj[(size_t)j * n + d]);                           \
    } while (0)

static void x86_attn_accum(const float *p, int lds, int nq, const float *vt, int nk, int n,
                           float *out) {
    for (int j0 = 0; j0 < nq; j0 += ATT_QB) {
        const float *pj = p + (size_t)j0 * lds;
        float *oj = out + (size_t)j0 * n;
        QB_SWITCH(nq - j0, ACCUM8)
    }
}

/* attn_tile.h's scale and maximum, 8 lanes at a time: max_ps(v, m) keeps m when v
 * is NaN, as the scalar comparison does; a maximum is the same in any order. */
static float x86_attn_scale_max(float *s, int n, float scale) {
    const __m256 vs = _mm256_set1_ps(scale);
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + i), vs);
        _mm256_storeu_ps(s + i, v);
        vmax = _mm256_max_ps(v, vmax);
    }
    float lanes[8], max = -INFINITY;
    _mm256_storeu_ps(lanes, vmax);
    for (int l = 0; l < 8; l++)
        if (lanes[l] > max) max = lanes[l];
    for (; i < n; i++) {
        s[i] *= scale;
        if (s[i] > max) max = s[i];
    }
    return max;
}

/* attn_exp1 in 8 lanes: the same rounded steps in each lane. */
INLINE __m256 exp8(__m256 x) {
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(k, _mm256_set1_ps(-0.693145752f), x);
    r = _mm256_fmadd_ps(k, _mm256_set1_ps(-1.42860677e-06f), r);
    __m256 p = _mm256_set1_ps(1.38888889e-03f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.33333333e-03f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.16666667e-02f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.66666667e-01f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    const __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    /* x >= -87 is false for NaN and -inf too, as in the scalar !(x >= -87) */
    return _mm256_and_ps(y, _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_GE_OQ));
}

/* attn_tile.h's exp and sum: lane l of the running sum is part[l]; the tail is
 * padded with -inf, whose weight 0 leaves a partial sum as it is. */
static void x86_attn_exp(float *s, int n, float max, float *sum) {
    const __m256 vmax = _mm256_set1_ps(max);
    __m256 part = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 y = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), vmax));
        _mm256_storeu_ps(s + i, y);
        part = _mm256_add_ps(part, y);
    }
    if (i < n) {
        float tail[8];
        for (int l = 0; l < 8; l++)
            tail[l] = i + l < n ? s[i + l] : -INFINITY;
        const __m256 y = exp8(_mm256_sub_ps(_mm256_loadu_ps(tail), vmax));
        _mm256_storeu_ps(tail, y);
        memcpy(s + i, tail, (size_t)(n - i) * sizeof *tail);
        part = _mm256_add_ps(part, y);
    }
    /* the halves, then the pairs: attn_tile_sum's order */
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(part), _mm256_extractf128_ps(part, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    *sum += _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)));
}

/* swiglu.h's gate in 8 lanes: -g by its sign bit, e^-g by exp8 (+inf past 88), then
 * the division and the product, each rounded once as in swiglu1. */
INLINE __m256 swiglu8(__m256 g, __m256 u) {
    const __m256 ng = _mm256_xor_ps(g, _mm256_set1_ps(-0.0f));
    const __m256 e = _mm256_blendv_ps(exp8(ng), _mm256_set1_ps(INFINITY),
                                      _mm256_cmp_ps(ng, _mm256_set1_ps(88.0f), _CMP_GT_OQ));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

static void x86_swiglu(const float *g, const float *u, float *out, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, swiglu8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) { /* the tail in a padded vector */
        float tg[8] = {0}, tu[8] = {0};
        memcpy(tg, g + i, (size_t)(n - i) * sizeof *tg);
        memcpy(tu, u + i, (size_t)(n - i) * sizeof *tu);
        _mm256_storeu_ps(tg, swiglu8(_mm256_loadu_ps(tg), _mm256_loadu_ps(tu)));
        memcpy(out + i, tg, (size_t)(n - i) * sizeof *tg);
    }
}

const wim_kernels WIM_X86_TABLE = {
    .isa = WIM_X86_ISA,
    .quantize_q8_0 = quantize_q8_0,
    .gemm_q8_0 = gemm_q8_0,
    .gemm_x8 = gemm_x8,
    .interleave = 1,
    .gemm_q = gemm_q,
    .quantize_q8_K = quantize_q8_K,
    .gemm_f16 = gemm_f16,
    .gemm_bf16 = gemm_bf16,
    .gemm_f32 = gemm_f32,
    .dot_f32 = dot_f32,
    .dot_f16 = dot_f16,
    .axpy_f32 = axpy_f32,
    .axpy_f16 = axpy_f16,
    .attn_load = x86_attn_load,
    .attn_scores = x86_attn_scores,
    .attn_accum = x86_attn_accum,
    .attn_scale_max = x86_attn_scale_max,
    .attn_exp = x86_attn_exp,
    .swiglu = x86_swiglu,
};
