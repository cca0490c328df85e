/*
 * mem.h — the memory accountant.
 *
 * Every allocation the engine makes for a context goes through one wim_mem,
 * tagged with what it is for, so the profile can report exactly what each
 * part costs: the KV cache and scratch (the per-chunk working buffers, whose
 * peak is the number the paper's memory argument is about).  Weights are the
 * model file's bytes (gguf.c), shared by every context and not counted here.
 *
 * Invariant: `cur` of each kind is the sum of live allocations of that kind;
 * `peak` is the largest `cur` ever seen.
 */
#ifndef WIM_MEM_H
#define WIM_MEM_H

#include <stddef.h>

enum wim_mem_kind { WIM_MEM_KV, WIM_MEM_SCRATCH, WIM_MEM_KINDS };

typedef struct {
    size_t cur[WIM_MEM_KINDS], peak[WIM_MEM_KINDS];
} wim_mem;

/* 64-byte aligned, counted; NULL when out of memory. */
void *wim_mem_alloc(wim_mem *m, enum wim_mem_kind kind, size_t bytes);
void wim_mem_free(wim_mem *m, enum wim_mem_kind kind, void *p, size_t bytes);
/* `bytes` of zeroed anonymous memory that asks for transparent huge pages (a request:
 * small pages still work), *len of them to munmap (bytes rounded up to 2 MiB); NULL
 * when none can be had.  For memory read end to end, where 4 KiB pages cost TLB
 * misses: the weights (gguf.c), the bench's read roofline. */
void *wim_huge_pages(size_t bytes, size_t *len);
/* Resets the peaks to the current values (start of a measured phase). */
void wim_mem_reset_peak(wim_mem *m);

#endif
