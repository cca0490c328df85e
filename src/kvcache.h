/*
 * kvcache.h — the per-sequence store of attention keys and values: a ring
 * buffer of fixed capacity with O(1) nested snapshots and exact restore.
 *
 * Owns: the cells, allocated once; each cell holds K and V for every layer,
 * the absolute position and the token id it came from.
 *
 * Regimes:
 *  - n <= C (C = capacity): a plain cache; cells fill in order (the paper's
 *    setting). Exactly C cells are allocated.
 *  - streaming (kv_init with streaming set): a sliding window. The first `pin`
 *    cells are never overwritten (system prompt, attention sinks); every
 *    query at absolute position p sees the pinned cells plus the keys at
 *    positions (p - W, p], W = C - pin: the last W positions, itself
 *    included, however the tokens were grouped into claims (prefill chunks).
 *    For that, a claim of up to max_claim tokens must not overwrite a key an
 *    earlier query of the same claim still sees, so streaming allocates
 *    cells = C + max_claim - 1 (pin + R, R = W + max_claim - 1 ring cells;
 *    the KV memory reported to users counts all of them) and each new token
 *    overwrites the oldest of the R ring cells. Keys keep their absolute RoPE
 *    positions, so relative distances stay right.
 *
 * Logical layout: the slot a position would have in a ring of exactly C
 * cells (position q < pin: slot q; otherwise pin + (q - pin) % W). It does not
 * depend on max_claim, and it is what attention iterates over, what kv_crc
 * hashes and what kv_save writes, so results, CRCs and files are the same
 * whatever prefill chunk (max_claim) a context was created with.
 *
 * Invariants:
 *  - physical cells [0, n) are in use, n = min(next_pos, cells); position q
 *    sits in physical slot q if q < pin, else pin + (q - pin) % R; a cell's
 *    contents never change except by being overwritten in the streaming
 *    regime, and then only after its old contents were journaled if any
 *    snapshot is open; cells a query may see all hold their position's key;
 *    other used cells (older positions, or cells left empty by kv_load, which
 *    have position -1) are never read by attention;
 *  - kv_restore returns the cache to the exact bytes and metadata it had at
 *    the matching kv_snapshot (snapshots nest as a stack);
 *  - attention visits the visible cells in logical slot order, in tiles of
 *    logical slots (the causal and window masks are by position), so caches
 *    with equal kv_crc give identical results.
 *
 * Branches (kv_branches_open; not when streaming): sequences that continue the
 * trunk (the cells above) from a fork position, in a separate area of cells
 * addressed by slots >= cells. A query of branch b at position p sees the
 * trunk's positions < fork_b and b's own cells at positions <= p, and nothing
 * of other branches or of the trunk at or past the fork. Its tiles are tiles of
 * positions, exactly as if b's tokens had been appended to the trunk at the
 * fork, so a branch computes the same bits as that snapshot-append-restore
 * would. Branches never write trunk cells: kv_crc (the trunk only) is unchanged
 * by opening, filling and closing them.
 */
#ifndef WIM_KVCACHE_H
#define WIM_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "mem.h"
#include "wim.h"

/* The largest absolute position a cache holds (positions and cell counts stay well inside
 * an int32, whatever is added to them). */
#define KV_MAX_POS 0x3fffffff

typedef struct {
    int head, n, next_pos;
    size_t journal_len;
} kv_mark;

typedef struct {
    int slot;
    int32_t pos, tok;
} kv_journal_entry;

typedef struct {
    int fork;  /* the trunk positions < fork are visible to the branch */
    int first; /* its cells: branch-area cells first .. first + cap - 1 */
    int len, cap;
} kv_branch;

typedef struct {
    int n_layer, kv_dim;
    int n_head_kv, head_dim; /* kv_dim = n_head_kv * head_dim */
    int capacity;            /* C: the logical capacity (the window's size plus the pinned cells) */
    int pin, streaming;
    int max_claim; /* the most tokens one kv_claim may add when streaming */
    int cells;     /* physical cells: C, or C + max_claim - 1 when streaming */
    int n;         /* used cells: slots [0, n) */
    int head;      /* the slot the next token overwrites once full, in [pin, cells) */
    int next_pos;  /* absolute position of the next token */
    enum wim_kv_type type;
    size_t elem;    /* bytes per stored value */
    uint8_t *k, *v; /* [n_layer][n_head_kv][cells][head_dim] (below) */
    int32_t *pos, *tok;
    kv_mark *marks;
    int n_marks, cap_marks;
    kv_journal_entry *journal; /* overwritten cells, oldest first */
    uint8_t *journal_data;     /* their K and V, cell_bytes each */
    size_t journal_len, journal_cap;
    /* branches: an area of branch_cells cells, slot cells + i for area cell i */
    int n_branches, branch_cells;
    kv_branch *branches;
    uint8_t *bk, *bv;     /* [n_layer][n_head_kv][branch_cells][head_dim] */
    int32_t *bpos, *btok; /* [branch_cells] */
    wim_mem *mem;
} wim_kvcache;

/* max_claim (>= 1) matters only when streaming: it sizes the extra cells. */
int kv_init(wim_kvcache *kv, wim_mem *mem, int n_layer, int n_head_kv, int head_dim, int capacity,
            int pin, int streaming, int max_claim, enum wim_kv_type type, char *err, size_t errlen);
void kv_free(wim_kvcache *kv);
/* Bytes of one cell (K and V of every layer). */
size_t kv_cell_bytes(const wim_kvcache *kv);
/* How many tokens can be appended now (INT32_MAX-ish when streaming). */
int kv_room(const wim_kvcache *kv);

/* Claims cells for n_new tokens at positions next_pos.. and records their ids;
 * writes their slots. Returns 0, or -1 when the cache is full (not streaming),
 * when n_new exceeds max_claim (streaming), or out of memory for the journal.
 * Queries may then be asked for any position of the claim (attn_block). */
int kv_claim(wim_kvcache *kv, int n_new, const int32_t *tokens, int *slots);
/* Stores one token's K and V (kv_dim floats each, head after head) for a layer. */
void kv_store(wim_kvcache *kv, int layer, int slot, const float *k, const float *v);
/*
 * Where one KV head's head_dim values of a cell are, in the trunk's array or in
 * the branch area's (slot >= cells).  Each head's cells of a layer are one
 * array, so the next slot's values follow these directly (head_dim apart): a
 * query's attention reads one contiguous run per tile.  With a cell's heads side
 * by side instead, the threads that took different heads of a decode step read
 * interleaved parts of the same lines, and K/V streamed 2-3x slower.
 */
static inline const void *kv_head_at(const wim_kvcache *kv, const uint8_t *trunk,
                                     const uint8_t *branch, int layer, int head, int slot) {
    const int area = slot >= kv->cells, cells = area ? kv->branch_cells : kv->cells;
    const size_t at =
        ((size_t)layer * kv->n_head_kv + head) * cells + (size_t)(area ? slot - kv->cells : slot);
    return (area ? branch : trunk) + at * kv->head_dim * kv->elem;
}
static inline const void *kv_k(const wim_kvcache *kv, int layer, int head, int slot) {
    return kv_head_at(kv, kv->k, kv->bk, layer, head, slot);
}
static inline const void *kv_v(const wim_kvcache *kv, int layer, int head, int slot) {
    return kv_head_at(kv, kv->v, kv->bv, layer, head, slot);
}
/* The position a used cell (trunk or branch) holds. */
static inline int32_t kv_pos_at(const wim_kvcache *kv, int slot) {
    return slot >= kv->cells ? kv->bpos[slot - kv->cells] : kv->pos[slot];
}
/* W: how many of the latest positions a query sees besides the pinned ones. */
static inline int kv_window(const wim_kvcache *kv) {
    return kv->capacity - kv->pin;
}
/* The oldest unpinned position a query at qpos sees (its window's start). */
static inline int kv_window_start(const wim_kvcache *kv, int qpos) {
    const int a = qpos - kv_window(kv) + 1;
    return a > kv->pin ? a : kv->pin;
}
/* The physical slot that holds position pos (which must still be held). */
static inline int kv_slot_of(const wim_kvcache *kv, int pos) {
    return pos < kv->pin ? pos : kv->pin + (pos - kv->pin) % (kv->cells - kv->pin);
}
/* The slot position pos has in the logical layout (a ring of exactly C cells). */
static inline int kv_logical_slot(const wim_kvcache *kv, int pos) {
    return pos < kv->pin ? pos : kv->pin + (pos - kv->pin) % kv_window(kv);
}
/* Whether a query at position qpos sees the key in physical slot `slot`: a
 * pinned cell at or before qpos, or a key at a position in (qpos - W, qpos]. */
static inline int kv_visible(const wim_kvcache *kv, int slot, int qpos) {
    const int32_t p = kv->pos[slot];
    return p >= 0 && p <= qpos && (slot < kv->pin || p >= kv_window_start(kv, qpos));
}
void kv_clear(wim_kvcache *kv);
/* Copies the cells of positions [0, upto) of a cache that never streamed into
 * dst, a non-streaming cache that holds them: dst is then what src was when it
 * held upto tokens (with upto = next_pos, dst's CRC is src's). src's open
 * snapshots are not copied (dst has none). */
int kv_copy(wim_kvcache *dst, const wim_kvcache *src, int upto, char *err, size_t errlen);
/* Makes dst, a cache of the same geometry (kv_init with the same arguments),
 * hold exactly src's cells and metadata, physical layout included (a streaming
 * window as it stands); no snapshots. */
int kv_clone(wim_kvcache *dst, const wim_kvcache *src, char *err, size_t errlen);

/* Opens n branches, branch b forking at trunk position forks[b] (<= next_pos)
 * with room for cells[b] tokens; any branches still open are closed first.
 * Returns 0, or -1 with one line in err (streaming cache, bad fork, no memory). */
int kv_branches_open(wim_kvcache *kv, int n, const int *forks, const int *cells, char *err,
                     size_t errlen);
/* Forgets every branch and frees their area; the trunk is untouched. */
void kv_branches_close(wim_kvcache *kv);
/* kv_claim for branch b: n_new cells at the branch's next positions. Returns 0,
 * or -1 when the branch is full. */
int kv_branch_claim(wim_kvcache *kv, int b, int n_new, const int32_t *tokens, int *slots);
/* The position branch b's next token takes. */
static inline int kv_branch_next_pos(const wim_kvcache *kv, int b) {
    return kv->branches[b].fork + kv->branches[b].len;
}

/* O(1): pushes a mark. Returns the new depth, or -1 when out of memory. */
int kv_snapshot(wim_kvcache *kv);
/* Rolls back to the most recent mark and pops it. Returns -1 if none. */
int kv_restore(wim_kvcache *kv);
/* Pops the most recent mark keeping the changes since. Returns -1 if none. */
int kv_snapshot_drop(wim_kvcache *kv);

/* CRC-32 of the cells in logical layout (K, V, position, token; the last W
 * positions and the pinned ones) and the logical metadata (cells in use, head,
 * next_pos, as a ring of exactly C cells would have them): equal CRCs mean the
 * cache will behave identically, whatever max_claim each cache has. */
uint32_t kv_crc(const wim_kvcache *kv);

/* Persistence: zlib-compressed payload (the cells, then extra_len bytes the
 * caller keeps with them) behind a versioned header carrying the model
 * fingerprint and geometry, all under one CRC-32; written atomically (temp
 * file + fsync + rename). The cells are written in logical layout, so a file
 * loads into a context of the same capacity and pin whatever its max_claim (a
 * cache that never streamed: any capacity that holds its cells). Load checks
 * everything before it touches the cache: on any error the cache is
 * unchanged. It hands back the extra bytes (malloc'd, or NULL when none) if
 * extra is not NULL. Version 1 files (no extra bytes) still load. */
int kv_save(const wim_kvcache *kv, uint64_t fingerprint, const char *path, const void *extra,
            size_t extra_len, char *err, size_t errlen);
int kv_load(wim_kvcache *kv, uint64_t fingerprint, const char *path, void **extra,
            size_t *extra_len, char *err, size_t errlen);
/* Reads just the header: the capacity and pin a context needs to load the
 * file, and how many tokens it holds (next_pos may be NULL). */
int kv_file_geometry(const char *path, int *capacity, int *pin, int *streaming, int *next_pos,
                     char *err, size_t errlen);

#endif
