/*
 * kvcache.h — the per-sequence store of attention keys and values: a ring
 * buffer of fixed capacity with O(1) nested snapshots and exact restore.
 *
 * Owns: C cells allocated once; each cell holds K and V for every layer, the
 * absolute position and the token id it came from.
 *
 * Regimes:
 *  - n <= C: a plain cache; cells fill in order (the paper's setting).
 *  - streaming (kv_init with streaming set), once full: a sliding window. The
 *    first `pin` cells are never overwritten (system prompt, attention sinks);
 *    each new token overwrites the oldest other cell. Keys keep their absolute
 *    RoPE positions, so relative distances stay right.
 *
 * Invariants:
 *  - cells [0, n) are live; a live cell's contents never change except by
 *    being overwritten in the streaming regime, and then only after its old
 *    contents were journaled if any snapshot is open;
 *  - kv_restore returns the cache to the exact bytes and metadata it had at
 *    the matching kv_snapshot (snapshots nest as a stack);
 *  - attention reads cells in slot order (the causal mask is by position), so
 *    identical caches give identical results.
 */
#ifndef WIM_KVCACHE_H
#define WIM_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "mem.h"
#include "wim.h"

typedef struct {
    int head, n, next_pos;
    size_t journal_len;
} kv_mark;

typedef struct {
    int slot;
    int32_t pos, tok;
} kv_journal_entry;

typedef struct {
    int n_layer, kv_dim, capacity, pin, streaming;
    int n;        /* live cells: slots [0, n) */
    int head;     /* the slot the next token overwrites once full, in [pin, capacity) */
    int next_pos; /* absolute position of the next token */
    enum wim_kv_type type;
    size_t elem;    /* bytes per stored value */
    uint8_t *k, *v; /* [n_layer][capacity][kv_dim] */
    int32_t *pos, *tok;
    kv_mark *marks;
    int n_marks, cap_marks;
    kv_journal_entry *journal; /* overwritten cells, oldest first */
    uint8_t *journal_data;     /* their K and V, cell_bytes each */
    size_t journal_len, journal_cap;
    wim_mem *mem;
} wim_kvcache;

int kv_init(wim_kvcache *kv, wim_mem *mem, int n_layer, int kv_dim, int capacity, int pin,
            int streaming, enum wim_kv_type type, char *err, size_t errlen);
void kv_free(wim_kvcache *kv);
/* Bytes of one cell (K and V of every layer). */
size_t kv_cell_bytes(const wim_kvcache *kv);
/* How many tokens can be appended now (INT32_MAX-ish when streaming). */
int kv_room(const wim_kvcache *kv);

/* Claims cells for n_new tokens at positions next_pos.. and records their ids;
 * writes their slots. Returns 0, or -1 when the cache is full (not streaming)
 * or out of memory for the journal. n_new must not exceed capacity - pin
 * when streaming (one token per cell within a claim). */
int kv_claim(wim_kvcache *kv, int n_new, const int32_t *tokens, int *slots);
/* Stores one token's K and V (kv_dim floats each) for a layer. */
void kv_store(wim_kvcache *kv, int layer, int slot, const float *k, const float *v);
static inline const void *kv_k(const wim_kvcache *kv, int layer, int slot) {
    return kv->k + (((size_t)layer * kv->capacity + slot) * kv->kv_dim) * kv->elem;
}
static inline const void *kv_v(const wim_kvcache *kv, int layer, int slot) {
    return kv->v + (((size_t)layer * kv->capacity + slot) * kv->kv_dim) * kv->elem;
}
void kv_clear(wim_kvcache *kv);

/* O(1): pushes a mark. Returns the new depth, or -1 when out of memory. */
int kv_snapshot(wim_kvcache *kv);
/* Rolls back to the most recent mark and pops it. Returns -1 if none. */
int kv_restore(wim_kvcache *kv);
/* Pops the most recent mark keeping the changes since. Returns -1 if none. */
int kv_snapshot_drop(wim_kvcache *kv);

/* CRC-32 of the live cells (K, V, position, token) and the metadata (n, head,
 * next_pos): equal CRCs mean the cache will behave identically. */
uint32_t kv_crc(const wim_kvcache *kv);

/* Persistence: zlib-compressed payload behind a versioned header carrying the
 * model fingerprint, geometry and a CRC-32 of the payload; written
 * atomically (temp file + fsync + rename). Load checks everything before it
 * touches the cache: on any error the cache is unchanged. */
int kv_save(const wim_kvcache *kv, uint64_t fingerprint, const char *path, char *err,
            size_t errlen);
int kv_load(wim_kvcache *kv, uint64_t fingerprint, const char *path, char *err, size_t errlen);
/* Reads just the header: the capacity and pin a context needs to load the file. */
int kv_file_geometry(const char *path, int *capacity, int *pin, int *streaming, char *err,
                     size_t errlen);

#endif
