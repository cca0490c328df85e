/*
 * profile.c — one (L, K, mode) memory/time measurement in a child process.
 */
#include "profile.h"
#include "clock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Runs in the child: the measurement itself. */
static void measure(const wim_model *m, wim_profile_row *row, int n_threads) {
    wim_ctx_params p = wim_ctx_default_params();
    p.n_ctx = row->L;
    p.chunk = row->K;
    p.n_threads = n_threads;
    p.attn_materialize = row->materialize;
    wim_ctx *c;
    if (wim_ctx_new(m, &p, &c, row->err, sizeof row->err)) return;
    int n_vocab = wim_model_n_vocab(m);
    int32_t *t = malloc((size_t)row->L * sizeof *t);
    if (!t) {
        snprintf(row->err, sizeof row->err, "out of memory");
        wim_ctx_free(c);
        return;
    }
    for (int i = 0; i < row->L; i++) /* any fixed token stream will do: cost is content-blind */
        t[i] = (int32_t)(1 + (uint32_t)i * 7919u % (uint32_t)(n_vocab - 1));
    double t0 = wim_now_ms();
    if (wim_eval(c, t, row->L, NULL, 0, row->err, sizeof row->err) == 0) {
        row->ms = wim_now_ms() - t0;
        wim_mem_report r;
        wim_ctx_memory(c, &r);
        row->scratch_peak_bytes = r.scratch_peak;
        row->kv_bytes = r.kv_bytes;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        row->rss_peak_bytes = (size_t)ru.ru_maxrss * 1024;
        row->ok = 1;
    }
    free(t);
    wim_ctx_free(c);
}

int wim_profile_one(const wim_model *m, int L, int K, int materialize, int n_threads,
                    wim_profile_row *row) {
    memset(row, 0, sizeof *row);
    row->L = L;
    row->K = K;
    row->materialize = materialize;
    int fds[2];
    if (pipe(fds)) {
        snprintf(row->err, sizeof row->err, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(row->err, sizeof row->err, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        measure(m, row, n_threads);
        ssize_t w = write(fds[1], row, sizeof *row);
        _exit(w == (ssize_t)sizeof *row ? 0 : 1);
    }
    close(fds[1]);
    wim_profile_row got;
    ssize_t n = read(fds[0], &got, sizeof got);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (n != (ssize_t)sizeof got) {
        snprintf(row->err, sizeof row->err, "measurement process died (%s)",
                 WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "no result");
        return -1;
    }
    *row = got;
    return row->ok ? 0 : -1;
}
