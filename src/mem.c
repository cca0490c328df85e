/*
 * mem.c — counted, aligned allocations (see mem.h).
 */
#include "mem.h"

#include <stdlib.h>

void *wim_mem_alloc(wim_mem *m, enum wim_mem_kind kind, size_t bytes) {
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64 + (bytes == 0) * 64);
    if (!p) return NULL;
    m->cur[kind] += bytes;
    if (m->cur[kind] > m->peak[kind]) m->peak[kind] = m->cur[kind];
    return p;
}

void wim_mem_free(wim_mem *m, enum wim_mem_kind kind, void *p, size_t bytes) {
    if (!p) return;
    free(p);
    m->cur[kind] -= bytes;
}

void wim_mem_reset_peak(wim_mem *m) {
    for (int k = 0; k < WIM_MEM_KINDS; k++)
        m->peak[k] = m->cur[k];
}
