/*
 * kvcache.h — the per-sequence store of attention keys and values.
 *
 * Owns: C cells allocated once; each cell holds K and V for every layer and
 * the absolute position of the token it came from.
 *
 * Invariants: cells [0, n) are live; a live cell's position never changes;
 * the attention kernels may read cells in any order (the causal mask is by
 * position), but always read them in slot order so results are reproducible.
 */
#ifndef WIM_KVCACHE_H
#define WIM_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "wim.h"

typedef struct {
    int n_layer, kv_dim, capacity;
    int n; /* live cells */
    enum wim_kv_type type;
    size_t elem; /* bytes per value */
    uint8_t *k, *v; /* [n_layer][capacity][kv_dim] */
    int32_t *pos;   /* [capacity] */
} wim_kvcache;

int kv_init(wim_kvcache *kv, int n_layer, int kv_dim, int capacity, enum wim_kv_type type,
            char *err, size_t errlen);
void kv_free(wim_kvcache *kv);
size_t kv_bytes(const wim_kvcache *kv);
/* Claims cells for n_new tokens at positions pos0.. ; writes their slots.
 * Returns 0, or -1 when the cache is full. */
int kv_claim(wim_kvcache *kv, int n_new, int pos0, int *slots);
/* Stores one token's K and V (kv_dim floats each) for a layer. */
void kv_store(wim_kvcache *kv, int layer, int slot, const float *k, const float *v);
static inline const void *kv_k(const wim_kvcache *kv, int layer, int slot) {
    return kv->k + (((size_t)layer * kv->capacity + slot) * kv->kv_dim) * kv->elem;
}
static inline const void *kv_v(const wim_kvcache *kv, int layer, int slot) {
    return kv->v + (((size_t)layer * kv->capacity + slot) * kv->kv_dim) * kv->elem;
}
void kv_clear(wim_kvcache *kv);

#endif
