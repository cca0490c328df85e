/*
 * mem.c — counted, aligned allocations (see mem.h).
 */
#include "mem.h"

#include <stdlib.h>
#include <sys/mman.h>

void *wim_huge_pages(size_t bytes, size_t *len) {
    const size_t page = (size_t)2 << 20;
    *len = (bytes + page - 1) / page * page;
    void *p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    madvise(p, *len, MADV_HUGEPAGE);
    return p;
}

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
