/*
 * bench_kernels.c — throughput of the int8 GEMMs per ISA, single thread: gemm_q8_0
 * for the decode (M = 1, and 4 for margins decoding together) and prefill (M = 32,
 * 512) shapes of small Llama/Qwen layers, then gemm_q for every other weight type
 * (Q4_0 .. Q6_K) at K = N = 2048; each on the file's row-major blocks ("Q8_0") and,
 * for the types that have one, interleaved 8 rows at a time ("Q8_0i", gemm_x8,
 * interleave.h: what x86 decodes from).
 *
 *   bench_kernels [--quick] [--types-only] [isa ...]   (default: every ISA this
 *                                          CPU runs; WIM_ISA=name picks one)
 *
 * Prints one line per (isa, type, M, K, N): int8 GOP/s (2*M*N*K per call) and,
 * for M <= 4, the weight bytes streamed per second.  Each case repeats until it has
 * run for at least 0.3 s (0.05 s with --quick) and reports the best repetition.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "interleave.h"
#include "quants.h"
#include "simd.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static unsigned long long seed = 88172645463325252ULL;
static unsigned rnd(void) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return (unsigned)(seed >> 32);
}

/* type: 8 (Q8_0, gemm_q8_0) or a quants.h type (gemm_q); x8: the same type interleaved
 * (gemm_x8). */
static void bench(const wim_kernels *k, int type, int x8, int M, int K, int N, double min_time) {
    const int nb = K / QK8_0;
    const size_t rb = type == 8 ? nb * sizeof(block_q8_0)
                                : K / wim_q_block_weights(type) * wim_q_block_bytes(type);
    float *xf = malloc((size_t)M * K * sizeof *xf);
    /* room for either activation format (block_q8_K for the K-quants) */
    void *x = malloc((size_t)M * (K / QK8_K + 1) * sizeof(block_q8_K));
    uint8_t *w = malloc((size_t)N * rb);
    float *y = malloc((size_t)M * N * sizeof *y);
    if (!xf || !x || !w || !y) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)M * K; i++)
        xf[i] = (float)(rnd() % 2001) / 1000.0f - 1.0f;
    if (wim_q_is_k(type))
        k->quantize_q8_K(xf, x, M * K);
    else
        k->quantize_q8_0(xf, x, M * K);
    /* random bytes; every fp16 field that a random pattern could make inf/NaN is a
     * scale somewhere, but the timing does not depend on the values */
    for (size_t i = 0; i < (size_t)N * rb; i++)
        w[i] = (uint8_t)rnd();
    if (x8 && wim_interleave(type, w, N, K)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    double best = 1e30, total = 0;
    int reps = 0;
    while (total < min_time || reps < 2) {
        double t0 = now();
        if (x8)
            k->gemm_x8(type, M, N, K, x, w, y, N);
        else if (type == 8)
            k->gemm_q8_0(M, N, K, x, (const block_q8_0 *)w, y, N);
        else
            k->gemm_q(type, M, N, K, x, w, rb, y, N);
        double dt = now() - t0;
        if (dt < best) best = dt;
        total += dt;
        reps++;
    }
    double gops = 2.0 * M * N * K / best * 1e-9;
    printf("%-12s %-4s%-2s M=%-4d K=%-5d N=%-5d %8.2f ms %8.1f GOP/s", k->isa,
           gguf_ttype_name((enum gguf_ttype)type), x8 ? "i" : "", M, K, N, best * 1e3, gops);
    if (M <= 4) printf("  %6.1f GB/s weights", (double)N * rb / best * 1e-9);
    printf("\n");
    fflush(stdout);
    free(xf), free(x), free(w), free(y);
}

int main(int argc, char **argv) {
    const char *all[] = {"scalar", "avx2", "avxvnni", "avx512vnni", "amx", "neon"};
    const char *pick[8];
    int npick = 0, quick = 0, types_only = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--types-only"))
            types_only = 1;
        else if (npick < 8)
            pick[npick++] = argv[i];
    }
    const char *env = getenv("WIM_ISA");
    if (!npick && env && *env) pick[npick++] = env;
    if (!npick)
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            pick[npick++] = all[i];
    char desc[512];
    wim_cpu_describe(desc, sizeof desc);
    printf("# %s\n# one thread, best of repetitions; GOP/s = 2*M*N*K / time\n", desc);
    const int shapes[][2] = {{896, 896}, {896, 4864}, {4864, 896}, {2048, 2048}, {4864, 4864}};
    const int Ms[] = {1, 4, 32, 512};
    for (int p = 0; p < npick; p++) {
        const wim_kernels *k = wim_kernels_for(pick[p]);
        if (!k) {
            printf("# %s: not available here\n", pick[p]);
            continue;
        }
        const int scalar = !strcmp(k->isa, "scalar");
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0] && !types_only; mi++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                int M = Ms[mi], K = shapes[s][0], N = shapes[s][1];
                /* the scalar reference is ~50x slower: keep its run short */
                if (scalar && (M > 32 || (M == 32 && s > 0))) continue;
                if (quick && M == 512 && s > 0) continue;
                bench(k, 8, 0, M, K, N, quick ? 0.05 : 0.3);
                bench(k, 8, 1, M, K, N, quick ? 0.05 : 0.3);
            }
        const int types[] = {WIM_Q4_0, WIM_Q4_1, WIM_Q5_0, WIM_Q5_1, WIM_Q4_K, WIM_Q5_K, WIM_Q6_K};
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
            for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
                if ((scalar || quick) && Ms[mi] > 32) continue;
                if (Ms[mi] == 4) continue; /* the decode body is the same as at M = 1 */
                bench(k, types[t], 0, Ms[mi], 2048, 2048, quick ? 0.05 : 0.3);
                if (wim_x8_type(types[t]))
                    bench(k, types[t], 1, Ms[mi], 2048, 2048, quick ? 0.05 : 0.3);
            }
    }
    return 0;
}
