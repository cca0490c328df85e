/*
 * cmd_bench.c — `wim bench`: prefill and decode throughput, llama-bench style.
 *
 * ppN: N prompt tokens in chunks of --chunk (default 512) into an empty cache;
 * tgN: N single-token decode steps from an empty cache; tgN@dD: the same after D
 * prompt tokens (untimed), as a margin or an answer is decoded after its document.
 * Each test is repeated and the median reported, since shared machines are noisy.
 *
 * Decode streams every weight once per token, so a tgN row also gives the weights'
 * rate (GB/s); --bandwidth adds a `read` row, the rate at which all the threads read
 * one large array, which is the roofline that decode is measured against, and gives
 * each tgN row that rate as a fraction of a read pass run right after each repetition
 * (of_read): on a shared machine the read rate moves by half within minutes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cli.h"
#include "clock.h"
#include "mem.h"
#include "simd.h"
#include "wim.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of n values (sorting them in place). */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static const char *const usage =
    "usage: wim bench -m MODEL [-p 512,4096] [-n 128] [-d 0,8192] [-r REPEATS] [--chunk K]\n"
    "                 [-t THREADS] [--bandwidth] [--json]\n"
    "  Prefill (ppN) and decode (tgN) tokens per second, median of REPEATS (default 3);\n"
    "  -d decodes also after that many prompt tokens (tgN@dD; the prompt is not timed).\n"
    "  a tgN row also gives the rate its weights are read at (GB/s: they are all read once\n"
    "  per token). --bandwidth adds a `read` row: the memory read rate of all the threads\n"
    "  over a 512 MiB array, the roofline for decode; and a read pass after each decode\n"
    "  repetition, so a tgN row also gives its weights' rate as a share of the read rate\n"
    "  measured beside it (median of the repetitions' shares). WIM_ISA=scalar|avx2|...\n"
    "  forces a kernel set. --json prints one object per row:\n"
    "  {\"test\":\"tg128\",\"tok_s\":...,\"weights_gb_s\":...[,\"of_read\":...],\"isa\":...,\n"
    "   \"threads\":...}\n"
    "  {\"test\":\"read\",\"gb_s\":...,\"threads\":...}\n";

#define READ_BYTES ((size_t)512 << 20) /* well past any last-level cache */

/* The array the read rate is measured over. It asks for transparent huge pages, as
 * the weights do (gguf.c), so the roofline is the rate memory gives without TLB
 * misses; it is touched once, so no pass pays for page faults. */
typedef struct {
    uint64_t *a;
    size_t len;
} read_array;

static int read_array_new(read_array *r) {
    r->a = wim_huge_pages(READ_BYTES, &r->len);
    if (!r->a) return -1;
    for (size_t i = 0; i < READ_BYTES / sizeof(uint64_t); i++)
        r->a[i] = i;
    return 0;
}

static void read_array_free(read_array *r) {
    if (r->a) munmap(r->a, r->len);
    r->a = NULL;
}

/* One pass of nt threads, each reading a contiguous share: GB/s. */
static double read_pass(const read_array *r, int nt) {
    const size_t n = READ_BYTES / sizeof(uint64_t);
    const uint64_t *a = r->a;
    uint64_t sink = 0;
    double t0 = wim_now_ms();
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : sink)
    for (int t = 0; t < nt; t++) {
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = n / nt * t; i + 3 < n / nt * (t + 1); i += 4) {
            s0 += a[i];
            s1 += a[i + 1];
            s2 += a[i + 2];
            s3 += a[i + 3];
        }
        sink += s0 ^ s1 ^ s2 ^ s3;
    }
    double gbs = READ_BYTES / ((wim_now_ms() - t0) / 1e3) / 1e9;
    volatile uint64_t keep = sink; /* the sums must not be optimised away */
    (void)keep;
    return gbs;
}

/* The median of `reps` passes, after one that wakes the threads. */
static double read_bandwidth(const read_array *r, int nt, int reps) {
    double *rates = malloc((size_t)reps * sizeof *rates);
    if (!rates) return -1;
    read_pass(r, nt);
    for (int i = 0; i < reps; i++)
        rates[i] = read_pass(r, nt);
    double med = median(rates, reps);
    free(rates);
    return med;
}

/* Times one test `reps` times: `prompt` tokens in one call, or `gen` decode steps
 * after `depth` untimed prompt tokens; returns the median tokens/s or -1 on error.
 * With `ra`, each decode repetition is followed by a read pass, and *of_read gets the
 * median over repetitions of the weights' rate (decode_gb per token) over that pass's
 * rate: the two measured a moment apart, as the host's load moves both. */
static double run_test(const wim_model *m, wim_ctx *c, int prompt, int gen, int depth, int reps,
                       const read_array *ra, double decode_gb, double *of_read) {
    char err[256];
    int V = wim_model_n_vocab(m), n = prompt ? prompt : depth + gen;
    int32_t *t = malloc((size_t)n * sizeof *t);
    double *rates = malloc((size_t)reps * sizeof *rates),
           *fracs = malloc((size_t)reps * sizeof *fracs);
    float *logits = malloc((size_t)V * sizeof *logits);
    if (!t || !rates || !fracs || !logits) {
        free(t);
        free(rates);
        free(fracs);
        free(logits);
        return -1;
    }
    for (int i = 0; i < n; i++)
        t[i] = (int32_t)(1 + (uint32_t)i * 7919u % (uint32_t)(V - 1));
    wim_ctx_reset(c);
    /* the prompt before the decode steps is read once; each repetition decodes from a
     * snapshot of it and rolls back, as a margin does */
    if (depth && wim_eval(c, t, depth, logits, 0, err, sizeof err)) goto fail;
    for (int r = 0; r < reps; r++) {
        if (!depth)
            wim_ctx_reset(c);
        else if (wim_ctx_snapshot(c)) {
            snprintf(err, sizeof err, "out of memory for a KV snapshot");
            goto fail;
        }
        double t0 = wim_now_ms();
        if (prompt) {
            if (wim_eval(c, t, prompt, logits, 0, err, sizeof err)) goto fail;
        } else
            for (int i = depth; i < depth + gen; i++) /* logits are part of a step's cost */
                if (wim_eval(c, &t[i], 1, logits, 0, err, sizeof err)) goto fail;
        rates[r] = (prompt ? prompt : gen) / ((wim_now_ms() - t0) / 1e3);
        if (depth) wim_ctx_restore(c);
        if (ra) fracs[r] = rates[r] * decode_gb / read_pass(ra, wim_ctx_threads(c));
    }
    double med = median(rates, reps);
    if (ra) *of_read = median(fracs, reps);
    free(t);
    free(rates);
    free(fracs);
    free(logits);
    return med;
fail:
    cli_error("bench: %s", err);
    free(t);
    free(rates);
    free(fracs);
    free(logits);
    return -1;
}

int cmd_bench(int argc, char **argv) {
    if (cli_wants_help(argc, argv, usage)) return 0;
    cli_measure_opts mo = {0};
    long gen = 128, reps = 3, chunk = 512;
    int bandwidth = 0;
    int plist[16] = {512}, n_plist = 1, depths[16] = {0}, n_depths = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--bandwidth")) { /* (the only option without a value) */
            bandwidth = 1;
            continue;
        }
        int known = cli_measure_option("bench", argc, argv, &i, &mo, &v);
        if (known) {
            if (known < 0) return 2;
        } else if (!strcmp(a, "-p")) {
            if ((n_plist = cli_int_list(a, v, 0, 1 << 20, plist, 16)) < 0) return 2;
        } else if (!strcmp(a, "-d")) {
            if ((n_depths = cli_int_list(a, v, 0, 1 << 20, depths, 16)) < 0) return 2;
        } else if (!strcmp(a, "-n")) {
            if (cli_int(a, v, 0, 1 << 20, &gen)) return 2;
        } else if (!strcmp(a, "-r")) {
            if (cli_int(a, v, 1, 1000, &reps)) return 2;
        } else if (!strcmp(a, "--chunk")) {
            if (cli_int(a, v, 1, 1 << 16, &chunk)) return 2;
        } else
            return cli_error("bench: unknown option '%s' (see wim bench --help)", a);
    }
    if (!mo.model) return cli_error("bench: no model given: pass -m MODEL.gguf");
    int prompts[16], np = 0; /* -p 0: decode only */
    for (int i = 0; i < n_plist; i++)
        if (plist[i] > 0) prompts[np++] = plist[i];
    char err[512];
    wim_model *m;
    if (wim_model_load(mo.model, &m, err, sizeof err)) return cli_error("%s", err);
    int cap = 0;
    for (int i = 0; i < n_depths; i++)
        if (depths[i] + (int)gen > cap) cap = depths[i] + (int)gen;
    for (int i = 0; i < np; i++)
        if (prompts[i] > cap) cap = prompts[i];
    wim_ctx_params p = wim_ctx_default_params();
    p.n_ctx = cap > 0 ? cap : 1;
    p.chunk = (int)chunk;
    p.n_threads = (int)mo.threads;
    wim_ctx *c;
    if (wim_ctx_new(m, &p, &c, err, sizeof err)) {
        wim_model_free(m);
        return cli_error("%s", err);
    }
    const char *isa = wim_kernels_get()->isa;
    int nt = wim_ctx_threads(c), rc = 0;
    const double decode_gb = wim_model_decode_bytes(m) / 1e9;
    read_array ra = {0};
    if (bandwidth && read_array_new(&ra)) {
        wim_ctx_free(c);
        wim_model_free(m);
        return cli_error("bench: no memory for the %zu MiB read test", READ_BYTES >> 20);
    }
    if (!mo.json)
        printf("| %-12s | %10s | %13s | %-10s | %7s |\n"
               "|--------------|-----------:|--------------:|------------|--------:|\n",
               "test", "tok/s", bandwidth ? "GB/s (read)" : "GB/s", "isa", "threads");
    for (int i = 0; i < np + n_depths && !rc; i++) {
        int is_pp = i < np, depth = is_pp ? 0 : depths[i - np];
        if (!is_pp && gen == 0) break;
        const int paired = bandwidth && !is_pp && !depth; /* weights are all it reads */
        double of_read = 0;
        double tps = run_test(m, c, is_pp ? prompts[i] : 0, is_pp ? 0 : (int)gen, depth, (int)reps,
                              paired ? &ra : NULL, decode_gb, &of_read);
        if (tps < 0) {
            rc = 1;
            break;
        }
        char name[32];
        if (is_pp)
            snprintf(name, sizeof name, "pp%d", prompts[i]);
        else
            snprintf(name, sizeof name, depth ? "tg%ld@d%d" : "tg%ld", gen, depth);
        char rate[64] = "";
        if (!is_pp && mo.json)
            snprintf(rate, sizeof rate,
                     paired ? ",\"weights_gb_s\":%.2f,\"of_read\":%.3f" : ",\"weights_gb_s\":%.2f",
                     tps * decode_gb, of_read);
        else if (!is_pp)
            snprintf(rate, sizeof rate, paired ? "%.1f (%.0f%%)" : "%.1f", tps * decode_gb,
                     100 * of_read);
        if (mo.json)
            printf("{\"test\":\"%s\",\"tok_s\":%.2f%s,\"isa\":\"%s\",\"threads\":%d}\n", name, tps,
                   rate, isa, nt);
        else
            printf("| %-12s | %10.2f | %13s | %-10s | %7d |\n", name, tps, rate, isa, nt);
        fflush(stdout);
    }
    if (bandwidth && !rc) {
        double gbs = read_bandwidth(&ra, nt, (int)reps);
        if (gbs < 0)
            rc = cli_error("bench: out of memory");
        else if (mo.json)
            printf("{\"test\":\"read\",\"gb_s\":%.2f,\"threads\":%d}\n", gbs, nt);
        else
            printf("| %-12s | %10s | %13.1f | %-10s | %7d |\n", "read", "", gbs, "", nt);
    }
    read_array_free(&ra);
    wim_ctx_free(c);
    wim_model_free(m);
    return rc;
}
