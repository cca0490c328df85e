/*
 * bench_kernels.c — throughput of the int8 GEMM (gemm_q8_0) per ISA, single
 * thread, for the decode (M = 1) and prefill (M = 32, 512) shapes of small
 * Llama/Qwen layers.
 *
 *   bench_kernels [--quick] [isa ...]     (default: every ISA this CPU runs;
 *                                          WIM_ISA=name picks one)
 *
 * Prints one line per (isa, M, K, N): int8 GOP/s (2*M*N*K per call) and, for
 * M = 1, the weight bytes streamed per second.  Each case repeats until it has
 * run for at least 0.3 s (0.05 s with --quick) and reports the best repetition.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void bench(const wim_kernels *k, int M, int K, int N, double min_time) {
    const int nb = K / QK8_0;
    float *xf = malloc((size_t)M * K * sizeof *xf);
    block_q8_0 *x = malloc((size_t)M * nb * sizeof *x), *w = malloc((size_t)N * nb * sizeof *w);
    float *y = malloc((size_t)M * N * sizeof *y);
    if (!xf || !x || !w || !y) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)M * K; i++)
        xf[i] = (float)(rnd() % 2001) / 1000.0f - 1.0f;
    k->quantize_q8_0(xf, x, M * K);
    for (size_t b = 0; b < (size_t)N * nb; b++) {
        w[b].d = wim_fp32_to_fp16(0.01f);
        for (int i = 0; i < QK8_0; i++)
            w[b].qs[i] = (int8_t)rnd();
    }
    double best = 1e30, total = 0;
    int reps = 0;
    while (total < min_time || reps < 2) {
        double t0 = now();
        k->gemm_q8_0(M, N, K, x, w, y, N);
        double dt = now() - t0;
        if (dt < best) best = dt;
        total += dt;
        reps++;
    }
    double gops = 2.0 * M * N * K / best * 1e-9;
    printf("%-12s M=%-4d K=%-5d N=%-5d %8.2f ms %8.1f GOP/s", k->isa, M, K, N, best * 1e3, gops);
    if (M == 1) printf("  %6.1f GB/s weights", (double)N * nb * sizeof(block_q8_0) / best * 1e-9);
    printf("\n");
    fflush(stdout);
    free(xf), free(x), free(w), free(y);
}

int main(int argc, char **argv) {
    const char *all[] = {"scalar", "avx2", "avxvnni", "avx512vnni", "amx", "neon"};
    const char *pick[8];
    int npick = 0, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
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
    printf("# %s\n# gemm_q8_0, one thread, best of repetitions; GOP/s = 2*M*N*K / time\n", desc);
    const int shapes[][2] = {{896, 896}, {896, 4864}, {4864, 896}, {2048, 2048}, {4864, 4864}};
    const int Ms[] = {1, 32, 512};
    for (int p = 0; p < npick; p++) {
        const wim_kernels *k = wim_kernels_for(pick[p]);
        if (!k) {
            printf("# %s: not available here\n", pick[p]);
            continue;
        }
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                int M = Ms[mi], K = shapes[s][0], N = shapes[s][1];
                /* the scalar reference is ~50x slower: keep its run short */
                if (!strcmp(k->isa, "scalar") && (M > 32 || (M == 32 && s > 0))) continue;
                if (quick && M == 512 && s > 0) continue;
                bench(k, M, K, N, quick ? 0.05 : 0.3);
            }
    }
    return 0;
}
