/*
 * test_simd.c — every kernel table against the scalar twin, plus the numeric
 * conversions in simd.h and the dispatch rules.
 *
 * What is checked, per available ISA (SKIP with the reason for the others):
 *  - quantize_q8_0, gemm_q8_0 and axpy_*: bit-exact with scalar.c;
 *  - gemm_f32/f16/bf16 and dot_*: |y - y_ref| <= 1e-5 * sum_k |x_k*w_k|, the
 *    size of float reassociation error (a plain relative error is meaningless
 *    for sums that cancel);
 *  - tile independence: sub-products at odd offsets (and M = 1 GEMV rows) give
 *    the same bits as the same outputs of one big product;
 *  - outputs never write past N columns of a row (ldy > N padding untouched).
 * Sizes run from K = 32 to 4128 (past one 128-block K chunk) with M and N not
 * multiples of any tile.  Inputs come from a fixed seed, so a failure repeats.
 */
#include <stdint.h>

#include "interleave.h"
#include "quants.h"
#include "simd.h"
#include "test.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static unsigned long long rng = 0x9e3779b97f4a7c15ULL;

/* WIM_TEST_QUICK=1 (set by tests/neon.sh under emulation) trims the largest
 * loops; every kernel and every shape class is still covered. */
static int quick;

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- AMX tiles, emulated ------------------------------------------------ */
/*
 * simd/amx.c is compiled here a second time with the six tile instructions
 * replaced by C that follows the Intel SDM pseudo-code (and checks the shape
 * rules that would #UD), its remainders sent to the scalar table.  That runs the
 * packing, strides, tile shapes and epilogue on any CPU; only the real
 * instructions need a Sapphire Rapids.
 */
static struct {
    int rows, colsb;
    int8_t d[16][64];
} tmm[8];
static int amx_cfg_ok, amx_errors;

static void emu_loadconfig(const void *cfg) {
    const uint8_t *c = cfg;
    amx_cfg_ok = c[0] == 1;
    for (int t = 0; t < 8; t++) {
        tmm[t].colsb = c[16 + 2 * t] | c[17 + 2 * t] << 8;
        tmm[t].rows = c[48 + t];
        if (tmm[t].rows > 16 || tmm[t].colsb > 64) amx_errors++;
        memset(tmm[t].d, 0, sizeof tmm[t].d);
    }
    if (!amx_cfg_ok) amx_errors++;
}
static void emu_zero(int t) {
    if (!amx_cfg_ok) amx_errors++;
    memset(tmm[t].d, 0, sizeof tmm[t].d);
}
static void emu_loadd(int t, const void *base, size_t stride) {
    if (!amx_cfg_ok) amx_errors++;
    for (int r = 0; r < tmm[t].rows; r++)
        memcpy(tmm[t].d[r], (const char *)base + r * stride, (size_t)tmm[t].colsb);
}
static void emu_stored(int t, void *base, size_t stride) {
    if (!amx_cfg_ok) amx_errors++;
    for (int r = 0; r < tmm[t].rows; r++)
        memcpy((char *)base + r * stride, tmm[t].d[r], (size_t)tmm[t].colsb);
}
static void emu_dpbssd(int dst, int a, int b) { /* TDPBSSD: signed x signed, int32 += */
    if (!amx_cfg_ok || tmm[dst].rows != tmm[a].rows || tmm[dst].colsb != tmm[b].colsb ||
        tmm[a].colsb != tmm[b].rows * 4) {
        amx_errors++;
        return;
    }
    for (int m = 0; m < tmm[dst].rows; m++)
        for (int n = 0; n < tmm[dst].colsb / 4; n++) {
            int32_t c;
            memcpy(&c, &tmm[dst].d[m][4 * n], 4);
            for (int k = 0; k < tmm[a].colsb / 4; k++)
                for (int i = 0; i < 4; i++)
                    c += tmm[a].d[m][4 * k + i] * tmm[b].d[k][4 * n + i];
            memcpy(&tmm[dst].d[m][4 * n], &c, 4);
        }
}
static void emu_release(void) {
    amx_cfg_ok = 0;
}

#undef _tile_loadconfig
#undef _tile_zero
#undef _tile_loadd
#undef _tile_stored
#undef _tile_dpbssd
#undef _tile_release
#define _tile_loadconfig(c) emu_loadconfig(c)
#define _tile_zero(t) emu_zero(t)
#define _tile_loadd(t, base, stride) emu_loadd(t, base, stride)
#define _tile_stored(t, base, stride) emu_stored(t, base, stride)
#define _tile_dpbssd(d, a, b) emu_dpbssd(d, a, b)
#define _tile_release() emu_release()
#define WIM_AMX_EMULATE 1
#define WIM_AMX_FALLBACK wim_kernels_scalar
#define WIM_AMX_TABLE wim_kernels_amx_emulated
#include "../simd/amx.c"

/* ---- hardware conversions, the reference for simd.h's scalar ones ------- */

#if defined(__x86_64__)
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f) {
    return (uint16_t)_cvtss_sh(f, 0);
}
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) {
    return _cvtsh_ss(h);
}
static int hw_f16(void) {
    return __builtin_cpu_supports("f16c");
}
#elif defined(__aarch64__)
static uint16_t hw_f32_to_f16(float f) {
    __fp16 h = (__fp16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}
static float hw_f16_to_f32(uint16_t u) {
    __fp16 h;
    memcpy(&h, &u, 2);
    return (float)h;
}
static int hw_f16(void) {
    return 1;
}
#else
static uint16_t hw_f32_to_f16(float f) {
    return wim_fp32_to_fp16(f);
}
static float hw_f16_to_f32(uint16_t h) {
    return wim_fp16_to_fp32(h);
}
static int hw_f16(void) {
    return 0;
}
#endif

static int is_nan16(uint16_t h) {
    return (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
}

static void test_fp16_to_fp32_all(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = wim_fp16_to_fp32((uint16_t)h);
        if (is_nan16((uint16_t)h)) {
            CHECKF(f != f, "fp16 %04x should decode to NaN", h);
            if (hw_f16()) /* payload and quiet bit as the hardware (NaN bits differ only there) */
                CHECKF((f2u(f) | 0x400000u) == (f2u(hw_f16_to_f32((uint16_t)h)) | 0x400000u),
                       "fp16 %04x -> %08x, hardware %08x", h, f2u(f),
                       f2u(hw_f16_to_f32((uint16_t)h)));
            continue;
        }
        if (hw_f16())
            CHECKF(f2u(f) == f2u(hw_f16_to_f32((uint16_t)h)), "fp16 %04x -> %08x, hardware %08x", h,
                   f2u(f), f2u(hw_f16_to_f32((uint16_t)h)));
        CHECKF(wim_fp32_to_fp16(f) == h, "fp16 %04x does not round-trip (got %04x)", h,
               wim_fp32_to_fp16(f));
    }
}

/* Known answers that hold on any machine (round to nearest even). */
static void test_fp32_to_fp16_known(void) {
    const struct {
        float f;
        uint16_t h;
    } k[] = {
        {0.0f, 0x0000},         {-0.0f, 0x8000},         {1.0f, 0x3c00},
        {-2.0f, 0xc000},        {65504.0f, 0x7bff},      {65519.996f, 0x7bff},
        {65520.0f, 0x7c00},     {1e10f, 0x7c00},         {-1e10f, 0xfc00},
        {0x1p-24f, 0x0001},     {0x1p-25f, 0x0000},      {0x1.000002p-25f, 0x0001},
        {0x1.8p-24f, 0x0002},   {0x1.4p-23f, 0x0002},    {0x1p-14f, 0x0400},
        {0x1.ffcp-15f, 0x0400}, {0x1.ff4p-15f, 0x03fe},  {0x1.002p0f, 0x3c00},
        {0x1.006p0f, 0x3c02},   {0x1.002002p0f, 0x3c01}, {1e-30f, 0x0000},
        {-0x1p-24f, 0x8001},    {0x1p-149f, 0x0000},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        CHECKF(wim_fp32_to_fp16(k[i].f) == k[i].h, "fp32 %a -> %04x, expected %04x", k[i].f,
               wim_fp32_to_fp16(k[i].f), k[i].h);
    CHECK(wim_fp32_to_fp16(INFINITY) == 0x7c00 && wim_fp32_to_fp16(-INFINITY) == 0xfc00);
    CHECK(is_nan16(wim_fp32_to_fp16(NAN)) && is_nan16(wim_fp32_to_fp16(u2f(0x7f800001u))));
}

static void test_fp32_to_fp16_vs_hw(void) {
    if (!hw_f16()) SKIP("no hardware fp16 conversion on this CPU");
    /* Every fp16 value, its neighbours, and the exact midpoints between them. */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float lo = wim_fp16_to_fp32((uint16_t)h), hi = wim_fp16_to_fp32((uint16_t)(h + 1));
        float mid = (float)(((double)lo + (double)hi) / 2);
        float c[] = {lo,
                     mid,
                     nextafterf(mid, 0),
                     nextafterf(mid, INFINITY),
                     nextafterf(lo, 0),
                     nextafterf(lo, INFINITY)};
        for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
            for (int s = 0; s < 2; s++) {
                float f = s ? -c[i] : c[i];
                CHECKF(wim_fp32_to_fp16(f) == hw_f32_to_f16(f), "fp32 %08x -> %04x, hardware %04x",
                       f2u(f), wim_fp32_to_fp16(f), hw_f32_to_f16(f));
            }
    }
    /* Random bit patterns: all exponents, NaNs with payloads, infinities. */
    unsigned long long s = 12345;
    for (int i = 0; i < (quick ? 300000 : 4000000); i++) {
        uint32_t u = (uint32_t)(t_rand_next(&s) >> 32);
        if (i & 1) u = (u & 0x807fffffu) | ((uint32_t)(100 + (i >> 1) % 45) << 23); /* near range */
        float f = u2f(u);
        CHECKF(wim_fp32_to_fp16(f) == hw_f32_to_f16(f), "fp32 %08x -> %04x, hardware %04x", u,
               wim_fp32_to_fp16(f), hw_f32_to_f16(f));
    }
    const uint32_t edge[] = {0x7f800000u, 0xff800000u, 0x7f800001u, 0x7fc00000u, 0xffffffffu,
                             0x7f7fffffu, 0x00000001u, 0x80000001u, 0x477fefffu, 0x477ff000u,
                             0x33000000u, 0x33000001u, 0x387fffffu, 0x38800000u};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
        CHECKF(wim_fp32_to_fp16(u2f(edge[i])) == hw_f32_to_f16(u2f(edge[i])),
               "fp32 %08x -> %04x, hardware %04x", edge[i], wim_fp32_to_fp16(u2f(edge[i])),
               hw_f32_to_f16(u2f(edge[i])));
}

/* bf16: the reference decides by the 16 dropped bits directly. */
static uint16_t ref_bf16(float f) {
    uint32_t x = f2u(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    uint32_t lo = x >> 16, rem = x & 0xffff;
    if (rem > 0x8000 || (rem == 0x8000 && (lo & 1))) lo++;
    return (uint16_t)lo;
}

static void test_bf16(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = wim_bf16_to_fp32((uint16_t)h);
        CHECKF(f2u(f) == h << 16, "bf16 %04x decodes to %08x", h, f2u(f));
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) {
            CHECK(wim_fp32_to_bf16(f) == (h | 0x40));
            continue;
        }
        CHECKF(wim_fp32_to_bf16(f) == h, "bf16 %04x does not round-trip", h);
        uint32_t u = h << 16;
        const uint32_t c[] = {u + 0x8000, u + 0x7fff, u + 0x8001, u + 0x1, u + 0xffff};
        for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
            CHECKF(wim_fp32_to_bf16(u2f(c[i])) == ref_bf16(u2f(c[i])),
                   "fp32 %08x -> bf16 %04x, expected %04x", c[i], wim_fp32_to_bf16(u2f(c[i])),
                   ref_bf16(u2f(c[i])));
    }
    CHECK(wim_fp32_to_bf16(u2f(0x7f7f8000u)) == 0x7f80); /* ties to even overflow to inf */
    CHECK(wim_fp32_to_bf16(1.0f) == 0x3f80);
}

/* ---- dispatch ----------------------------------------------------------- */

/* The ISAs this architecture builds, worst first; tests/neon.sh runs this file
 * for aarch64 under qemu, so x86 runs do not list neon (and vice versa). */
#if defined(__x86_64__)
static const char *const isas[] = {"avx2", "avxvnni", "avx512vnni", "amx"};
#elif defined(__aarch64__)
static const char *const isas[] = {"neon"};
#else
static const char *const isas[] = {"avx2", "neon"}; /* none runs: both must say why */
#endif
#define NISA (sizeof isas / sizeof isas[0])

static void test_dispatch(void) {
    char err[256], why[256];
    const char *saved = getenv("WIM_ISA");
    char keep[64] = "";
    if (saved) snprintf(keep, sizeof keep, "%s", saved);

    CHECK(wim_kernels_for("scalar") && !strcmp(wim_kernels_for("scalar")->isa, "scalar"));
    CHECK(wim_kernels_for("no-such-isa") == NULL);
    CHECK(!wim_kernels_available("no-such-isa", why, sizeof why) && strstr(why, "unknown"));

    unsetenv("WIM_ISA");
    CHECK(wim_kernels_init(err, sizeof err) == 0);
    const char *best = "scalar";
    for (int i = (int)NISA - 1; i >= 0; i--) /* isas[] lists the x86 ones worst first */
        if (wim_kernels_for(isas[i])) {
            best = isas[i];
            break;
        }
    CHECKF(!strncmp(wim_kernels_get()->isa, best, strlen(best)), "default is %s, best is %s",
           wim_kernels_get()->isa, best);

    setenv("WIM_ISA", "scalar", 1);
    CHECK(wim_kernels_init(err, sizeof err) == 0 && !strcmp(wim_kernels_get()->isa, "scalar"));

    setenv("WIM_ISA", "bogus", 1);
    CHECK(wim_kernels_init(err, sizeof err) == -1);
    CHECKF(strstr(err, "WIM_ISA=bogus") && strstr(err, "unknown"), "error was: %s", err);
    CHECK(!strcmp(wim_kernels_get()->isa, "scalar")); /* a failed init changes nothing */

    for (size_t i = 0; i < NISA; i++) {
        setenv("WIM_ISA", isas[i], 1);
        int rc = wim_kernels_init(err, sizeof err);
        if (wim_kernels_for(isas[i])) {
            CHECKF(rc == 0, "WIM_ISA=%s failed: %s", isas[i], err);
            CHECK(wim_kernels_get() == wim_kernels_for(isas[i]));
        } else {
            CHECKF(rc == -1 && strstr(err, isas[i]) &&
                       (strstr(err, "lacks") || strstr(err, "not built") || strstr(err, "refused")),
                   "WIM_ISA=%s: rc %d, error '%s'", isas[i], rc, err);
        }
    }
    if (keep[0])
        setenv("WIM_ISA", keep, 1);
    else
        unsetenv("WIM_ISA");
    CHECK(wim_kernels_init(err, sizeof err) == 0 || keep[0]);

    char desc[512];
    wim_cpu_describe(desc, sizeof desc);
    CHECK(strlen(desc) > 10 && strstr(desc, "kernels:"));
    wim_cpu_describe(desc, 8); /* truncation is safe */
    CHECK(strlen(desc) < 8);
}

/* ---- kernel comparisons ------------------------------------------------- */

static const wim_kernels *S, *T; /* scalar, table under test */

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

static void fill_f(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++)
        x[i] = t_rand_float(&rng) * scale;
}

/* Activations as the engine makes them: quantized floats (|q| <= 127). */
static block_q8_0 *make_x(int M, int K) {
    float *f = xmalloc((size_t)M * K * sizeof *f);
    fill_f(f, (size_t)M * K, 3.0f);
    block_q8_0 *x = xmalloc((size_t)M * (K / 32) * sizeof *x);
    S->quantize_q8_0(f, x, M * K);
    free(f);
    return x;
}

/* Weights: any int8 including -128, scales of both signs. */
static block_q8_0 *make_w(int N, int K) {
    size_t n = (size_t)N * (K / 32);
    block_q8_0 *w = xmalloc(n * sizeof *w);
    for (size_t b = 0; b < n; b++) {
        w[b].d = wim_fp32_to_fp16(t_rand_float(&rng) * 0.05f);
        for (int i = 0; i < 32; i++)
            w[b].qs[i] = (int8_t)(t_rand_next(&rng) >> 56);
        if (b % 7 == 0) w[b].qs[b % 32] = -128;
    }
    return w;
}

static void test_quantize(void) {
    const int nbs[] = {1, 2, 3, 7, 31, 128, 129};
    for (size_t t = 0; t < sizeof nbs / sizeof nbs[0]; t++) {
        int n = nbs[t] * 32;
        float *x = xmalloc((size_t)n * sizeof *x);
        for (int b = 0; b < nbs[t]; b++) {
            float *xb = x + b * 32;
            switch (b % 6) {
            case 0:
                fill_f(xb, 32, 1.0f);
                break;
            case 1:
                memset(xb, 0, 32 * sizeof *xb);
                break; /* d = 0, id = 0 */
            case 2:    /* amax 127 -> id 1: exact .5 ties must round away from zero */
                for (int i = 0; i < 32; i++)
                    xb[i] = (float)(i * 4 - 62) + 0.5f;
                xb[0] = 127.0f;
                xb[1] = -0.0f;
                break;
            case 3:
                fill_f(xb, 32, 1e-4f);
                break;
            case 4:
                fill_f(xb, 32, 3e4f);
                break;
            default:
                memset(xb, 0, 32 * sizeof *xb);
                xb[b % 32] = -t_rand_float(&rng) - 1.0f; /* one negative extreme */
                break;
            }
        }
        block_q8_0 *a = xmalloc((size_t)nbs[t] * sizeof *a),
                   *r = xmalloc((size_t)nbs[t] * sizeof *r);
        memset(a, 0x55, (size_t)nbs[t] * sizeof *a);
        S->quantize_q8_0(x, r, n);
        T->quantize_q8_0(x, a, n);
        for (int b = 0; b < nbs[t]; b++) {
            CHECKF(a[b].d == r[b].d, "n=%d block %d: d %04x, scalar %04x", n, b, a[b].d, r[b].d);
            for (int i = 0; i < 32; i++)
                CHECKF(a[b].qs[i] == r[b].qs[i], "n=%d block %d [%d]: q %d, scalar %d (x=%g)", n, b,
                       i, a[b].qs[i], r[b].qs[i], x[b * 32 + i]);
        }
        free(x), free(a), free(r);
    }
}

#define PAD 3 /* ldy = N + PAD; the pad must stay untouched */
static const float SENTINEL = -12345.5f;

static float *make_y(int M, int N) {
    float *y = xmalloc((size_t)M * (N + PAD) * sizeof *y);
    for (size_t i = 0; i < (size_t)M * (N + PAD); i++)
        y[i] = SENTINEL;
    return y;
}

static int pads_ok(const float *y, int M, int N) {
    for (int m = 0; m < M; m++)
        for (int j = N; j < N + PAD; j++)
            if (y[(size_t)m * (N + PAD) + j] != SENTINEL) return 0;
    return 1;
}

static const int Ms[] = {1, 2, 3, 4, 5, 8, 13};
static const int Ns[] = {1, 2, 3, 5, 8, 9, 16, 31, 64, 67, 130};
static const int Kq[] = {32, 64, 96, 160, 288, 1024, 4096, 4128};

static void test_gemm_q8_0(void) {
    int t = 0;
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++, t++) {
            int M = Ms[mi], N = Ns[ni], K = Kq[t % (sizeof Kq / sizeof Kq[0])];
            if ((size_t)M * N * K > 4000000) K = 288;
            block_q8_0 *x = make_x(M, K), *w = make_w(N, K);
            float *r = make_y(M, N), *a = make_y(M, N);
            S->gemm_q8_0(M, N, K, x, w, r, N + PAD);
            T->gemm_q8_0(M, N, K, x, w, a, N + PAD);
            CHECKF(pads_ok(a, M, N), "M=%d N=%d K=%d: wrote past N", M, N, K);
            for (int m = 0; m < M; m++)
                for (int j = 0; j < N; j++) {
                    float u = a[m * (N + PAD) + j], v = r[m * (N + PAD) + j];
                    CHECKF(f2u(u) == f2u(v), "M=%d N=%d K=%d y[%d][%d] = %.9g, scalar %.9g", M, N,
                           K, m, j, u, v);
                }
            free(x), free(w), free(r), free(a);
        }
    /* Long GEMV rows (decode) at every K from 32 to 4096 in steps of 32*9. */
    for (int K = 32; K <= 4096 + 32; K += 32 * 9) {
        int N = 19;
        block_q8_0 *x = make_x(1, K), *w = make_w(N, K);
        float r[19], a[19];
        S->gemm_q8_0(1, N, K, x, w, r, N);
        T->gemm_q8_0(1, N, K, x, w, a, N);
        for (int j = 0; j < N; j++)
            CHECKF(f2u(a[j]) == f2u(r[j]), "GEMV K=%d y[%d] = %.9g, scalar %.9g", K, j, a[j], r[j]);
        free(x), free(w);
    }
}

/* Shapes big enough for 16x16 AMX tiles and several 4x4 / panel tiles, with
 * remainders on both sides; bit-exact with scalar.c. */
static void test_gemm_q8_0_big(void) {
    const int shapes[][3] = {{16, 16, 32},  {17, 33, 96},   {33, 48, 1024},
                             {48, 70, 288}, {64, 64, 4128}, {20, 130, 160}};
    const int ns = quick ? 4 : (int)(sizeof shapes / sizeof shapes[0]);
    for (int t = 0; t < ns; t++) {
        int M = shapes[t][0], N = shapes[t][1], K = shapes[t][2];
        block_q8_0 *x = make_x(M, K), *w = make_w(N, K);
        float *r = make_y(M, N), *a = make_y(M, N);
        amx_errors = 0;
        S->gemm_q8_0(M, N, K, x, w, r, N + PAD);
        T->gemm_q8_0(M, N, K, x, w, a, N + PAD);
        CHECKF(amx_errors == 0, "emulated AMX: %d tile faults (configuration or shapes)",
               amx_errors);
        CHECKF(pads_ok(a, M, N), "M=%d N=%d K=%d: wrote past N", M, N, K);
        for (int m = 0; m < M; m++)
            for (int j = 0; j < N; j++) {
                float u = a[m * (N + PAD) + j], v = r[m * (N + PAD) + j];
                CHECKF(f2u(u) == f2u(v), "M=%d N=%d K=%d y[%d][%d] = %.9g, scalar %.9g", M, N, K, m,
                       j, u, v);
            }
        free(x), free(w), free(r), free(a);
    }
}

/* ---- the other quantized types (quants.h) ---- */

static const int qtypes[] = {WIM_Q4_0, WIM_Q4_1, WIM_Q5_0, WIM_Q5_1, WIM_Q4_K, WIM_Q5_K, WIM_Q6_K};

/* N rows of K weights of `type`: random bytes (every bit pattern of values, high
 * bits and packed scales), with the fp16 scale fields set to finite values of
 * both signs. */
static uint8_t *make_wq(int type, int N, int K, size_t *row_bytes) {
    const int bw = wim_q_block_weights(type);
    const size_t bb = wim_q_block_bytes(type), nblk = (size_t)N * (K / bw);
    *row_bytes = (size_t)(K / bw) * bb;
    uint8_t *w = xmalloc(nblk * bb);
    for (size_t i = 0; i < nblk * bb; i++)
        w[i] = (uint8_t)(t_rand_next(&rng) >> 56);
    for (size_t b = 0; b < nblk; b++) {
        uint8_t *p = w + b * bb;
        uint16_t h1 = wim_fp32_to_fp16(t_rand_float(&rng) * 0.01f);
        uint16_t h2 = wim_fp32_to_fp16(t_rand_float(&rng) * 0.01f);
        if (type == WIM_Q6_K) {
            memcpy(p + offsetof(block_q6_K, d), &h1, 2);
        } else {
            memcpy(p, &h1, 2); /* d, then m or dmin where the type has one */
            if (type != WIM_Q4_0 && type != WIM_Q5_0) memcpy(p + 2, &h2, 2);
        }
    }
    return w;
}

/* Activations for the K-quants, as the engine makes them. */
static block_q8_K *make_xk(int M, int K) {
    float *f = xmalloc((size_t)M * K * sizeof *f);
    fill_f(f, (size_t)M * K, 3.0f);
    block_q8_K *x = xmalloc((size_t)M * (K / QK8_K) * sizeof *x);
    S->quantize_q8_K(f, x, M * K);
    free(f);
    return x;
}

/* The activations a type's product takes: block_q8_0 or block_q8_K rows. */
static void *make_x_for(int type, int M, int K) {
    return wim_q_is_k(type) ? (void *)make_xk(M, K) : (void *)make_x(M, K);
}

/* quantize_q8_K: bit-exact with scalar.c, and its block sums are the sums. */
static void test_quantize_q8_K(void) {
    const int n = 4 * QK8_K;
    float *f = xmalloc(n * sizeof *f);
    block_q8_K a[4], r[4];
    for (int t = 0; t < 20; t++) {
        fill_f(f, n, t % 4 ? 1.0f : 1e-3f);
        if (t == 1) memset(f, 0, n * sizeof *f); /* all zero: d = 0 */
        if (t == 2) f[7] = 1e30f;                /* one huge value */
        if (t == 3)
            for (int i = 0; i < n; i++)
                f[i] = (i % 255) / 127.0f * 0.5f - 0.25f;
        S->quantize_q8_K(f, r, n);
        T->quantize_q8_K(f, a, n);
        for (int b = 0; b < 4; b++) {
            CHECKF(f2u(a[b].d) == f2u(r[b].d), "t=%d block %d: d %.9g, scalar %.9g", t, b, a[b].d,
                   r[b].d);
            CHECKF(!memcmp(a[b].qs, r[b].qs, QK8_K), "t=%d block %d: qs differ", t, b);
            for (int s16 = 0; s16 < 16; s16++) {
                int sum = 0;
                for (int i = 0; i < 16; i++)
                    sum += a[b].qs[16 * s16 + i];
                CHECKF(a[b].bsums[s16] == sum && r[b].bsums[s16] == sum,
                       "t=%d block %d: bsums[%d] = %d / scalar %d, sum %d", t, b, s16,
                       a[b].bsums[s16], r[b].bsums[s16], sum);
            }
        }
    }
    free(f);
}

/* One gemm_q case: the ISA's result equals scalar.c's bit for bit, nothing past N. */
static void gemm_q_case(int type, int M, int N, int K) {
    size_t rb;
    void *x = make_x_for(type, M, K);
    uint8_t *w = make_wq(type, N, K, &rb);
    float *r = make_y(M, N), *a = make_y(M, N);
    S->gemm_q(type, M, N, K, x, w, rb, r, N + PAD);
    T->gemm_q(type, M, N, K, x, w, rb, a, N + PAD);
    CHECKF(pads_ok(a, M, N), "type %d M=%d N=%d K=%d: wrote past N", type, M, N, K);
    for (int m = 0; m < M && t_state == 0; m++)
        for (int j = 0; j < N; j++) {
            float u = a[m * (N + PAD) + j], v = r[m * (N + PAD) + j];
            CHECKF(f2u(u) == f2u(v), "type %d M=%d N=%d K=%d y[%d][%d] = %.9g, scalar %.9g", type,
                   M, N, K, m, j, u, v);
        }
    free(x), free(w), free(r), free(a);
}

/* Every ISA's gemm_q equals scalar.c bit for bit, over tile edges, K chunks and M. */
static void test_gemm_q(void) {
    static const int Mq[] = {1, 2, 3, 4, 5, 8, 13}, Nq[] = {1, 3, 8, 9, 17, 64, 67};
    static const int K32[] = {32, 96, 1056, 4128}, K256[] = {256, 512, 1280, 4352};
    for (size_t ti = 0; ti < sizeof qtypes / sizeof *qtypes; ti++) {
        const int type = qtypes[ti], kq = wim_q_block_weights(type) == QK_K;
        int t = 0;
        for (size_t mi = 0; mi < sizeof Mq / sizeof *Mq; mi++)
            for (size_t ni = 0; ni < sizeof Nq / sizeof *Nq; ni++, t++) {
                if (quick && t % 3) continue;
                int M = Mq[mi], N = Nq[ni], K = (kq ? K256 : K32)[t % 4];
                if ((size_t)M * N * K > 2000000) K = kq ? 512 : 96;
                gemm_q_case(type, M, N, K);
            }
        /* decode rows longer than 32768 (the x86 GEMV's per-call activation sums stop there) */
        if (!kq)
            for (int M = 1; M <= 3; M += 2)
                gemm_q_case(type, M, 9, 32 * 1025);
    }
}

/* The types with an interleaved form (interleave.h). */
static const int x8types[] = {WIM_Q8_0, WIM_Q4_0, WIM_Q4_1, WIM_Q5_0,
                              WIM_Q5_1, WIM_Q4_K, WIM_Q5_K, WIM_Q6_K};

/* N rows of K weights of an interleavable type, row-major; *rb: bytes per row. */
static uint8_t *make_w_any(int type, int N, int K, size_t *rb) {
    if (type != WIM_Q8_0) return make_wq(type, N, K, rb);
    *rb = (size_t)(K / 32) * sizeof(block_q8_0);
    return (uint8_t *)make_w(N, K);
}

/* gemm_x8 on the interleaved copy of w gives the scalar row-major kernel's bits on w,
 * for every interleavable type: decode (M <= 4) and panel (M >= 5) shapes, K past one
 * X8_CHUNK of blocks (K-quants: K from the multiples of 256 beside each shape's). */
static void test_gemm_x8(void) {
    static const int shapes[][3] = {{1, 8, 32},      {1, 64, 896},   {1, 136, 4128}, {2, 16, 96},
                                    {3, 24, 288},    {4, 72, 1024},  {5, 8, 160},    {8, 64, 288},
                                    {13, 136, 1056}, {1, 16, 16544}, {4, 8, 16544}};
    static const int K256[] = {256, 1280, 4352, 512, 768, 1024, 256, 512, 1280, 16640, 16640};
    const int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (size_t ti = 0; ti < sizeof x8types / sizeof *x8types; ti++)
        for (int t = 0; t < ns && t_state == 0; t++) {
            const int type = x8types[ti], M = shapes[t][0], N = shapes[t][1];
            const int kq = wim_q_is_k(type), K = kq ? K256[t] : shapes[t][2];
            if (quick && K > 4352) continue;
            size_t rb;
            void *x = kq ? (void *)make_xk(M, K) : (void *)make_x(M, K);
            uint8_t *w = make_w_any(type, N, K, &rb), *w8 = xmalloc((size_t)N * rb);
            memcpy(w8, w, (size_t)N * rb);
            CHECK(wim_interleave(type, w8, N, K) == 0);
            float *r = make_y(M, N), *a = make_y(M, N);
            if (type == WIM_Q8_0)
                S->gemm_q8_0(M, N, K, x, (const block_q8_0 *)w, r, N + PAD);
            else
                S->gemm_q(type, M, N, K, x, w, rb, r, N + PAD);
            T->gemm_x8(type, M, N, K, x, w8, a, N + PAD);
            CHECKF(pads_ok(a, M, N), "type %d M=%d N=%d K=%d: wrote past N", type, M, N, K);
            for (int m = 0; m < M; m++)
                for (int j = 0; j < N; j++) {
                    float u = a[m * (N + PAD) + j], v = r[m * (N + PAD) + j];
                    CHECKF(f2u(u) == f2u(v),
                           "type %d M=%d N=%d K=%d y[%d][%d] = %.9g, row-major %.9g", type, M, N, K,
                           m, j, u, v);
                }
            free(x), free(w), free(w8), free(r), free(a);
        }
}

/* Interleaving permutes bytes in place: every block comes back by wim_x8_block, and
 * the last n % 8 rows are left as they were. */
static void test_interleave_layout(void) {
    for (size_t ti = 0; ti < sizeof x8types / sizeof *x8types; ti++) {
        const int type = x8types[ti], N = 67, nb = 5;
        const int K = nb * (wim_q_is_k(type) ? QK_K : 32);
        size_t rb;
        uint8_t *w = make_w_any(type, N, K, &rb), *w8 = xmalloc((size_t)N * rb);
        const size_t bb = rb / nb;
        memcpy(w8, w, (size_t)N * rb);
        CHECK(wim_interleave(type, w8, N, K) == 0);
        CHECKF(memcmp(w8, w, (size_t)N * rb) != 0, "type %d: nothing moved", type);
        for (int j = 0; j < N - N % 8; j++)
            for (int b = 0; b < nb; b++) {
                uint8_t got[256];
                wim_x8_block(type, w8 + (size_t)(j / 8) * 8 * rb, b, j % 8, got);
                CHECKF(!memcmp(got, w + (size_t)j * rb + b * bb, bb), "type %d row %d block %d",
                       type, j, b);
            }
        const size_t tail = (size_t)(N - N % 8) * rb;
        CHECKF(!memcmp(w8 + tail, w + tail, (size_t)(N % 8) * rb), "type %d: tail rows moved",
               type);
        free(w), free(w8);
    }
}

/* scalar.c's gemm_q is the product of the decoded weights (wim_q_dequant, which
 * tests/engine.sh holds equal to an independent NumPy decoder) and the decoded
 * activations, to float rounding: 1e-5 of the sum of |terms|. */
static void test_gemm_q_is_dequant_product(void) {
    for (size_t ti = 0; ti < sizeof qtypes / sizeof *qtypes; ti++) {
        const int type = qtypes[ti], M = 3, N = 5, K = 512, nb = K / 32;
        size_t rb;
        void *x = make_x_for(type, M, K);
        uint8_t *w = make_wq(type, N, K, &rb);
        float y[3 * 5], wf[512];
        S->gemm_q(type, M, N, K, x, w, rb, y, N);
        for (int j = 0; j < N; j++) {
            for (int b = 0; b < nb; b++) {
                wim_qblock q;
                wim_q_unpack(type, w + (size_t)j * rb, b, &q);
                wim_q_dequant(type, &q, wf + 32 * b);
            }
            for (int m = 0; m < M; m++) {
                double ref = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    double xv;
                    if (wim_q_is_k(type)) {
                        const block_q8_K *xb =
                            (const block_q8_K *)x + (size_t)m * (K / QK8_K) + k / QK8_K;
                        xv = (double)xb->d * xb->qs[k % QK8_K];
                    } else {
                        const block_q8_0 *xb = (const block_q8_0 *)x + (size_t)m * nb + k / 32;
                        xv = (double)wim_fp16_to_fp32(xb->d) * xb->qs[k % 32];
                    }
                    double t = xv * wf[k];
                    ref += t;
                    mag += fabs(t);
                }
                CHECKF(fabs(y[m * N + j] - ref) <= 1e-5 * mag + 1e-30,
                       "type %d y[%d][%d] = %.9g, decoded product %.9g", type, m, j, y[m * N + j],
                       ref);
            }
        }
        free(x), free(w);
    }
}

/* Error bound for a float dot product: 1e-5 of the sum of |terms|. */
static double dot_scale(const float *x, const float *w, int K) {
    double s = 0;
    for (int k = 0; k < K; k++)
        s += fabs((double)x[k] * w[k]);
    return s;
}

enum { F32, F16, BF16 };

static void gemm_float_case(int kind, int M, int N, int K, double *worst) {
    float *x = xmalloc((size_t)M * K * sizeof *x), *wf = xmalloc((size_t)N * K * sizeof *wf);
    uint16_t *wh = xmalloc((size_t)N * K * sizeof *wh);
    fill_f(x, (size_t)M * K, 2.0f);
    for (size_t i = 0; i < (size_t)N * K; i++) {
        float v = t_rand_float(&rng);
        wh[i] = kind == BF16 ? wim_fp32_to_bf16(v) : wim_fp32_to_fp16(v);
        wf[i] = kind == F32 ? v : kind == BF16 ? wim_bf16_to_fp32(wh[i]) : wim_fp16_to_fp32(wh[i]);
    }
    float *r = make_y(M, N), *a = make_y(M, N);
    int ld = N + PAD;
    if (kind == F32) S->gemm_f32(M, N, K, x, wf, r, ld), T->gemm_f32(M, N, K, x, wf, a, ld);
    if (kind == F16) S->gemm_f16(M, N, K, x, wh, r, ld), T->gemm_f16(M, N, K, x, wh, a, ld);
    if (kind == BF16) S->gemm_bf16(M, N, K, x, wh, r, ld), T->gemm_bf16(M, N, K, x, wh, a, ld);
    int ok = pads_ok(a, M, N);
    for (int m = 0; m < M && ok; m++)
        for (int j = 0; j < N; j++) {
            double sc = dot_scale(x + (size_t)m * K, wf + (size_t)j * K, K);
            double e = fabs((double)a[m * ld + j] - r[m * ld + j]) / (sc > 0 ? sc : 1);
            if (e > *worst) *worst = e;
        }
    if (!ok) *worst = INFINITY;
    free(x), free(wf), free(wh), free(r), free(a);
}

static void gemm_float_test(int kind) {
    static const int Kf[] = {1, 7, 8, 9, 31, 33, 100, 256, 1000, 4096, 4097};
    double worst = 0;
    int t = 0;
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni += 2, t++) {
            int M = Ms[mi], N = Ns[ni], K = Kf[t % (sizeof Kf / sizeof Kf[0])];
            if ((size_t)M * N * K > 3000000) K = 100;
            gemm_float_case(kind, M, N, K, &worst);
            CHECKF(worst <= 1e-5, "M=%d N=%d K=%d: error %.3g of sum|x*w| (limit 1e-5)", M, N, K,
                   worst);
        }
}

static void test_gemm_f32(void) {
    gemm_float_test(F32);
}
static void test_gemm_f16(void) {
    gemm_float_test(F16);
}
static void test_gemm_bf16(void) {
    gemm_float_test(BF16);
}

static void test_dot_axpy(void) {
    int sizes[48], ns = 0;
    for (int n = 0; n <= 40; n++)
        sizes[ns++] = n;
    const int more[] = {63, 64, 65, 128, 129, 1000, 4096};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
        sizes[ns++] = more[i];
    for (int t = 0; t < ns; t++) {
        int n = sizes[t];
        float *a = xmalloc((size_t)n * 4), *b = xmalloc((size_t)n * 4),
              *af = xmalloc((size_t)n * 4);
        float *y1 = xmalloc((size_t)n * 4), *y2 = xmalloc((size_t)n * 4);
        uint16_t *h = xmalloc((size_t)n * 2);
        fill_f(a, (size_t)n, 1.0f);
        fill_f(b, (size_t)n, 1.0f);
        for (int i = 0; i < n; i++)
            h[i] = wim_fp32_to_fp16(a[i]), af[i] = wim_fp16_to_fp32(h[i]);
        double sc = dot_scale(a, b, n), sch = dot_scale(af, b, n);
        double e1 = fabs((double)T->dot_f32(a, b, n) - S->dot_f32(a, b, n));
        double e2 = fabs((double)T->dot_f16(h, b, n) - S->dot_f16(h, b, n));
        CHECKF(e1 <= 1e-5 * sc, "dot_f32 n=%d: error %.3g of %.3g", n, e1, sc);
        CHECKF(e2 <= 1e-5 * sch, "dot_f16 n=%d: error %.3g of %.3g", n, e2, sch);
        float alpha = t_rand_float(&rng);
        fill_f(y1, (size_t)n, 1.0f);
        memcpy(y2, y1, (size_t)n * 4);
        S->axpy_f32(alpha, a, y1, n);
        T->axpy_f32(alpha, a, y2, n);
        for (int i = 0; i < n; i++)
            CHECKF(f2u(y1[i]) == f2u(y2[i]), "axpy_f32 n=%d [%d]", n, i);
        S->axpy_f16(alpha, h, y1, n);
        T->axpy_f16(alpha, h, y2, n);
        for (int i = 0; i < n; i++)
            CHECKF(f2u(y1[i]) == f2u(y2[i]), "axpy_f16 n=%d [%d]", n, i);
        free(a), free(b), free(af), free(y1), free(y2), free(h);
    }
}

/* The attention tile kernels equal scalar.c's bit for bit (each result is one
 * fused multiply-add chain in a fixed order), for every head size and key count,
 * f16 and f32 rows, and whatever the other queries of the call: each query's
 * scores and sums are the same computed alone. */
static void test_attn_tile_kernels(void) {
    const int dims[] = {8, 13, 16, 32, 64, 80, 128}, counts[] = {1, 7, 16, 33, 64};
    const int ldk = 64, nq = 7;
    const wim_kernels *S = &wim_kernels_scalar;
    for (int a = 0; a < 7; a++)
        for (int b = 0; b < 5; b++)
            for (int f16 = 0; f16 < 2; f16++) {
                const int n = dims[a], cnt = counts[b];
                const size_t stride = (size_t)n * 3 + 5;
                float *kr = xmalloc(stride * cnt * 4), *vr = xmalloc(stride * cnt * 4);
                uint16_t *kh = xmalloc(stride * cnt * 2), *vh = xmalloc(stride * cnt * 2);
                float *kt[2], *vt[2], *s[3], *o[3], *q = xmalloc((size_t)nq * n * 4);
                for (int t = 0; t < 3; t++) {
                    s[t] = xmalloc((size_t)nq * ldk * 4), o[t] = xmalloc((size_t)nq * n * 4);
                    if (t < 2)
                        kt[t] = calloc((size_t)n * ldk, 4), vt[t] = xmalloc((size_t)ldk * n * 4);
                }
                fill_f(kr, stride * cnt, 1.0f);
                fill_f(vr, stride * cnt, 1.0f);
                fill_f(q, (size_t)nq * n, 1.0f);
                for (size_t i = 0; i < stride * cnt; i++)
                    kh[i] = wim_fp32_to_fp16(kr[i]), vh[i] = wim_fp32_to_fp16(vr[i]);
                const void *K = f16 ? (const void *)kh : kr, *V = f16 ? (const void *)vh : vr;
                S->attn_load(K, V, stride, cnt, n, f16, kt[0], ldk, vt[0]);
                T->attn_load(K, V, stride, cnt, n, f16, kt[1], ldk, vt[1]);
                CHECKF(!memcmp(vt[0], vt[1], (size_t)cnt * n * 4), "attn_load V n=%d", n);
                for (int d = 0; d < n; d++)
                    CHECKF(!memcmp(kt[0] + d * ldk, kt[1] + d * ldk, (size_t)cnt * 4),
                           "attn_load K n=%d count=%d", n, cnt);
                S->attn_scores(q, nq, kt[0], ldk, cnt, n, s[0], ldk);
                T->attn_scores(q, nq, kt[0], ldk, cnt, n, s[1], ldk);
                for (int j = 0; j < nq; j++) /* each query alone */
                    T->attn_scores(q + j * n, 1, kt[0], ldk, cnt, n, s[2] + j * ldk, ldk);
                for (int j = 0; j < nq; j++) {
                    CHECKF(!memcmp(s[0] + j * ldk, s[1] + j * ldk, (size_t)cnt * 4),
                           "attn_scores n=%d count=%d", n, cnt);
                    CHECKF(!memcmp(s[1] + j * ldk, s[2] + j * ldk, (size_t)cnt * 4),
                           "attn_scores alone n=%d count=%d", n, cnt);
                }
                fill_f(o[0], (size_t)nq * n, 1.0f);
                memcpy(o[1], o[0], (size_t)nq * n * 4);
                memcpy(o[2], o[0], (size_t)nq * n * 4);
                S->attn_accum(s[0], ldk, nq, vt[0], cnt, n, o[0]);
                T->attn_accum(s[0], ldk, nq, vt[0], cnt, n, o[1]);
                for (int j = 0; j < nq; j++)
                    T->attn_accum(s[0] + j * ldk, ldk, 1, vt[0], cnt, n, o[2] + j * n);
                CHECKF(!memcmp(o[0], o[1], (size_t)nq * n * 4), "attn_accum n=%d count=%d", n, cnt);
                CHECKF(!memcmp(o[1], o[2], (size_t)nq * n * 4), "attn_accum alone n=%d", n);
                for (int t = 0; t < 3; t++) {
                    free(s[t]), free(o[t]);
                    if (t < 2) free(kt[t]), free(vt[t]);
                }
                free(kr), free(vr), free(kh), free(vh), free(q);
            }
}

/* The distance between f and the next float away from zero. */
static float ulp_of(float f) {
    return nextafterf(fabsf(f), INFINITY) - fabsf(f);
}

/* attn_scale_max: every table scales to scalar.c's bits and finds the same maximum,
 * NaN ignored, -inf for none; the maximum is one of the scaled values. */
static void test_attn_scale_max(void) {
    enum { N = 67 };
    float a[N], b[N], x[N];
    for (int i = 0; i < N; i++)
        x[i] = (float)((i * 37) % 101) - 50.0f + 0.25f * (float)i;
    x[5] = NAN;
    x[40] = -INFINITY;
    for (int n = 0; n <= N; n++) {
        memcpy(a, x, sizeof a);
        memcpy(b, x, sizeof b);
        float ma = wim_kernels_scalar.attn_scale_max(a, n, 0.125f);
        float mb = T->attn_scale_max(b, n, 0.125f);
        CHECKF(!memcmp(a, b, sizeof a) && ma == mb, "attn_scale_max n=%d: %g vs %g", n, ma, mb);
        float want = -INFINITY;
        for (int i = 0; i < n; i++)
            if (x[i] * 0.125f > want) want = x[i] * 0.125f;
        CHECKF(ma == want, "attn_scale_max n=%d = %g, want %g", n, ma, want);
    }
    float nan2[2] = {NAN, NAN};
    CHECK(T->attn_scale_max(nan2, 2, 1.0f) == -INFINITY);
}

/* attn_exp: every table gives scalar.c's bits (with -inf, the -87 cut-off, any
 * count), within 2 ulp of expf, and the same sum in attn_tile.h's order, which is
 * the exact sum to float precision. */
static void test_attn_exp(void) {
    enum { N = 4099 };
    float *a = xmalloc(N * 4), *b = xmalloc(N * 4), *x = xmalloc(N * 4);
    for (int i = 0; i < N; i++)
        x[i] = -100.0f * (float)i / N + 0.5f; /* through the cut-off; max 0.5 below */
    x[7] = -INFINITY;
    x[N - 2] = -87.0f - 0.5f;
    for (int n = 1; n <= N; n = n * 3 + 1) {
        float sa = 1.0f, sb = 1.0f;
        memcpy(a, x, (size_t)n * 4);
        memcpy(b, x, (size_t)n * 4);
        wim_kernels_scalar.attn_exp(a, n, 0.5f, &sa);
        T->attn_exp(b, n, 0.5f, &sb);
        CHECKF(!memcmp(a, b, (size_t)n * 4) && sa == sb, "attn_exp n=%d", n);
    }
    float sum = 0.0f;
    memcpy(a, x, N * 4);
    wim_kernels_scalar.attn_exp(a, N, 0.5f, &sum);
    double exact = 0;
    for (int i = 0; i < N; i++)
        exact += a[i];
    CHECKF(fabs(sum - exact) <= 1e-5 * exact, "attn_exp sum %.9g, exact %.9g", sum, exact);
    for (int i = 0; i < N; i++) {
        double want = x[i] - 0.5f >= -87.0f ? exp((double)(x[i] - 0.5f)) : 0.0;
        CHECKF(fabs(a[i] - want) <= 2.5 * ulp_of((float)want) || (want == 0 && a[i] == 0),
               "attn_exp(%g) = %.9g, exp = %.9g", x[i] - 0.5f, a[i], want);
    }
    free(a), free(b), free(x);
}

/* swiglu: every table gives scalar.c's bits (any count, in place too, through the
 * overflow of e^-g at -g = 88, NaN through), and scalar.c is silu(g) * u to a few
 * ulp of the same product in double precision. */
static void test_swiglu(void) {
    enum { N = 2051 };
    float *g = xmalloc(N * 4), *u = xmalloc(N * 4), *a = xmalloc(N * 4), *b = xmalloc(N * 4);
    for (int i = 0; i < N; i++) {
        g[i] = -120.0f + 200.0f * (float)i / N; /* -120 .. 80 */
        u[i] = 1.0f + 0.001f * (float)(i % 97) - 0.05f;
    }
    g[3] = -88.0f, g[4] = -88.0001f, g[5] = 0.0f, g[6] = -0.0f, g[7] = NAN, g[8] = 1e-30f;
    for (int n = 1; n <= N; n = n * 3 + 1) {
        wim_kernels_scalar.swiglu(g, u, a, n);
        T->swiglu(g, u, b, n);
        CHECKF(!memcmp(a, b, (size_t)n * 4), "swiglu n=%d", n);
        memcpy(b, g, (size_t)n * 4);
        T->swiglu(b, u, b, n); /* out = g */
        CHECKF(!memcmp(a, b, (size_t)n * 4), "swiglu in place n=%d", n);
    }
    wim_kernels_scalar.swiglu(g, u, a, N);
    CHECKF(isnan(a[7]), "swiglu(NaN) = %g", a[7]);
    for (int i = 0; i < N; i++) {
        if (i == 7) continue;
        const double want = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        CHECKF(fabs(a[i] - want) <= 4 * ulp_of((float)want) || fabs(want) < 1e-36,
               "swiglu(%g, %g) = %.9g, want %.9g", g[i], u[i], a[i], want);
    }
    free(g), free(u), free(a), free(b);
}

/*
 * The thread-count invariant: an output's bits do not depend on which rows and
 * columns were computed with it.  One big product, then sub-products at odd
 * offsets (including single rows, i.e. the GEMV path) written into a copy.
 */
static void test_tile_invariance(void) {
    /* K spans more than one 128-block chunk; the scalar twin only needs a smaller
     * product (it has no tiles) and emulation gets the smaller one too. */
    const int M = 37, N = 150, K = quick || T == S ? 1056 : 4128, ld = N + PAD, nb = K / 32;
    const int sub[][4] = {{0, 0, 37, 150}, {1, 3, 1, 1},    {5, 7, 1, 64},   {3, 5, 7, 9},
                          {10, 1, 4, 4},   {36, 149, 1, 1}, {2, 66, 13, 70}, {0, 17, 37, 1},
                          {31, 0, 6, 150}, {7, 9, 2, 130},  {20, 61, 3, 5},  {4, 4, 16, 12}};
    block_q8_0 *xq = make_x(M, K), *wq = make_w(N, K);
    float *x = xmalloc((size_t)M * K * 4), *wf = xmalloc((size_t)N * K * 4);
    uint16_t *wh = xmalloc((size_t)N * K * 2), *wb = xmalloc((size_t)N * K * 2);
    fill_f(x, (size_t)M * K, 1.0f);
    fill_f(wf, (size_t)N * K, 1.0f);
    for (size_t i = 0; i < (size_t)N * K; i++)
        wh[i] = wim_fp32_to_fp16(wf[i]), wb[i] = wim_fp32_to_bf16(wf[i]);
    float *big = make_y(M, N), *part = make_y(M, N);
    for (int kind = 0; kind < 4; kind++) {
        const char *name[] = {"gemm_q8_0", "gemm_f32", "gemm_f16", "gemm_bf16"};
        for (int s = -1; s < (int)(sizeof sub / sizeof sub[0]); s++) {
            int i0 = s < 0 ? 0 : sub[s][0], j0 = s < 0 ? 0 : sub[s][1];
            int m = s < 0 ? M : sub[s][2], n = s < 0 ? N : sub[s][3];
            float *y = (s < 0 ? big : part) + (size_t)i0 * ld + j0;
            if (kind == 0) T->gemm_q8_0(m, n, K, xq + (size_t)i0 * nb, wq + (size_t)j0 * nb, y, ld);
            if (kind == 1) T->gemm_f32(m, n, K, x + (size_t)i0 * K, wf + (size_t)j0 * K, y, ld);
            if (kind == 2) T->gemm_f16(m, n, K, x + (size_t)i0 * K, wh + (size_t)j0 * K, y, ld);
            if (kind == 3) T->gemm_bf16(m, n, K, x + (size_t)i0 * K, wb + (size_t)j0 * K, y, ld);
            if (s < 0) continue;
            for (int i = i0; i < i0 + m; i++)
                for (int j = j0; j < j0 + n; j++)
                    CHECKF(f2u(part[i * ld + j]) == f2u(big[i * ld + j]),
                           "%s: y[%d][%d] from the %dx%d product at (%d,%d) is %.9g, in the full "
                           "product %.9g",
                           name[kind], i, j, m, n, i0, j0, part[i * ld + j], big[i * ld + j]);
        }
        CHECKF(pads_ok(part, M, N) && pads_ok(big, M, N), "%s wrote past N", name[kind]);
    }
    free(xq), free(wq), free(x), free(wf), free(wh), free(wb), free(big), free(part);
}

static void run_isa(const char *isa, int is_scalar) {
    char name[96], why[256];
    T = !strcmp(isa, "amx-emulated") ? &wim_kernels_amx_emulated : wim_kernels_for(isa);
    if (!T) {
        wim_kernels_available(isa, why, sizeof why);
        snprintf(name, sizeof name, "kernels[%s]", isa);
        t_state = 0;
        t_msg[0] = 0;
        printf("SKIP %s: %s\n", name, why);
        fflush(stdout);
        return;
    }
    const char *label = T == &wim_kernels_amx_emulated ? isa : T->isa; /* "neon-dotprod" */
#define RUN_ISA(fn)                                                                                \
    do {                                                                                           \
        snprintf(name, sizeof name, "%s[%s]", #fn + 5, label);                                     \
        t_run(name, fn);                                                                           \
    } while (0)
    if (T == &wim_kernels_amx_emulated) { /* only gemm_q8_0 has tile code */
        RUN_ISA(test_gemm_q8_0_big);
        RUN_ISA(test_tile_invariance);
        return;
    }
    if (!is_scalar) {
        RUN_ISA(test_quantize);
        RUN_ISA(test_gemm_q8_0);
        RUN_ISA(test_gemm_q8_0_big);
        RUN_ISA(test_quantize_q8_K);
        RUN_ISA(test_gemm_q);
        RUN_ISA(test_gemm_x8);
        RUN_ISA(test_gemm_f32);
        RUN_ISA(test_gemm_f16);
        RUN_ISA(test_gemm_bf16);
        RUN_ISA(test_dot_axpy);
    }
    if (is_scalar) {
        RUN_ISA(test_gemm_q_is_dequant_product);
        RUN_ISA(test_gemm_x8); /* the reference against the row-major kernels */
        RUN(test_interleave_layout);
    }
    RUN_ISA(test_attn_tile_kernels);
    RUN_ISA(test_attn_scale_max);
    RUN_ISA(test_attn_exp);
    RUN_ISA(test_swiglu);
    RUN_ISA(test_tile_invariance);
#undef RUN_ISA
}

int main(void) {
    S = wim_kernels_for("scalar");
    quick = getenv("WIM_TEST_QUICK") && atoi(getenv("WIM_TEST_QUICK")) > 0;
    RUN(test_fp16_to_fp32_all);
    RUN(test_fp32_to_fp16_known);
    RUN(test_fp32_to_fp16_vs_hw);
    RUN(test_bf16);
    RUN(test_dispatch);
    run_isa("scalar", 1);
    for (size_t i = 0; i < NISA; i++)
        run_isa(isas[i], 0);
    run_isa("amx-emulated", 0);
    return t_exit();
}
