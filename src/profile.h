/*
 * profile.h — measuring what chunked prefill costs in memory and time.
 *
 * Each measurement runs in a forked child process so its peak RSS is its own
 * (getrusage of one process only grows), and so an out-of-memory in the
 * materialised mode cannot take the caller down.
 */
#ifndef WIM_PROFILE_H
#define WIM_PROFILE_H

#include <stddef.h>

#include "wim.h"

typedef struct {
    int L, K, materialize;
    double ms;                 /* prefill wall time */
    size_t scratch_peak_bytes; /* accounted working buffers, peak */
    size_t kv_bytes;           /* accounted KV cache */
    size_t rss_peak_bytes;     /* the child's peak resident set */
    int ok;
    char err[200];
} wim_profile_row;

/* Prefills L tokens in chunks of K into a fresh context of capacity L and
 * fills *row. Returns 0, or -1 with row->err set. */
int wim_profile_one(const wim_model *m, int L, int K, int materialize, int n_threads,
                    wim_profile_row *row);

#endif
